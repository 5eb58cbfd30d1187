//! Model-based property tests of the ledger (SPEC sections 1-4).
//!
//! A small, deliberately plain MODEL of the ledger (BTreeMaps, no indexes, reserved / allocated /
//! incoming recomputed from the objects every time they are read) runs side by side with
//! `engine::Ledger` on random sequences of batches. After every batch the two must agree on
//! every outcome code (and on the payload of every successful reply), on every balance field and
//! ATS of every (SKU, location), and on the state of every reservation, order and transfer.
//! Reads are also checked at times between batches, where holds and pickups past their deadline
//! must already have stopped counting.
//!
//! The same batches also drive a twin ledger (byte-identical snapshots) and, from a random
//! step on, a ledger restored from a snapshot (same outcomes and same final bytes). The change
//! feed of every batch is checked too (causes, request ids, shortages, final balances).
//!
//! `no_oversell` races single-unit requests in one batch (SPEC 4); `short_retention_stays_
//! consistent` replays the generator with tiny retention limits (no model, invariants only).
//! Tests at the end pin edge cases that random batches reach rarely or never (a deadline
//! exactly at the query time, status counters between batches, time near `u64::MAX`, sums over
//! thousands of locations), each with the SPEC rule it checks.
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of the defaults (96 / 48 / 192);
//! failures are persisted in `engine/proptest-regressions/model.txt`.
//!
//! Fixture: SKUs `A`, `B`, `C`; locations `wh` (warehouse), `st` (store, pickup) and `mk`
//! (marketplace, sells to `web` only); group `g` = [`mk`, `st`]; channels `web`, `app`, `pos`.

use std::collections::{BTreeMap, BTreeSet};

use engine::limits::{PICKUP_DEADLINE_MS_MAX, TTL_MS_MAX};
use engine::query::{Cause, OrderState, ReservationState, TransferState};
use engine::{
    code_of, Answer, BatchHeader, ChannelId, Code, Command, Config, Disposition, Fulfilment,
    GroupId, Ledger, Line, LocatedLine, LocationDef, LocationId, LocationKind, OrderId,
    OrderSource, Outcome, Query, Reason, Reply, Request, RequestId, ReservationId, ReturnLine,
    RmaId, SkuId, Target, TransferId,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

const SKUS: [&str; 3] = ["A", "B", "C"];
const LOCS: [&str; 3] = ["wh", "st", "mk"];
const GROUP: &str = "g";
/// The group's locations, in sourcing order (not the definition order, on purpose).
const GROUP_LOCS: [usize; 2] = [2, 1];
const CHANNELS: [&str; 3] = ["web", "app", "pos"];
/// First batch timestamp.
const T0: u64 = 1_700_000_000_000;

fn offers_pickup(loc: usize) -> bool {
    loc == 1
}

/// `mk` sells to `web` only; the others sell to every channel.
fn sells_to(loc: usize, channel: &str) -> bool {
    loc != 2 || channel == "web"
}

fn sku_ix(sku: &str) -> usize {
    SKUS.iter()
        .position(|s| *s == sku)
        .expect("the tests only use fixture SKUs")
}

fn loc_ix(loc: &str) -> usize {
    LOCS.iter()
        .position(|l| *l == loc)
        .expect("the tests only use fixture locations")
}

fn setup_commands() -> Vec<Command> {
    let loc = |id: &str, kind, pickup, channels: Option<Vec<&str>>| {
        Command::DefineLocation(LocationDef {
            location: LocationId::from(id),
            kind,
            pickup,
            coordinates: None,
            channels: channels.map(|c| c.into_iter().map(ChannelId::from).collect()),
        })
    };
    vec![
        loc("wh", LocationKind::Warehouse, false, None),
        loc("st", LocationKind::Store, true, None),
        loc("mk", LocationKind::Marketplace, false, Some(vec!["web"])),
        Command::DefineGroup {
            group: GroupId::from(GROUP),
            locations: GROUP_LOCS
                .iter()
                .map(|&l| LocationId::from(LOCS[l]))
                .collect(),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// A balance as the model sees it (same fields as `engine::Balance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bal {
    on_hand: i64,
    reserved: i64,
    allocated: i64,
    unavailable: i64,
    safety_stock: i64,
    incoming: i64,
}

impl Bal {
    fn from_engine(b: &engine::Balance) -> Bal {
        Bal {
            on_hand: b.on_hand,
            reserved: b.reserved,
            allocated: b.allocated,
            unavailable: b.unavailable,
            safety_stock: b.safety_stock,
            incoming: b.incoming,
        }
    }

    /// SPEC 1: `max(0, on_hand - unavailable - reserved - allocated)`.
    fn ats_pos(&self) -> i64 {
        (self.on_hand - self.unavailable - self.reserved - self.allocated).max(0)
    }

    /// SPEC 1: `max(0, on_hand - unavailable - reserved - allocated - safety_stock)`.
    fn ats_remote(&self) -> i64 {
        (self.on_hand - self.unavailable - self.reserved - self.allocated - self.safety_stock)
            .max(0)
    }

    fn ats_for(&self, channel: &str) -> i64 {
        if channel == "pos" {
            self.ats_pos()
        } else {
            self.ats_remote()
        }
    }

    fn sellable(&self) -> i64 {
        self.on_hand - self.unavailable
    }
}

/// The stored part of a balance; reserved, allocated and incoming come from the objects.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    on_hand: i64,
    unavailable: i64,
    safety_stock: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HoldState {
    Active,
    Released,
    Expired,
    Placed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    line: u16,
    sku: usize,
    loc: usize,
    qty: i64,
}

#[derive(Clone, Debug)]
struct MRes {
    channel: String,
    expires_at: u64,
    state: HoldState,
    held: Vec<Piece>,
}

#[derive(Clone, Debug)]
struct MLine {
    sku: usize,
    loc: usize,
    pickup: bool,
    ordered: i64,
    fulfilled: i64,
    cancelled: i64,
}

impl MLine {
    fn unfulfilled(&self) -> i64 {
        self.ordered - self.fulfilled - self.cancelled
    }
}

#[derive(Clone, Debug)]
struct MOrder {
    channel: String,
    lines: Vec<MLine>,
    returned: BTreeMap<usize, i64>,
    pickup_deadline: Option<u64>,
    pickup_expired: bool,
    ready: bool,
}

impl MOrder {
    fn unfulfilled(&self) -> i64 {
        self.lines.iter().map(MLine::unfulfilled).sum()
    }

    fn line_index(&self, sku: usize, loc: usize) -> Option<usize> {
        self.lines.iter().position(|l| l.sku == sku && l.loc == loc)
    }

    fn fulfilled_of(&self, sku: usize) -> i64 {
        self.lines
            .iter()
            .filter(|l| l.sku == sku)
            .map(|l| l.fulfilled)
            .sum()
    }

    fn state(&self) -> OrderState {
        let ordered: i64 = self.lines.iter().map(|l| l.ordered).sum();
        let fulfilled: i64 = self.lines.iter().map(|l| l.fulfilled).sum();
        let cancelled: i64 = self.lines.iter().map(|l| l.cancelled).sum();
        let unfulfilled = ordered - fulfilled - cancelled;
        if unfulfilled > 0 {
            if fulfilled > 0 {
                OrderState::PartiallyFulfilled
            } else {
                OrderState::Open
            }
        } else if fulfilled == 0 {
            OrderState::Cancelled
        } else if cancelled == 0 {
            OrderState::Fulfilled
        } else {
            OrderState::Closed
        }
    }
}

#[derive(Clone, Debug)]
struct MTransfer {
    sku: usize,
    from: usize,
    to: usize,
    qty: i64,
    /// (received, damaged) once received.
    received: Option<(i64, i64)>,
}

/// A successful reply, with locations as fixture indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum MReply {
    Done,
    Balance(Bal),
    Reserved {
        expires_at: u64,
        allocs: Vec<(u16, usize, i64)>,
    },
    Extended {
        expires_at: u64,
    },
    OrderPlaced {
        allocs: Vec<(u16, usize, i64)>,
        pickup_deadline: Option<u64>,
    },
    TransferReceived {
        lost: i64,
    },
}

/// A rejection as the model sees it: its code, and for `insufficient_stock` the units asked
/// and the units that were available (SPEC 3: "insufficient_stock carrying the ATS seen").
#[derive(Clone, Debug, PartialEq, Eq)]
enum MErr {
    Code(Code),
    Short { requested: i64, available: i64 },
}

impl MErr {
    fn code(&self) -> Code {
        match self {
            MErr::Code(c) => *c,
            MErr::Short { .. } => Code::InsufficientStock,
        }
    }
}

fn fail<T>(code: Code) -> Result<T, MErr> {
    Err(MErr::Code(code))
}

fn short<T>(requested: i64, available: i64) -> Result<T, MErr> {
    Err(MErr::Short {
        requested,
        available,
    })
}

type MOut = Result<MReply, MErr>;

/// The engine's outcome in the model's terms.
fn engine_view(outcome: &Outcome) -> MOut {
    let allocs = |a: &[engine::Allocation]| {
        a.iter()
            .map(|a| (a.line, loc_ix(a.location.as_str()), a.qty))
            .collect()
    };
    match outcome {
        Err(engine::Rejection::InsufficientStock {
            requested,
            available,
            ..
        }) => short(*requested, *available),
        Err(r) => fail(r.code()),
        Ok(Reply::Done) => Ok(MReply::Done),
        Ok(Reply::Balance(b)) => Ok(MReply::Balance(Bal::from_engine(b))),
        Ok(Reply::Reserved {
            expires_at_ms,
            allocations,
        }) => Ok(MReply::Reserved {
            expires_at: *expires_at_ms,
            allocs: allocs(allocations),
        }),
        Ok(Reply::Extended { expires_at_ms }) => Ok(MReply::Extended {
            expires_at: *expires_at_ms,
        }),
        Ok(Reply::OrderPlaced {
            allocations,
            pickup_deadline_ms,
        }) => Ok(MReply::OrderPlaced {
            allocs: allocs(allocations),
            pickup_deadline: *pickup_deadline_ms,
        }),
        Ok(Reply::TransferReceived { lost }) => Ok(MReply::TransferReceived { lost: *lost }),
    }
}

#[derive(Clone, Debug, Default)]
struct Model {
    now: u64,
    stock: BTreeMap<(usize, usize), Counted>,
    res: BTreeMap<String, MRes>,
    orders: BTreeMap<String, MOrder>,
    rmas: BTreeSet<String>,
    transfers: BTreeMap<String, MTransfer>,
    /// Outcome of every request id seen (the test never leaves the dedup window).
    seen: BTreeMap<u128, MOut>,
}

impl Model {
    /// The full balance of (sku, loc), reserved / allocated / incoming summed from the objects.
    fn bal(&self, sku: usize, loc: usize) -> Bal {
        let c = self.stock.get(&(sku, loc)).copied().unwrap_or_default();
        let reserved = self
            .res
            .values()
            .filter(|r| r.state == HoldState::Active)
            .flat_map(|r| r.held.iter())
            .filter(|p| p.sku == sku && p.loc == loc)
            .map(|p| p.qty)
            .sum();
        let allocated = self
            .orders
            .values()
            .flat_map(|o| o.lines.iter())
            .filter(|l| l.sku == sku && l.loc == loc)
            .map(MLine::unfulfilled)
            .sum();
        let incoming = self
            .transfers
            .values()
            .filter(|t| t.received.is_none() && t.sku == sku && t.to == loc)
            .map(|t| t.qty)
            .sum();
        Bal {
            on_hand: c.on_hand,
            reserved,
            allocated,
            unavailable: c.unavailable,
            safety_stock: c.safety_stock,
            incoming,
        }
    }

    /// Time moves to `t` (never backwards); every hold with `expires_at <= now` expires and
    /// every open pickup order with `deadline <= now` loses its uncollected units.
    fn advance(&mut self, t: u64) {
        self.now = self.now.max(t);
        let now = self.now;
        for r in self.res.values_mut() {
            if r.state == HoldState::Active && r.expires_at <= now {
                r.state = HoldState::Expired;
            }
        }
        for o in self.orders.values_mut() {
            let due = o.pickup_deadline.is_some_and(|d| d <= now);
            if due && !o.pickup_expired && o.unfulfilled() > 0 {
                for l in o.lines.iter_mut().filter(|l| l.pickup) {
                    l.cancelled += l.unfulfilled();
                }
                o.pickup_expired = true;
            }
        }
    }

    /// Every deadline still ahead (holds and pickups), ascending.
    fn deadlines(&self) -> Vec<u64> {
        let mut d: Vec<u64> = self
            .res
            .values()
            .filter(|r| r.state == HoldState::Active)
            .map(|r| r.expires_at)
            .chain(
                self.orders
                    .values()
                    .filter(|o| !o.pickup_expired && o.unfulfilled() > 0)
                    .filter_map(|o| o.pickup_deadline),
            )
            .filter(|&d| d > self.now)
            .collect();
        d.sort_unstable();
        d
    }

    fn apply(&mut self, request: &Request) -> MOut {
        if let Some(out) = self.seen.get(&request.request_id.0) {
            return out.clone();
        }
        let out = self.exec(&request.command);
        self.seen.insert(request.request_id.0, out.clone());
        out
    }

    fn counted(&mut self, sku: &SkuId, loc: &LocationId) -> &mut Counted {
        self.stock
            .entry((sku_ix(sku.as_str()), loc_ix(loc.as_str())))
            .or_default()
    }

    fn balance_reply(&self, sku: &SkuId, loc: &LocationId) -> MOut {
        Ok(MReply::Balance(
            self.bal(sku_ix(sku.as_str()), loc_ix(loc.as_str())),
        ))
    }

    /// A reservation that may be acted on, or the code its state calls for.
    fn live_hold(&self, id: &ReservationId) -> Result<&MRes, MErr> {
        match self.res.get(id.as_str()) {
            None => fail(Code::NotFound),
            Some(r) => match r.state {
                HoldState::Active => Ok(r),
                HoldState::Expired => fail(Code::Expired),
                HoldState::Released | HoldState::Placed => fail(Code::InvalidState),
            },
        }
    }

    /// Sourcing (SPEC 3, reserve): all lines or none; direct-location demand summed per
    /// (sku, location) and checked first; group / `all` lines then take, in order, the first
    /// eligible location that can serve the whole line, else split in order.
    fn source(&self, channel: &str, pickup: bool, lines: &[Line]) -> Result<Vec<Piece>, MErr> {
        let mut taken: BTreeMap<(usize, usize), i64> = BTreeMap::new();
        for line in lines {
            if line.qty <= 0 {
                return fail(Code::Invalid);
            }
            let sku = sku_ix(line.sku.as_str());
            match &line.target {
                Target::Location(l) => {
                    let loc = loc_ix(l.as_str());
                    if !sells_to(loc, channel) {
                        return fail(Code::ChannelNotAllowed);
                    }
                    if pickup && !offers_pickup(loc) {
                        return fail(Code::Invalid);
                    }
                    let want = taken.entry((sku, loc)).or_insert(0);
                    *want += line.qty;
                    if *want > self.bal(sku, loc).ats_for(channel) {
                        return short(*want, self.bal(sku, loc).ats_for(channel));
                    }
                }
                Target::Group(g) => {
                    if g.as_str() != GROUP {
                        return fail(Code::NotFound);
                    }
                }
                Target::All => {}
            }
        }
        let left = |taken: &BTreeMap<(usize, usize), i64>, sku: usize, loc: usize| {
            let used = taken.get(&(sku, loc)).copied().unwrap_or(0);
            (self.bal(sku, loc).ats_for(channel) - used).max(0)
        };
        let mut pieces = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let sku = sku_ix(line.sku.as_str());
            let candidates: Vec<usize> = match &line.target {
                Target::Location(l) => {
                    pieces.push(Piece {
                        line: i as u16,
                        sku,
                        loc: loc_ix(l.as_str()),
                        qty: line.qty,
                    });
                    continue;
                }
                Target::Group(_) => GROUP_LOCS.to_vec(),
                Target::All => vec![0, 1, 2],
            };
            let eligible: Vec<usize> = candidates
                .into_iter()
                .filter(|&l| sells_to(l, channel) && (!pickup || offers_pickup(l)))
                .collect();
            if let Some(&loc) = eligible.iter().find(|&&l| left(&taken, sku, l) >= line.qty) {
                *taken.entry((sku, loc)).or_insert(0) += line.qty;
                pieces.push(Piece {
                    line: i as u16,
                    sku,
                    loc,
                    qty: line.qty,
                });
                continue;
            }
            let total: i64 = eligible.iter().map(|&l| left(&taken, sku, l)).sum();
            if total < line.qty {
                return short(line.qty, total);
            }
            let mut need = line.qty;
            for &loc in &eligible {
                let take = left(&taken, sku, loc).min(need);
                if take > 0 {
                    *taken.entry((sku, loc)).or_insert(0) += take;
                    pieces.push(Piece {
                        line: i as u16,
                        sku,
                        loc,
                        qty: take,
                    });
                    need -= take;
                }
                if need == 0 {
                    break;
                }
            }
        }
        Ok(pieces)
    }

    /// Located lines summed per (sku, location), in first-seen order.
    fn resolve(lines: &[LocatedLine]) -> Result<Vec<(usize, usize, i64)>, MErr> {
        let mut out: Vec<(usize, usize, i64)> = Vec::new();
        for line in lines {
            if line.qty <= 0 {
                return fail(Code::Invalid);
            }
            let (sku, loc) = (sku_ix(line.sku.as_str()), loc_ix(line.location.as_str()));
            match out.iter_mut().find(|(s, l, _)| *s == sku && *l == loc) {
                Some(entry) => entry.2 += line.qty,
                None => out.push((sku, loc, line.qty)),
            }
        }
        Ok(out)
    }

    fn exec(&mut self, command: &Command) -> MOut {
        match command {
            Command::DefineLocation(_) | Command::DefineGroup { .. } => Ok(MReply::Done),
            Command::DefineSku { .. } => unreachable!("not generated"),
            Command::RevokeCredential { .. } | Command::CreateToken(_) => {
                unreachable!("not generated")
            }
            Command::DefineKit { .. }
            | Command::AsCustomer { .. }
            | Command::Exchange(_)
            | Command::SetPurchaseLimit { .. }
            | Command::SetRetention(_) => unreachable!("not generated"),
            Command::SetOnHand {
                sku,
                location,
                qty,
                expected,
                ..
            } => {
                if *qty < 0 {
                    return fail(Code::Invalid);
                }
                let c = self.counted(sku, location);
                if expected.is_some_and(|e| e != c.on_hand) {
                    return fail(Code::Conflict);
                }
                c.on_hand = *qty;
                c.unavailable = c.unavailable.min(*qty);
                self.balance_reply(sku, location)
            }
            Command::Adjust {
                sku,
                location,
                delta,
                ..
            } => {
                if *delta == 0 {
                    return fail(Code::Invalid);
                }
                let c = self.counted(sku, location);
                let on_hand = c.on_hand + delta;
                if on_hand < 0 {
                    return short(-delta, c.on_hand);
                }
                c.on_hand = on_hand;
                c.unavailable = c.unavailable.min(on_hand);
                self.balance_reply(sku, location)
            }
            Command::SetSafetyStock { sku, location, qty } => {
                if *qty < 0 {
                    return fail(Code::Invalid);
                }
                self.counted(sku, location).safety_stock = *qty;
                self.balance_reply(sku, location)
            }
            Command::MarkUnavailable {
                sku, location, qty, ..
            } => {
                if *qty <= 0 {
                    return fail(Code::Invalid);
                }
                let c = self.counted(sku, location);
                if c.unavailable + qty > c.on_hand {
                    return short(*qty, c.on_hand - c.unavailable);
                }
                c.unavailable += qty;
                self.balance_reply(sku, location)
            }
            Command::RestoreUnavailable {
                sku, location, qty, ..
            } => {
                if *qty <= 0 {
                    return fail(Code::Invalid);
                }
                let c = self.counted(sku, location);
                if *qty > c.unavailable {
                    return short(*qty, c.unavailable);
                }
                c.unavailable -= qty;
                self.balance_reply(sku, location)
            }
            Command::Sell { sku, location, qty } => {
                if *qty <= 0 {
                    return fail(Code::Invalid);
                }
                let (s, l) = (sku_ix(sku.as_str()), loc_ix(location.as_str()));
                if !sells_to(l, "pos") {
                    return fail(Code::ChannelNotAllowed);
                }
                if self.bal(s, l).ats_pos() < *qty {
                    return short(*qty, self.bal(s, l).ats_pos());
                }
                self.counted(sku, location).on_hand -= qty;
                self.balance_reply(sku, location)
            }
            Command::Reserve {
                reservation,
                channel,
                lines,
                ttl_ms,
            } => {
                if *ttl_ms == 0 || *ttl_ms > TTL_MS_MAX {
                    return fail(Code::Invalid);
                }
                if self.res.contains_key(reservation.as_str()) {
                    return fail(Code::AlreadyExists);
                }
                let held = self.source(channel.as_str(), false, lines)?;
                let expires_at = self.now + ttl_ms;
                let allocs = held.iter().map(|p| (p.line, p.loc, p.qty)).collect();
                self.res.insert(
                    reservation.0.to_string(),
                    MRes {
                        channel: channel.0.to_string(),
                        expires_at,
                        state: HoldState::Active,
                        held,
                    },
                );
                Ok(MReply::Reserved { expires_at, allocs })
            }
            Command::Extend {
                reservation,
                ttl_ms,
            } => {
                if *ttl_ms == 0 || *ttl_ms > TTL_MS_MAX {
                    return fail(Code::Invalid);
                }
                self.live_hold(reservation)?;
                let expires_at = self.now + ttl_ms;
                self.res
                    .get_mut(reservation.as_str())
                    .expect("live")
                    .expires_at = expires_at;
                Ok(MReply::Extended { expires_at })
            }
            Command::Release { reservation } => {
                self.live_hold(reservation)?;
                self.res.get_mut(reservation.as_str()).expect("live").state = HoldState::Released;
                Ok(MReply::Done)
            }
            Command::PlaceOrder {
                order,
                source,
                fulfilment,
            } => self.place_order(order, source, *fulfilment),
            Command::Fulfil { order, lines } => {
                let Some(o) = self.orders.get(order.as_str()) else {
                    return fail(Code::NotFound);
                };
                let plan = Model::resolve(lines)?;
                for &(sku, loc, qty) in &plan {
                    let unfulfilled = o
                        .line_index(sku, loc)
                        .map_or(0, |i| o.lines[i].unfulfilled());
                    if qty > unfulfilled {
                        return fail(Code::OverFulfil);
                    }
                    if qty > self.bal(sku, loc).sellable() {
                        return short(qty, self.bal(sku, loc).sellable());
                    }
                }
                for (sku, loc, qty) in plan {
                    self.fulfil_units(order.as_str(), sku, loc, qty);
                }
                Ok(MReply::Done)
            }
            Command::Cancel { order, lines } => {
                let Some(o) = self.orders.get(order.as_str()) else {
                    return fail(Code::NotFound);
                };
                let plan: Vec<(usize, usize, i64)> = match lines {
                    None => {
                        if o.unfulfilled() == 0 {
                            return fail(Code::NothingToCancel);
                        }
                        o.lines
                            .iter()
                            .map(|l| (l.sku, l.loc, l.unfulfilled()))
                            .collect()
                    }
                    Some(lines) => {
                        let plan = Model::resolve(lines)?;
                        for &(sku, loc, qty) in &plan {
                            let cancellable = o
                                .line_index(sku, loc)
                                .map_or(0, |i| o.lines[i].unfulfilled());
                            if qty > cancellable {
                                return fail(Code::NothingToCancel);
                            }
                        }
                        plan
                    }
                };
                let o = self.orders.get_mut(order.as_str()).expect("exists");
                for (sku, loc, qty) in plan {
                    let i = o.line_index(sku, loc).expect("checked");
                    o.lines[i].cancelled += qty;
                }
                Ok(MReply::Done)
            }
            Command::Reallocate {
                order,
                sku,
                from,
                to,
                qty,
            } => {
                if *qty <= 0 {
                    return fail(Code::Invalid);
                }
                let Some(o) = self.orders.get(order.as_str()) else {
                    return fail(Code::NotFound);
                };
                let (s, f, t) = (
                    sku_ix(sku.as_str()),
                    loc_ix(from.as_str()),
                    loc_ix(to.as_str()),
                );
                if f == t {
                    return fail(Code::Invalid);
                }
                let Some(i) = o.line_index(s, f) else {
                    return fail(Code::OverFulfil);
                };
                if *qty > o.lines[i].unfulfilled() {
                    return fail(Code::OverFulfil);
                }
                if !sells_to(t, &o.channel) {
                    return fail(Code::ChannelNotAllowed);
                }
                let pickup = o.lines[i].pickup;
                if pickup && !offers_pickup(t) {
                    return fail(Code::Invalid);
                }
                if *qty > self.bal(s, t).ats_for(&o.channel) {
                    return short(*qty, self.bal(s, t).ats_for(&o.channel));
                }
                let o = self.orders.get_mut(order.as_str()).expect("exists");
                o.lines[i].ordered -= qty;
                match o.line_index(s, t) {
                    Some(j) => o.lines[j].ordered += qty,
                    None => o.lines.push(MLine {
                        sku: s,
                        loc: t,
                        pickup,
                        ordered: *qty,
                        fulfilled: 0,
                        cancelled: 0,
                    }),
                }
                Ok(MReply::Done)
            }
            Command::ReadyForPickup { order } => {
                let o = self.pickup_order(order)?;
                if o.ready {
                    return fail(Code::InvalidState);
                }
                self.orders.get_mut(order.as_str()).expect("exists").ready = true;
                Ok(MReply::Done)
            }
            Command::PickedUp { order } => {
                let o = self.pickup_order(order)?;
                let plan: Vec<(usize, usize, i64)> = o
                    .lines
                    .iter()
                    .filter(|l| l.pickup && l.unfulfilled() > 0)
                    .map(|l| (l.sku, l.loc, l.unfulfilled()))
                    .collect();
                for &(sku, loc, qty) in &plan {
                    if qty > self.bal(sku, loc).sellable() {
                        return short(qty, self.bal(sku, loc).sellable());
                    }
                }
                for (sku, loc, qty) in plan {
                    self.fulfil_units(order.as_str(), sku, loc, qty);
                }
                Ok(MReply::Done)
            }
            Command::Return { rma, order, lines } => {
                if self.rmas.contains(rma.as_str()) {
                    return fail(Code::AlreadyExists);
                }
                let Some(o) = self.orders.get(order.as_str()) else {
                    return fail(Code::NotFound);
                };
                let mut per_sku: Vec<(usize, i64)> = Vec::new();
                for line in lines {
                    if line.qty <= 0 {
                        return fail(Code::Invalid);
                    }
                    let sku = sku_ix(line.sku.as_str());
                    match per_sku.iter_mut().find(|(s, _)| *s == sku) {
                        Some(entry) => entry.1 += line.qty,
                        None => per_sku.push((sku, line.qty)),
                    }
                }
                for &(sku, asked) in &per_sku {
                    let returned = o.returned.get(&sku).copied().unwrap_or(0);
                    if asked > o.fulfilled_of(sku) - returned {
                        return fail(Code::OverReturn);
                    }
                }
                for line in lines {
                    let c = self.counted(&line.sku, &line.received_at);
                    match line.disposition {
                        Disposition::Restock => c.on_hand += line.qty,
                        Disposition::Damaged => {
                            c.on_hand += line.qty;
                            c.unavailable += line.qty;
                        }
                        Disposition::Scrap => {}
                    }
                }
                let o = self.orders.get_mut(order.as_str()).expect("exists");
                for (sku, asked) in per_sku {
                    *o.returned.entry(sku).or_insert(0) += asked;
                }
                self.rmas.insert(rma.0.to_string());
                Ok(MReply::Done)
            }
            Command::ShipTransfer {
                transfer,
                sku,
                from,
                to,
                qty,
            } => {
                if *qty <= 0 {
                    return fail(Code::Invalid);
                }
                let (s, f, t) = (
                    sku_ix(sku.as_str()),
                    loc_ix(from.as_str()),
                    loc_ix(to.as_str()),
                );
                if f == t {
                    return fail(Code::Invalid);
                }
                if self.transfers.contains_key(transfer.as_str()) {
                    return fail(Code::AlreadyExists);
                }
                if *qty > self.bal(s, f).ats_pos() {
                    return short(*qty, self.bal(s, f).ats_pos());
                }
                self.counted(sku, from).on_hand -= qty;
                self.transfers.insert(
                    transfer.0.to_string(),
                    MTransfer {
                        sku: s,
                        from: f,
                        to: t,
                        qty: *qty,
                        received: None,
                    },
                );
                Ok(MReply::Done)
            }
            Command::ReceiveTransfer {
                transfer,
                received,
                damaged,
            } => {
                if *received < 0 || *damaged < 0 {
                    return fail(Code::Invalid);
                }
                let Some(t) = self.transfers.get(transfer.as_str()) else {
                    return fail(Code::NotFound);
                };
                if t.received.is_some() {
                    return fail(Code::InvalidState);
                }
                if received + damaged > t.qty {
                    return fail(Code::Invalid);
                }
                let (sku, to, qty) = (t.sku, t.to, t.qty);
                let c = self.stock.entry((sku, to)).or_default();
                c.on_hand += received + damaged;
                c.unavailable += damaged;
                self.transfers
                    .get_mut(transfer.as_str())
                    .expect("exists")
                    .received = Some((*received, *damaged));
                Ok(MReply::TransferReceived {
                    lost: qty - received - damaged,
                })
            }
        }
    }

    fn place_order(
        &mut self,
        order: &OrderId,
        source: &OrderSource,
        fulfilment: Fulfilment,
    ) -> MOut {
        let pickup_deadline = match fulfilment {
            Fulfilment::Ship => None,
            Fulfilment::Pickup { deadline_ms } => {
                if deadline_ms == 0 || deadline_ms > PICKUP_DEADLINE_MS_MAX {
                    return fail(Code::Invalid);
                }
                Some(self.now + deadline_ms)
            }
        };
        if self.orders.contains_key(order.as_str()) {
            return fail(Code::AlreadyExists);
        }
        let pickup = pickup_deadline.is_some();
        let (channel, pieces) = match source {
            OrderSource::Reservation(id) => {
                let r = self.live_hold(id)?;
                if pickup && r.held.iter().any(|p| !offers_pickup(p.loc)) {
                    return fail(Code::Invalid);
                }
                let (channel, pieces) = (r.channel.clone(), r.held.clone());
                self.res.get_mut(id.as_str()).expect("live").state = HoldState::Placed;
                (channel, pieces)
            }
            OrderSource::Lines { channel, lines } => (
                channel.0.to_string(),
                self.source(channel.as_str(), pickup, lines)?,
            ),
        };
        let mut lines: Vec<MLine> = Vec::new();
        for p in &pieces {
            match lines.iter_mut().find(|l| l.sku == p.sku && l.loc == p.loc) {
                Some(l) => l.ordered += p.qty,
                None => lines.push(MLine {
                    sku: p.sku,
                    loc: p.loc,
                    pickup,
                    ordered: p.qty,
                    fulfilled: 0,
                    cancelled: 0,
                }),
            }
        }
        self.orders.insert(
            order.0.to_string(),
            MOrder {
                channel,
                lines,
                returned: BTreeMap::new(),
                pickup_deadline,
                pickup_expired: false,
                ready: false,
            },
        );
        Ok(MReply::OrderPlaced {
            allocs: pieces.iter().map(|p| (p.line, p.loc, p.qty)).collect(),
            pickup_deadline,
        })
    }

    /// A pickup order that still has units to collect, or the code its state calls for.
    fn pickup_order(&self, id: &OrderId) -> Result<&MOrder, MErr> {
        let Some(o) = self.orders.get(id.as_str()) else {
            return fail(Code::NotFound);
        };
        if !o.lines.iter().any(|l| l.pickup) {
            return fail(Code::Invalid);
        }
        if o.pickup_expired {
            return fail(Code::Expired);
        }
        let remaining: i64 = o
            .lines
            .iter()
            .filter(|l| l.pickup)
            .map(MLine::unfulfilled)
            .sum();
        if remaining == 0 {
            return fail(Code::InvalidState);
        }
        Ok(o)
    }

    fn fulfil_units(&mut self, order: &str, sku: usize, loc: usize, qty: i64) {
        let o = self.orders.get_mut(order).expect("exists");
        let i = o.line_index(sku, loc).expect("checked");
        o.lines[i].fulfilled += qty;
        self.stock.entry((sku, loc)).or_default().on_hand -= qty;
    }
}

// ---------------------------------------------------------------------------------------------
// Abstract operations (what proptest generates) and their translation into requests
// ---------------------------------------------------------------------------------------------

/// A line target: a fixture location, the group, all locations, or a group that does not exist.
#[derive(Clone, Copy, Debug)]
enum Tgt {
    Loc(usize),
    Group,
    All,
    NoGroup,
}

#[derive(Clone, Copy, Debug)]
struct LineSpec {
    sku: usize,
    target: Tgt,
    qty: i64,
}

/// A quantity relative to what an order line allows.
#[derive(Clone, Copy, Debug)]
enum Amount {
    /// Exactly what is left (unfulfilled, returnable...), at least 1.
    Rest,
    /// This many units (0 is `invalid`).
    Units(i64),
}

/// One (sku, location) of an order: usually one of the order's lines (`line` picks it), or
/// an arbitrary (sku, location) when `raw`.
#[derive(Clone, Copy, Debug)]
struct Pick {
    raw: bool,
    line: usize,
    amount: Amount,
}

#[derive(Clone, Copy, Debug)]
struct ReturnSpec {
    pick: Pick,
    received_at: usize,
    disposition: Disposition,
}

/// How a new object's id is chosen: fresh, or one that exists (`already_exists`).
#[derive(Clone, Copy, Debug)]
enum NewId {
    Fresh,
    Reuse(usize),
}

#[derive(Clone, Copy, Debug)]
enum FulSpec {
    Ship,
    Pickup(u64),
}

#[derive(Clone, Debug)]
enum Op {
    SetOnHand {
        sku: usize,
        loc: usize,
        qty: i64,
        /// None: no expectation; Some(None): the model's current on_hand; Some(Some(x)): x.
        expected: Option<Option<i64>>,
    },
    Adjust {
        sku: usize,
        loc: usize,
        delta: i64,
    },
    SafetyStock {
        sku: usize,
        loc: usize,
        qty: i64,
    },
    MarkUnavailable {
        sku: usize,
        loc: usize,
        qty: i64,
    },
    RestoreUnavailable {
        sku: usize,
        loc: usize,
        qty: Amount,
    },
    Sell {
        sku: usize,
        loc: usize,
        qty: i64,
    },
    Reserve {
        id: NewId,
        channel: usize,
        lines: Vec<LineSpec>,
        ttl: u64,
    },
    Extend {
        res: usize,
        ttl: u64,
    },
    Release {
        res: usize,
    },
    PlaceFromReservation {
        id: NewId,
        res: usize,
        fulfilment: FulSpec,
    },
    PlaceDirect {
        id: NewId,
        channel: usize,
        lines: Vec<LineSpec>,
        fulfilment: FulSpec,
    },
    Fulfil {
        order: usize,
        lines: Vec<Pick>,
    },
    Cancel {
        order: usize,
        lines: Option<Vec<Pick>>,
    },
    Reallocate {
        order: usize,
        pick: Pick,
        to: usize,
    },
    Ready {
        order: usize,
    },
    PickedUp {
        order: usize,
    },
    Return {
        id: NewId,
        order: usize,
        lines: Vec<ReturnSpec>,
    },
    ShipTransfer {
        id: NewId,
        sku: usize,
        from: usize,
        to: usize,
        qty: i64,
    },
    ReceiveTransfer {
        transfer: usize,
        damaged: i64,
        received: Amount,
    },
    /// Send again an earlier request (any earlier one, including this batch's).
    Replay {
        k: usize,
    },
    /// Reuse the request id of earlier request `k` for the command of earlier request `j`
    /// (deduplication is by request id only, never by payload).
    ReplayOther {
        k: usize,
        j: usize,
    },
}

/// How the next batch's timestamp is chosen.
#[derive(Clone, Copy, Debug)]
enum Adv {
    /// Forward by this many ms.
    Ms(u64),
    /// To one of the model's pending deadlines, plus -1, 0 or +1 ms.
    ToDeadline(usize, i8),
    /// A leader with a slower clock: this many ms BEFORE the last batch.
    Back(u64),
}

#[derive(Clone, Debug)]
struct Step {
    adv: Adv,
    ops: Vec<Op>,
}

/// Builds requests: fresh ids, and picks resolved against the model's current state.
#[derive(Default)]
struct Builder {
    next_request: u128,
    next_object: u32,
    sent: Vec<Request>,
}

/// A recent key of `map` (names are zero-padded counters, so key order is creation order), or
/// a key that does not exist if there is none. `k` < 4: among the keys whose value satisfies
/// `useful` when there are any (a live hold, an open order...); otherwise among all keys.
fn recent_key<V>(
    map: &BTreeMap<String, V>,
    k: usize,
    prefix: &str,
    useful: impl Fn(&V) -> bool,
) -> String {
    let all: Vec<&String> = map.keys().collect();
    let live: Vec<&String> = map
        .iter()
        .filter(|(_, v)| useful(v))
        .map(|(k, _)| k)
        .collect();
    let keys = if k < 4 && !live.is_empty() { live } else { all };
    if keys.is_empty() {
        return format!("{prefix}-none");
    }
    keys[keys.len() - 1 - ((k % 4) % keys.len())].clone()
}

fn live_hold(r: &MRes) -> bool {
    r.state == HoldState::Active
}

fn open_order(o: &MOrder) -> bool {
    o.unfulfilled() > 0
}

fn open_pickup(o: &MOrder) -> bool {
    o.unfulfilled() > 0 && o.pickup_deadline.is_some()
}

fn returnable(o: &MOrder) -> bool {
    o.lines
        .iter()
        .any(|l| o.fulfilled_of(l.sku) > o.returned.get(&l.sku).copied().unwrap_or(0))
}

fn in_transit(t: &MTransfer) -> bool {
    t.received.is_none()
}

fn request_id(n: u128) -> RequestId {
    // Spread the ids over 128 bits; odd multiplier, n > 0: never zero.
    RequestId(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

fn target_of(t: Tgt) -> Target {
    match t {
        Tgt::Loc(l) => Target::Location(LocationId::from(LOCS[l])),
        Tgt::Group => Target::Group(GroupId::from(GROUP)),
        Tgt::All => Target::All,
        Tgt::NoGroup => Target::Group(GroupId::from("nogroup")),
    }
}

fn lines_of(specs: &[LineSpec]) -> Vec<Line> {
    specs
        .iter()
        .map(|s| Line {
            sku: SkuId::from(SKUS[s.sku]),
            target: target_of(s.target),
            qty: s.qty,
        })
        .collect()
}

fn fulfilment_of(f: FulSpec) -> Fulfilment {
    match f {
        FulSpec::Ship => Fulfilment::Ship,
        FulSpec::Pickup(deadline_ms) => Fulfilment::Pickup { deadline_ms },
    }
}

impl Builder {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next_object += 1;
        format!("{prefix}{:04}", self.next_object)
    }

    fn new_id<V>(&mut self, id: NewId, map: &BTreeMap<String, V>, prefix: &str) -> String {
        match id {
            NewId::Reuse(k) if !map.is_empty() => recent_key(map, k, prefix, |_| false),
            _ => self.fresh(prefix),
        }
    }

    fn wrap(&mut self, command: Command) -> Request {
        self.next_request += 1;
        let request = Request {
            request_id: request_id(self.next_request),
            command,
        };
        self.sent.push(request.clone());
        request
    }

    /// (sku, location, qty) for a pick on `order` (lines of the model's order when there is one).
    fn located(model: &Model, order: &str, pick: Pick) -> (usize, usize, i64) {
        let o = model.orders.get(order).filter(|o| !o.lines.is_empty());
        let (sku, loc, rest) = match (o, pick.raw) {
            (Some(o), false) => {
                // Lines with something left first (all lines if none has).
                let open: Vec<&MLine> = o.lines.iter().filter(|l| l.unfulfilled() > 0).collect();
                let l = if open.is_empty() {
                    &o.lines[pick.line % o.lines.len()]
                } else {
                    open[pick.line % open.len()]
                };
                (l.sku, l.loc, l.unfulfilled())
            }
            _ => (pick.line % 3, (pick.line / 3) % 3, 1),
        };
        let qty = match pick.amount {
            Amount::Rest => rest.max(1),
            Amount::Units(n) => n,
        };
        (sku, loc, qty)
    }

    fn located_lines(model: &Model, order: &str, picks: &[Pick]) -> Vec<LocatedLine> {
        picks
            .iter()
            .map(|&p| {
                let (sku, loc, qty) = Builder::located(model, order, p);
                LocatedLine {
                    sku: SkuId::from(SKUS[sku]),
                    location: LocationId::from(LOCS[loc]),
                    qty,
                }
            })
            .collect()
    }

    fn build(&mut self, op: &Op, model: &Model) -> Request {
        let sku = |s: usize| SkuId::from(SKUS[s]);
        let loc = |l: usize| LocationId::from(LOCS[l]);
        let reason = || Reason::from("test");
        let command = match op {
            Op::Replay { k } => {
                let request = self.sent[k % self.sent.len()].clone();
                self.sent.push(request.clone());
                return request;
            }
            Op::ReplayOther { k, j } => {
                let request = Request {
                    request_id: self.sent[k % self.sent.len()].request_id,
                    command: self.sent[j % self.sent.len()].command.clone(),
                };
                self.sent.push(request.clone());
                return request;
            }
            &Op::SetOnHand {
                sku: s,
                loc: l,
                qty,
                expected,
            } => Command::SetOnHand {
                sku: sku(s),
                location: loc(l),
                qty,
                reason: reason(),
                expected: expected.map(|e| e.unwrap_or_else(|| model.bal(s, l).on_hand)),
            },
            &Op::Adjust {
                sku: s,
                loc: l,
                delta,
            } => Command::Adjust {
                sku: sku(s),
                location: loc(l),
                delta,
                reason: reason(),
            },
            &Op::SafetyStock {
                sku: s,
                loc: l,
                qty,
            } => Command::SetSafetyStock {
                sku: sku(s),
                location: loc(l),
                qty,
            },
            &Op::MarkUnavailable {
                sku: s,
                loc: l,
                qty,
            } => Command::MarkUnavailable {
                sku: sku(s),
                location: loc(l),
                qty,
                reason: reason(),
            },
            &Op::RestoreUnavailable {
                sku: s,
                loc: l,
                qty,
            } => {
                // `Rest`: all the unavailable units of (s, l), or of the first balance that
                // has some.
                let (s, l, qty) = match qty {
                    Amount::Units(n) => (s, l, n),
                    Amount::Rest => {
                        let with_some = all_balances(model)
                            .into_iter()
                            .find(|(_, b)| b.unavailable > 0);
                        match (model.bal(s, l).unavailable, with_some) {
                            (0, Some(((s2, l2), b))) => (s2, l2, b.unavailable),
                            (n, _) => (s, l, n.max(1)),
                        }
                    }
                };
                Command::RestoreUnavailable {
                    sku: sku(s),
                    location: loc(l),
                    qty,
                    reason: reason(),
                }
            }
            &Op::Sell {
                sku: s,
                loc: l,
                qty,
            } => Command::Sell {
                sku: sku(s),
                location: loc(l),
                qty,
            },
            Op::Reserve {
                id,
                channel,
                lines,
                ttl,
            } => Command::Reserve {
                reservation: ReservationId::from(self.new_id(*id, &model.res, "r")),
                channel: ChannelId::from(CHANNELS[*channel]),
                lines: lines_of(lines),
                ttl_ms: *ttl,
            },
            &Op::Extend { res, ttl } => Command::Extend {
                reservation: ReservationId::from(recent_key(&model.res, res, "r", live_hold)),
                ttl_ms: ttl,
            },
            &Op::Release { res } => Command::Release {
                reservation: ReservationId::from(recent_key(&model.res, res, "r", live_hold)),
            },
            &Op::PlaceFromReservation {
                id,
                res,
                fulfilment,
            } => Command::PlaceOrder {
                order: OrderId::from(self.new_id(id, &model.orders, "o")),
                source: OrderSource::Reservation(ReservationId::from(recent_key(
                    &model.res, res, "r", live_hold,
                ))),
                fulfilment: fulfilment_of(fulfilment),
            },
            Op::PlaceDirect {
                id,
                channel,
                lines,
                fulfilment,
            } => Command::PlaceOrder {
                order: OrderId::from(self.new_id(*id, &model.orders, "o")),
                source: OrderSource::Lines {
                    channel: ChannelId::from(CHANNELS[*channel]),
                    lines: lines_of(lines),
                },
                fulfilment: fulfilment_of(*fulfilment),
            },
            Op::Fulfil { order, lines } => {
                let id = recent_key(&model.orders, *order, "o", open_order);
                Command::Fulfil {
                    lines: Builder::located_lines(model, &id, lines),
                    order: OrderId::from(id),
                }
            }
            Op::Cancel { order, lines } => {
                let id = recent_key(&model.orders, *order, "o", open_order);
                Command::Cancel {
                    lines: lines
                        .as_ref()
                        .map(|picks| Builder::located_lines(model, &id, picks)),
                    order: OrderId::from(id),
                }
            }
            &Op::Reallocate { order, pick, to } => {
                let id = recent_key(&model.orders, order, "o", open_order);
                let (s, from, qty) = Builder::located(model, &id, pick);
                Command::Reallocate {
                    order: OrderId::from(id),
                    sku: sku(s),
                    from: loc(from),
                    to: loc(to),
                    qty,
                }
            }
            &Op::Ready { order } => Command::ReadyForPickup {
                order: OrderId::from(recent_key(&model.orders, order, "o", open_pickup)),
            },
            &Op::PickedUp { order } => Command::PickedUp {
                order: OrderId::from(recent_key(&model.orders, order, "o", open_pickup)),
            },
            Op::Return { id, order, lines } => {
                let order_id = recent_key(&model.orders, *order, "o", returnable);
                let rma_map: BTreeMap<String, ()> =
                    model.rmas.iter().map(|r| (r.clone(), ())).collect();
                let rma = self.new_id(*id, &rma_map, "m");
                let o = model.orders.get(&order_id);
                let lines = lines
                    .iter()
                    .map(|spec| {
                        let (s, qty) = match o.filter(|o| !o.lines.is_empty() && !spec.pick.raw) {
                            Some(o) => {
                                // SKUs with returnable units first (all if none has).
                                let left = |s: usize| {
                                    o.fulfilled_of(s) - o.returned.get(&s).copied().unwrap_or(0)
                                };
                                let skus: Vec<usize> = o.lines.iter().map(|l| l.sku).collect();
                                let some: Vec<usize> =
                                    skus.iter().copied().filter(|&s| left(s) > 0).collect();
                                let pool = if some.is_empty() { skus } else { some };
                                let s = pool[spec.pick.line % pool.len()];
                                (s, left(s))
                            }
                            None => (spec.pick.line % 3, 1),
                        };
                        let qty = match spec.pick.amount {
                            Amount::Rest => qty.max(1),
                            Amount::Units(n) => n,
                        };
                        ReturnLine {
                            sku: sku(s),
                            qty,
                            received_at: loc(spec.received_at),
                            disposition: spec.disposition,
                        }
                    })
                    .collect();
                Command::Return {
                    rma: RmaId::from(rma),
                    order: OrderId::from(order_id),
                    lines,
                }
            }
            &Op::ShipTransfer {
                id,
                sku: s,
                from,
                to,
                qty,
            } => Command::ShipTransfer {
                transfer: TransferId::from(self.new_id(id, &model.transfers, "t")),
                sku: sku(s),
                from: loc(from),
                to: loc(to),
                qty,
            },
            &Op::ReceiveTransfer {
                transfer,
                damaged,
                received,
            } => {
                let id = recent_key(&model.transfers, transfer, "t", in_transit);
                let shipped = model.transfers.get(&id).map_or(1, |t| t.qty);
                let received = match received {
                    Amount::Rest => (shipped - damaged).max(0),
                    Amount::Units(n) => n,
                };
                Command::ReceiveTransfer {
                    transfer: TransferId::from(id),
                    received,
                    damaged,
                }
            }
        };
        self.wrap(command)
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn arb_loc() -> impl Strategy<Value = usize> {
    0..3usize
}

fn arb_qty() -> impl Strategy<Value = i64> {
    prop_oneof![24 => 1i64..=4, 1 => Just(0i64)]
}

fn arb_line() -> impl Strategy<Value = LineSpec> {
    let target = prop_oneof![
        12 => arb_loc().prop_map(Tgt::Loc),
        5 => Just(Tgt::Group),
        3 => Just(Tgt::All),
        1 => Just(Tgt::NoGroup),
    ];
    (0..3usize, target, arb_qty()).prop_map(|(sku, target, qty)| LineSpec { sku, target, qty })
}

fn arb_lines() -> impl Strategy<Value = Vec<LineSpec>> {
    prop::collection::vec(arb_line(), 1..=3)
}

fn arb_pickup_lines() -> impl Strategy<Value = Vec<LineSpec>> {
    let target = prop_oneof![3 => Just(Tgt::Loc(1)), 1 => Just(Tgt::Group), 1 => Just(Tgt::All)];
    let line =
        (0..3usize, target, 1i64..=3).prop_map(|(sku, target, qty)| LineSpec { sku, target, qty });
    prop::collection::vec(line, 1..=2)
}

fn arb_ttl() -> impl Strategy<Value = u64> {
    prop_oneof![20 => 1_000u64..=60_000, 6 => 1u64..=1_000, 1 => Just(0u64)]
}

fn arb_fulfilment() -> impl Strategy<Value = FulSpec> {
    prop_oneof![
        12 => Just(FulSpec::Ship),
        8 => (1u64..=40_000).prop_map(FulSpec::Pickup),
        1 => Just(FulSpec::Pickup(0)),
    ]
}

fn arb_new_id() -> impl Strategy<Value = NewId> {
    prop_oneof![9 => Just(NewId::Fresh), 1 => (0..4usize).prop_map(NewId::Reuse)]
}

fn arb_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        8 => Just(Amount::Rest),
        8 => (1i64..=3).prop_map(Amount::Units),
        1 => Just(Amount::Units(0)),
    ]
}

fn arb_pick() -> impl Strategy<Value = Pick> {
    (prop::bool::weighted(0.15), 0..9usize, arb_amount()).prop_map(|(raw, line, amount)| Pick {
        raw,
        line,
        amount,
    })
}

fn arb_channel() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)]
}

fn arb_recent() -> impl Strategy<Value = usize> {
    0..8usize
}

fn arb_op() -> impl Strategy<Value = Op> {
    let sl = || (0..3usize, arb_loc());
    prop_oneof![
        4 => (sl(), 0i64..=12, prop::option::weighted(0.4, prop::option::weighted(0.6, 0i64..=12)))
            .prop_map(|((sku, loc), qty, expected)| Op::SetOnHand { sku, loc, qty, expected }),
        4 => (sl(), prop_oneof![10 => -5i64..=8, 1 => Just(0i64)])
            .prop_map(|((sku, loc), delta)| Op::Adjust { sku, loc, delta }),
        2 => (sl(), 0i64..=4).prop_map(|((sku, loc), qty)| Op::SafetyStock { sku, loc, qty }),
        2 => (sl(), arb_qty()).prop_map(|((sku, loc), qty)| Op::MarkUnavailable { sku, loc, qty }),
        2 => (sl(), arb_amount()).prop_map(|((sku, loc), qty)| Op::RestoreUnavailable { sku, loc, qty }),
        3 => (sl(), arb_qty()).prop_map(|((sku, loc), qty)| Op::Sell { sku, loc, qty }),
        12 => (arb_new_id(), arb_channel(), arb_lines(), arb_ttl())
            .prop_map(|(id, channel, lines, ttl)| Op::Reserve { id, channel, lines, ttl }),
        3 => (arb_recent(), arb_ttl()).prop_map(|(res, ttl)| Op::Extend { res, ttl }),
        3 => arb_recent().prop_map(|res| Op::Release { res }),
        7 => (arb_new_id(), arb_recent(), arb_fulfilment())
            .prop_map(|(id, res, fulfilment)| Op::PlaceFromReservation { id, res, fulfilment }),
        5 => (arb_new_id(), arb_channel(), arb_lines(), arb_fulfilment()).prop_map(
            |(id, channel, lines, fulfilment)| Op::PlaceDirect { id, channel, lines, fulfilment }
        ),
        // Click and collect at the store: lines that can be served by `st`.
        4 => (arb_new_id(), arb_channel(), arb_pickup_lines(), 1u64..=40_000).prop_map(
            |(id, channel, lines, deadline)| Op::PlaceDirect {
                id,
                channel,
                lines,
                fulfilment: FulSpec::Pickup(deadline),
            }
        ),
        7 => (arb_recent(), prop::collection::vec(arb_pick(), 1..=2))
            .prop_map(|(order, lines)| Op::Fulfil { order, lines }),
        4 => (arb_recent(), prop::option::weighted(0.6, prop::collection::vec(arb_pick(), 1..=2)))
            .prop_map(|(order, lines)| Op::Cancel { order, lines }),
        3 => (arb_recent(), arb_pick(), arb_loc())
            .prop_map(|(order, pick, to)| Op::Reallocate { order, pick, to }),
        2 => arb_recent().prop_map(|order| Op::Ready { order }),
        3 => arb_recent().prop_map(|order| Op::PickedUp { order }),
        4 => (
            arb_new_id(),
            arb_recent(),
            prop::collection::vec(
                (arb_pick(), arb_loc(), prop_oneof![
                    Just(Disposition::Restock),
                    Just(Disposition::Damaged),
                    Just(Disposition::Scrap),
                ])
                .prop_map(|(pick, received_at, disposition)| ReturnSpec {
                    pick,
                    received_at,
                    disposition,
                }),
                1..=2,
            ),
        )
            .prop_map(|(id, order, lines)| Op::Return { id, order, lines }),
        3 => (arb_new_id(), 0..3usize, arb_loc(), arb_loc(), arb_qty())
            .prop_map(|(id, sku, from, to, qty)| Op::ShipTransfer { id, sku, from, to, qty }),
        3 => (arb_recent(), prop_oneof![3 => Just(0i64), 1 => 1i64..=2], arb_amount())
            .prop_map(|(transfer, damaged, received)| Op::ReceiveTransfer {
                transfer,
                damaged,
                received,
            }),
        5 => any::<usize>().prop_map(|k| Op::Replay { k }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(k, j)| Op::ReplayOther { k, j }),
    ]
}

fn arb_adv() -> impl Strategy<Value = Adv> {
    prop_oneof![
        5 => (0u64..=4_000).prop_map(Adv::Ms),
        2 => (4_000u64..=40_000).prop_map(Adv::Ms),
        2 => (0..4usize, -1i8..=1).prop_map(|(i, d)| Adv::ToDeadline(i, d)),
        1 => (1u64..=3_000).prop_map(Adv::Back),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    (arb_adv(), prop::collection::vec(arb_op(), 1..=4)).prop_map(|(adv, ops)| Step { adv, ops })
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn availability(
    ledger: &Ledger,
    target: Target,
    channel: &str,
    at: u64,
) -> Vec<engine::query::SkuAvailability> {
    let query = Query::Availability {
        skus: SKUS.iter().map(|s| SkuId::from(*s)).collect(),
        target,
        channel: ChannelId::from(channel),
    };
    match ledger.query(&query, at) {
        Ok(Answer::Availability(rows)) => rows,
        other => panic!("availability query answered {other:?}"),
    }
}

/// Whether `Query::Status` counters are checked at times between batches too: they are
/// evaluated as of the query time (SPEC 3, Queries; see `status_counts_expired_hold_as_live`),
/// so a passed deadline must not count there either.
const STATUS_AS_OF_QUERY_TIME: bool = true;

/// Every read of `ledger` at time `at` against `model` (already advanced to `at`). `between`:
/// `at` may be later than the last batch (deadlines may have passed since).
fn check_reads(ledger: &Ledger, model: &Model, at: u64, between: bool, ctx: &str) {
    let Ok(Answer::Status(status)) = ledger.query(&Query::Status, at) else {
        panic!("{ctx}: status not answered");
    };
    if !between || STATUS_AS_OF_QUERY_TIME {
        let live = model
            .res
            .values()
            .filter(|r| r.state == HoldState::Active)
            .count() as u64;
        let open = model.orders.values().filter(|o| open_order(o)).count() as u64;
        assert_eq!(
            (status.live_reservations, status.open_orders),
            (live, open),
            "{ctx}: status at {at}"
        );
    }
    for channel in CHANNELS {
        let expected_ats = |s: usize, l: usize| {
            if sells_to(l, channel) {
                model.bal(s, l).ats_for(channel)
            } else {
                0
            }
        };
        let expected_pos = |s: usize, l: usize| {
            if sells_to(l, "pos") {
                model.bal(s, l).ats_pos()
            } else {
                0
            }
        };
        for (l, loc) in LOCS.iter().enumerate() {
            let answer = availability(
                ledger,
                Target::Location(LocationId::from(*loc)),
                channel,
                at,
            );
            assert_eq!(answer.len(), SKUS.len());
            for (s, entry) in answer.iter().enumerate() {
                let what = format!("{ctx}: {}@{loc} channel {channel} at {at}", SKUS[s]);
                assert_eq!(entry.rows.len(), 1, "{what}: one row");
                let row = &entry.rows[0];
                let b = Bal::from_engine(&row.balance);
                assert_eq!(b, model.bal(s, l), "{what}: balance");
                // Independent sanity: no negative field, unavailable within on_hand.
                for v in [
                    b.on_hand,
                    b.reserved,
                    b.allocated,
                    b.unavailable,
                    b.safety_stock,
                    b.incoming,
                ] {
                    assert!(v >= 0, "{what}: negative field in {b:?}");
                }
                assert!(b.unavailable <= b.on_hand, "{what}: {b:?}");
                assert!(row.ats >= 0 && row.ats_pos >= 0, "{what}: negative ATS");
                assert_eq!(row.ats, expected_ats(s, l), "{what}: ats");
                assert_eq!(row.ats_pos, expected_pos(s, l), "{what}: ats_pos");
                assert_eq!((entry.ats, entry.ats_pos), (row.ats, row.ats_pos), "{what}");
            }
        }
        for (target, locs) in [
            (Target::Group(GroupId::from(GROUP)), GROUP_LOCS.to_vec()),
            (Target::All, vec![0, 1, 2]),
        ] {
            let answer = availability(ledger, target.clone(), channel, at);
            for (s, entry) in answer.iter().enumerate() {
                let what = format!("{ctx}: {}@{target:?} channel {channel} at {at}", SKUS[s]);
                let ats: i64 = locs.iter().map(|&l| expected_ats(s, l)).sum();
                let pos: i64 = locs.iter().map(|&l| expected_pos(s, l)).sum();
                assert_eq!((entry.ats, entry.ats_pos), (ats, pos), "{what}");
            }
        }
    }
    for (id, r) in &model.res {
        let what = format!("{ctx}: reservation {id} at {at}");
        let Ok(Answer::Reservation(view)) =
            ledger.query(&Query::Reservation(ReservationId::from(id.as_str())), at)
        else {
            panic!("{what}: not answered");
        };
        let state = match r.state {
            HoldState::Active => ReservationState::Active,
            HoldState::Released => ReservationState::Released,
            HoldState::Expired => ReservationState::Expired,
            HoldState::Placed => ReservationState::Placed,
        };
        assert_eq!(view.state, state, "{what}: state");
        assert_eq!(view.expires_at_ms, r.expires_at, "{what}: deadline");
        let held: Vec<Piece> = view
            .lines
            .iter()
            .map(|l| Piece {
                line: l.line,
                sku: sku_ix(l.sku.as_str()),
                loc: loc_ix(l.location.as_str()),
                qty: l.qty,
            })
            .collect();
        assert_eq!(held, r.held, "{what}: lines");
    }
    for (id, o) in &model.orders {
        let what = format!("{ctx}: order {id} at {at}");
        let Ok(Answer::Order(view)) = ledger.query(&Query::Order(OrderId::from(id.as_str())), at)
        else {
            panic!("{what}: not answered");
        };
        assert_eq!(view.state, o.state(), "{what}: state");
        let lines: Vec<(usize, usize, bool, i64, i64, i64)> = view
            .lines
            .iter()
            .map(|l| {
                (
                    sku_ix(l.sku.as_str()),
                    loc_ix(l.location.as_str()),
                    l.pickup,
                    l.ordered,
                    l.fulfilled,
                    l.cancelled,
                )
            })
            .collect();
        let expected: Vec<(usize, usize, bool, i64, i64, i64)> = o
            .lines
            .iter()
            .map(|l| (l.sku, l.loc, l.pickup, l.ordered, l.fulfilled, l.cancelled))
            .collect();
        assert_eq!(lines, expected, "{what}: lines");
        let returned: BTreeMap<usize, i64> = view
            .returned
            .iter()
            .map(|(s, q)| (sku_ix(s.as_str()), *q))
            .collect();
        assert_eq!(returned, o.returned, "{what}: returned");
        assert_eq!(view.pickup_deadline_ms, o.pickup_deadline, "{what}");
        assert_eq!(view.ready_for_pickup, o.ready, "{what}: ready");
    }
    for (id, t) in &model.transfers {
        let what = format!("{ctx}: transfer {id}");
        let Ok(Answer::Transfer(view)) =
            ledger.query(&Query::Transfer(TransferId::from(id.as_str())), at)
        else {
            panic!("{what}: not answered");
        };
        let (state, received, damaged, lost) = match t.received {
            None => (TransferState::Shipped, 0, 0, 0),
            Some((r, d)) => (TransferState::Received, r, d, t.qty - r - d),
        };
        assert_eq!(
            (
                view.state,
                view.qty,
                view.received,
                view.damaged,
                view.lost,
                loc_ix(view.from.as_str()),
                loc_ix(view.to.as_str())
            ),
            (state, t.qty, received, damaged, lost, t.from, t.to),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The change feed
// ---------------------------------------------------------------------------------------------

type Key = (usize, usize);

/// What the change feed of one batch must show, collected while the model applies the batch.
#[derive(Default)]
struct FeedExpect {
    /// Requests that ran for the first time in this batch and succeeded: id -> command name.
    ran_ok: BTreeMap<u128, &'static str>,
    /// Single-balance stock writes: id -> (key, balance right after the request).
    stock_after: BTreeMap<u128, (Key, Bal)>,
    /// Counts, adjustments and marks that left holds + allocations above the sellable units:
    /// id -> (key, shortfall). SPEC 3: "the ledger emits a shortage event with the shortfall".
    shortages: BTreeMap<u128, (Key, i64)>,
}

impl FeedExpect {
    /// Records what `request` (just applied to `model`, outcome `out`, first time if `fresh`)
    /// must leave in the feed.
    fn note(&mut self, request: &Request, out: &MOut, fresh: bool, model: &Model) {
        if !fresh || out.is_err() {
            return;
        }
        let id = request.request_id.0;
        self.ran_ok.insert(id, request.command.name());
        let (sku, loc) = match &request.command {
            Command::SetOnHand { sku, location, .. }
            | Command::Adjust { sku, location, .. }
            | Command::SetSafetyStock { sku, location, .. }
            | Command::MarkUnavailable { sku, location, .. }
            | Command::RestoreUnavailable { sku, location, .. }
            | Command::Sell { sku, location, .. } => (sku, location),
            _ => return,
        };
        let key = (sku_ix(sku.as_str()), loc_ix(loc.as_str()));
        let b = model.bal(key.0, key.1);
        self.stock_after.insert(id, (key, b));
        let shortfall = b.reserved + b.allocated - b.sellable();
        let counted = matches!(
            request.command,
            Command::SetOnHand { .. } | Command::Adjust { .. } | Command::MarkUnavailable { .. }
        );
        if counted && shortfall > 0 {
            self.shortages.insert(id, (key, shortfall));
        }
    }
}

fn cause_fits(command: &str, cause: Cause) -> bool {
    match command {
        "set_on_hand" => matches!(cause, Cause::SetOnHand | Cause::Shortage),
        "adjust" => matches!(cause, Cause::Adjust | Cause::Shortage),
        "set_safety_stock" => cause == Cause::SafetyStock,
        "mark_unavailable" => matches!(cause, Cause::MarkUnavailable | Cause::Shortage),
        "restore_unavailable" => cause == Cause::RestoreUnavailable,
        "sell" => cause == Cause::Sell,
        "reserve" => cause == Cause::Reserve,
        "release" => cause == Cause::Release,
        "place_order" => cause == Cause::PlaceOrder,
        "fulfil" | "picked_up" => cause == Cause::Fulfil,
        "cancel" => cause == Cause::Cancel,
        "reallocate" => cause == Cause::Reallocate,
        "return" => cause == Cause::Return,
        "ship_transfer" => cause == Cause::TransferShip,
        "receive_transfer" => cause == Cause::TransferReceive,
        _ => false,
    }
}

fn all_balances(model: &Model) -> BTreeMap<Key, Bal> {
    let mut out = BTreeMap::new();
    for s in 0..SKUS.len() {
        for l in 0..LOCS.len() {
            out.insert((s, l), model.bal(s, l));
        }
    }
    out
}

/// Reads the feed from `next` on and checks the events of the batch at (`log_index`, `now`):
/// no gaps; every event belongs to an expiry or to a request of the batch that succeeded the
/// first time (never to a rejection or a replay), with a matching cause; stock writes show the
/// balance they left; shortages exactly where the model has one; the last event of every balance
/// is its current value, and a balance without events did not change since `before`.
fn check_feed(
    ledger: &Ledger,
    next: &mut u64,
    (log_index, now): (u64, u64),
    expect: &FeedExpect,
    before: &BTreeMap<Key, Bal>,
    model: &Model,
    ctx: &str,
) {
    let page = match ledger.query(
        &Query::Changes {
            since: *next,
            max: 10_000,
        },
        now,
    ) {
        Ok(Answer::Changes(page)) => page,
        other => panic!("{ctx}: changes answered {other:?}"),
    };
    assert!(
        !page.truncated && page.events.len() < 10_000,
        "{ctx}: feed page"
    );
    let mut last: BTreeMap<Key, Bal> = BTreeMap::new();
    let mut shortages: BTreeMap<u128, (Key, i64)> = BTreeMap::new();
    for (i, e) in page.events.iter().enumerate() {
        let what = format!("{ctx}: feed event {e:?}");
        assert_eq!(e.seq, *next + i as u64, "{what}: gap");
        assert_eq!((e.log_index, e.timestamp_ms), (log_index, now), "{what}");
        let key = (sku_ix(e.sku.as_str()), loc_ix(e.location.as_str()));
        let b = Bal::from_engine(&e.balance);
        match e.request_id {
            None => assert!(
                matches!(e.cause, Cause::Expire | Cause::PickupExpired),
                "{what}: no request id"
            ),
            Some(id) => {
                let Some(command) = expect.ran_ok.get(&id.0) else {
                    panic!("{what}: not from a request that succeeded in this batch");
                };
                assert!(cause_fits(command, e.cause), "{what}: cause of {command}");
                if e.cause == Cause::Shortage {
                    assert!(
                        shortages.insert(id.0, (key, e.shortfall)).is_none(),
                        "{what}: two shortages"
                    );
                }
                if let Some((k, after)) = expect.stock_after.get(&id.0) {
                    assert_eq!((*k, b), (key, *after), "{what}: balance after the write");
                }
            }
        }
        last.insert(key, b);
    }
    assert_eq!(shortages, expect.shortages, "{ctx}: shortage events");
    for (key, now_bal) in all_balances(model) {
        match last.get(&key) {
            Some(b) => assert_eq!(*b, now_bal, "{ctx}: last event of {key:?}"),
            None => assert_eq!(
                before[&key], now_bal,
                "{ctx}: {key:?} changed without an event"
            ),
        }
    }
    *next += page.events.len() as u64;
    assert_eq!(page.next, *next, "{ctx}: next");
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// Applies `steps` to a model and three ledgers: `main`, a `twin` fed the same batches, and
/// (from step `restore_at` on) one restored from `main`'s snapshot. Panics on any discrepancy.
///
/// With the default `config`, the model is compared with `main` on everything. With a
/// different one (short retention: ids and objects are forgotten, which the model does not
/// know), the model only drives the generation and the run checks what must hold anyway: no
/// panic, invariants, twin and restored ledgers identical to `main`.
fn run(config: Config, initial: &[i64], steps: &[Step], restore_at: usize) {
    let compare = config == Config::default();
    let mut model = Model {
        now: T0,
        ..Model::default()
    };
    let mut builder = Builder::default();
    let mut main = Ledger::new(config);
    let mut twin = Ledger::new(config);
    let mut restored: Option<Ledger> = None;
    let mut frozen: Vec<(engine::Frozen, Vec<u8>, String)> = Vec::new();
    // First outcome the engine gave for every request id.
    let mut first: BTreeMap<u128, Outcome> = BTreeMap::new();

    // Setup batch: the fixture and initial counts.
    let mut setup: Vec<Request> = setup_commands()
        .into_iter()
        .map(|c| builder.wrap(c))
        .collect();
    for (i, &qty) in initial.iter().enumerate() {
        setup.push(builder.wrap(Command::SetOnHand {
            sku: SkuId::from(SKUS[i / 3]),
            location: LocationId::from(LOCS[i % 3]),
            qty,
            reason: Reason::from("count"),
            expected: None,
        }));
    }
    let header = BatchHeader {
        log_index: 1,
        timestamp_ms: T0,
    };
    let out = main.apply(header, &setup);
    assert_eq!(twin.apply(header, &setup), out);
    for (request, outcome) in setup.iter().zip(&out) {
        assert_eq!(engine_view(outcome), model.apply(request), "setup");
        first.insert(request.request_id.0, outcome.clone());
    }
    if compare {
        check_reads(&main, &model, T0, false, "setup");
    }
    // Feed sequence numbers start at 1.
    let mut feed_next = 1;
    let mut setup_expect = FeedExpect::default();
    for (request, outcome) in setup.iter().zip(&out) {
        if outcome.is_ok() {
            setup_expect
                .ran_ok
                .insert(request.request_id.0, request.command.name());
        }
    }
    let zero: BTreeMap<Key, Bal> = all_balances(&Model::default());
    if compare {
        check_feed(
            &main,
            &mut feed_next,
            (1, T0),
            &setup_expect,
            &zero,
            &model,
            "setup",
        );
    }

    let mut log_index = 1;
    let mut ts = T0;
    for (n, step) in steps.iter().enumerate() {
        log_index += 1;
        let ctx = format!("step {n}");
        if n == restore_at {
            let bytes = main.snapshot();
            // The restored copy starts from a frozen view's encoding, which must be the bytes.
            let view = main.freeze();
            assert_eq!(view.encode(), bytes, "{ctx}: frozen view == snapshot");
            let copy = Ledger::restore(&view.encode()).expect("own snapshot restores");
            assert_eq!(
                copy.snapshot(),
                bytes,
                "{ctx}: restore -> snapshot round trip"
            );
            restored = Some(copy);
        }
        // The next batch's time.
        let prev = model.now;
        let before = all_balances(&model);
        ts = match step.adv {
            Adv::Ms(ms) => ts + ms,
            Adv::ToDeadline(i, delta) => match model.deadlines().as_slice() {
                [] => ts + 1_000,
                d => d[i % d.len()].saturating_add_signed(i64::from(delta)),
            },
            Adv::Back(ms) => prev - ms,
        };
        // Reads between batches: at a time halfway, then at the batch's own time (a deadline
        // that has passed must not count even though no batch has released it yet).
        if compare && ts > prev + 1 {
            let mid = prev + (ts - prev) / 2;
            let mut at_mid = model.clone();
            at_mid.advance(mid);
            check_reads(
                &main,
                &at_mid,
                mid,
                true,
                &format!("{ctx} (read before the batch)"),
            );
        }
        model.advance(ts);
        if compare {
            check_reads(
                &main,
                &model,
                ts,
                true,
                &format!("{ctx} (read at the batch time)"),
            );
        }

        // Build and model the batch, request by request.
        let mut batch = Vec::new();
        let mut expected = Vec::new();
        let mut feed = FeedExpect::default();
        for op in &step.ops {
            let request = builder.build(op, &model);
            let fresh = !model.seen.contains_key(&request.request_id.0);
            let out = model.apply(&request);
            feed.note(&request, &out, fresh, &model);
            expected.push(out);
            batch.push(request);
        }
        let header = BatchHeader {
            log_index,
            timestamp_ms: ts,
        };
        let out = main.apply(header, &batch);
        assert_eq!(twin.apply(header, &batch), out, "{ctx}: twin outcomes");
        if let Some(copy) = restored.as_mut() {
            assert_eq!(copy.apply(header, &batch), out, "{ctx}: restored outcomes");
        }
        for ((request, outcome), want) in batch.iter().zip(&out).zip(&expected) {
            if !compare {
                break;
            }
            stats::record(request, outcome, first.contains_key(&request.request_id.0));
            let what = format!("{ctx}: {:?}", request.command);
            assert_eq!(
                code_of(outcome),
                want.as_ref().err().map_or(Code::Ok, MErr::code),
                "{what}: code (outcome {outcome:?})"
            );
            assert_eq!(&engine_view(outcome), want, "{what}: reply");
            match first.get(&request.request_id.0) {
                Some(original) => assert_eq!(outcome, original, "{what}: replay"),
                None => {
                    first.insert(request.request_id.0, outcome.clone());
                }
            }
        }
        if compare {
            check_reads(
                &main,
                &model,
                ts,
                false,
                &format!("{ctx} (after the batch)"),
            );
            check_feed(
                &main,
                &mut feed_next,
                (log_index, model.now),
                &feed,
                &before,
                &model,
                &ctx,
            );
        }
        main.check_invariants()
            .unwrap_or_else(|e| panic!("{ctx}: invariants: {e}"));
        let bytes = main.snapshot();
        let copy = Ledger::restore(&bytes).expect("own snapshot restores");
        assert_eq!(copy.snapshot(), bytes, "{ctx}: snapshot round trip");
        frozen.push((main.freeze(), bytes, ctx));
    }
    // Every view frozen along the way still encodes to the bytes of its moment, whatever was
    // applied after it.
    for (view, bytes, ctx) in &frozen {
        assert!(view.encode() == *bytes, "{ctx}: frozen view changed");
    }
    let bytes = main.snapshot();
    assert_eq!(twin.snapshot(), bytes, "twin snapshot");
    assert_eq!(twin.digest(), main.digest());
    if let Some(copy) = restored {
        assert_eq!(copy.snapshot(), bytes, "restored-then-continued snapshot");
        copy.check_invariants().expect("restored invariants");
    }
}

/// Coverage statistics of `engine_matches_model` (requests per command and outcome code), for
/// tuning the generators: `MODEL_STATS=1 cargo test -p engine --test model --
/// --test-threads=1 --nocapture` prints them (from `zz_print_stats`, which runs last).
mod stats {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use engine::{code_of, Outcome, Request};

    static COUNTS: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

    pub fn record(request: &Request, outcome: &Outcome, replay: bool) {
        if std::env::var_os("MODEL_STATS").is_none() {
            return;
        }
        let name = if replay {
            "(replay)"
        } else {
            request.command.name()
        };
        let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((name, code_of(outcome).as_str())).or_default() += 1;
    }

    pub fn print() {
        if std::env::var_os("MODEL_STATS").is_none() {
            return;
        }
        let counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
        for ((name, code), n) in counts.iter() {
            println!("{name:>20} {code:>20} {n:>7}");
        }
    }
}

/// `cases` by default; `PROPTEST_CASES` overrides it (for longer runs).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// The engine agrees with the model on every outcome, balance, ATS and object state after
    /// every batch and at times between batches; twin and restored ledgers stay identical.
    #[test]
    fn engine_matches_model(
        initial in prop::collection::vec(0i64..=8, 9),
        steps in prop::collection::vec(arb_step(), 1..=40),
        restore_at in any::<usize>(),
    ) {
        let restore_at = restore_at % steps.len();
        run(Config::default(), &initial, &steps, restore_at);
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Short retention (request ids, finished objects and feed events forgotten after seconds
    /// or a handful of entries): never a panic, invariants hold, replicas stay byte-identical.
    #[test]
    fn short_retention_stays_consistent(
        initial in prop::collection::vec(0i64..=8, 9),
        steps in prop::collection::vec(arb_step(), 1..=40),
        restore_at in any::<usize>(),
        dedup_entries in 1usize..=24,
        retired_entries in 1usize..=6,
    ) {
        let config = Config {
            dedup_window_ms: 20_000,
            dedup_entries,
            feed_events: 16,
            retired_ms: 15_000,
            retired_entries,
        };
        let restore_at = restore_at % steps.len();
        run(config, &initial, &steps, restore_at);
    }
}

/// Prints the coverage statistics when `MODEL_STATS` is set (see [`stats`]); a no-op otherwise.
#[test]
fn zz_print_stats() {
    stats::print();
}

// ---------------------------------------------------------------------------------------------
// No oversell (SPEC section 4)
// ---------------------------------------------------------------------------------------------

/// One single-unit request racing for the same SKU in one batch.
#[derive(Clone, Copy, Debug)]
enum Racer {
    /// `reserve` one unit for channel `web`.
    Reserve,
    /// A direct `place_order` of one unit (marketplace order).
    Order,
    /// A counter `sell` of one unit (only where the target is a single store).
    Sell,
}

proptest! {
    #![proptest_config(config(192))]

    /// Single-unit requests from many request ids racing in one batch: exactly
    /// min(stock, demand) are granted, the first ones in batch order (the serial order), and
    /// retries of the same request ids get the same answer without taking more.
    #[test]
    fn no_oversell(
        stock in prop::collection::vec(0i64..=12, 2),
        unavailable in 0i64..=2,
        racers in prop::collection::vec(
            prop_oneof![4 => Just(Racer::Reserve), 2 => Just(Racer::Order), 1 => Just(Racer::Sell)],
            1..=40,
        ),
        retries in prop::collection::vec(any::<prop::sample::Index>(), 0..=12),
        via_group in any::<bool>(),
    ) {
        let mut ledger = Ledger::new(Config::default());
        let mut n = 0u128;
        let mut next = |command: Command| {
            n += 1;
            Request { request_id: request_id(n), command }
        };
        let sku = SkuId::from("A");
        let mut setup: Vec<Request> = setup_commands().into_iter().map(&mut next).collect();
        // Stock at st and mk (the group's two locations); only st when not via the group.
        for (i, &l) in [1usize, 2].iter().enumerate() {
            setup.push(next(Command::SetOnHand {
                sku: sku.clone(),
                location: LocationId::from(LOCS[l]),
                qty: stock[i],
                reason: Reason::from("count"),
                expected: None,
            }));
        }
        let unavailable = unavailable.min(stock[0]);
        if unavailable > 0 {
            setup.push(next(Command::MarkUnavailable {
                sku: sku.clone(),
                location: LocationId::from("st"),
                qty: unavailable,
                reason: Reason::from("qc"),
            }));
        }
        let out = ledger.apply(BatchHeader { log_index: 1, timestamp_ms: T0 }, &setup);
        prop_assert!(out.iter().all(|o| o.is_ok()), "setup: {:?}", out);
        let available = if via_group {
            stock[0] - unavailable + stock[1]
        } else {
            stock[0] - unavailable
        };
        let target = if via_group {
            Target::Group(GroupId::from(GROUP))
        } else {
            Target::Location(LocationId::from("st"))
        };
        let mut batch: Vec<Request> = racers
            .iter()
            .enumerate()
            .map(|(i, racer)| {
                let line = Line { sku: sku.clone(), target: target.clone(), qty: 1 };
                next(match racer {
                    Racer::Reserve => Command::Reserve {
                        reservation: ReservationId::from(format!("r{i}")),
                        channel: ChannelId::from("web"),
                        lines: vec![line],
                        ttl_ms: 60_000,
                    },
                    Racer::Order => Command::PlaceOrder {
                        order: OrderId::from(format!("o{i}")),
                        source: OrderSource::Lines {
                            channel: ChannelId::from("web"),
                            lines: vec![line],
                        },
                        fulfilment: Fulfilment::Ship,
                    },
                    Racer::Sell if !via_group => Command::Sell {
                        sku: sku.clone(),
                        location: LocationId::from("st"),
                        qty: 1,
                    },
                    // Through the group (mk sells to web only): a short web hold.
                    Racer::Sell => Command::Reserve {
                        reservation: ReservationId::from(format!("r{i}")),
                        channel: ChannelId::from("web"),
                        lines: vec![line],
                        ttl_ms: 1,
                    },
                })
            })
            .collect();
        // Retries of some requests, appended (a client that timed out and sent again).
        let originals = batch.len();
        for r in &retries {
            let again = batch[r.index(originals)].clone();
            batch.push(again);
        }
        let out = ledger.apply(BatchHeader { log_index: 2, timestamp_ms: T0 + 10 }, &batch);
        let demand = originals as i64;
        let granted = out[..originals].iter().filter(|o| o.is_ok()).count() as i64;
        prop_assert_eq!(granted, available.min(demand));
        for (i, o) in out[..originals].iter().enumerate() {
            let fits = (i as i64) < available;
            prop_assert_eq!(
                code_of(o),
                if fits { Code::Ok } else { Code::InsufficientStock },
                "request {} of {} with {} available", i, originals, available
            );
        }
        for (k, r) in retries.iter().enumerate() {
            prop_assert_eq!(&out[originals + k], &out[r.index(originals)], "retry {}", k);
        }
        // What was granted is exactly what the balances hold (reserved + allocated + sold).
        let mut taken = 0;
        let mut left = 0;
        for l in if via_group { vec![1usize, 2] } else { vec![1usize] } {
            let Ok(Answer::Availability(rows)) = ledger.query(
                &Query::Availability {
                    skus: vec![sku.clone()],
                    target: Target::Location(LocationId::from(LOCS[l])),
                    channel: ChannelId::from("pos"),
                },
                T0 + 10,
            ) else {
                panic!("availability");
            };
            let b = rows[0].rows[0].balance;
            taken += b.reserved + b.allocated;
            left += b.on_hand - b.unavailable - b.reserved - b.allocated;
        }
        let sold = racers
            .iter()
            .zip(&out)
            .filter(|(r, o)| matches!(r, Racer::Sell) && !via_group && o.is_ok())
            .count() as i64;
        prop_assert_eq!(taken + sold, granted);
        prop_assert_eq!(left, available - granted);
        prop_assert!(ledger.check_invariants().is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Explicit scenarios: edge cases the random batches reach rarely or never
// ---------------------------------------------------------------------------------------------

/// The fixture ledger, driven one batch at a time.
struct Script {
    ledger: Ledger,
    log_index: u64,
    requests: u128,
}

impl Script {
    fn new(ts: u64) -> Script {
        let mut script = Script {
            ledger: Ledger::new(Config::default()),
            log_index: 0,
            requests: 0,
        };
        let out = script.batch(ts, setup_commands());
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        script
    }

    fn batch(&mut self, ts: u64, commands: Vec<Command>) -> Vec<Outcome> {
        self.log_index += 1;
        let requests: Vec<Request> = commands
            .into_iter()
            .map(|command| {
                self.requests += 1;
                Request {
                    request_id: request_id(self.requests),
                    command,
                }
            })
            .collect();
        let header = BatchHeader {
            log_index: self.log_index,
            timestamp_ms: ts,
        };
        self.ledger.apply(header, &requests)
    }

    fn one(&mut self, ts: u64, command: Command) -> Outcome {
        self.batch(ts, vec![command]).remove(0)
    }

    fn balance(&self, sku: &str, loc: &str, at: u64) -> engine::Balance {
        let query = Query::Availability {
            skus: vec![SkuId::from(sku)],
            target: Target::Location(LocationId::from(loc)),
            channel: ChannelId::from("web"),
        };
        match self.ledger.query(&query, at) {
            Ok(Answer::Availability(rows)) => rows[0].rows[0].balance,
            other => panic!("{other:?}"),
        }
    }

    fn status(&self, at: u64) -> engine::query::LedgerStatus {
        match self.ledger.query(&Query::Status, at) {
            Ok(Answer::Status(status)) => status,
            other => panic!("{other:?}"),
        }
    }
}

fn count(sku: &str, loc: &str, qty: i64) -> Command {
    Command::SetOnHand {
        sku: SkuId::from(sku),
        location: LocationId::from(loc),
        qty,
        reason: Reason::from("count"),
        expected: None,
    }
}

fn reserve(id: &str, sku: &str, loc: &str, qty: i64, ttl_ms: u64) -> Command {
    Command::Reserve {
        reservation: ReservationId::from(id),
        channel: ChannelId::from("web"),
        lines: vec![Line {
            sku: SkuId::from(sku),
            target: Target::Location(LocationId::from(loc)),
            qty,
        }],
        ttl_ms,
    }
}

/// SPEC 3, Queries: a hold stops counting at its deadline exactly, before any batch runs.
#[test]
fn hold_stops_counting_at_its_deadline_before_the_next_batch() {
    let mut s = Script::new(T0);
    assert!(s.one(T0, count("A", "wh", 10)).is_ok());
    assert!(s.one(T0, reserve("r1", "A", "wh", 4, 5_000)).is_ok());
    assert_eq!(s.balance("A", "wh", T0 + 4_999).reserved, 4);
    assert_eq!(s.balance("A", "wh", T0 + 5_000).reserved, 0);
    let Ok(Answer::Reservation(view)) = s
        .ledger
        .query(&Query::Reservation(ReservationId::from("r1")), T0 + 5_000)
    else {
        panic!("reservation query");
    };
    assert_eq!(view.state, ReservationState::Expired);
}

/// SPEC 3, Queries: "a hold or pickup whose deadline has passed never shows as live in any
/// read — not in counts, not in states — even before the batch that releases it is applied".
/// So `Query::Status` must count `live_reservations` and `open_orders` as of the query time,
/// not as of the last batch: at its deadline a hold (and an order whose only units are an
/// uncollected pickup) no longer counts as live / open, just as the balance already shows the
/// units released.
#[test]
fn status_counts_expired_hold_as_live() {
    let mut s = Script::new(T0);
    assert!(s.one(T0, count("A", "st", 10)).is_ok());
    assert!(s.one(T0, reserve("r1", "A", "st", 1, 5_000)).is_ok());
    let pickup = Command::PlaceOrder {
        order: OrderId::from("o1"),
        source: OrderSource::Lines {
            channel: ChannelId::from("web"),
            lines: vec![Line {
                sku: SkuId::from("A"),
                target: Target::Location(LocationId::from("st")),
                qty: 1,
            }],
        },
        fulfilment: Fulfilment::Pickup { deadline_ms: 5_000 },
    };
    assert!(s.one(T0, pickup).is_ok());
    let before = s.status(T0 + 4_999);
    assert_eq!((before.live_reservations, before.open_orders), (1, 1));
    // At the deadline the balance already shows both released...
    let b = s.balance("A", "st", T0 + 5_000);
    assert_eq!((b.reserved, b.allocated), (0, 0));
    // ...and so must the counters (as of the last batch they would still say (1, 1)).
    let at = s.status(T0 + 5_000);
    assert_eq!((at.live_reservations, at.open_orders), (0, 0));
}

/// SPEC 2: "Any arithmetic that would overflow is a rejected request, not a wrap"; the
/// engine's own contract: it "never panics on input". Deadlines are `now_ms + duration`
/// (`reserve`, `extend`, `place_order` with a pickup deadline); with a batch timestamp near
/// `u64::MAX` that sum would overflow (a panic in debug, in release a deadline wrapped to 1970:
/// a hold born expired). The engine clamps batch time to `limits::TIMESTAMP_MS_MAX`, so the sum
/// always fits.
#[test]
fn deadline_arithmetic_near_u64_max_does_not_wrap() {
    let ts = u64::MAX - 5;
    let mut s = Script::new(ts);
    assert!(s.one(ts, count("A", "wh", 10)).is_ok());
    // The engine clamps batch time to TIMESTAMP_MS_MAX (year 9999): the hold is granted with a
    // deadline 10 ms after that, never wrapped into the past.
    let out = s.one(ts, reserve("r1", "A", "wh", 1, 10));
    let clamped = engine::limits::TIMESTAMP_MS_MAX;
    match out {
        Ok(Reply::Reserved { expires_at_ms, .. }) => assert_eq!(expires_at_ms, clamped + 10),
        other => panic!("{other:?}"),
    }
    let b = s.balance("A", "wh", ts);
    assert_eq!((b.reserved, b.ats_remote()), (1, 9));
}

/// SPEC 1: ATS of the whole network is the sum of per-location ATS and is never below zero;
/// SPEC 2: an overflow is a rejected request, never a wrap. The per-location fields are capped
/// at QTY_MAX (10^15), but a sum over `all` locations (up to LOCATIONS_MAX = 100,000) exceeds
/// i64 from about 9,224 locations holding ~QTY_MAX each. So the sums saturate: in
/// `availability(sku, all)` (view.rs), which must not report a negative network ATS, and in
/// the sourcing of a `reserve` of QTY_MAX units from `all` (holds.rs; no single location has
/// them, so sourcing sums the candidates), which must be granted, not rejected
/// `insufficient_stock` with a negative `available`, when 9.3 * 10^18 units are there.
#[test]
fn sums_over_all_locations_do_not_overflow() {
    const N: usize = 9_300;
    let mut s = Script::new(T0);
    let defs = (0..N)
        .map(|i| {
            Command::DefineLocation(LocationDef {
                location: LocationId::from(format!("l{i}")),
                kind: LocationKind::Warehouse,
                pickup: false,
                coordinates: None,
                channels: None,
            })
        })
        .collect();
    assert!(s.batch(T0, defs).iter().all(Result::is_ok));
    let counts = (0..N)
        .map(|i| count("A", &format!("l{i}"), engine::limits::QTY_MAX - 1))
        .collect();
    assert!(s.batch(T0, counts).iter().all(Result::is_ok));
    let query = Query::Availability {
        skus: vec![SkuId::from("A")],
        target: Target::All,
        channel: ChannelId::from("web"),
    };
    match s.ledger.query(&query, T0) {
        Ok(Answer::Availability(rows)) => assert!(rows[0].ats >= 0, "{}", rows[0].ats),
        Err(rejection) => assert_eq!(rejection.code(), Code::Invalid),
        Ok(other) => panic!("{other:?}"),
    }
    let reserve_all = Command::Reserve {
        reservation: ReservationId::from("r1"),
        channel: ChannelId::from("web"),
        lines: vec![Line {
            sku: SkuId::from("A"),
            target: Target::All,
            qty: engine::limits::QTY_MAX,
        }],
        ttl_ms: 60_000,
    };
    let out = s.one(T0, reserve_all);
    assert!(out.is_ok(), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Freeze over sealed pages
// ---------------------------------------------------------------------------------------------

/// A small deterministic random source for the large-state freeze test.
struct Mix(u64);

impl Mix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// A batch of random writes over `skus` SKUs at the fixture's locations: counts, holds,
/// releases, direct orders, fulfilments and cancels, with ids that sometimes repeat (so some
/// are `already_exists` or `not_found`) and request ids that sometimes repeat (replays).
fn random_batch(mix: &mut Mix, skus: u64, next_request: &mut u128, size: usize) -> Vec<Request> {
    let sku = |mix: &mut Mix| SkuId::from(format!("S{}", mix.below(skus)));
    let loc = |mix: &mut Mix| LocationId::from(LOCS[mix.below(3) as usize]);
    (0..size)
        .map(|_| {
            let n = mix.below(30_000);
            let command = match mix.below(6) {
                0 => Command::SetOnHand {
                    sku: sku(mix),
                    location: loc(mix),
                    qty: 50 + mix.below(50) as i64,
                    reason: Reason::from("count"),
                    expected: None,
                },
                1 | 2 => Command::Reserve {
                    reservation: ReservationId::from(format!("r{n}")),
                    channel: ChannelId::from("web"),
                    lines: vec![Line {
                        sku: sku(mix),
                        target: Target::Location(loc(mix)),
                        qty: 1 + mix.below(3) as i64,
                    }],
                    ttl_ms: 1_000 + mix.below(60_000),
                },
                3 => Command::Release {
                    reservation: ReservationId::from(format!("r{n}")),
                },
                4 => Command::PlaceOrder {
                    order: OrderId::from(format!("o{n}")),
                    source: OrderSource::Reservation(ReservationId::from(format!("r{n}"))),
                    fulfilment: Fulfilment::Ship,
                },
                _ => Command::Cancel {
                    order: OrderId::from(format!("o{n}")),
                    lines: None,
                },
            };
            // One request in eight replays a recent request id.
            let id = if mix.below(8) == 0 && *next_request > 1 {
                *next_request - 1 - u128::from(mix.below(50)).min(*next_request - 2)
            } else {
                *next_request += 1;
                *next_request
            };
            Request {
                request_id: request_id(id),
                command,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config(6))]

    /// With thousands of balances, holds, orders, dedup entries and feed events (so every arena
    /// has sealed, shared pages), views frozen at random moments keep encoding to the bytes of
    /// their moment while later batches write to those pages, and a ledger restored from a view
    /// and fed the same batches ends identical to one that never froze.
    #[test]
    fn frozen_views_survive_writes_to_sealed_pages(
        seed in any::<u64>(),
        freeze_at in prop::collection::btree_set(0usize..24, 1..4),
        short_retention in any::<bool>(),
    ) {
        let config = if short_retention {
            Config {
                dedup_window_ms: 20_000,
                dedup_entries: 5_000,
                feed_events: 6_000,
                retired_ms: 15_000,
                retired_entries: 3_000,
            }
        } else {
            Config::default()
        };
        let mut mix = Mix(seed);
        let mut main = Ledger::new(config);
        let mut next_request = 0u128;
        let wrap = |commands: Vec<Command>, next: &mut u128| -> Vec<Request> {
            commands.into_iter().map(|command| { *next += 1; Request { request_id: request_id(*next), command } }).collect()
        };
        let setup = wrap(setup_commands(), &mut next_request);
        let header = |i: u64| BatchHeader { log_index: i, timestamp_ms: T0 + i * 700 };
        main.apply(header(1), &setup);
        // 6,000 balances (2 SKUs' worth of pages per location).
        let skus = 2_000;
        let counts: Vec<Command> = (0..skus * 3)
            .map(|i| count(&format!("S{}", i / 3), LOCS[(i % 3) as usize], 100))
            .collect();
        let counts = wrap(counts, &mut next_request);
        for (i, chunk) in counts.chunks(3_000).enumerate() {
            main.apply(header(2 + i as u64), chunk);
        }
        let mut views: Vec<(engine::Frozen, Vec<u8>)> = Vec::new();
        let mut twin: Option<Ledger> = None;
        for step in 0..24u64 {
            if freeze_at.contains(&(step as usize)) {
                let view = main.freeze();
                let bytes = main.snapshot();
                if twin.is_none() {
                    twin = Some(Ledger::restore(&view.encode()).expect("a view restores"));
                }
                views.push((view, bytes));
            }
            let batch = random_batch(&mut mix, skus, &mut next_request, 1_500);
            let h = header(10 + step);
            let out = main.apply(h, &batch);
            if let Some(twin) = twin.as_mut() {
                prop_assert_eq!(twin.apply(h, &batch), out);
            }
        }
        main.check_invariants()
            .map_err(|e| TestCaseError::fail(e.0))?;
        for (view, bytes) in &views {
            prop_assert!(view.encode() == *bytes, "a frozen view changed");
        }
        let twin = twin.expect("froze at least once");
        prop_assert!(twin.snapshot() == main.snapshot(), "restored-from-view ledger diverged");
    }
}

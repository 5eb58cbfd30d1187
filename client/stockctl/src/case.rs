//! Scenario cases: the line-oriented language of `../shared/cases/FORMAT.md`, run against any
//! [`CaseTarget`].
//!
//! A case is read and executed one line at a time, because converting display units to base
//! units needs the scales declared by earlier `sku` lines, and telling a group from a location
//! needs the earlier `group` lines. Every write line is one request (one batch against an
//! in-process engine); `concurrent N` submits N requests at once (one batch in-process, N
//! concurrent calls against a cluster).
//!
//! Against a shared cluster, ids are prefixed with a per-run namespace ([`RunOptions::namespace`])
//! so that cases cannot see each other's SKUs, locations or orders; request ids are derived from
//! a per-run salt, so that a rerun is not a replay of an earlier run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use engine::query::{OrderState, ReservationState};
use engine::units::{format_display, parse_display};

use crate::grammar::{self, FromTo, LineText, Qty, ReturnText, SkuAt, DEFAULT_PICKUP_MS};
use engine::{
    code_of, Answer, ChannelId, Code, Command, Fulfilment, GroupId, InvalidReason, Line,
    LocatedLine, LocationDef, LocationId, LocationKind, OrderId, OrderSource, Outcome, Query,
    Reason, Rejection, Request, RequestId, ReservationId, ReturnLine, RmaId, SkuId, Target,
    TransferId,
};

/// Where a case runs: an in-process engine, or a live cluster through the client.
pub trait CaseTarget {
    /// Submits requests at once (one batch in-process; concurrent calls on a cluster) and
    /// returns one outcome per request, in order. `Err` is a transport failure, not a
    /// rejection.
    fn submit(&mut self, requests: Vec<Request>) -> Result<Vec<Outcome>, String>;
    /// Lets `ms` of time pass (moves the clock in-process; sleeps against a cluster).
    fn advance(&mut self, ms: u64) -> Result<(), String>;
    /// A linearizable read as of now.
    fn query(&mut self, query: Query) -> Result<Result<Answer, Rejection>, String>;
}

/// An in-process engine target: a fresh [`engine::Ledger`], one batch per submit, a simulated
/// clock starting at 2026-01-01T00:00:00Z.
pub struct EngineTarget {
    /// The ledger under test.
    pub ledger: engine::Ledger,
    /// The simulated clock, ms since the epoch.
    pub now_ms: u64,
    next_index: u64,
}

impl Default for EngineTarget {
    fn default() -> Self {
        EngineTarget {
            ledger: engine::Ledger::default(),
            now_ms: 1_767_225_600_000,
            next_index: 1,
        }
    }
}

impl CaseTarget for EngineTarget {
    fn submit(&mut self, requests: Vec<Request>) -> Result<Vec<Outcome>, String> {
        let header = engine::BatchHeader {
            log_index: self.next_index,
            timestamp_ms: self.now_ms,
        };
        self.next_index += 1;
        let outcomes = self.ledger.apply(header, &requests);
        self.ledger
            .check_invariants()
            .map_err(|e| format!("ledger invariant broken: {e}"))?;
        Ok(outcomes)
    }

    fn advance(&mut self, ms: u64) -> Result<(), String> {
        self.now_ms += ms;
        Ok(())
    }

    fn query(&mut self, query: Query) -> Result<Result<Answer, Rejection>, String> {
        Ok(self.ledger.query(&query, self.now_ms))
    }
}

/// How a case is run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Prefix of every SKU, location, group, reservation, order, RMA and transfer id (empty
    /// for a fresh engine; unique per run against a shared cluster).
    pub namespace: String,
    /// Mixed into every request id.
    pub salt: u128,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The case's name (file name without `.case`).
    pub name: String,
    /// `None` if it passed, else the first failure: `line N: expected X, got Y`.
    pub failure: Option<String>,
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            None => write!(f, "PASS {}", self.name),
            Some(why) => write!(f, "FAIL {}: {why}", self.name),
        }
    }
}

/// Runs the case text `text` named `name` against `target`.
pub fn run_case(
    name: &str,
    text: &str,
    target: &mut dyn CaseTarget,
    options: &RunOptions,
) -> CaseReport {
    let mut runner = Runner {
        options,
        scales: BTreeMap::new(),
        groups: BTreeSet::new(),
        transfers: BTreeMap::new(),
    };
    let failure = text.lines().enumerate().find_map(|(i, line)| {
        runner
            .run_line(target, line)
            .err()
            .map(|e| format!("line {}: {e}", i + 1))
    });
    CaseReport {
        name: name.to_owned(),
        failure,
    }
}

/// Per-case state of the runner.
struct Runner<'a> {
    options: &'a RunOptions,
    /// Decimal scale per SKU (as written in the case).
    scales: BTreeMap<String, u8>,
    /// Group ids (as written in the case), to tell them from locations.
    groups: BTreeSet<String>,
    /// Transfer id -> SKU (as written in the case), for the scale of `receive_transfer`.
    transfers: BTreeMap<String, String>,
}

/// A write produced from a case line, or an outcome decided locally (a quantity with too many
/// decimals is `invalid` before anything is sent).
enum Prepared {
    Send(Command),
    Local(Outcome),
}

impl<'a> Runner<'a> {
    fn run_line(&mut self, target: &mut dyn CaseTarget, raw: &str) -> Result<(), String> {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return Ok(());
        }
        let (body, expected) = split_expected(line);
        let words: Vec<&str> = body.split_whitespace().collect();
        match words[0] {
            "advance" => {
                let ms = duration(words.get(1).copied().unwrap_or(""))?;
                target.advance(ms)
            }
            "expect" => self.check(target, &words[1..]),
            "concurrent" => self.concurrent(target, &words, expected),
            _ => {
                let expected = match expected {
                    None => Code::Ok,
                    Some(text) => parse_code(text.trim())?,
                };
                let (key, words) = split_request_key(&words)?;
                let request_id = self.request_id(key, raw, 0);
                let outcome = match self.prepare(&words)? {
                    Prepared::Local(outcome) => outcome,
                    Prepared::Send(command) => {
                        let mut outcomes = target.submit(vec![Request {
                            request_id,
                            command,
                        }])?;
                        outcomes.pop().ok_or("no outcome returned")?
                    }
                };
                check_outcome(expected, &outcome)
            }
        }
    }

    fn concurrent(
        &mut self,
        target: &mut dyn CaseTarget,
        words: &[&str],
        expected: Option<&str>,
    ) -> Result<(), String> {
        let n: usize = words
            .get(1)
            .and_then(|w| w.parse().ok())
            .filter(|n| (1..=10_000).contains(n))
            .ok_or("concurrent needs a count 1..=10000")?;
        let expected = expected.ok_or("concurrent needs `=> code:count ...`")?;
        let mut want: BTreeMap<Code, usize> = BTreeMap::new();
        for item in expected.split_whitespace() {
            let (code, count) = item
                .split_once(':')
                .ok_or_else(|| format!("bad outcome count {item:?}"))?;
            let count: usize = count
                .parse()
                .map_err(|_| format!("bad count in {item:?}"))?;
            *want.entry(parse_code(code)?).or_default() += count;
        }
        let template = words[2..].join(" ");
        let mut requests = Vec::with_capacity(n);
        let mut local: Vec<Outcome> = Vec::new();
        for i in 1..=n {
            let text = template.replace("{i}", &i.to_string());
            let copy: Vec<&str> = text.split_whitespace().collect();
            let (key, copy) = split_request_key(&copy)?;
            let request_id = self.request_id(key, &template, i);
            match self.prepare(&copy)? {
                Prepared::Send(command) => requests.push(Request {
                    request_id,
                    command,
                }),
                Prepared::Local(outcome) => local.push(outcome),
            }
        }
        let mut outcomes = target.submit(requests)?;
        outcomes.extend(local);
        let mut got: BTreeMap<Code, usize> = BTreeMap::new();
        for outcome in &outcomes {
            *got.entry(code_of(outcome)).or_default() += 1;
        }
        if got != want {
            return Err(format!(
                "expected {}, got {}",
                show_counts(&want),
                show_counts(&got)
            ));
        }
        Ok(())
    }

    /// The request id of a line: derived from the case's `request KEY:` if any, else fresh
    /// for this line and copy.
    fn request_id(&self, key: Option<&str>, line: &str, copy: usize) -> RequestId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.options.salt.to_le_bytes());
        match key {
            Some(key) => hasher.update(b"key\0").update(key.as_bytes()),
            None => hasher
                .update(b"line\0")
                .update(line.as_bytes())
                .update(&(copy as u64).to_le_bytes())
                .update(
                    &FRESH
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        .to_le_bytes(),
                ),
        };
        let bytes: [u8; 16] = hasher.finalize().as_bytes()[..16]
            .try_into()
            .expect("16 bytes");
        RequestId(u128::from_le_bytes(bytes).max(1))
    }

    fn ns(&self, id: &str) -> String {
        format!("{}{id}", self.options.namespace)
    }

    fn scale(&self, sku: &str) -> u8 {
        self.scales.get(sku).copied().unwrap_or(0)
    }

    /// A display quantity in base units; a bad one is the ledger's `invalid`, decided here.
    fn qty(&self, sku: &str, text: &str) -> Result<i64, Outcome> {
        Qty::parse(text)
            .and_then(|q| q.to_base(self.scale(sku)))
            .map_err(|_| local_invalid())
    }

    /// A line's quantity in base units, or the local `invalid`.
    fn line_qty(&self, sku: &str, qty: &Qty) -> Result<i64, Outcome> {
        qty.to_base(self.scale(sku)).map_err(|_| local_invalid())
    }

    fn target(&self, loc: &str) -> Target {
        if loc == "all" {
            Target::All
        } else if self.groups.contains(loc) {
            Target::Group(GroupId(self.ns(loc)))
        } else {
            Target::Location(LocationId(self.ns(loc)))
        }
    }

    /// `SKU@PLACE:QTY` (the grammar's [`LineText`]) as a line; a bad quantity is the local
    /// `invalid`.
    fn line(&self, text: &str) -> Result<Result<Line, Outcome>, String> {
        let line = match LineText::parse(text) {
            Ok(line) => line,
            Err(e) if e.is_quantity() => return Ok(Err(local_invalid())),
            Err(e) => return Err(e.to_string()),
        };
        Ok(self.line_qty(&line.sku, &line.qty).map(|qty| Line {
            sku: SkuId(self.ns(&line.sku)),
            target: self.target(&line.place),
            qty,
        }))
    }

    /// `SKU@LOCATION:QTY` as a located line (fulfil, cancel).
    fn located(&self, text: &str) -> Result<Result<LocatedLine, Outcome>, String> {
        let line = match LineText::parse(text) {
            Ok(line) => line,
            Err(e) if e.is_quantity() => return Ok(Err(local_invalid())),
            Err(e) => return Err(e.to_string()),
        };
        Ok(self.line_qty(&line.sku, &line.qty).map(|qty| LocatedLine {
            sku: SkuId(self.ns(&line.sku)),
            location: LocationId(self.ns(&line.place)),
            qty,
        }))
    }

    /// `SKU@LOC` split into namespaced ids.
    fn at(&self, text: &str) -> Result<(SkuId, LocationId, String), String> {
        let at = SkuAt::parse(text).map_err(|e| e.to_string())?;
        Ok((
            SkuId(self.ns(&at.sku)),
            LocationId(self.ns(&at.location)),
            at.sku,
        ))
    }

    /// Turns a command line into a write.
    fn prepare(&mut self, words: &[&str]) -> Result<Prepared, String> {
        let arg = |i: usize| {
            words
                .get(i)
                .copied()
                .ok_or_else(|| format!("{} needs more arguments", words[0]))
        };
        let (positional, options) = split_options(&words[1..]);
        let option = |name: &str| options.get(name).copied();
        let reason = |default: &str| Reason::from(option("reason").unwrap_or(default));
        macro_rules! qty {
            ($sku:expr, $text:expr) => {
                match self.qty($sku, $text) {
                    Ok(q) => q,
                    Err(outcome) => return Ok(Prepared::Local(outcome)),
                }
            };
        }
        let command = match words[0] {
            "location" => {
                let kind = LocationKind::parse(arg(2)?)
                    .ok_or_else(|| format!("unknown kind {}", arg(2).unwrap_or("")))?;
                let coordinates = match (option("lat"), option("lon")) {
                    (Some(lat), Some(lon)) => Some(grammar::coordinates(
                        grammar::degrees_e6(lat).map_err(|e| format!("lat: {e}"))?,
                        grammar::degrees_e6(lon).map_err(|e| format!("lon: {e}"))?,
                    )),
                    _ => None,
                };
                Command::DefineLocation(LocationDef {
                    location: LocationId(self.ns(arg(1)?)),
                    kind,
                    pickup: positional.contains(&"pickup"),
                    coordinates,
                    channels: option("channels")
                        .map(|c| c.split(',').map(ChannelId::from).collect()),
                })
            }
            "group" => {
                let group = arg(1)?;
                self.groups.insert(group.to_owned());
                Command::DefineGroup {
                    group: GroupId(self.ns(group)),
                    locations: positional[2..]
                        .iter()
                        .map(|l| LocationId(self.ns(l)))
                        .collect(),
                }
            }
            "sku" => {
                let scale: u8 = option("scale")
                    .unwrap_or("0")
                    .parse()
                    .map_err(|_| "bad scale")?;
                self.scales.insert(arg(1)?.to_owned(), scale);
                Command::DefineSku {
                    sku: SkuId(self.ns(arg(1)?)),
                    scale,
                }
            }
            "set_on_hand" => {
                let (sku, location, raw) = self.at(arg(1)?)?;
                let expected = match option("expected") {
                    Some(e) => Some(qty!(&raw, e)),
                    None => None,
                };
                Command::SetOnHand {
                    qty: qty!(&raw, arg(2)?),
                    sku,
                    location,
                    reason: reason("count"),
                    expected,
                }
            }
            "adjust" => {
                let (sku, location, raw) = self.at(arg(1)?)?;
                Command::Adjust {
                    delta: qty!(&raw, arg(2)?),
                    sku,
                    location,
                    reason: reason("adjust"),
                }
            }
            "safety_stock" => {
                let (sku, location, raw) = self.at(arg(1)?)?;
                Command::SetSafetyStock {
                    qty: qty!(&raw, arg(2)?),
                    sku,
                    location,
                }
            }
            "unavailable" => {
                let (sku, location, raw) = self.at(arg(1)?)?;
                Command::MarkUnavailable {
                    qty: qty!(&raw, arg(2)?),
                    sku,
                    location,
                    reason: reason("unavailable"),
                }
            }
            "restore" => {
                let (sku, location, raw) = self.at(arg(1)?)?;
                Command::RestoreUnavailable {
                    qty: qty!(&raw, arg(2)?),
                    sku,
                    location,
                    reason: reason("restore"),
                }
            }
            "sell" => {
                let (sku, location, raw) = self.at(arg(1)?)?;
                Command::Sell {
                    qty: qty!(&raw, arg(2)?),
                    sku,
                    location,
                }
            }
            "reserve" => {
                let ttl_ms = duration(option("ttl").ok_or("reserve needs ttl=")?)?;
                let mut lines = Vec::new();
                for text in &positional[3..] {
                    match self.line(text)? {
                        Ok(line) => lines.push(line),
                        Err(outcome) => return Ok(Prepared::Local(outcome)),
                    }
                }
                Command::Reserve {
                    reservation: ReservationId(self.ns(arg(1)?)),
                    channel: ChannelId::from(arg(2)?),
                    lines,
                    ttl_ms,
                }
            }
            "extend" => Command::Extend {
                reservation: ReservationId(self.ns(arg(1)?)),
                ttl_ms: duration(option("ttl").ok_or("extend needs ttl=")?)?,
            },
            "release" => Command::Release {
                reservation: ReservationId(self.ns(arg(1)?)),
            },
            "order" => return self.order(&positional, option("deadline")),
            "fulfil" | "cancel" => {
                let mut lines = Vec::new();
                for text in &positional[2..] {
                    match self.located(text)? {
                        Ok(line) => lines.push(line),
                        Err(outcome) => return Ok(Prepared::Local(outcome)),
                    }
                }
                let order = OrderId(self.ns(arg(1)?));
                if words[0] == "fulfil" {
                    Command::Fulfil { order, lines }
                } else {
                    Command::Cancel {
                        order,
                        lines: (!lines.is_empty()).then_some(lines),
                    }
                }
            }
            "reallocate" => {
                let FromTo { from, to } = FromTo::parse(arg(3)?).map_err(|e| e.to_string())?;
                Command::Reallocate {
                    order: OrderId(self.ns(arg(1)?)),
                    sku: SkuId(self.ns(arg(2)?)),
                    from: LocationId(self.ns(&from)),
                    to: LocationId(self.ns(&to)),
                    qty: qty!(arg(2)?, arg(4)?),
                }
            }
            "ready" => Command::ReadyForPickup {
                order: OrderId(self.ns(arg(1)?)),
            },
            "picked_up" => Command::PickedUp {
                order: OrderId(self.ns(arg(1)?)),
            },
            "return" => {
                let mut lines = Vec::new();
                for text in &positional[3..] {
                    let line = match ReturnText::parse(text) {
                        Ok(line) => line,
                        Err(e) if e.is_quantity() => return Ok(Prepared::Local(local_invalid())),
                        Err(e) => return Err(e.to_string()),
                    };
                    lines.push(ReturnLine {
                        sku: SkuId(self.ns(&line.sku)),
                        qty: match self.line_qty(&line.sku, &line.qty) {
                            Ok(q) => q,
                            Err(outcome) => return Ok(Prepared::Local(outcome)),
                        },
                        received_at: LocationId(self.ns(&line.received_at)),
                        disposition: line.disposition,
                    });
                }
                Command::Return {
                    rma: RmaId(self.ns(arg(1)?)),
                    order: OrderId(self.ns(arg(2)?)),
                    lines,
                }
            }
            "ship_transfer" => {
                self.transfers
                    .insert(arg(1)?.to_owned(), arg(2)?.to_owned());
                let FromTo { from, to } = FromTo::parse(arg(3)?).map_err(|e| e.to_string())?;
                Command::ShipTransfer {
                    transfer: TransferId(self.ns(arg(1)?)),
                    sku: SkuId(self.ns(arg(2)?)),
                    from: LocationId(self.ns(&from)),
                    to: LocationId(self.ns(&to)),
                    qty: qty!(arg(2)?, arg(4)?),
                }
            }
            "receive_transfer" => {
                // The transfer's SKU is not on this line; its scale comes from the transfer.
                let transfer = arg(1)?;
                let scale_sku = self.transfers.get(transfer).cloned().unwrap_or_default();
                Command::ReceiveTransfer {
                    transfer: TransferId(self.ns(transfer)),
                    received: qty!(&scale_sku, option("received").unwrap_or("0")),
                    damaged: qty!(&scale_sku, option("damaged").unwrap_or("0")),
                }
            }
            other => return Err(format!("unknown command {other:?}")),
        };
        Ok(Prepared::Send(command))
    }

    /// `order ORD from RES ship|pickup` or `order ORD CHANNEL LINE... ship|pickup`.
    fn order(&self, positional: &[&str], deadline: Option<&str>) -> Result<Prepared, String> {
        let order = OrderId(self.ns(positional.get(1).ok_or("order needs an id")?));
        let how = *positional.last().ok_or("order needs ship|pickup")?;
        let fulfilment = match how {
            "ship" => Fulfilment::Ship,
            "pickup" => Fulfilment::Pickup {
                deadline_ms: deadline
                    .map(duration)
                    .transpose()?
                    .unwrap_or(DEFAULT_PICKUP_MS),
            },
            other => return Err(format!("order needs ship|pickup, got {other:?}")),
        };
        let source = if positional.get(2) == Some(&"from") {
            OrderSource::Reservation(ReservationId(
                self.ns(positional.get(3).ok_or("order from needs a reservation")?),
            ))
        } else {
            let channel = ChannelId::from(*positional.get(2).ok_or("order needs a channel")?);
            let mut lines = Vec::new();
            for text in &positional[3..positional.len() - 1] {
                match self.line(text)? {
                    Ok(line) => lines.push(line),
                    Err(outcome) => return Ok(Prepared::Local(outcome)),
                }
            }
            OrderSource::Lines { channel, lines }
        };
        Ok(Prepared::Send(Command::PlaceOrder {
            order,
            source,
            fulfilment,
        }))
    }

    /// `expect ...` lines.
    fn check(&self, target: &mut dyn CaseTarget, words: &[&str]) -> Result<(), String> {
        match words.first().copied() {
            Some("reservation") => {
                let id = words.get(1).ok_or("expect reservation needs an id")?;
                let want = words.get(2).ok_or("expect reservation needs a state")?;
                let got = match target.query(Query::Reservation(ReservationId(self.ns(id))))? {
                    Ok(Answer::Reservation(r)) => r.state.as_str().to_owned(),
                    Ok(other) => return Err(format!("unexpected answer {other:?}")),
                    Err(rejection) => rejection.code().as_str().to_owned(),
                };
                let known = [
                    ReservationState::Active,
                    ReservationState::Released,
                    ReservationState::Expired,
                    ReservationState::Placed,
                ];
                if !known.iter().any(|s| s.as_str() == *want) {
                    return Err(format!("unknown reservation state {want:?}"));
                }
                compare(
                    &format!("reservation {id} {want}"),
                    &format!("reservation {id} {got}"),
                )
            }
            Some("order") => {
                let id = words.get(1).ok_or("expect order needs an id")?;
                let want = words.get(2).ok_or("expect order needs a state")?;
                let got = match target.query(Query::Order(OrderId(self.ns(id))))? {
                    Ok(Answer::Order(o)) => o.state.as_str().to_owned(),
                    Ok(other) => return Err(format!("unexpected answer {other:?}")),
                    Err(rejection) => rejection.code().as_str().to_owned(),
                };
                let known = [
                    OrderState::Open,
                    OrderState::PartiallyFulfilled,
                    OrderState::Fulfilled,
                    OrderState::Cancelled,
                    OrderState::Closed,
                ];
                if !known.iter().any(|s| s.as_str() == *want) {
                    return Err(format!("unknown order state {want:?}"));
                }
                compare(&format!("order {id} {want}"), &format!("order {id} {got}"))
            }
            Some(at) => self.check_balance(target, at, &words[1..]),
            None => Err("expect needs something to check".to_owned()),
        }
    }

    fn check_balance(
        &self,
        target: &mut dyn CaseTarget,
        at: &str,
        fields: &[&str],
    ) -> Result<(), String> {
        let (sku, loc) = at
            .split_once('@')
            .ok_or_else(|| format!("expected SKU@LOC, got {at:?}"))?;
        let where_ = self.target(loc);
        let query = Query::Availability {
            skus: vec![SkuId(self.ns(sku))],
            target: where_.clone(),
            channel: ChannelId::from("web"),
        };
        let entry = match target.query(query)? {
            Ok(Answer::Availability(mut v)) if v.len() == 1 => v.remove(0),
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(rejection) => return Err(format!("query rejected: {rejection}")),
        };
        let scale = self.scale(sku);
        let single = matches!(where_, Target::Location(_));
        let balance = entry.rows.first().map(|r| r.balance).unwrap_or_default();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for field in fields {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| format!("bad check {field:?}"))?;
            let value = parse_display(value, scale).map_err(|e| format!("{field}: {e}"))?;
            let actual = match (name, single) {
                ("available", _) => entry.ats,
                ("available[pos]", _) => entry.ats_pos,
                ("on_hand", true) => balance.on_hand,
                ("reserved", true) => balance.reserved,
                ("allocated", true) => balance.allocated,
                ("unavailable", true) => balance.unavailable,
                ("safety_stock", true) => balance.safety_stock,
                ("incoming", true) => balance.incoming,
                _ => return Err(format!("cannot check {name} at {loc}")),
            };
            want.push(format!("{name}={}", format_display(value, scale)));
            got.push(format!("{name}={}", format_display(actual, scale)));
        }
        compare(&want.join(" "), &got.join(" "))
    }
}

/// The case directories of a workspace at `root`: the shared cases (`$STOCKD_SHARED/cases`,
/// else `../shared/cases` next to the workspace), then the project's own (`tests/cases`).
pub fn case_dirs(root: &std::path::Path) -> [std::path::PathBuf; 2] {
    let shared = std::env::var_os("STOCKD_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    [shared.join("cases"), root.join("tests/cases")]
}

/// The `.case` files of `dir`, sorted by name.
pub fn case_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "case") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

static FRESH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn compare(want: &str, got: &str) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!("expected {want}, got {got}"))
    }
}

fn check_outcome(expected: Code, outcome: &Outcome) -> Result<(), String> {
    let got = code_of(outcome);
    if got == expected {
        return Ok(());
    }
    match outcome {
        Ok(_) => Err(format!("expected {expected}, got ok")),
        Err(rejection) => Err(format!("expected {expected}, got {rejection}")),
    }
}

fn show_counts(counts: &BTreeMap<Code, usize>) -> String {
    counts
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits `command => expected` (the last `=>`).
fn split_expected(line: &str) -> (&str, Option<&str>) {
    match line.rsplit_once("=>") {
        Some((body, expected)) => (body.trim(), Some(expected.trim())),
        None => (line, None),
    }
}

/// Splits a leading `request KEY:` off a command.
fn split_request_key<'w>(words: &'w [&'w str]) -> Result<(Option<&'w str>, Vec<&'w str>), String> {
    if words.first() != Some(&"request") {
        return Ok((None, words.to_vec()));
    }
    let key = words
        .get(1)
        .and_then(|k| k.strip_suffix(':'))
        .ok_or("request needs `KEY:`")?;
    if words.len() < 3 {
        return Err("request needs a command".to_owned());
    }
    Ok((Some(key), words[2..].to_vec()))
}

/// Splits `name=value` options from positional words.
fn split_options<'w>(words: &[&'w str]) -> (Vec<&'w str>, BTreeMap<&'w str, &'w str>) {
    // Index 0 stands for the command word, so positional[i] is words[i].
    let mut positional = vec![""];
    let mut options = BTreeMap::new();
    for word in words {
        match word.split_once('=') {
            Some((name, value)) => {
                options.insert(name, value);
            }
            None => positional.push(word),
        }
    }
    (positional, options)
}

fn parse_code(text: &str) -> Result<Code, String> {
    Code::parse(text).ok_or_else(|| format!("unknown outcome code {text:?}"))
}

/// A duration in ms ([`grammar::duration_ms`]).
fn duration(text: &str) -> Result<u64, String> {
    grammar::duration_ms(text).map_err(|e| e.to_string())
}

/// The outcome of a quantity the ledger would reject as `invalid`, decided without sending.
fn local_invalid() -> Outcome {
    Err(Rejection::Invalid {
        reason: InvalidReason::QtyNotPositive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &str) {
        let report = run_case(
            "t",
            text,
            &mut EngineTarget::default(),
            &RunOptions::default(),
        );
        assert_eq!(report.to_string(), expected);
    }

    #[test]
    fn reports_the_first_failing_line() {
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 5\nexpect A@wh1 on_hand=5 available=5",
            "PASS t",
        );
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 5\nexpect A@wh1 on_hand=4",
            "FAIL t: line 3: expected on_hand=4, got on_hand=5",
        );
        check(
            "location wh1 warehouse\nreserve r1 web A@wh1:1 ttl=1m",
            "FAIL t: line 2: expected ok, got insufficient_stock: A@wh1: requested 1, available 0",
        );
        check(
            "location wh1 warehouse\nbogus x",
            "FAIL t: line 2: unknown command \"bogus\"",
        );
    }

    /// Ids may contain ':' (SPEC section 1), so `SKU@LOC:QTY` splits at the LAST ':', as
    /// stockctl reads the same line (both use `grammar`).
    #[test]
    fn ids_with_colons_read_like_stockctl() {
        check(
            "location eu:par warehouse\nset_on_hand A@eu:par 3\nreserve r web A@eu:par:2 ttl=1m\n\
             fulfil o A@eu:par:1 => not_found\nreturn m o A@eu:par:1:restock => not_found\n\
             expect A@eu:par reserved=2 available=1",
            "PASS t",
        );
    }

    #[test]
    fn too_many_decimals_is_invalid_locally() {
        check(
            "location wh1 warehouse\nsku C scale=2\nset_on_hand C@wh1 1\nreserve r web C@wh1:0.001 ttl=1m => invalid\nexpect C@wh1 available=1",
            "PASS t",
        );
    }

    #[test]
    fn concurrent_counts_must_match_exactly() {
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 2\nconcurrent 3 reserve r{i} web A@wh1:1 ttl=1m => ok:2 insufficient_stock:1",
            "PASS t",
        );
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 2\nconcurrent 3 reserve r{i} web A@wh1:1 ttl=1m => ok:3",
            "FAIL t: line 3: expected ok:3, got ok:2 insufficient_stock:1",
        );
    }
}

//! The ledger state and the batch apply loop.
//!
//! Order of work for one batch ([`Ledger::apply`]):
//! 1. time := max(previous time, batch timestamp) — time never goes backwards (SPEC section 4);
//! 2. every hold with `expires_at <= time` is released and every pickup with
//!    `deadline <= time` cancelled, in (deadline, creation) order;
//! 3. dedup entries and finished objects past their retention are dropped;
//! 4. each request: a replayed request id returns its remembered outcome; otherwise the command
//!    runs all-or-nothing (every check before any change) and its outcome is remembered.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::balance::Balance;
use crate::command::{Command, LocationDef, Request};
use crate::ids::{ChannelId, GroupId, OrderId, RmaId, SkuId, TransferId};
use crate::limits;
use crate::outcome::{InvalidReason, Outcome, Rejection, Reply};
use crate::query::{Cause, ReservationState, TransferState};

/// Retention settings of a ledger. Part of the replicated state (and of snapshots): every
/// replica must use the same. Each value is capped by its `_DEFAULT` constant in
/// [`crate::limits`] being the default; tests lower them to exercise eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// A request id is remembered for this long, ms.
    pub dedup_window_ms: u64,
    /// At most this many request outcomes are remembered (oldest evicted first).
    pub dedup_entries: usize,
    /// Change-feed events retained.
    pub feed_events: usize,
    /// Finished objects stay queryable this long, ms.
    pub retired_ms: u64,
    /// At most this many finished objects are retained (oldest evicted first).
    pub retired_entries: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dedup_window_ms: limits::DEDUP_WINDOW_MS_DEFAULT,
            dedup_entries: limits::DEDUP_ENTRIES_DEFAULT,
            feed_events: limits::FEED_EVENTS_DEFAULT,
            retired_ms: limits::RETIRED_MS_DEFAULT,
            retired_entries: limits::RETIRED_ENTRIES_DEFAULT,
        }
    }
}

/// Position and time of a batch, stamped by the leader (SPEC section 3, Expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// Log index of the batch; strictly increasing.
    pub log_index: u64,
    /// Leader's clock, ms since the epoch. An earlier value than the previous batch's is
    /// raised to it.
    pub timestamp_ms: u64,
}

/// Index of an interned SKU.
pub(crate) type SkuIdx = u32;
/// Index of a location, in definition order.
pub(crate) type LocIdx = u32;
/// Index of an interned channel.
pub(crate) type ChanIdx = u16;

/// Key of a balance: SKU index in the high half, location index in the low half.
pub(crate) fn key(sku: SkuIdx, loc: LocIdx) -> u64 {
    (u64::from(sku) << 32) | u64::from(loc)
}

/// The (SKU, location) of a balance key.
pub(crate) fn unkey(key: u64) -> (SkuIdx, LocIdx) {
    ((key >> 32) as SkuIdx, key as LocIdx)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SkuEntry {
    pub id: SkuId,
    pub scale: u8,
    /// Locations holding a balance of this SKU, ascending (= definition order).
    pub locations: Vec<LocIdx>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LocationEntry {
    pub def: LocationDef,
    /// Allowed channels, interned and sorted; `None` allows all.
    pub channels: Option<Vec<ChanIdx>>,
}

/// Key of the reservation and order maps: the client's id, shared (not copied) with the
/// deadline index and the retirement queue.
pub(crate) type Key = std::sync::Arc<str>;

/// The lines of a hold or a placed request: inline for up to two lines (most checkouts).
pub(crate) type HeldVec = SmallVec<[Held; 2]>;

/// A held or allocated (SKU, location) quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held {
    pub line: u16,
    pub sku: SkuIdx,
    pub loc: LocIdx,
    pub qty: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reservation {
    pub seq: u64,
    pub channel: ChanIdx,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub state: ReservationState,
    pub held: HeldVec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderLine {
    pub sku: SkuIdx,
    pub loc: LocIdx,
    pub pickup: bool,
    pub ordered: i64,
    pub fulfilled: i64,
    pub cancelled: i64,
}

impl OrderLine {
    pub fn unfulfilled(&self) -> i64 {
        self.ordered - self.fulfilled - self.cancelled
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Order {
    pub seq: u64,
    pub channel: ChanIdx,
    pub created_at_ms: u64,
    pub lines: Vec<OrderLine>,
    /// Units returned per SKU.
    pub returned: Vec<(SkuIdx, i64)>,
    pub pickup_deadline_ms: Option<u64>,
    /// The pickup deadline passed and the pickup lines were cancelled.
    pub pickup_expired: bool,
    pub ready: bool,
}

impl Order {
    pub fn unfulfilled(&self) -> i64 {
        self.lines.iter().map(OrderLine::unfulfilled).sum()
    }

    pub fn line_mut(&mut self, sku: SkuIdx, loc: LocIdx) -> Option<&mut OrderLine> {
        self.lines.iter_mut().find(|l| l.sku == sku && l.loc == loc)
    }

    pub fn line(&self, sku: SkuIdx, loc: LocIdx) -> Option<&OrderLine> {
        self.lines.iter().find(|l| l.sku == sku && l.loc == loc)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RmaLine {
    pub sku: SkuIdx,
    pub qty: i64,
    pub loc: LocIdx,
    pub disposition: crate::command::Disposition,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rma {
    pub order: OrderId,
    pub lines: Vec<RmaLine>,
    pub received_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Transfer {
    pub sku: SkuIdx,
    pub from: LocIdx,
    pub to: LocIdx,
    pub qty: i64,
    pub state: TransferState,
    pub received: i64,
    pub damaged: i64,
    pub shipped_at_ms: u64,
}

/// What a deadline entry refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Deadline {
    Hold(Key),
    Pickup(Key),
}

/// A finished object waiting for its retention to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Retired {
    Reservation(Key),
    Order(Key),
    Rma(RmaId),
    Transfer(TransferId),
}

/// A change-feed entry, with interned ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventRecord {
    pub seq: u64,
    pub log_index: u64,
    pub timestamp_ms: u64,
    /// 0 = no request (expiry).
    pub request_id: u128,
    pub cause: Cause,
    pub key: u64,
    pub balance: Balance,
    pub shortfall: i64,
}

/// A request's result as the dedup table keeps it: compact for the common replies (a hold's or
/// an order's lines by interned location, no heap for up to two lines), the full outcome
/// otherwise. [`Ledger::expand`] turns it back into the outcome, identical every time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Remembered {
    Outcome(Outcome),
    Reserved {
        expires_at_ms: u64,
        held: HeldVec,
    },
    OrderPlaced {
        pickup_deadline_ms: Option<u64>,
        held: HeldVec,
    },
}

/// The replicated ledger: stock per SKU and location, holds, orders, returns and transfers.
///
/// Sans-IO and deterministic: no clock (time comes in [`BatchHeader`]), no randomness, no
/// iteration over hash maps that reaches results or snapshots. Writes go through
/// [`Ledger::apply`]; reads through [`Ledger::query`] (`&self`).
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(crate) config: Config,
    pub(crate) now_ms: u64,
    pub(crate) applied_index: u64,
    pub(crate) skus: Vec<SkuEntry>,
    pub(crate) sku_index: FxHashMap<SkuId, SkuIdx>,
    pub(crate) locations: Vec<LocationEntry>,
    pub(crate) location_index: FxHashMap<crate::ids::LocationId, LocIdx>,
    pub(crate) groups: BTreeMap<GroupId, Vec<LocIdx>>,
    pub(crate) channels: Vec<ChannelId>,
    pub(crate) channel_index: FxHashMap<ChannelId, ChanIdx>,
    pub(crate) balances: FxHashMap<u64, Balance>,
    pub(crate) reservations: FxHashMap<Key, Reservation>,
    pub(crate) live_reservations: usize,
    /// (deadline ms, object seq) -> what expires then. Holds and pickups.
    pub(crate) deadlines: crate::deadlines::Deadlines,
    pub(crate) orders: FxHashMap<Key, Order>,
    pub(crate) open_orders: usize,
    pub(crate) rmas: FxHashMap<RmaId, Rma>,
    pub(crate) transfers: FxHashMap<TransferId, Transfer>,
    pub(crate) open_transfers: usize,
    /// Finished objects in the order they finished (time is monotonic, so also by time).
    pub(crate) retired: VecDeque<(u64, Retired)>,
    pub(crate) dedup: FxHashMap<u128, Remembered>,
    /// Remembered request ids in arrival order, with their batch time.
    pub(crate) dedup_order: VecDeque<(u64, u128)>,
    pub(crate) feed: VecDeque<EventRecord>,
    pub(crate) feed_next_seq: u64,
    /// Next object sequence number (reservations and orders), for deterministic tie-breaks.
    pub(crate) next_seq: u64,
    /// Request being applied (0 between requests), stamped on change events.
    pub(crate) current_request: u128,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(Config::default())
    }
}

/// Shorthand: reject with `invalid` for `reason`.
pub(crate) fn invalid<T>(reason: InvalidReason) -> Result<T, Rejection> {
    Err(Rejection::invalid(reason))
}

/// Checks an id's form, naming the field in the rejection.
pub(crate) fn check_id(id: &str, field: &str) -> Result<(), Rejection> {
    if crate::ids::is_valid_id(id) {
        Ok(())
    } else {
        invalid(InvalidReason::BadId {
            field: field.to_owned(),
        })
    }
}

/// Checks a quantity that must be in 1..=QTY_MAX.
pub(crate) fn check_positive(qty: i64) -> Result<(), Rejection> {
    if qty <= 0 {
        invalid(InvalidReason::QtyNotPositive)
    } else if qty > limits::QTY_MAX {
        invalid(InvalidReason::QtyTooLarge)
    } else {
        Ok(())
    }
}

/// Checks a quantity that must be in 0..=QTY_MAX.
pub(crate) fn check_non_negative(qty: i64) -> Result<(), Rejection> {
    if qty < 0 {
        invalid(InvalidReason::QtyNegative)
    } else if qty > limits::QTY_MAX {
        invalid(InvalidReason::QtyTooLarge)
    } else {
        Ok(())
    }
}

/// Checks that `value` stays within `0..=QTY_MAX` after a change.
pub(crate) fn check_field(value: i64) -> Result<(), Rejection> {
    if value > limits::QTY_MAX {
        invalid(InvalidReason::QtyTooLarge)
    } else {
        Ok(())
    }
}

impl Ledger {
    /// An empty ledger with the given retention settings (each capped by its default).
    pub fn new(config: Config) -> Self {
        let config = Config {
            dedup_window_ms: config.dedup_window_ms.min(limits::DEDUP_WINDOW_MS_DEFAULT),
            dedup_entries: config.dedup_entries.clamp(1, limits::DEDUP_ENTRIES_DEFAULT),
            feed_events: config.feed_events.clamp(1, limits::FEED_EVENTS_DEFAULT),
            retired_ms: config.retired_ms.min(limits::RETIRED_MS_DEFAULT),
            retired_entries: config
                .retired_entries
                .clamp(1, limits::RETIRED_ENTRIES_DEFAULT),
        };
        let mut ledger = Ledger {
            config,
            now_ms: 0,
            applied_index: 0,
            skus: Vec::new(),
            sku_index: FxHashMap::default(),
            locations: Vec::new(),
            location_index: FxHashMap::default(),
            groups: BTreeMap::new(),
            channels: Vec::new(),
            channel_index: FxHashMap::default(),
            balances: FxHashMap::default(),
            reservations: FxHashMap::default(),
            live_reservations: 0,
            deadlines: Default::default(),
            orders: FxHashMap::default(),
            open_orders: 0,
            rmas: FxHashMap::default(),
            transfers: FxHashMap::default(),
            open_transfers: 0,
            retired: VecDeque::new(),
            dedup: FxHashMap::default(),
            dedup_order: VecDeque::new(),
            feed: VecDeque::new(),
            feed_next_seq: 1,
            next_seq: 1,
            current_request: 0,
        };
        // `pos` is channel 0: the channel whose ATS ignores safety stock.
        let pos = ledger.intern_channel(&ChannelId::from(ChannelId::POS));
        debug_assert_eq!(pos, Some(0));
        ledger
    }

    /// The retention settings.
    pub fn config(&self) -> Config {
        self.config
    }

    /// `now + duration_ms` for a duration already checked against its maximum: cannot overflow
    /// because `now` is at most [`limits::TIMESTAMP_MS_MAX`].
    pub(crate) fn deadline(&self, duration_ms: u64) -> u64 {
        debug_assert!(duration_ms <= limits::PICKUP_DEADLINE_MS_MAX);
        self.now_ms + duration_ms
    }

    /// Timestamp of the last applied batch, ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Log index of the last applied batch.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The earliest hold expiry or pickup deadline that may still be pending, ms since the
    /// epoch (never later than the earliest pending one): the leader proposes a batch (possibly
    /// empty) once its clock passes it, so deadlines fire on time even when no client writes
    /// (the change feed then shows them at the right time).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first_time()
    }

    /// Applies one batch of requests and returns one outcome per request, in order.
    ///
    /// The engine never panics on input: a malformed request gets `invalid`. It panics only on
    /// a caller bug (a log index that does not increase) or a broken ledger invariant: either
    /// must stop the node rather than let replicas diverge. A batch of more than
    /// [`limits::BATCH_REQUESTS_MAX`] requests is applied as an empty batch (time still moves)
    /// and every request is rejected `invalid`.
    pub fn apply(&mut self, header: BatchHeader, requests: &[Request]) -> Vec<Outcome> {
        assert!(
            header.log_index > self.applied_index,
            "log index {} after {}",
            header.log_index,
            self.applied_index
        );
        self.applied_index = header.log_index;
        self.now_ms = self
            .now_ms
            .max(header.timestamp_ms.min(limits::TIMESTAMP_MS_MAX));
        self.expire_deadlines();
        self.prune_retention();
        if requests.len() > limits::BATCH_REQUESTS_MAX {
            let rejection = Rejection::limit("BATCH_REQUESTS_MAX");
            return requests.iter().map(|_| Err(rejection.clone())).collect();
        }
        requests
            .iter()
            .map(|request| self.apply_one(request))
            .collect()
    }

    fn apply_one(&mut self, request: &Request) -> Outcome {
        let id = request.request_id.0;
        if id == 0 {
            return invalid(InvalidReason::ZeroRequestId);
        }
        if let Some(remembered) = self.dedup.get(&id) {
            return self.expand(remembered);
        }
        self.current_request = id;
        let remembered = self.execute(&request.command);
        self.current_request = 0;
        let outcome = self.expand(&remembered);
        self.remember(id, remembered);
        outcome
    }

    /// The outcome a remembered result stands for (the same value every time).
    fn expand(&self, remembered: &Remembered) -> Outcome {
        match remembered {
            Remembered::Outcome(outcome) => outcome.clone(),
            Remembered::Reserved {
                expires_at_ms,
                held,
            } => Ok(Reply::Reserved {
                expires_at_ms: *expires_at_ms,
                allocations: self.allocations(held),
            }),
            Remembered::OrderPlaced {
                pickup_deadline_ms,
                held,
            } => Ok(Reply::OrderPlaced {
                allocations: self.allocations(held),
                pickup_deadline_ms: *pickup_deadline_ms,
            }),
        }
    }

    fn execute(&mut self, command: &Command) -> Remembered {
        let outcome = match command {
            Command::Reserve {
                reservation,
                channel,
                lines,
                ttl_ms,
            } => {
                return self
                    .reserve(reservation, channel, lines, *ttl_ms)
                    .unwrap_or_else(|r| Remembered::Outcome(Err(r)));
            }
            Command::PlaceOrder {
                order,
                source,
                fulfilment,
            } => {
                return self
                    .place_order(order, source, *fulfilment)
                    .unwrap_or_else(|r| Remembered::Outcome(Err(r)));
            }
            other => other,
        };
        Remembered::Outcome(self.execute_other(outcome))
    }

    fn execute_other(&mut self, command: &Command) -> Outcome {
        match command {
            Command::DefineLocation(def) => self.define_location(def),
            Command::DefineGroup { group, locations } => self.define_group(group, locations),
            Command::DefineSku { sku, scale } => self.define_sku(sku, *scale),
            Command::SetOnHand {
                sku,
                location,
                qty,
                reason,
                expected,
            } => self.set_on_hand(sku, location, *qty, reason, *expected),
            Command::Adjust {
                sku,
                location,
                delta,
                reason,
            } => self.adjust(sku, location, *delta, reason),
            Command::SetSafetyStock { sku, location, qty } => {
                self.set_safety_stock(sku, location, *qty)
            }
            Command::MarkUnavailable {
                sku,
                location,
                qty,
                reason,
            } => self.mark_unavailable(sku, location, *qty, reason),
            Command::RestoreUnavailable {
                sku,
                location,
                qty,
                reason,
            } => self.restore_unavailable(sku, location, *qty, reason),
            Command::Sell { sku, location, qty } => self.sell(sku, location, *qty),
            Command::Reserve { .. } | Command::PlaceOrder { .. } => {
                unreachable!("handled by execute")
            }
            Command::Extend {
                reservation,
                ttl_ms,
            } => self.extend(reservation, *ttl_ms),
            Command::Release { reservation } => self.release(reservation),
            Command::Fulfil { order, lines } => self.fulfil(order, lines),
            Command::Cancel { order, lines } => self.cancel(order, lines.as_deref()),
            Command::Reallocate {
                order,
                sku,
                from,
                to,
                qty,
            } => self.reallocate(order, sku, from, to, *qty),
            Command::ReadyForPickup { order } => self.ready_for_pickup(order),
            Command::PickedUp { order } => self.picked_up(order),
            Command::Return { rma, order, lines } => self.receive_return(rma, order, lines),
            Command::ShipTransfer {
                transfer,
                sku,
                from,
                to,
                qty,
            } => self.ship_transfer(transfer, sku, from, to, *qty),
            Command::ReceiveTransfer {
                transfer,
                received,
                damaged,
            } => self.receive_transfer(transfer, *received, *damaged),
        }
    }

    // ---- dedup and retention ----

    fn remember(&mut self, id: u128, remembered: Remembered) {
        while self.dedup_order.len() >= self.config.dedup_entries {
            self.forget_oldest_request();
        }
        let previous = self.dedup.insert(id, remembered);
        assert!(previous.is_none(), "request id remembered twice");
        self.dedup_order.push_back((self.now_ms, id));
    }

    fn forget_oldest_request(&mut self) {
        if let Some((_, id)) = self.dedup_order.pop_front() {
            let removed = self.dedup.remove(&id);
            assert!(removed.is_some(), "dedup order and table out of step");
        }
    }

    fn prune_retention(&mut self) {
        let dedup_horizon = self.now_ms.saturating_sub(self.config.dedup_window_ms);
        while self
            .dedup_order
            .front()
            .is_some_and(|(at, _)| *at < dedup_horizon)
        {
            self.forget_oldest_request();
        }
        let retired_horizon = self.now_ms.saturating_sub(self.config.retired_ms);
        while self
            .retired
            .front()
            .is_some_and(|(at, _)| *at < retired_horizon)
            || self.retired.len() > self.config.retired_entries
        {
            self.drop_oldest_retired();
        }
    }

    fn drop_oldest_retired(&mut self) {
        let Some((_, retired)) = self.retired.pop_front() else {
            return;
        };
        match retired {
            Retired::Reservation(id) => {
                let r = self.reservations.remove(&*id);
                assert!(r.is_some_and(|r| r.state != ReservationState::Active));
            }
            Retired::Order(id) => {
                let o = self.orders.remove(&*id);
                assert!(o.is_some_and(|o| o.unfulfilled() == 0));
            }
            Retired::Rma(id) => {
                assert!(self.rmas.remove(&id).is_some());
            }
            Retired::Transfer(id) => {
                let t = self.transfers.remove(&id);
                assert!(t.is_some_and(|t| t.state == TransferState::Received));
            }
        }
    }

    /// Queues a finished object for removal after the retention period.
    pub(crate) fn retire(&mut self, retired: Retired) {
        self.retired.push_back((self.now_ms, retired));
        if self.retired.len() > self.config.retired_entries {
            self.drop_oldest_retired();
        }
    }

    // ---- interning and lookups ----

    pub(crate) fn intern_channel(&mut self, channel: &ChannelId) -> Option<ChanIdx> {
        if let Some(idx) = self.channel_index.get(channel) {
            return Some(*idx);
        }
        if self.channels.len() >= limits::CHANNELS_MAX {
            return None;
        }
        let idx = self.channels.len() as ChanIdx;
        self.channels.push(channel.clone());
        self.channel_index.insert(channel.clone(), idx);
        Some(idx)
    }

    /// Resolves a channel for a check: its index if known (an unknown channel is allowed only
    /// at locations that allow every channel), or an error if it is malformed.
    pub(crate) fn lookup_channel(&self, channel: &ChannelId) -> Result<Option<ChanIdx>, Rejection> {
        check_id(channel.as_str(), "channel")?;
        Ok(self.channel_index.get(channel).copied())
    }

    /// Interns a channel that was checked by [`Ledger::lookup_channel`] and [`Ledger::channel_room`].
    pub(crate) fn intern_checked_channel(&mut self, channel: &ChannelId) -> ChanIdx {
        self.intern_channel(channel)
            .expect("channel room was checked")
    }

    /// Interns a channel resolved earlier by [`Ledger::lookup_channel`]: no second lookup when it
    /// was already known.
    pub(crate) fn intern_resolved_channel(
        &mut self,
        channel: &ChannelId,
        known: Option<ChanIdx>,
    ) -> ChanIdx {
        match known {
            Some(idx) => idx,
            None => self.intern_checked_channel(channel),
        }
    }

    /// Whether a new channel can still be interned (if `known` is `None`).
    pub(crate) fn channel_room(&self, known: Option<ChanIdx>) -> Result<(), Rejection> {
        if known.is_none() && self.channels.len() >= limits::CHANNELS_MAX {
            return Err(Rejection::limit("CHANNELS_MAX"));
        }
        Ok(())
    }

    pub(crate) fn is_pos(channel: Option<ChanIdx>) -> bool {
        channel == Some(0)
    }

    /// Whether `channel` may sell from location `loc`.
    pub(crate) fn channel_allowed(&self, loc: LocIdx, channel: Option<ChanIdx>) -> bool {
        match &self.locations[loc as usize].channels {
            None => true,
            Some(allowed) => channel.is_some_and(|c| allowed.binary_search(&c).is_ok()),
        }
    }

    pub(crate) fn location(&self, id: &crate::ids::LocationId) -> Result<LocIdx, Rejection> {
        check_id(id.as_str(), "location")?;
        self.location_index
            .get(id)
            .copied()
            .ok_or_else(|| Rejection::NotFound {
                kind: crate::outcome::ObjectKind::Location,
                id: id.0.clone(),
            })
    }

    /// Resolves a SKU for a check: its index if known.
    pub(crate) fn lookup_sku(&self, sku: &SkuId) -> Result<Option<SkuIdx>, Rejection> {
        check_id(sku.as_str(), "sku")?;
        Ok(self.sku_index.get(sku).copied())
    }

    /// Whether an unknown SKU could still be created.
    pub(crate) fn sku_room(&self, known: Option<SkuIdx>) -> Result<(), Rejection> {
        if known.is_none() && self.skus.len() >= limits::SKUS_MAX {
            return Err(Rejection::limit("SKUS_MAX"));
        }
        Ok(())
    }

    /// Interns a SKU (implicitly, scale 0) after its room was checked.
    pub(crate) fn intern_sku(&mut self, sku: &SkuId) -> SkuIdx {
        if let Some(idx) = self.sku_index.get(sku) {
            return *idx;
        }
        assert!(self.skus.len() < limits::SKUS_MAX, "SKU room was checked");
        let idx = self.skus.len() as SkuIdx;
        self.skus.push(SkuEntry {
            id: sku.clone(),
            scale: 0,
            locations: Vec::new(),
        });
        self.sku_index.insert(sku.clone(), idx);
        idx
    }

    /// The balance of (sku, loc), zero if none.
    pub(crate) fn balance(&self, sku: SkuIdx, loc: LocIdx) -> Balance {
        self.balances
            .get(&key(sku, loc))
            .copied()
            .unwrap_or_default()
    }

    /// Whether a balance for (sku, loc) exists or could be created.
    pub(crate) fn balance_room(&self, sku: Option<SkuIdx>, loc: LocIdx) -> Result<(), Rejection> {
        let exists = sku.is_some_and(|s| self.balances.contains_key(&key(s, loc)));
        if !exists && self.balances.len() >= limits::BALANCES_MAX {
            return Err(Rejection::limit("BALANCES_MAX"));
        }
        Ok(())
    }

    /// Replaces the balance of (sku, loc), creating it if needed, and records the change in
    /// the feed with `cause`; a remaining shortfall adds a `Shortage` event.
    pub(crate) fn put_balance(&mut self, sku: SkuIdx, loc: LocIdx, balance: Balance, cause: Cause) {
        balance.check();
        let k = key(sku, loc);
        match self.balances.get_mut(&k) {
            Some(slot) => *slot = balance,
            None => {
                assert!(
                    self.balances.len() < limits::BALANCES_MAX,
                    "balance room was checked"
                );
                self.balances.insert(k, balance);
                let locations = &mut self.skus[sku as usize].locations;
                if let Err(pos) = locations.binary_search(&loc) {
                    locations.insert(pos, loc);
                }
            }
        }
        self.emit(cause, k, balance);
        let shortfall = balance.shortfall();
        if shortfall > 0
            && matches!(
                cause,
                Cause::SetOnHand | Cause::Adjust | Cause::MarkUnavailable
            )
        {
            self.emit_shortage(k, balance, shortfall);
        }
    }

    fn emit(&mut self, cause: Cause, key: u64, balance: Balance) {
        self.push_event(cause, key, balance, 0);
    }

    fn emit_shortage(&mut self, key: u64, balance: Balance, shortfall: i64) {
        self.push_event(Cause::Shortage, key, balance, shortfall);
    }

    fn push_event(&mut self, cause: Cause, key: u64, balance: Balance, shortfall: i64) {
        if self.feed.len() >= self.config.feed_events {
            self.feed.pop_front();
        }
        self.feed.push_back(EventRecord {
            seq: self.feed_next_seq,
            log_index: self.applied_index,
            timestamp_ms: self.now_ms,
            request_id: self.current_request,
            cause,
            key,
            balance,
            shortfall,
        });
        self.feed_next_seq += 1;
    }

    /// Adds `delta_reserved` and `delta_allocated` to a balance that must exist (holds and
    /// allocations only exist on existing balances) and records the change.
    pub(crate) fn shift(
        &mut self,
        sku: SkuIdx,
        loc: LocIdx,
        reserved: i64,
        allocated: i64,
        cause: Cause,
    ) {
        let mut b = self.balance(sku, loc);
        b.reserved += reserved;
        b.allocated += allocated;
        self.put_balance(sku, loc, b, cause);
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

//! The ledger state and the batch apply loop.
//!
//! Order of work for one batch ([`Ledger::apply`]):
//! 1. time := max(previous time, batch timestamp) — time never goes backwards (SPEC section 4);
//! 2. every hold with `expires_at <= time` is released and every pickup with
//!    `deadline <= time` cancelled, in (deadline, creation) order;
//! 3. the heads of the dedup log and of the retirement queue move past what retention drops
//!    (O(log n)), and at most [`limits::CLEANUP_STEPS_PER_BATCH`] dropped entries of each (and
//!    of the change feed) are cleaned up (index entries removed, slots freed): no batch pays
//!    O(state) for retention;
//! 4. each request: a replayed request id returns its remembered outcome; otherwise the command
//!    runs all-or-nothing (every check before any change) and its outcome is remembered.

use std::sync::Arc;

use crate::access::Authors;
use serde::{Deserialize, Serialize};

use crate::balance::{Balance, PackedBalance};
use crate::command::{Command, Request};
use crate::ids::{ChannelId, SkuId};
use crate::limits;
use crate::outcome::{InvalidReason, Outcome, Rejection, Reply};
use crate::query::{Cause, ReservationState, TransferState};
pub(crate) use crate::state::{
    find_record, hash_str, hash_u128, index_record, key, unindex_record, BalIdx, ChanIdx, Deadline,
    DedupEntry, EventRecord, Held, HeldVec, Indexes, LocIdx, LocationEntry, ObjIdx, Remembered,
    RepLine, RepLines, Retired, RetiredEntry, SkuEntry, SkuIdx, State,
};

/// Retention settings of a ledger. Part of the replicated state (and of snapshots): every
/// replica must use the same, so they change only through the log
/// ([`Command::SetRetention`], checked by [`Config::check`]). Each value is capped by its
/// `_DEFAULT` constant in [`crate::limits`], which is also the default; tests may build a
/// ledger with smaller values ([`Ledger::new`]) to exercise eviction.
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

/// The replicated ledger: stock per SKU and location, holds, orders, returns and transfers.
///
/// Sans-IO and deterministic: no clock (time comes in [`BatchHeader`]), no randomness, no
/// iteration over hash maps that reaches results or snapshots. Writes go through
/// [`Ledger::apply`]; reads through [`Ledger::query`] (`&self`); [`Ledger::freeze`] takes an
/// immutable view for a snapshot without stopping either.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Everything a snapshot holds.
    pub(crate) state: State,
    /// Derived from `state`; rebuilt on restore.
    pub(crate) ix: Indexes,
    /// Request being applied (0 between requests), stamped on change events.
    pub(crate) current_request: u128,
    /// Author handle of that request (0 = none), stamped on change events.
    pub(crate) current_author: u32,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(Config::default())
    }
}

/// Up to this many balances, a SKU's balance list grows one entry at a time (see
/// `Ledger::bal_or_create`).
const BALANCE_LIST_EXACT_MAX: usize = 32;

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

/// The expiry steps that a batch of `requests` requests making `changes` balance changes (its
/// change-feed events) may have added to the deadline index, and so sweeps after them: at most
/// [`limits::EXPIRY_STEPS_PER_REQUEST`] per request plus one per balance change. A hold of `n`
/// held lines costs `n` steps to expire and made `n` changes when it was granted (a pickup
/// order alike); an extend makes no change but leaves one stale entry behind; a release or an
/// order placed from a hold turns the hold's entry into one stale entry. So while a backlog of
/// due deadlines is left, every batch sweeps all its own requests added plus
/// [`limits::EXPIRY_STEPS_PER_BATCH`] more: no load can grow the backlog, and the extra work is
/// at most proportional to what the batch's requests did themselves.
fn expiry_steps_added(requests: usize, changes: u64) -> usize {
    let changes = usize::try_from(changes).unwrap_or(usize::MAX);
    requests
        .saturating_mul(limits::EXPIRY_STEPS_PER_REQUEST)
        .saturating_add(changes)
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
            state: State::new(config),
            ix: Indexes::default(),
            current_request: 0,
            current_author: 0,
        };
        // `pos` is channel 0: the channel whose ATS ignores safety stock.
        let pos = ledger.intern_channel(&ChannelId::from(ChannelId::POS));
        debug_assert_eq!(pos, Some(0));
        ledger
    }

    /// The retention settings.
    pub fn config(&self) -> Config {
        self.state.config
    }

    /// `now + duration_ms` for a duration already checked against its maximum: cannot overflow
    /// because `now` is at most [`limits::TIMESTAMP_MS_MAX`].
    pub(crate) fn deadline(&self, duration_ms: u64) -> u64 {
        debug_assert!(duration_ms <= limits::PICKUP_DEADLINE_MS_MAX);
        self.state.now_ms + duration_ms
    }

    /// Timestamp of the last applied batch, ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.state.now_ms
    }

    /// Log index of the last applied batch.
    pub fn applied_index(&self) -> u64 {
        self.state.applied_index
    }

    /// The earliest hold expiry or pickup deadline that may still be pending, ms since the
    /// epoch (never later than the earliest pending one): the leader proposes a batch (possibly
    /// empty) once its clock passes it, so deadlines fire on time even when no client writes
    /// (the change feed then shows them at the right time). While a backlog of expiries is
    /// left for later batches ([`limits::EXPIRY_STEPS_PER_BATCH`]) it is at or before
    /// [`Ledger::now_ms`], so the leader keeps proposing batches until the backlog is gone.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.ix.deadlines.first_time()
    }

    /// Applies one batch of requests and returns one outcome per request, in order.
    ///
    /// Before the requests, the batch expires up to [`limits::EXPIRY_STEPS_PER_BATCH`] steps of
    /// the deadlines its timestamp passed; after them, if some are still due, as many more steps
    /// as its requests may have added (`expiry_steps_added`), so a backlog shrinks whatever
    /// the load.
    ///
    /// The engine never panics on input: a malformed request gets `invalid`. It panics only on
    /// a caller bug (a log index that does not increase) or a broken ledger invariant: either
    /// must stop the node rather than let replicas diverge. A batch of more than
    /// [`limits::BATCH_REQUESTS_MAX`] requests is applied as an empty batch (time still moves)
    /// and every request is rejected `invalid`.
    pub fn apply(&mut self, header: BatchHeader, requests: &[Request]) -> Vec<Outcome> {
        self.apply_by(header, requests, &Authors::default())
    }

    /// [`Ledger::apply`], recording who made each request (`authors`, see
    /// [`crate::access`]) on its change-feed events.
    pub fn apply_by(
        &mut self,
        header: BatchHeader,
        requests: &[Request],
        authors: &Authors,
    ) -> Vec<Outcome> {
        assert!(
            header.log_index > self.state.applied_index,
            "log index {} after {}",
            header.log_index,
            self.state.applied_index
        );
        self.state.applied_index = header.log_index;
        self.state.now_ms = self
            .state
            .now_ms
            .max(header.timestamp_ms.min(limits::TIMESTAMP_MS_MAX));
        self.expire_deadlines(limits::EXPIRY_STEPS_PER_BATCH);
        self.expire_revocations();
        self.advance_retention();
        self.clean_up(limits::CLEANUP_STEPS_PER_BATCH);
        self.sweep_counts(limits::LIMIT_SWEEP_PER_BATCH);
        if requests.len() > limits::BATCH_REQUESTS_MAX {
            let rejection = Rejection::limit("BATCH_REQUESTS_MAX");
            return requests.iter().map(|_| Err(rejection.clone())).collect();
        }
        let handles: Vec<u32> = authors
            .names
            .iter()
            .map(|a| self.intern_author(a))
            .collect();
        let changes_before = self.state.feed.end();
        let outcomes = requests
            .iter()
            .enumerate()
            .map(|(i, request)| {
                self.prefetch_ahead(requests, i);
                let author = authors
                    .of_request
                    .get(i)
                    .and_then(|&a| handles.get(usize::from(a)));
                self.current_author = author.copied().unwrap_or(0);
                let outcome = self.apply_one(request);
                self.current_author = 0;
                outcome
            })
            .collect();
        let changes = self.state.feed.end() - changes_before;
        self.expire_deadlines(expiry_steps_added(requests.len(), changes));
        outcomes
    }

    fn apply_one(&mut self, request: &Request) -> Outcome {
        let id = request.request_id.0;
        if id == 0 {
            return invalid(InvalidReason::ZeroRequestId);
        }
        let hash = hash_u128(id);
        let indexed = self.indexed_at(hash, id);
        if let Some(pos) = indexed.filter(|&pos| self.state.dedup.is_live(pos)) {
            return self.expand(&self.state.dedup.get(pos).reply);
        }
        self.current_request = id;
        let remembered = self.execute(&request.command);
        self.current_request = 0;
        let outcome = self.expand(&remembered);
        self.remember(hash, id, remembered, indexed.is_some());
        outcome
    }

    /// The dedup position that the index gives for request `id` (hashed `hash`): remembered
    /// if it is live, forgotten (its entry awaiting clean-up) if not.
    fn indexed_at(&self, hash: u32, id: u128) -> Option<u64> {
        let dedup = &self.state.dedup;
        self.ix
            .dedup
            .find(hash, |low| {
                dedup.get(dedup.full_position(low)).request_id == id
            })
            .map(|low| dedup.full_position(low))
    }

    /// The outcome a remembered result stands for (the same value every time).
    fn expand(&self, remembered: &Remembered) -> Outcome {
        match remembered {
            Remembered::Done => Ok(Reply::Done),
            Remembered::Balance(balance) => Ok(Reply::Balance(*balance)),
            Remembered::Other(outcome) => (**outcome).clone(),
            Remembered::Reserved {
                expires_at_ms,
                lines,
            } => Ok(Reply::Reserved {
                expires_at_ms: *expires_at_ms,
                allocations: self.allocations(lines),
            }),
            Remembered::OrderPlaced {
                pickup_deadline_ms,
                lines,
            } => Ok(Reply::OrderPlaced {
                allocations: self.allocations(lines),
                pickup_deadline_ms: *pickup_deadline_ms,
            }),
        }
    }

    fn execute(&mut self, command: &Command) -> Remembered {
        let remembered = match command {
            Command::Reserve {
                reservation,
                channel,
                lines,
                ttl_ms,
            } => self.reserve(reservation, channel, lines, *ttl_ms, None),
            Command::PlaceOrder {
                order,
                source,
                fulfilment,
            } => self.place_order(order, source, *fulfilment, None),
            Command::AsCustomer { customer, command } => self.as_customer(customer, command),
            Command::Exchange(exchange) => self.exchange(exchange),
            other => {
                return match self.execute_other(other) {
                    Ok(Reply::Done) => Remembered::Done,
                    Ok(Reply::Balance(balance)) => Remembered::Balance(balance),
                    outcome => Remembered::Other(Box::new(outcome)),
                }
            }
        };
        remembered.unwrap_or_else(|r| Remembered::Other(Box::new(Err(r))))
    }

    /// The writes that define things: locations, groups, SKUs, kits, limits, credentials.
    fn execute_other(&mut self, command: &Command) -> Outcome {
        match command {
            Command::RevokeCredential {
                credential,
                until_ms,
            } => self.revoke_credential(credential, *until_ms),
            Command::CreateToken(token) => self.create_token(token),
            Command::DefineLocation(def) => self.define_location(def),
            Command::DefineGroup { group, locations } => self.define_group(group, locations),
            Command::DefineSku { sku, scale } => self.define_sku(sku, *scale),
            Command::DefineKit { kit, components } => self.define_kit(kit, components),
            Command::SetPurchaseLimit {
                sku,
                qty_max,
                window_ms,
                strict,
            } => self.set_purchase_limit(sku, *qty_max, *window_ms, *strict),
            Command::SetRetention(config) => self.set_retention(config),
            other => self.execute_stock(other),
        }
    }

    /// The stock writes: counts, adjustments, safety stock, unavailable units, counter sales.
    fn execute_stock(&mut self, command: &Command) -> Outcome {
        match command {
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
            other => self.execute_flow(other),
        }
    }

    /// The writes on holds, orders, returns and transfers (reserve, place_order, exchange and
    /// the customer's writes remember a compact reply: `execute` runs them).
    fn execute_flow(&mut self, command: &Command) -> Outcome {
        match command {
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
            _ => unreachable!("execute runs the writes with compact replies"),
        }
    }

    // ---- dedup and retention ----

    /// Remembers the outcome of request `id`; `indexed` says whether the index still has an
    /// entry of a forgotten earlier request with this id (else the entry is only inserted).
    fn remember(&mut self, hash: u32, id: u128, reply: Remembered, indexed: bool) {
        let dedup = &mut self.state.dedup;
        if dedup.len() >= self.state.config.dedup_entries as u64 {
            dedup.advance_head(dedup.head() + 1);
        }
        let pos = dedup.push(DedupEntry {
            request_id: id,
            at_ms: self.state.now_ms,
            reply,
        });
        if !indexed {
            self.ix.dedup.insert_new(hash, pos as u32);
            return;
        }
        let dedup = &self.state.dedup;
        // A forgotten entry of the same id is still indexed (awaiting clean-up): reuse it.
        self.ix.dedup.set(hash, pos as u32, |low| {
            dedup.get(dedup.full_position(low)).request_id == id
        });
    }

    /// Moves the heads of the dedup log and of the retirement queue past the entries that
    /// retention drops at the new time (binary searches: both are in time order).
    pub(crate) fn advance_retention(&mut self) {
        let state = &mut self.state;
        let horizon = state.now_ms.saturating_sub(state.config.dedup_window_ms);
        let head = state.dedup.live_partition_point(|e| e.at_ms < horizon);
        state.dedup.advance_head(head);
        let horizon = state.now_ms.saturating_sub(state.config.retired_ms);
        let head = state.retired.live_partition_point(|e| e.at_ms < horizon);
        state.retired.advance_head(head);
    }

    /// Cleans up at most `steps` dropped entries of the dedup log, of the retirement queue and
    /// of the change feed: their index entries go, the dropped objects' slots are freed and
    /// the directories behind go. Steps per batch exceed what one batch can add, so the
    /// backlog of a burst (or of a lowered retention, `crate::retention`) drains within a few
    /// batches.
    fn clean_up(&mut self, steps: usize) {
        let dedup = &mut self.state.dedup;
        let (from, to) = (
            dedup.clean(),
            dedup.head().min(dedup.clean() + steps as u64),
        );
        for pos in from..to {
            let id = dedup.get(pos).request_id;
            self.ix.dedup.remove(hash_u128(id), pos as u32);
        }
        dedup.cleaned_to(to);
        let retired = &self.state.retired;
        let (from, to) = (
            retired.clean(),
            retired.head().min(retired.clean() + steps as u64),
        );
        for pos in from..to {
            let what = self.state.retired.get(pos).what;
            self.drop_retired(what);
        }
        self.state.retired.cleaned_to(to);
        let feed = &mut self.state.feed;
        feed.cleaned_to(feed.head().min(feed.clean() + steps as u64));
    }

    /// Frees the slot of a retired object whose retention ended, and its index entry.
    fn drop_retired(&mut self, what: Retired) {
        let (state, ix) = (&mut self.state, &mut self.ix);
        match what {
            Retired::Reservation(slot) => {
                let r = state.reservations.remove(slot);
                assert!(
                    r.state != ReservationState::Active,
                    "retired hold is active"
                );
                unindex_record(&mut ix.reservation, r.id.as_str(), slot);
            }
            Retired::Order(slot) => {
                let o = state.orders.remove(slot);
                assert!(o.unfulfilled() == 0, "retired order is open");
                unindex_record(&mut ix.order, o.id.as_str(), slot);
            }
            Retired::Rma(slot) => {
                let rma = state.rmas.remove(slot);
                unindex_record(&mut ix.rma, rma.id.as_str(), slot);
            }
            Retired::Transfer(slot) => {
                let t = state.transfers.remove(slot);
                assert!(
                    t.state == TransferState::Received,
                    "retired transfer in transit"
                );
                unindex_record(&mut ix.transfer, t.id.as_str(), slot);
            }
        }
    }

    /// Queues a finished object for removal after the retention period; returns its position
    /// in the queue (the object keeps it: behind the head it is gone).
    pub(crate) fn retire(&mut self, what: Retired) -> u64 {
        let retired = &mut self.state.retired;
        let pos = retired.push(RetiredEntry {
            at_ms: self.state.now_ms,
            what,
        });
        if retired.len() > self.state.config.retired_entries as u64 {
            retired.advance_head(retired.head() + 1);
        }
        pos
    }

    // ---- interning and lookups ----

    pub(crate) fn intern_channel(&mut self, channel: &ChannelId) -> Option<ChanIdx> {
        if let Some(idx) = self.ix.channel.get(channel) {
            return Some(*idx);
        }
        if self.state.channels.len() >= limits::CHANNELS_MAX {
            return None;
        }
        let idx = self.state.channels.len() as ChanIdx;
        Arc::make_mut(&mut self.state.channels).push(channel.clone());
        self.ix.channel.insert(channel.clone(), idx);
        Some(idx)
    }

    /// Resolves a channel for a check: its index if known (an unknown channel is allowed only
    /// at locations that allow every channel), or an error if it is malformed.
    pub(crate) fn lookup_channel(&self, channel: &ChannelId) -> Result<Option<ChanIdx>, Rejection> {
        // Most writes name the channel of the write before: one string compare instead of a
        // hash and a probe.
        let recent = self.ix.recent_channel;
        if self.state.channels.get(usize::from(recent)) == Some(channel) {
            return Ok(Some(recent));
        }
        if let Some(idx) = self.ix.channel.get(channel) {
            // Only well-formed ids are ever interned.
            return Ok(Some(*idx));
        }
        check_id(channel.as_str(), "channel")?;
        Ok(None)
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
        let idx = match known {
            Some(idx) => idx,
            None => self.intern_checked_channel(channel),
        };
        self.ix.recent_channel = idx;
        idx
    }

    /// Whether a new channel can still be interned (if `known` is `None`).
    pub(crate) fn channel_room(&self, known: Option<ChanIdx>) -> Result<(), Rejection> {
        if known.is_none() && self.state.channels.len() >= limits::CHANNELS_MAX {
            return Err(Rejection::limit("CHANNELS_MAX"));
        }
        Ok(())
    }

    pub(crate) fn is_pos(channel: Option<ChanIdx>) -> bool {
        channel == Some(0)
    }

    /// The location entry of `loc`.
    #[inline]
    pub(crate) fn loc(&self, loc: LocIdx) -> &LocationEntry {
        self.state.locations.get(u64::from(loc))
    }

    /// The SKU entry of `sku`.
    #[inline]
    pub(crate) fn sku(&self, sku: SkuIdx) -> &SkuEntry {
        self.state.skus.get(u64::from(sku))
    }

    /// Whether `channel` may sell from location `loc`.
    pub(crate) fn channel_allowed(&self, loc: LocIdx, channel: Option<ChanIdx>) -> bool {
        match &self.loc(loc).channels {
            None => true,
            Some(allowed) => channel.is_some_and(|c| allowed.binary_search(&c).is_ok()),
        }
    }

    pub(crate) fn location(&self, id: &crate::ids::LocationId) -> Result<LocIdx, Rejection> {
        if let Some(idx) = self.ix.location.get(id) {
            return Ok(*idx);
        }
        check_id(id.as_str(), "location")?;
        Err(Rejection::NotFound {
            kind: crate::outcome::ObjectKind::Location,
            id: id.0.to_string(),
        })
    }

    /// The decimal scale of `sku` (SPEC section 2), `None` for a SKU the ledger does not know:
    /// how a front end turns base units into display strings.
    pub fn sku_scale(&self, sku: &SkuId) -> Option<u8> {
        match self.lookup_sku(sku) {
            Ok(Some(s)) => Some(self.sku(s).scale),
            _ => None,
        }
    }

    /// Resolves a SKU for a check: its index if known.
    pub(crate) fn lookup_sku(&self, sku: &SkuId) -> Result<Option<SkuIdx>, Rejection> {
        let skus = &self.state.skus;
        let found = self.ix.sku.find(hash_str(sku.as_str()), |s| {
            skus.get(u64::from(s)).id.is(sku.as_str())
        });
        if let Some(idx) = found {
            // Only well-formed ids are ever interned.
            return Ok(Some(idx));
        }
        check_id(sku.as_str(), "sku")?;
        Ok(None)
    }

    /// Whether an unknown SKU could still be created.
    pub(crate) fn sku_room(&self, known: Option<SkuIdx>) -> Result<(), Rejection> {
        if known.is_none() && self.state.skus.end() >= limits::SKUS_MAX as u64 {
            return Err(Rejection::limit("SKUS_MAX"));
        }
        Ok(())
    }

    /// Creates a SKU entry (its room was checked) and indexes it.
    pub(crate) fn push_sku(&mut self, sku: &SkuId, scale: u8) -> SkuIdx {
        assert!(
            self.state.skus.end() < limits::SKUS_MAX as u64,
            "SKU room was checked"
        );
        let idx = self.state.skus.push(SkuEntry {
            id: crate::state::IdBuf::new(sku.as_str()),
            scale,
            balances: Vec::new(),
            extra: None,
        }) as SkuIdx;
        self.ix.sku.set(hash_str(sku.as_str()), idx, |_| false);
        let skus = &self.state.skus;
        (self.ix.sku_sorted).insert(sku.as_str(), idx, |h| skus.get(u64::from(h)).id.as_str());
        idx
    }

    /// Interns a SKU (implicitly, scale 0) after its room was checked.
    pub(crate) fn intern_sku(&mut self, sku: &SkuId) -> SkuIdx {
        match self.lookup_sku(sku) {
            Ok(Some(idx)) => idx,
            _ => self.push_sku(sku, 0),
        }
    }

    /// The balance handle of (sku, loc), if that balance exists.
    pub(crate) fn bal_of(&self, sku: SkuIdx, loc: LocIdx) -> Option<BalIdx> {
        self.sku(sku).balance_at(loc)
    }

    /// The balance of (sku, loc), zero if none.
    pub(crate) fn balance(&self, sku: SkuIdx, loc: LocIdx) -> Balance {
        self.bal_of(sku, loc)
            .map(|b| self.bal(b))
            .unwrap_or_default()
    }

    /// The balance with handle `bal`.
    #[inline]
    pub(crate) fn bal(&self, bal: BalIdx) -> Balance {
        self.state.balances.get(u64::from(bal)).unpack()
    }

    /// Whether a balance for (sku, loc) exists or could be created.
    pub(crate) fn balance_room(&self, sku: Option<SkuIdx>, loc: LocIdx) -> Result<(), Rejection> {
        let exists = sku.is_some_and(|s| self.bal_of(s, loc).is_some());
        if !exists && self.state.balances.end() >= limits::BALANCES_MAX as u64 {
            return Err(Rejection::limit("BALANCES_MAX"));
        }
        Ok(())
    }

    /// The handle of (sku, loc), creating a zero balance if needed (its room was checked).
    fn bal_or_create(&mut self, sku: SkuIdx, loc: LocIdx) -> BalIdx {
        if let Some(bal) = self.bal_of(sku, loc) {
            return bal;
        }
        assert!(
            self.state.balances.end() < limits::BALANCES_MAX as u64,
            "balance room was checked"
        );
        let bal = self.state.balances.push(PackedBalance::default()) as BalIdx;
        let entry = self.state.skus.get_mut(u64::from(sku));
        let at = entry.balances.partition_point(|(l, _)| *l < loc);
        // Most SKUs have a handful of balances, created once: grow their list exactly (a
        // doubling list would carry up to half its size unused, in every SKU) until it is long
        // enough for doubling to pay.
        if entry.balances.len() < BALANCE_LIST_EXACT_MAX {
            entry.balances.reserve_exact(1);
        }
        entry.balances.insert(at, (loc, bal));
        bal
    }

    /// Replaces the balance of (sku, loc), creating it if needed, and records the change in
    /// the feed with `cause`; a remaining shortfall adds a `Shortage` event.
    pub(crate) fn put_balance(&mut self, sku: SkuIdx, loc: LocIdx, balance: Balance, cause: Cause) {
        let bal = self.bal_or_create(sku, loc);
        self.put_bal(sku, loc, bal, balance, cause);
    }

    /// Replaces balance `bal` (of `sku` at `loc`) and records the change (see
    /// [`Ledger::put_balance`]).
    pub(crate) fn put_bal(
        &mut self,
        sku: SkuIdx,
        loc: LocIdx,
        bal: BalIdx,
        balance: Balance,
        cause: Cause,
    ) {
        *self.state.balances.get_mut(u64::from(bal)) = PackedBalance::pack(balance);
        self.record_change(key(sku, loc), balance, cause);
    }

    /// Checks a balance just written (key `k`) and records the change in the feed with
    /// `cause`; a remaining shortfall after a stock write adds a `Shortage` event.
    fn record_change(&mut self, k: u64, balance: Balance, cause: Cause) {
        balance.check();
        self.push_event(cause, k, balance, 0);
        let shortfall = balance.shortfall();
        if shortfall > 0
            && matches!(
                cause,
                Cause::SetOnHand | Cause::Adjust | Cause::MarkUnavailable
            )
        {
            self.push_event(Cause::Shortage, k, balance, shortfall);
        }
    }

    fn push_event(&mut self, cause: Cause, key: u64, balance: Balance, shortfall: i64) {
        let feed = &mut self.state.feed;
        feed.push(EventRecord {
            log_index: self.state.applied_index,
            timestamp_ms: self.state.now_ms,
            request_id: self.current_request,
            author: self.current_author,
            cause,
            key,
            balance,
            shortfall,
        });
        if feed.len() > self.state.config.feed_events as u64 {
            // Nothing indexes the feed: the dropped event is cleaned up at once. Only one: a
            // backlog behind the head (a lowered retention) drains in `clean_up`, bounded.
            feed.advance_head(feed.head() + 1);
            feed.cleaned_to(feed.clean() + 1);
        }
    }

    /// Adds `reserved` and `allocated` to the balance of a held line (holds and allocations
    /// only exist on existing balances) and records the change.
    pub(crate) fn shift(&mut self, h: &Held, reserved: i64, allocated: i64, cause: Cause) {
        // Changed in place: one page access (and one copy-on-write check) instead of a read
        // and a write.
        let balance = (self.state.balances.get_mut(u64::from(h.bal))).add_held(reserved, allocated);
        self.record_change(key(h.sku, h.loc), balance, cause);
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.state.next_seq;
        self.state.next_seq += 1;
        seq
    }

    // ---- objects by id ----

    /// The slot of the retained reservation `id`.
    pub(crate) fn reservation_slot(&self, id: &str) -> Option<ObjIdx> {
        find_record(
            &self.ix.reservation,
            &self.state.reservations,
            &self.state,
            id,
            hash_str(id),
        )
    }

    /// The slot of the retained order `id`.
    pub(crate) fn order_slot(&self, id: &str) -> Option<ObjIdx> {
        find_record(
            &self.ix.order,
            &self.state.orders,
            &self.state,
            id,
            hash_str(id),
        )
    }

    /// The slot of the retained RMA `id`.
    pub(crate) fn rma_slot(&self, id: &str) -> Option<ObjIdx> {
        find_record(
            &self.ix.rma,
            &self.state.rmas,
            &self.state,
            id,
            hash_str(id),
        )
    }

    /// The slot of the retained transfer `id`.
    pub(crate) fn transfer_slot(&self, id: &str) -> Option<ObjIdx> {
        find_record(
            &self.ix.transfer,
            &self.state.transfers,
            &self.state,
            id,
            hash_str(id),
        )
    }

    /// The reservation in `slot` (in use).
    pub(crate) fn res(&self, slot: ObjIdx) -> &crate::state::Reservation {
        self.state
            .reservations
            .get(slot)
            .expect("reservation slot in use")
    }

    /// The order in `slot` (in use).
    pub(crate) fn ord(&self, slot: ObjIdx) -> &crate::state::Order {
        self.state.orders.get(slot).expect("order slot in use")
    }

    /// The order in `slot` (in use), for writing.
    pub(crate) fn ord_mut(&mut self, slot: ObjIdx) -> &mut crate::state::Order {
        self.state.orders.get_mut(slot).expect("order slot in use")
    }
}

/// Lines of a reply to remember, from held lines.
#[inline]
pub(crate) fn rep_lines(held: &[Held]) -> RepLines {
    // A plain loop: `collect` into a SmallVec costs a generic reserve-and-extend per call,
    // more than the copy of the one or three lines it usually holds.
    let mut lines = RepLines::new();
    for h in held {
        lines.push(RepLine {
            line: h.line,
            loc: h.loc,
            qty: h.qty,
        });
    }
    lines
}

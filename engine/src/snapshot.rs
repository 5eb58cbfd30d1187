//! Snapshot and restore of the whole ledger (for Raft snapshots), and the invariant check.
//!
//! Format: 8 bytes of magic `b"STOCKD\x00S"`, a little-endian `u32` format version
//! ([`SNAPSHOT_VERSION`]), then the body: the postcard encodings of the parts of the state, one
//! after the other, each arena in handle / position order: config, (time, applied index, next
//! sequence number), channels, locations, groups (by id), SKUs (with their balance lists),
//! balances, the reservation, order, RMA and transfer slabs (free-list head, every slot), the
//! retirement queue and the dedup log (clean-up cursor, head, entries from the cursor), the
//! change feed (head, live events), the access state, the purchase-limit counts (slab) and
//! the sweep's cursor (format 6: kits and limits). The body is the state whole, clean-up backlog included, so
//! two ledgers that applied the same batches produce byte-identical snapshots whatever their
//! snapshot history (SPEC section 4, Determinism). Indexes that can be derived (id tables,
//! deadlines, counters) are rebuilt on restore, never stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::balance::{Balance, PackedBalance};
use crate::fifo::Fifo;
use crate::ids::{ChannelId, GroupId, LocationName};
use crate::ledger::{Config, Ledger};
use crate::pages::Pages;
use crate::query::{ReservationState, TransferState};
use crate::slab::{Slab, Slot};
use crate::state::{
    find_record, hash_str, hash_u128, index_record, BalIdx, Deadline, IdTable, Indexes, LocIdx,
    ObjIdx, Record, Retired, SkuIdx, State,
};

/// The units the objects account for on one balance; the balance must show exactly these.
#[derive(Default, Clone, Copy)]
struct Accounted {
    /// By active holds.
    reserved: i64,
    /// By unfulfilled order lines.
    allocated: i64,
    /// By shipped transfers to it.
    incoming: i64,
}

/// What the invariant check counts while it walks the objects, to compare with the balances
/// and the derived counters afterwards.
#[derive(Default)]
struct Tally {
    expected: FxHashMap<BalIdx, Accounted>,
    /// Active holds.
    live: usize,
    /// Objects that must have a deadline (active holds, open pickups not yet expired).
    deadlines: usize,
    /// Orders with unfulfilled units.
    open: usize,
    /// Shipped, not yet received transfers.
    open_transfers: usize,
}

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"STOCKD\x00S";
/// Version of the snapshot layout; bumped on any change to it.
pub const SNAPSHOT_VERSION: u32 = 6;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a stockd snapshot (bad magic or too short).
    NotASnapshot,
    /// A layout version this build cannot read.
    UnsupportedVersion(u32),
    /// The body did not decode.
    Corrupt(String),
    /// The body decoded but breaks a ledger invariant.
    Inconsistent(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::NotASnapshot => f.write_str("not a stockd snapshot"),
            SnapshotError::UnsupportedVersion(v) => write!(f, "unsupported snapshot version {v}"),
            SnapshotError::Corrupt(e) => write!(f, "corrupt snapshot: {e}"),
            SnapshotError::Inconsistent(e) => write!(f, "inconsistent snapshot: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// A broken ledger invariant ([`Ledger::check_invariants`]): which one, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvariantViolation(pub String);

impl std::fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvariantViolation {}

/// An immutable view of the whole replicated state at one moment, taken by [`Ledger::freeze`]
/// in O(directories) pointer copies (see `pages.rs`). `Send + Sync + 'static`: another thread
/// can encode it while the ledger goes on applying batches; its encoding is exactly the
/// [`Ledger::snapshot`] bytes of that moment.
#[derive(Debug, Clone)]
pub struct Frozen {
    state: State,
}

// A frozen view is handed to another thread: it must stay shareable and own its data.
const _: fn() = || {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Frozen>();
};

impl Frozen {
    /// Log index of the last batch applied before the freeze.
    pub fn applied_index(&self) -> u64 {
        self.state.applied_index
    }

    /// The snapshot bytes of the frozen state: magic, version, then the body (module doc).
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.state)
    }

    /// [`Ledger::digest`] of the frozen state: a caller that must not hold the ledger while
    /// the whole state is encoded freezes it and takes the digest of the view.
    pub fn digest(&self) -> String {
        blake3::hash(&self.encode()).to_hex().to_string()
    }
}

/// Appends postcard encodings to a buffer, part by part: the body is the concatenation of its
/// parts, so no intermediate copy of an arena is built.
struct Writer(Vec<u8>);

impl Writer {
    fn put<T: Serialize + ?Sized>(&mut self, value: &T) {
        postcard::to_io(value, &mut self.0).expect("writing to a Vec cannot fail");
    }

    /// A sequence: its length (a postcard varint, as for any sequence), then its items.
    fn seq<'a, T: Serialize + 'a>(&mut self, len: u64, items: impl Iterator<Item = &'a T>) {
        self.put(&len);
        let mut n = 0;
        for item in items {
            self.put(item);
            n += 1;
        }
        assert_eq!(n, len, "sequence length");
    }

    fn slab<T: Serialize + Clone>(&mut self, slab: &Slab<T>) {
        let (free_head, slots) = slab.parts();
        self.put(&free_head);
        let slots: Vec<&Slot<T>> = slots.collect();
        self.seq(slots.len() as u64, slots.into_iter());
    }

    fn fifo<T: Serialize>(&mut self, fifo: &Fifo<T>) {
        self.put(&fifo.clean());
        self.put(&fifo.head());
        self.seq(fifo.end() - fifo.clean(), fifo.iter_from(fifo.clean()));
    }
}

/// Encodes a state (see the module doc for the order of the parts).
fn encode(state: &State) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        64 + state.balances.end() as usize * 24 + state.feed.len() as usize * 48,
    ));
    w.0.extend_from_slice(&SNAPSHOT_MAGIC);
    w.0.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    w.put(&state.config);
    w.put(&(state.now_ms, state.applied_index, state.next_seq));
    w.put(&*state.channels);
    let locations = &state.locations;
    w.seq(locations.end(), locations.iter_from(0));
    w.put(&*state.groups);
    w.seq(state.skus.end(), state.skus.iter_from(0));
    w.seq(state.balances.end(), state.balances.iter_from(0));
    w.slab(&state.reservations);
    w.slab(&state.orders);
    w.slab(&state.rmas);
    w.slab(&state.transfers);
    w.fifo(&state.retired);
    w.fifo(&state.dedup);
    w.put(&state.feed.head());
    w.seq(state.feed.len(), state.feed.iter_from(state.feed.head()));
    w.put(&state.access);
    w.slab(&state.counts);
    w.put(&state.count_sweep);
    w.0
}

/// Reads the parts [`encode`] wrote, in the same order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, SnapshotError> {
        let (value, rest) =
            postcard::take_from_bytes(self.0).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        self.0 = rest;
        Ok(value)
    }

    /// Reads a sequence and hands each item to `f` as it is decoded: the arenas are rebuilt
    /// without a vector of the whole sequence beside them (at 10 M balances that vector alone
    /// was 480 MB of peak memory, kept by the allocator after the restore).
    fn each<T: serde::de::DeserializeOwned>(
        &mut self,
        mut f: impl FnMut(T),
    ) -> Result<(), SnapshotError> {
        let len: u64 = self.take()?;
        // Every item takes at least one byte: a longer length is corrupt, not an allocation.
        if len > self.0.len() as u64 {
            return Err(SnapshotError::Corrupt(format!("sequence of {len} items")));
        }
        for _ in 0..len {
            f(self.take()?);
        }
        Ok(())
    }

    fn pages<T: serde::de::DeserializeOwned>(&mut self) -> Result<Pages<T>, SnapshotError> {
        let mut pages = Pages::default();
        self.each(|item| {
            pages.push(item);
        })?;
        Ok(pages)
    }

    /// The balances, each packed as it is read; one with a field outside what a packed balance
    /// holds is corrupt (one inside it but above `QTY_MAX` fails the invariant check later).
    fn balances(&mut self) -> Result<Pages<PackedBalance>, SnapshotError> {
        let mut pages = Pages::default();
        let mut bad = None;
        self.each(|b: Balance| match PackedBalance::try_pack(b) {
            Some(p) => {
                pages.push(p);
            }
            None => bad = bad.or(Some((pages.end(), b))),
        })?;
        match bad {
            Some((at, b)) => Err(SnapshotError::Corrupt(format!(
                "balance {at} out of range: {b:?}"
            ))),
            None => Ok(pages),
        }
    }

    fn slab<T: serde::de::DeserializeOwned + Clone>(&mut self) -> Result<Slab<T>, SnapshotError> {
        let free_head: u32 = self.take()?;
        let slots: Pages<Slot<T>> = self.pages()?;
        Slab::from_parts(free_head, slots).ok_or_else(|| bad("free list"))
    }

    fn fifo<T: serde::de::DeserializeOwned>(&mut self) -> Result<Fifo<T>, SnapshotError> {
        let (clean, head): (u64, u64) = (self.take()?, self.take()?);
        let fifo = self.fifo_entries(clean)?;
        fifo.with_head(head).ok_or_else(|| bad("log positions"))
    }

    /// A log whose entries `clean..` follow, decoded straight into it (head at `clean`).
    fn fifo_entries<T: serde::de::DeserializeOwned>(
        &mut self,
        clean: u64,
    ) -> Result<Fifo<T>, SnapshotError> {
        let mut fifo = Fifo::starting_at(clean);
        self.each(|entry| {
            fifo.push(entry);
        })?;
        Ok(fifo)
    }
}

fn bad(what: &str) -> SnapshotError {
    SnapshotError::Inconsistent(what.to_owned())
}

impl Ledger {
    /// An immutable view of the whole state now, for encoding on another thread while this
    /// ledger goes on (see [`Frozen`]). O(directories): no entry is copied.
    pub fn freeze(&self) -> Frozen {
        Frozen {
            state: self.state.clone(),
        }
    }

    /// Encodes the whole state: header + body (see the module doc). Deterministic: equal
    /// ledgers give equal bytes. The same bytes as `self.freeze().encode()`.
    pub fn snapshot(&self) -> Vec<u8> {
        encode(&self.state)
    }

    /// BLAKE3 digest of [`Ledger::snapshot`], hex: equal on every replica that applied the same
    /// log.
    pub fn digest(&self) -> String {
        self.freeze().digest()
    }

    /// Rebuilds a ledger from [`Ledger::snapshot`] bytes, checking every invariant. Another
    /// format version is [`SnapshotError::UnsupportedVersion`].
    pub fn restore(bytes: &[u8]) -> Result<Ledger, SnapshotError> {
        if bytes.len() < 12 || bytes[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let mut r = Reader(&bytes[12..]);
        let state = read_state(&mut r)?;
        if !r.0.is_empty() {
            return Err(SnapshotError::Corrupt(format!(
                "{} trailing bytes",
                r.0.len()
            )));
        }
        let ledger = Ledger::from_state(state)?;
        ledger
            .check_invariants()
            .map_err(|e| SnapshotError::Inconsistent(e.0))?;
        Ok(ledger)
    }

    /// A ledger around a decoded state: every derived index rebuilt.
    fn from_state(state: State) -> Result<Ledger, SnapshotError> {
        let mut ledger = Ledger::new(state.config);
        if ledger.state.config != state.config {
            return Err(bad("config above the maxima"));
        }
        if state.channels.first().map(ChannelId::as_str) != Some(ChannelId::POS) {
            return Err(bad("channel 0 is not pos"));
        }
        ledger.state = state;
        ledger.rebuild_indexes()?;
        ledger.rebuild_access();
        Ok(ledger)
    }

    fn rebuild_indexes(&mut self) -> Result<(), SnapshotError> {
        let (state, ix) = (&self.state, &mut self.ix);
        *ix = Indexes::default();
        ix.channel = state
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u16))
            .collect();
        ix.location = state
            .locations
            .iter_from(0)
            .enumerate()
            .map(|(i, l)| (l.def.location.clone(), i as u32))
            .collect();
        ix.location_names = state
            .locations
            .iter_from(0)
            .map(|l| LocationName::from(&l.def.location))
            .collect();
        for (i, sku) in state.skus.iter_from(0).enumerate() {
            let skus = &state.skus;
            let hash = hash_str(sku.id.as_str());
            let same = |s: u32| skus.get(u64::from(s)).id == sku.id;
            if ix.sku.find(hash, same).is_some() {
                return Err(bad("duplicate SKU ids"));
            }
            ix.sku.set(hash, i as u32, |_| false);
        }
        let skus = &state.skus;
        ix.sku_sorted =
            crate::sku_order::SkuOrder::build((0..skus.end() as SkuIdx).collect(), |h| {
                skus.get(u64::from(h)).id.as_str()
            });
        if ix.location.len() as u64 != state.locations.end()
            || ix.channel.len() != state.channels.len()
        {
            return Err(bad("duplicate ids"));
        }
        rebuild_objects(state, ix)?;
        rebuild_kits_and_counts(state, ix)?;
        let dedup = &state.dedup;
        for pos in dedup.clean()..dedup.end() {
            let id = dedup.get(pos).request_id;
            // The later entry of a request id is the one remembered (an earlier one was
            // forgotten before it came again).
            ix.dedup.set(hash_u128(id), pos as u32, |low| {
                dedup.get(dedup.full_position(low)).request_id == id
            });
        }
        Ok(())
    }

    /// Checks every invariant between the ledger's parts, in O(state). Used after restore and
    /// by tests after every step:
    /// - every balance is consistent and belongs to exactly one (known SKU, known location);
    /// - reserved = sum of active holds, allocated = sum of unfulfilled order lines, incoming =
    ///   sum of shipped transfers, per balance, and every line names its own balance;
    /// - counters, deadlines, the retirement queue and the lookup tables agree with the objects.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_all().map_err(InvariantViolation)
    }

    fn check_all(&self) -> Result<(), String> {
        let expected = self.check_objects()?;
        self.check_balances(expected)?;
        self.check_logs()?;
        self.check_kits()?;
        self.check_counts()?;
        let state = &self.state;
        for group in state.groups.values() {
            if group.iter().any(|&l| u64::from(l) >= state.locations.end()) {
                return Err("group names an unknown location".to_owned());
            }
        }
        for loc in state.locations.iter_from(0) {
            if let Some(channels) = &loc.channels {
                if channels.iter().any(|&c| c as usize >= state.channels.len()) {
                    return Err("location allows an unknown channel".to_owned());
                }
            }
        }
        Ok(())
    }

    /// Checks the objects and returns what they hold per balance.
    fn check_objects(&self) -> Result<FxHashMap<BalIdx, Accounted>, String> {
        let mut tally = Tally::default();
        self.check_reservations(&mut tally)?;
        self.check_orders(&mut tally)?;
        self.check_rmas()?;
        self.check_transfers(&mut tally)?;
        let ix = &self.ix;
        let counted = (tally.live, tally.open, tally.open_transfers);
        if counted != (ix.live_reservations, ix.open_orders, ix.open_transfers) {
            return Err("object counters disagree".to_owned());
        }
        if tally.deadlines != ix.deadlines.len() {
            return Err(format!(
                "{} deadlines for {} live objects",
                ix.deadlines.len(),
                tally.deadlines
            ));
        }
        Ok(tally.expected)
    }

    /// Whether a line of `sku` at `loc` names that pair's own balance `bal`.
    fn names_its_balance(&self, sku: SkuIdx, loc: LocIdx, bal: BalIdx) -> bool {
        self.known_sku(sku) && self.bal_of(sku, loc) == Some(bal)
    }

    /// Every active hold has its deadline and holds positive units on its own balances.
    fn check_reservations(&self, tally: &mut Tally) -> Result<(), String> {
        let (state, ix) = (&self.state, &self.ix);
        for (slot, r) in state.reservations.iter() {
            self.check_indexed(&ix.reservation, &state.reservations, slot, r)?;
            if r.state != ReservationState::Active {
                continue;
            }
            tally.live += 1;
            tally.deadlines += 1;
            if !ix.deadlines.is_live(r.expires_at_ms, Deadline::Hold(slot)) {
                return Err(format!("reservation {:?} has no deadline", r.id));
            }
            for h in &r.held {
                if h.qty <= 0 || !self.names_its_balance(h.sku, h.loc, h.bal) {
                    return Err(format!("reservation {:?} holds {h:?}", r.id));
                }
                tally.expected.entry(h.bal).or_default().reserved += h.qty;
            }
        }
        Ok(())
    }

    /// Every order line is non-negative on its own balance, and an open pickup order not yet
    /// expired has its deadline.
    fn check_orders(&self, tally: &mut Tally) -> Result<(), String> {
        let (state, ix) = (&self.state, &self.ix);
        for (slot, o) in state.orders.iter() {
            self.check_indexed(&ix.order, &state.orders, slot, o)?;
            for l in &o.lines {
                if l.unfulfilled() < 0 || l.fulfilled < 0 || l.cancelled < 0 {
                    return Err(format!("order {:?} line below zero", o.id));
                }
                if !self.names_its_balance(l.sku, l.loc, l.bal) {
                    return Err(format!("order {:?} line on a wrong balance", o.id));
                }
                tally.expected.entry(l.bal).or_default().allocated += l.unfulfilled();
            }
            if o.unfulfilled() > 0 {
                tally.open += 1;
                if let (Some(d), false) = (o.pickup_deadline_ms, o.pickup_expired) {
                    tally.deadlines += 1;
                    if !ix.deadlines.is_live(d, Deadline::Pickup(slot)) {
                        return Err(format!("order {:?} has no pickup deadline", o.id));
                    }
                }
            }
        }
        Ok(())
    }

    fn known_loc(&self, loc: LocIdx) -> bool {
        u64::from(loc) < self.state.locations.end()
    }

    /// Every RMA names known SKUs and locations.
    fn check_rmas(&self) -> Result<(), String> {
        let (state, ix) = (&self.state, &self.ix);
        for (slot, rma) in state.rmas.iter() {
            self.check_indexed(&ix.rma, &state.rmas, slot, rma)?;
            if !rma
                .lines
                .iter()
                .all(|l| self.known_sku(l.sku) && self.known_loc(l.loc))
            {
                return Err(format!("RMA {} names an unknown SKU or location", rma.id));
            }
        }
        Ok(())
    }

    /// Every transfer names known SKUs and locations, and a shipped one is incoming at a
    /// balance of its destination.
    fn check_transfers(&self, tally: &mut Tally) -> Result<(), String> {
        let (state, ix) = (&self.state, &self.ix);
        for (slot, t) in state.transfers.iter() {
            self.check_indexed(&ix.transfer, &state.transfers, slot, t)?;
            if !self.known_sku(t.sku) || !self.known_loc(t.from) || !self.known_loc(t.to) {
                return Err(format!(
                    "transfer {} names an unknown SKU or location",
                    t.id
                ));
            }
            if t.state == TransferState::Shipped {
                tally.open_transfers += 1;
                let Some(bal) = self
                    .known_sku(t.sku)
                    .then(|| self.bal_of(t.sku, t.to))
                    .flatten()
                else {
                    return Err(format!("transfer {} ships to no balance", t.id));
                };
                tally.expected.entry(bal).or_default().incoming += t.qty;
            }
        }
        Ok(())
    }

    fn known_sku(&self, sku: SkuIdx) -> bool {
        u64::from(sku) < self.state.skus.end()
    }

    /// A retained object must be found by its id; a retired one must sit in the retirement
    /// queue at its position.
    fn check_indexed<R: Record + Clone>(
        &self,
        table: &IdTable,
        slab: &Slab<R>,
        slot: ObjIdx,
        record: &R,
    ) -> Result<(), String> {
        if let Some(pos) = record.retired_pos() {
            let retired = &self.state.retired;
            if pos < retired.clean() || pos >= retired.end() {
                return Err(format!("{} retired at a cleaned-up position", record.id()));
            }
            let what = retired.get(pos).what;
            let slot_there = match what {
                Retired::Reservation(s)
                | Retired::Order(s)
                | Retired::Rma(s)
                | Retired::Transfer(s) => s,
            };
            if slot_there != slot {
                return Err(format!("{} is not where the queue says", record.id()));
            }
        }
        if self.state.retained(record)
            && find_record(table, slab, &self.state, record.id(), hash_str(record.id()))
                != Some(slot)
        {
            return Err(format!("{} is not indexed", record.id()));
        }
        Ok(())
    }

    fn check_balances(&self, mut expected: FxHashMap<BalIdx, Accounted>) -> Result<(), String> {
        let state = &self.state;
        let mut owner: Vec<Option<(SkuIdx, LocIdx)>> = vec![None; state.balances.end() as usize];
        for (s, entry) in state.skus.iter_from(0).enumerate() {
            if !entry.balances.windows(2).all(|w| w[0].0 < w[1].0) {
                return Err(format!("SKU {:?} balances out of order", entry.id));
            }
            for &(loc, bal) in &entry.balances {
                let slot = owner
                    .get_mut(bal as usize)
                    .ok_or("unknown balance handle")?;
                if slot.is_some() || u64::from(loc) >= state.locations.end() {
                    return Err(format!(
                        "balance {bal} listed twice or at an unknown location"
                    ));
                }
                *slot = Some((s as SkuIdx, loc));
            }
        }
        for (bal, b) in state.balances.iter_from(0).enumerate() {
            let Some((sku, loc)) = owner[bal] else {
                return Err(format!("balance {bal} belongs to no SKU"));
            };
            let b = b.unpack();
            if !b.is_consistent() {
                return Err(format!("balance {sku}/{loc} out of range: {b:?}"));
            }
            let Accounted {
                reserved,
                allocated,
                incoming,
            } = expected.remove(&(bal as BalIdx)).unwrap_or_default();
            if (b.reserved, b.allocated, b.incoming) != (reserved, allocated, incoming) {
                return Err(format!(
                    "balance {}@{}: reserved/allocated/incoming {}/{}/{} but objects say {reserved}/{allocated}/{incoming}",
                    self.sku(sku).id.as_str(), self.loc(loc).def.location, b.reserved, b.allocated, b.incoming
                ));
            }
        }
        Ok(())
    }

    fn check_logs(&self) -> Result<(), String> {
        let dedup = &self.state.dedup;
        for pos in dedup.head()..dedup.end() {
            let id = dedup.get(pos).request_id;
            let found = self.ix.dedup.find(hash_u128(id), |low| {
                dedup.get(dedup.full_position(low)).request_id == id
            });
            if found.map(|low| dedup.full_position(low)) != Some(pos) {
                return Err(format!("dedup entry {pos} is not indexed"));
            }
        }
        let retired = &self.state.retired;
        for pos in retired.clean()..retired.end() {
            let found = match retired.get(pos).what {
                Retired::Reservation(s) => self.state.reservations.get(s).map(|r| r.retired_pos),
                Retired::Order(s) => self.state.orders.get(s).map(|o| o.retired_pos),
                Retired::Rma(s) => self.state.rmas.get(s).map(|r| r.retired_pos),
                Retired::Transfer(s) => self.state.transfers.get(s).map(|t| t.retired_pos),
            };
            if found != Some(Some(pos)) {
                return Err(format!(
                    "retirement queue entry {pos} names no retired object"
                ));
            }
        }
        Ok(())
    }
}

impl Ledger {
    /// Kits move together: in every active hold and every order, each kit line has, per
    /// location, the same number of kits in every component (`units = kits x part qty`, in
    /// ordered, fulfilled and cancelled alike).
    fn check_kits(&self) -> Result<(), String> {
        for (_, r) in self.state.reservations.iter() {
            let Some(extra) = &r.extra else { continue };
            if r.state != ReservationState::Active {
                continue;
            }
            for k in &extra.kits {
                let first = k.composition[0];
                for h in r
                    .held
                    .iter()
                    .filter(|h| h.line == k.line && h.sku == first.sku)
                {
                    let kits = h.qty / first.qty;
                    for part in k.composition.iter() {
                        let held = r
                            .held
                            .iter()
                            .find(|o| o.line == k.line && o.sku == part.sku && o.loc == h.loc);
                        if held.map(|o| o.qty) != Some(kits * part.qty) {
                            return Err(format!("hold {:?} kit line {} apart", r.id, k.line));
                        }
                    }
                }
            }
        }
        for (_, o) in self.state.orders.iter() {
            for (k, kit) in o.kits().iter().enumerate() {
                let (ordered, fulfilled, cancelled) = o.kit_units(k as u16);
                for part in kit.composition.iter() {
                    let line = o.component_line(k as u16, part.sku);
                    let units = line.map(|l| (l.ordered, l.fulfilled, l.cancelled));
                    let want = (
                        ordered * part.qty,
                        fulfilled * part.qty,
                        cancelled * part.qty,
                    );
                    if units != Some(want) || line.is_some_and(|l| l.loc != kit.loc) {
                        return Err(format!("order {:?} kit line {k} apart", o.id));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every purchase-limit record counts, under its generation, exactly the units its
    /// customer's active holds counted; records and their entries match the derived totals.
    fn check_counts(&self) -> Result<(), String> {
        let mut held: FxHashMap<(SkuIdx, &str, u64), i64> = FxHashMap::default();
        for (_, r) in self.state.reservations.iter() {
            let Some(extra) = &r.extra else { continue };
            let (Some(customer), ReservationState::Active) = (&extra.customer, r.state) else {
                continue;
            };
            for c in &extra.counted {
                *held
                    .entry((c.sku, customer.as_str(), c.generation))
                    .or_default() += c.units;
            }
        }
        let mut entries = 0;
        for (_, record) in self.state.counts.iter() {
            entries += 1 + record.orders.len();
            let live = (record.sku, record.customer.as_str(), record.generation);
            if held.get(&live).copied().unwrap_or(0) != record.held {
                return Err(format!(
                    "limit record {:?} holds {}",
                    record.customer, record.held
                ));
            }
            if record.orders.iter().any(|o| o.units <= 0) {
                return Err(format!(
                    "limit record {:?} has an empty order",
                    record.customer
                ));
            }
        }
        if entries != self.ix.counted_entries
            || self.ix.count.len() != self.state.counts.iter().count()
        {
            return Err("limit counters disagree".to_owned());
        }
        Ok(())
    }
}

/// Reads a state in [`encode`]'s order.
fn read_state(r: &mut Reader) -> Result<State, SnapshotError> {
    let config: Config = r.take()?;
    let (now_ms, applied_index, next_seq): (u64, u64, u64) = r.take()?;
    let channels: Vec<ChannelId> = r.take()?;
    let locations = r.pages()?;
    let groups: BTreeMap<GroupId, Arc<[LocIdx]>> = r.take()?;
    let skus = r.pages()?;
    let balances = r.balances()?;
    let (reservations, orders, rmas, transfers) = (r.slab()?, r.slab()?, r.slab()?, r.slab()?);
    let retired = r.fifo()?;
    let dedup = r.fifo()?;
    let feed_head: u64 = r.take()?;
    let feed = r.fifo_entries(feed_head)?;
    let access = r.take()?;
    let counts = r.slab()?;
    let count_sweep = r.take()?;
    Ok(State {
        config,
        now_ms,
        applied_index,
        next_seq,
        channels: Arc::new(channels),
        locations,
        groups: Arc::new(groups),
        skus,
        balances,
        reservations,
        orders,
        rmas,
        transfers,
        retired,
        dedup,
        feed,
        access,
        counts,
        count_sweep,
    })
}

/// Indexes the objects of `state` by id (a retained object wins over a dropped one with the
/// same id that awaits clean-up), and rebuilds the deadlines and counters.
fn rebuild_objects(state: &State, ix: &mut Indexes) -> Result<(), SnapshotError> {
    fn index_all<R: Record + Clone>(state: &State, table: &mut IdTable, slab: &Slab<R>) {
        for retained in [false, true] {
            for (slot, record) in slab.iter() {
                if state.retained(record) == retained {
                    index_record(table, slab, slot, hash_str(record.id()));
                }
            }
        }
    }
    index_all(state, &mut ix.reservation, &state.reservations);
    index_all(state, &mut ix.order, &state.orders);
    index_all(state, &mut ix.rma, &state.rmas);
    index_all(state, &mut ix.transfer, &state.transfers);
    for (slot, r) in state.reservations.iter() {
        if r.state == ReservationState::Active {
            ix.live_reservations += 1;
            ix.deadlines
                .insert(r.expires_at_ms, r.seq, Deadline::Hold(slot));
        }
    }
    for (slot, o) in state.orders.iter() {
        if o.unfulfilled() > 0 {
            ix.open_orders += 1;
            if let (Some(deadline), false) = (o.pickup_deadline_ms, o.pickup_expired) {
                ix.deadlines.insert(deadline, o.seq, Deadline::Pickup(slot));
            }
            crate::search::index_pickups(state, ix, slot);
        }
    }
    ix.open_transfers = state
        .transfers
        .iter()
        .filter(|(_, t)| t.state == TransferState::Shipped)
        .count();
    Ok(())
}

/// Rebuilds the derived kit and purchase-limit counters: components named by kits, kits in
/// use (active holds' kit lines, orders' kit lines with unfulfilled units), limited SKUs and
/// the counted records' index and totals.
fn rebuild_kits_and_counts(state: &State, ix: &mut Indexes) -> Result<(), SnapshotError> {
    check_compositions(state)?;
    for (i, sku) in state.skus.iter_from(0).enumerate() {
        let Some(extra) = &sku.extra else { continue };
        for part in extra.kit.iter().flat_map(|c| c.iter()) {
            *ix.component_of.entry(part.sku).or_default() += 1;
        }
        if extra.limit.is_some() {
            ix.limited_skus += 1;
        }
        if extra.kit.is_some() && !sku.balances.is_empty() {
            return Err(bad(&format!("kit {i} has balances")));
        }
    }
    let mut use_kit = |kit: SkuIdx| *ix.kit_uses.entry(kit).or_default() += 1;
    for (_, r) in state.reservations.iter() {
        if r.state == ReservationState::Active {
            r.extra
                .iter()
                .flat_map(|e| &e.kits)
                .for_each(|k| use_kit(k.kit));
        }
    }
    for (_, o) in state.orders.iter() {
        for (k, kit) in o.kits().iter().enumerate() {
            let (ordered, fulfilled, cancelled) = o.kit_units(k as u16);
            if ordered > fulfilled + cancelled {
                use_kit(kit.kit);
            }
        }
    }
    for (slot, record) in state.counts.iter() {
        let key = (record.sku, record.customer.clone());
        if ix.count.insert(key, slot).is_some() {
            return Err(bad("duplicate purchase-limit records"));
        }
        ix.counted_entries += 1 + record.orders.len();
        *ix.customers.entry(record.sku).or_default() += 1;
    }
    Ok(())
}

/// Every composition a snapshot holds (kits, holds' kit lines, orders' kit lines) is 1..=16
/// parts of known SKUs with positive quantities, and every order line names an existing kit
/// line or none: what the rest of the engine indexes without checking.
fn check_compositions(state: &State) -> Result<(), SnapshotError> {
    let valid = |c: &crate::state::Composition| {
        !c.is_empty()
            && c.len() <= crate::limits::KIT_COMPONENTS_MAX
            && c.iter()
                .all(|p| p.qty > 0 && u64::from(p.sku) < state.skus.end())
    };
    for sku in state.skus.iter_from(0) {
        if let Some(c) = sku.extra.as_ref().and_then(|e| e.kit.as_ref()) {
            if !valid(c) {
                return Err(bad("kit composition"));
            }
        }
    }
    for (_, r) in state.reservations.iter() {
        if r.extra
            .iter()
            .flat_map(|e| &e.kits)
            .any(|k| !valid(&k.composition))
        {
            return Err(bad("hold kit line"));
        }
    }
    for (_, o) in state.orders.iter() {
        let kits = o.kits();
        if kits.iter().any(|k| !valid(&k.composition))
            || o.lines
                .iter()
                .any(|l| l.kit != crate::state::NO_KIT && usize::from(l.kit) >= kits.len())
        {
            return Err(bad("order kit line"));
        }
    }
    Ok(())
}

//! The replicated state ([`State`]: arenas and small shared tables, everything a snapshot
//! holds) and what is derived from it ([`Indexes`]: rebuilt on restore, never in a snapshot).
//!
//! Layout (ARCHITECTURE.md, engine): every arena is a [`Pages`] (or a [`Slab`] / [`Fifo`] on
//! top of one), so cloning a `State` — a freeze — costs O(directories), not O(entries).

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;

use crate::probe::ProbeTable;
use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::balance::{Balance, PackedBalance};
use crate::command::{Disposition, LocationDef};
use crate::fifo::Fifo;
use crate::ids::{ChannelId, CustomerId, GroupId, LocationId, OrderId, RmaId, SkuId, TransferId};
use crate::ledger::Config;
use crate::outcome::Outcome;
use crate::pages::Pages;
use crate::query::{Cause, ReservationState, TransferState};
use crate::slab::Slab;

/// Handle of an interned SKU (creation order).
pub(crate) type SkuIdx = u32;
/// Handle of a location (definition order).
pub(crate) type LocIdx = u32;
/// Handle of an interned channel; `pos` is 0.
pub(crate) type ChanIdx = u16;
/// Handle of a balance (creation order, never reused).
pub(crate) type BalIdx = u32;
/// Slot of a reservation, order, RMA or transfer in its slab.
pub(crate) type ObjIdx = u32;

/// Key of a balance in the change feed: SKU handle high, location handle low.
pub(crate) fn key(sku: SkuIdx, loc: LocIdx) -> u64 {
    (u64::from(sku) << 32) | u64::from(loc)
}

/// The (SKU, location) of a balance key.
pub(crate) fn unkey(key: u64) -> (SkuIdx, LocIdx) {
    ((key >> 32) as SkuIdx, key as LocIdx)
}

/// Hash of an id for the id -> handle tables (32 bits: stored beside each handle).
pub(crate) fn hash_str(s: &str) -> u32 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    (h.finish() >> 32) as u32
}

/// Hash of a request id for the dedup table (see [`hash_str`]).
pub(crate) fn hash_u128(x: u128) -> u32 {
    let mut h = FxHasher::default();
    h.write_u128(x);
    (h.finish() >> 32) as u32
}

/// Bits of an [`IdTable`]'s shard index (the top bits of an id's 32-bit hash pick its shard).
const ID_SHARD_BITS: u32 = crate::shard_map::MAP_SHARD_BITS;
/// Number of shards of an [`IdTable`].
const ID_SHARDS: usize = crate::shard_map::MAP_SHARDS;

/// Id -> handle, for ids kept in an arena: the table holds only handles and their ids' hashes
/// (8 bytes an entry); equality reads the arena, and only when the hashes match. Keeping the
/// hash means growing the table never reads the arena.
///
/// Split into [`ID_SHARDS`] hash tables so that no batch pays for growing a big one (SPEC
/// section 4, "No stalls"): one table of 4 M dedup ids doubles in tens of ms, and the dedup and
/// reservation tables, filled by the same writes, doubled in the same batch. Shards fill
/// evenly, so each grows early, at a fill between 5/8 and 3/4 that depends on its position
/// ([`crate::shard_map::grow_early_probe`]), which spreads the shards' doublings over an eighth of the table's growth
/// instead of letting them all fall on the same few writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdTable {
    /// Empty until the first insert (a table of a few ids costs nothing), then [`ID_SHARDS`].
    shards: Vec<ProbeTable>,
}

/// The shard of an id's hash.
fn shard_of(hash: u32) -> usize {
    (hash >> (32 - ID_SHARD_BITS)) as usize
}

impl IdTable {
    /// The handle whose id hashes to `hash` and for which `is` holds. `is` may also be asked
    /// about entries whose hash differs from `hash` in bit 0 (one tag stands for both, see
    /// [`ProbeTable`]): it must compare the ids themselves, never assume the hashes matched.
    #[inline]
    pub(crate) fn find(&self, hash: u32, is: impl Fn(u32) -> bool) -> Option<u32> {
        self.shards.get(shard_of(hash))?.find(hash, is)
    }

    /// Starts loading the slot where a lookup of `hash` begins, so that the lookup a few
    /// requests later finds it cached (see [`crate::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u32) {
        if let Some(shard) = self.shards.get(shard_of(hash)) {
            shard.prefetch(hash);
        }
    }

    /// The handle of the first entry of `hash`, unchecked (see
    /// [`ProbeTable::first_candidate`]): for prefetching only.
    #[inline]
    pub(crate) fn first_candidate(&self, hash: u32) -> Option<u32> {
        self.shards.get(shard_of(hash))?.first_candidate(hash)
    }

    /// The shard of `hash`, the shards made if this is the first insert.
    fn shard_mut(&mut self, hash: u32) -> &mut ProbeTable {
        if self.shards.is_empty() {
            self.shards = (0..ID_SHARDS).map(|_| ProbeTable::default()).collect();
        }
        &mut self.shards[shard_of(hash)]
    }

    /// Points the entry for which `same` holds at `handle`, or adds one.
    pub(crate) fn set(&mut self, hash: u32, handle: u32, same: impl Fn(u32) -> bool) {
        if !self.shard_mut(hash).repoint(hash, handle, same) {
            self.insert_new(hash, handle);
        }
    }

    /// Adds an entry for an id the caller just looked up and found no entry for (not even a
    /// stale one).
    pub(crate) fn insert_new(&mut self, hash: u32, handle: u32) {
        let shard = self.shard_mut(hash);
        crate::shard_map::grow_early_probe(shard, shard_of(hash));
        shard.insert_unique(hash, handle);
    }

    /// Removes the entry of `handle` (whose id hashes to `hash`), if there is one.
    pub(crate) fn remove(&mut self, hash: u32, handle: u32) {
        if let Some(shard) = self.shards.get_mut(shard_of(hash)) {
            shard.remove(hash, |h| h == handle);
        }
    }

    /// Entries in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(ProbeTable::len).sum()
    }
}

/// An id stored once, inline up to `N` bytes (48 for reservation and order ids: a UUID is 36;
/// 24 for SKU ids, which are short and one per SKU entry), so storing one usually allocates
/// nothing and comparing one reads no other memory. Longer ids spill to the heap.
/// Ordered by bytes (for ASCII ids, the order of the strings): the sorted SKU index.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct IdBuf<const N: usize = 48>(SmallVec<[u8; N]>);

impl<const N: usize> IdBuf<N> {
    /// Stores a (validated, ASCII) id.
    pub(crate) fn new(id: &str) -> Self {
        IdBuf(SmallVec::from_slice(id.as_bytes()))
    }

    /// Whether this is `id` (bytes compared: no UTF-8 check on the hot path).
    pub(crate) fn is(&self, id: &str) -> bool {
        self.0[..] == *id.as_bytes()
    }

    /// The id.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ids are checked ASCII before they are stored")
    }
}

impl<const N: usize> std::fmt::Debug for IdBuf<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SkuEntry {
    /// Inline, so that comparing it (every lookup) reads no other memory.
    pub id: IdBuf<24>,
    pub scale: u8,
    /// (location, balance handle) of every balance of this SKU, by location ascending.
    pub balances: Vec<(LocIdx, BalIdx)>,
    /// A kit definition and/or a purchase limit: boxed, so the millions of plain SKUs pay one
    /// pointer for them.
    pub extra: Option<Box<SkuExtra>>,
}

/// What few SKUs have: a kit definition, a purchase limit (SPEC section 3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SkuExtra {
    /// The kit's current composition (`None`: not a kit).
    pub kit: Option<Composition>,
    /// The SKU's purchase limit, if any.
    pub limit: Option<PurchaseLimit>,
}

/// One component of a kit: `qty` base units of `sku` per kit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part {
    pub sku: SkuIdx,
    pub qty: i64,
}

/// A kit's composition, shared by the kit and by the holds and orders placed with it (orders
/// keep the composition they were placed with).
pub(crate) type Composition = Arc<[Part]>;

/// A SKU's purchase limit (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PurchaseLimit {
    pub qty_max: i64,
    pub window_ms: u64,
    pub strict: bool,
    /// Which setting of the limit counts: a new limit (none before) takes a new generation, so
    /// the counts of a removed one are void without visiting them (the sweep drops them).
    pub generation: u64,
}

impl SkuEntry {
    /// The SKU's id, for views and rejections.
    pub fn sku_id(&self) -> SkuId {
        SkuId::from(self.id.as_str())
    }

    /// The balance handle at `loc`, if this SKU has a balance there.
    #[inline]
    pub fn balance_at(&self, loc: LocIdx) -> Option<BalIdx> {
        // A SKU stocked at every location up to `loc` has that balance at index `loc` (the
        // list is sorted by distinct locations): one compare instead of a binary search.
        if let Some(&(l, bal)) = self.balances.get(loc as usize) {
            if l == loc {
                return Some(bal);
            }
        }
        self.balances
            .binary_search_by_key(&loc, |(l, _)| *l)
            .ok()
            .map(|i| self.balances[i].1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LocationEntry {
    pub def: LocationDef,
    /// Allowed channels, interned and sorted; `None` allows all.
    pub channels: Option<Vec<ChanIdx>>,
}

/// A held or allocated quantity of one request line at one balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held {
    pub line: u16,
    pub sku: SkuIdx,
    pub loc: LocIdx,
    pub bal: BalIdx,
    pub qty: i64,
}

/// The lines of a hold or a placed request: inline for up to three lines.
pub(crate) type HeldVec = SmallVec<[Held; 3]>;

/// Something that can be retired and then dropped by retention.
pub(crate) trait Record {
    /// The client's id.
    fn id(&self) -> &str;
    /// Whether the client's id is `id`.
    fn is(&self, id: &str) -> bool {
        self.id() == id
    }
    /// Position in the retirement queue once finished.
    fn retired_pos(&self) -> Option<u64>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reservation {
    pub id: IdBuf,
    pub seq: u64,
    pub channel: ChanIdx,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub state: ReservationState,
    pub held: HeldVec,
    pub retired_pos: Option<u64>,
    /// Kit lines, customer and counted units (`None` for a plain hold).
    pub extra: Option<Box<HoldExtra>>,
}

/// A kit line of a hold: its held lines numbered `line` are the kit's components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KitLine {
    pub line: u16,
    pub kit: SkuIdx,
    pub composition: Composition,
}

/// Units counted against a purchase limit by a hold or an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counted {
    pub sku: SkuIdx,
    /// The limit generation they count under.
    pub generation: u64,
    pub units: i64,
}

/// What few holds have: kit lines, a customer, units counted against limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HoldExtra {
    pub customer: Option<CustomerId>,
    pub kits: Vec<KitLine>,
    pub counted: Vec<Counted>,
}

/// A kit line of an order at one location; the order lines whose `kit` is its index are its
/// components (they move together: every component line has `kits * part qty` units in each
/// state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderKit {
    pub kit: SkuIdx,
    pub loc: LocIdx,
    pub composition: Composition,
}

/// What few orders have: kit lines, a customer, counted units, the exchange they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderExtra {
    pub customer: Option<CustomerId>,
    pub kits: Vec<OrderKit>,
    pub counted: Vec<Counted>,
    /// The RMA of the exchange that placed this order.
    pub exchange_of: Option<RmaId>,
}

/// `OrderLine::kit` of a line that belongs to no kit.
pub(crate) const NO_KIT: u16 = u16::MAX;

/// What one customer has counted against one SKU's purchase limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CustomerCount {
    pub sku: SkuIdx,
    pub customer: CustomerId,
    /// The limit generation this counts under (another one: void).
    pub generation: u64,
    /// Units in the customer's live holds.
    pub held: i64,
    /// Units of the customer's orders, by placement (time order).
    pub orders: SmallVec<[OrderCount; 1]>,
}

/// Units of one order counted against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderCount {
    pub order_seq: u64,
    pub placed_at_ms: u64,
    pub units: i64,
}

impl CustomerCount {
    /// Units counted at `now` under `limit`: live holds plus orders placed less than the window
    /// ago. Saturating: any sum above the limit means the same.
    pub fn counted(&self, limit: &PurchaseLimit, now: u64) -> i64 {
        if self.generation != limit.generation {
            return 0;
        }
        let horizon = now.saturating_sub(limit.window_ms);
        self.orders
            .iter()
            .filter(|o| o.placed_at_ms > horizon || now < limit.window_ms)
            .fold(self.held, |sum, o| sum.saturating_add(o.units))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderLine {
    pub sku: SkuIdx,
    pub loc: LocIdx,
    pub bal: BalIdx,
    pub pickup: bool,
    pub ordered: i64,
    pub fulfilled: i64,
    pub cancelled: i64,
    /// Index of the order's kit line this component line belongs to, or [`NO_KIT`].
    pub kit: u16,
}

impl OrderLine {
    pub fn unfulfilled(&self) -> i64 {
        self.ordered - self.fulfilled - self.cancelled
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Order {
    pub id: IdBuf,
    pub seq: u64,
    pub channel: ChanIdx,
    pub created_at_ms: u64,
    pub lines: SmallVec<[OrderLine; 2]>,
    /// Units returned per SKU.
    pub returned: Vec<(SkuIdx, i64)>,
    pub pickup_deadline_ms: Option<u64>,
    /// The pickup deadline passed and the pickup lines were cancelled.
    pub pickup_expired: bool,
    pub ready: bool,
    pub retired_pos: Option<u64>,
    /// Kit lines, customer, counted units, exchange (`None` for a plain order).
    pub extra: Option<Box<OrderExtra>>,
}

impl Order {
    pub fn unfulfilled(&self) -> i64 {
        self.lines.iter().map(OrderLine::unfulfilled).sum()
    }

    /// The plain (not kit component) line of (sku, loc).
    pub fn line_mut(&mut self, sku: SkuIdx, loc: LocIdx) -> Option<&mut OrderLine> {
        self.lines
            .iter_mut()
            .find(|l| l.sku == sku && l.loc == loc && l.kit == NO_KIT)
    }

    /// The plain (not kit component) line of (sku, loc).
    pub fn line(&self, sku: SkuIdx, loc: LocIdx) -> Option<&OrderLine> {
        self.lines
            .iter()
            .find(|l| l.sku == sku && l.loc == loc && l.kit == NO_KIT)
    }

    /// The kit lines (empty for most orders).
    pub fn kits(&self) -> &[OrderKit] {
        self.extra.as_ref().map_or(&[], |e| &e.kits)
    }

    /// The component line of `sku` in kit line `k`.
    pub fn component_line(&self, k: u16, sku: SkuIdx) -> Option<&OrderLine> {
        self.lines.iter().find(|l| l.kit == k && l.sku == sku)
    }

    /// Kit units of kit line `k`: (ordered, fulfilled, cancelled), read from its first
    /// component (they move together).
    pub fn kit_units(&self, k: u16) -> (i64, i64, i64) {
        let kit = &self.kits()[usize::from(k)];
        let part = kit.composition[0];
        self.component_line(k, part.sku).map_or((0, 0, 0), |l| {
            (
                l.ordered / part.qty,
                l.fulfilled / part.qty,
                l.cancelled / part.qty,
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RmaLine {
    pub sku: SkuIdx,
    pub qty: i64,
    pub loc: LocIdx,
    pub disposition: Disposition,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rma {
    pub id: RmaId,
    pub order: OrderId,
    pub lines: Vec<RmaLine>,
    pub received_at_ms: u64,
    pub retired_pos: Option<u64>,
    /// The new order of the exchange this RMA was part of.
    pub exchange_of: Option<OrderId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Transfer {
    pub id: TransferId,
    pub sku: SkuIdx,
    pub from: LocIdx,
    pub to: LocIdx,
    pub qty: i64,
    pub state: TransferState,
    pub received: i64,
    pub damaged: i64,
    pub shipped_at_ms: u64,
    pub retired_pos: Option<u64>,
}

impl Record for Reservation {
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn is(&self, id: &str) -> bool {
        self.id.is(id)
    }
    fn retired_pos(&self) -> Option<u64> {
        self.retired_pos
    }
}

impl Record for Order {
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn is(&self, id: &str) -> bool {
        self.id.is(id)
    }
    fn retired_pos(&self) -> Option<u64> {
        self.retired_pos
    }
}

impl Record for Rma {
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn retired_pos(&self) -> Option<u64> {
        self.retired_pos
    }
}

impl Record for Transfer {
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn retired_pos(&self) -> Option<u64> {
        self.retired_pos
    }
}

/// A finished object, by slot, waiting for its retention to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Retired {
    Reservation(ObjIdx),
    Order(ObjIdx),
    Rma(ObjIdx),
    Transfer(ObjIdx),
}

/// An entry of the retirement queue: when the object finished, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetiredEntry {
    pub at_ms: u64,
    pub what: Retired,
}

/// A change-feed entry (its sequence number is its position + 1), with interned ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventRecord {
    pub log_index: u64,
    pub timestamp_ms: u64,
    /// 0 = no request (expiry).
    pub request_id: u128,
    pub cause: Cause,
    pub key: u64,
    pub balance: Balance,
    pub shortfall: i64,
    /// Author handle (`access`); 0 = none.
    pub author: u32,
}

/// One line of a remembered reservation or order reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RepLine {
    pub line: u16,
    pub loc: LocIdx,
    pub qty: i64,
}

/// Lines of a remembered reply: inline for up to three.
pub(crate) type RepLines = SmallVec<[RepLine; 3]>;

/// A request's result as the dedup log keeps it: compact for the common replies (no heap for up
/// to three lines), the full outcome otherwise. `Ledger::expand` turns it back into the
/// outcome, identical every time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Remembered {
    Done,
    /// A stock write's reply, inline: loading stock remembers millions of these, and a boxed
    /// copy each would leave the heap fragmented once they are forgotten.
    Balance(Balance),
    Reserved {
        expires_at_ms: u64,
        lines: RepLines,
    },
    OrderPlaced {
        pickup_deadline_ms: Option<u64>,
        lines: RepLines,
    },
    Other(Box<Outcome>),
}

/// One remembered request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupEntry {
    pub request_id: u128,
    pub at_ms: u64,
    pub reply: Remembered,
}

/// What a deadline entry refers to: a hold or a pickup order, by slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Deadline {
    Hold(ObjIdx),
    Pickup(ObjIdx),
}

/// The replicated state: everything a snapshot holds, nothing derived. `Clone` is the freeze:
/// O(directories) reference counts (see [`Pages`]).
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub config: Config,
    pub now_ms: u64,
    pub applied_index: u64,
    /// Next object sequence number (reservations and orders), for deterministic tie-breaks.
    pub next_seq: u64,
    /// Interned channels; `pos` is 0. Small (`CHANNELS_MAX`), copied on write after a freeze.
    pub channels: Arc<Vec<ChannelId>>,
    pub locations: Pages<LocationEntry>,
    /// Groups by id. Small (`GROUPS_MAX`); the map is copied on write after a freeze, the
    /// location lists are shared.
    pub groups: Arc<BTreeMap<GroupId, Arc<[LocIdx]>>>,
    pub skus: Pages<SkuEntry>,
    /// Balances by handle, packed (40 bytes each: [`PackedBalance`]).
    pub balances: Pages<PackedBalance>,
    pub reservations: Slab<Reservation>,
    pub orders: Slab<Order>,
    pub rmas: Slab<Rma>,
    pub transfers: Slab<Transfer>,
    /// Finished objects in the order they finished (time is monotonic, so also by time).
    pub retired: Fifo<RetiredEntry>,
    /// Remembered request outcomes in arrival order (so also by time).
    pub dedup: Fifo<DedupEntry>,
    /// The change feed: event sequence number = position + 1.
    pub feed: Fifo<EventRecord>,
    /// Authors of writes and revoked credentials (`access`).
    pub access: crate::access::AccessState,
    /// What customers have counted against purchase limits, one record per (SKU, customer).
    pub counts: Slab<CustomerCount>,
    /// Next slot of `counts` the forgetting sweep visits.
    pub count_sweep: u32,
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        State {
            config,
            now_ms: 0,
            applied_index: 0,
            next_seq: 1,
            channels: Arc::new(Vec::new()),
            locations: Pages::default(),
            groups: Arc::new(BTreeMap::new()),
            skus: Pages::default(),
            balances: Pages::default(),
            reservations: Slab::default(),
            orders: Slab::default(),
            rmas: Slab::default(),
            transfers: Slab::default(),
            retired: Fifo::default(),
            dedup: Fifo::default(),
            feed: Fifo::default(),
            access: crate::access::AccessState::default(),
            counts: Slab::default(),
            count_sweep: 0,
        }
    }

    /// Whether a retired record is still retained (not behind the retirement queue's head).
    pub(crate) fn retained<R: Record>(&self, record: &R) -> bool {
        record
            .retired_pos()
            .is_none_or(|pos| pos >= self.retired.head())
    }
}

/// Indexes derived from a [`State`]: rebuilt on restore, never in a snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Indexes {
    /// SKU id -> handle (equality reads the SKU arena).
    pub sku: IdTable,
    pub location: FxHashMap<LocationId, LocIdx>,
    /// Location handle -> its id, shared with every reply that names it (`Allocation`).
    pub location_names: Vec<crate::ids::LocationName>,
    pub channel: FxHashMap<ChannelId, ChanIdx>,
    /// The channel of the last reserve or order committed (a hint for
    /// `Ledger::lookup_channel`; `pos` after a restore). Never changes a result.
    pub recent_channel: ChanIdx,
    /// Object id -> slot (equality reads the slab). May still name a slot whose record is
    /// behind the retirement head until the clean-up removes it.
    pub reservation: IdTable,
    pub order: IdTable,
    pub rma: IdTable,
    pub transfer: IdTable,
    /// Request id -> dedup position, kept as its low 32 bits (the dedup log spans far fewer
    /// positions; see [`Fifo::full_position`]); equality reads the dedup log.
    pub dedup: IdTable,
    pub deadlines: crate::deadlines::Deadlines,
    /// SKU handles in byte order of their ids, for prefix search (`search.rs`).
    pub sku_sorted: crate::sku_order::SkuOrder,
    /// (location, deadline, seq, slot) of every open pickup order with a pickup line at that
    /// location and a deadline not yet passed by a batch (`search.rs`).
    pub pickups: std::collections::BTreeSet<(LocIdx, u64, u64, ObjIdx)>,
    pub live_reservations: usize,
    pub open_orders: usize,
    pub open_transfers: usize,
    /// Author -> handle (`access`).
    pub author: FxHashMap<crate::access::Author, u32>,
    /// The earliest expiry on the deny list (`u64::MAX` if empty).
    pub revoked_next_expiry: u64,
    /// (SKU, customer) -> slot of their record in `State::counts`.
    pub count: FxHashMap<(SkuIdx, CustomerId), ObjIdx>,
    /// Counted entries of all limits (records + their order entries), against
    /// `LIMIT_COUNTED_ENTRIES_MAX`.
    pub counted_entries: usize,
    /// SKUs with a purchase limit, against `LIMITED_SKUS_MAX`.
    pub limited_skus: usize,
    /// Records per limited SKU, against `LIMIT_CUSTOMERS_PER_SKU_MAX`.
    pub customers: FxHashMap<SkuIdx, usize>,
    /// Kits with live holds or unfulfilled order units: kit -> holds + open order kit lines.
    pub kit_uses: FxHashMap<SkuIdx, u32>,
    /// SKUs named by a kit's current definition -> how many kits name them.
    pub component_of: FxHashMap<SkuIdx, u32>,
}

/// The slot of the retained record with id `id` (hashed `hash`), if any.
pub(crate) fn find_record<R: Record + Clone>(
    table: &IdTable,
    slab: &Slab<R>,
    state: &State,
    id: &str,
    hash: u32,
) -> Option<ObjIdx> {
    table
        .find(hash, |slot| slab.get(slot).is_some_and(|r| r.is(id)))
        .filter(|&slot| slab.get(slot).is_some_and(|r| state.retained(r)))
}

/// Points the id of the record in `slot` (hashed `hash`) at `slot` in `table`: replaces the
/// entry of a dropped record with the same id (still awaiting clean-up), or adds one.
pub(crate) fn index_record<R: Record + Clone>(
    table: &mut IdTable,
    slab: &Slab<R>,
    slot: ObjIdx,
    hash: u32,
) {
    let id = slab.get(slot).expect("indexed slot in use").id();
    debug_assert_eq!(hash, hash_str(id));
    table.set(hash, slot, |s| {
        s != slot && slab.get(s).is_some_and(|r| r.is(id))
    });
}

/// Removes the entry of `slot` (holding `id`) from `table`, if it still points there.
pub(crate) fn unindex_record(table: &mut IdTable, id: &str, slot: ObjIdx) {
    table.remove(hash_str(id), slot);
}

#[cfg(test)]
mod id_table_tests {
    use super::*;

    /// The hashes of `n` distinct ids, spread as real ones are.
    fn hashes(n: u32) -> impl Iterator<Item = (u32, u32)> {
        (0..n).map(|handle| (hash_u128(u128::from(handle) * 0x9E37_79B9), handle))
    }

    #[test]
    fn every_id_is_found_and_removed_across_shards() {
        let mut table = IdTable::default();
        assert_eq!(
            table.find(7, |_| true),
            None,
            "an empty table has no shards"
        );
        table.remove(7, 1);
        for (hash, handle) in hashes(200_000) {
            table.insert_new(hash, handle);
        }
        assert_eq!(table.len(), 200_000);
        for (hash, handle) in hashes(200_000) {
            assert_eq!(table.find(hash, |h| h == handle), Some(handle));
        }
        for (hash, handle) in hashes(200_000).filter(|(_, h)| h % 2 == 0) {
            table.remove(hash, handle);
        }
        assert_eq!(table.len(), 100_000);
        for (hash, handle) in hashes(200_000) {
            let expected = (handle % 2 == 1).then_some(handle);
            assert_eq!(table.find(hash, |h| h == handle), expected);
        }
        let (hash, _) = hashes(2).last().expect("one");
        table.set(hash, 99, |h| h == 1);
        assert_eq!(
            table.find(hash, |h| h == 99),
            Some(99),
            "set repoints an entry"
        );
    }

    /// The premise of `engine/tests/expiry.rs`'s `ids_whose_hashes_share_a_tag_stay_distinct`:
    /// these ids' hashes differ only in bit 0, so the id tables give each pair one tag.
    #[test]
    fn the_tag_sharing_ids_of_the_expiry_test_share_a_tag() {
        let (a, b) = (
            76522777150811282127572199565662238230u128,
            238264124852965584462111380025066986158u128,
        );
        assert_eq!(hash_u128(a) ^ hash_u128(b), 1);
        assert_eq!(hash_str("r81375") ^ hash_str("r137534"), 1);
    }

    #[test]
    fn shards_grow_one_at_a_time_not_all_in_the_same_writes() {
        const WINDOW: u32 = 1_000;
        let mut table = IdTable::default();
        let mut capacities = vec![0; ID_SHARDS];
        let mut growths_in_window = 0;
        let mut most_in_a_window = 0;
        let mut big_growths = 0;
        for (hash, handle) in hashes(3_000_000) {
            table.insert_new(hash, handle);
            if handle % WINDOW == 0 {
                most_in_a_window = most_in_a_window.max(growths_in_window);
                growths_in_window = 0;
            }
            for (seen, shard) in capacities.iter_mut().zip(&table.shards) {
                if shard.capacity() != *seen {
                    if *seen >= crate::shard_map::SHARD_EARLY_GROWTH_MIN {
                        growths_in_window += 1;
                        big_growths += 1;
                    }
                    *seen = shard.capacity();
                }
            }
        }
        assert!(
            big_growths >= ID_SHARDS * 2,
            "{big_growths} growths of big shards"
        );
        // Unstaggered, the 64 evenly filled shards would each double within a few thousand
        // writes of one another.
        assert!(
            most_in_a_window <= 4,
            "{most_in_a_window} big shards grew within {WINDOW} writes"
        );
    }
}

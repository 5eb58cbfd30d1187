//! Reads (SPEC section 3, Queries): no log entry. Every query is evaluated as of a time the
//! caller passes (the leader's clock for linearizable reads): a hold or pickup whose deadline
//! has passed never shows as live, even before the batch that releases it is applied.

use serde::{Deserialize, Serialize};

use crate::balance::Balance;
use crate::command::{Coordinates, Disposition, LocationKind, Target};
use crate::ids::{
    ChannelId, CustomerId, LocationId, OrderId, RequestId, ReservationId, RmaId, SkuId, TransferId,
};

/// A read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Balances and ATS of 1..=[`crate::limits::QUERY_SKUS_MAX`] SKUs at a location, a group
    /// or all locations, for a channel.
    Availability {
        /// The SKUs (a product listing page asks for 50 at once).
        skus: Vec<SkuId>,
        /// Where.
        target: Target,
        /// Whose ATS: `pos` ignores safety stock; a channel not allowed at a location sees 0.
        channel: ChannelId,
    },
    /// Locations with ATS >= qty within `radius_km`, nearest first.
    Nearby {
        /// The SKU.
        sku: SkuId,
        /// Where the customer is.
        center: Coordinates,
        /// How far to look, km (1..=20,000).
        radius_km: u32,
        /// Units wanted, > 0.
        qty: i64,
        /// Whose ATS.
        channel: ChannelId,
    },
    /// One reservation.
    Reservation(ReservationId),
    /// One order.
    Order(OrderId),
    /// One return.
    Rma(RmaId),
    /// One transfer.
    Transfer(TransferId),
    /// The change feed from sequence number `since` (inclusive), at most `max` events.
    Changes {
        /// First sequence number wanted (0 = the oldest retained).
        since: u64,
        /// At most this many events (1..=[`crate::limits::CHANGES_PER_QUERY_MAX`]).
        max: u32,
    },
    /// Counters and the applied position.
    Status,
    /// A location's definition.
    Location(LocationId),
    /// The revoked credentials (SPEC section 7).
    Revoked,
    /// The change feed from `since` (inclusive), only the events of balances at `locations`
    /// (SPEC section 3, `changes(since, locations?)`: a store's live alerts). Scans at most
    /// [`crate::limits::CHANGES_SCANNED_PER_QUERY_MAX`] events; `next` continues after the
    /// last one scanned, so a page may be empty and still move on.
    ChangesAt {
        /// First sequence number wanted (0 = the oldest retained).
        since: u64,
        /// At most this many events (1..=[`crate::limits::CHANGES_PER_QUERY_MAX`]).
        max: u32,
        /// 1..=[`crate::limits::CHANGES_LOCATIONS_MAX`] locations.
        locations: Vec<LocationId>,
    },
    /// SKUs whose id starts with `prefix`, in byte order of their ids (a store associate types
    /// the start of a code). At most `max` (1..=[`crate::limits::SKU_SEARCH_RESULTS_MAX`]).
    SkuSearch {
        /// The start of the id: 1..=64 bytes of `[A-Za-z0-9._:/-]` (a whole id also matches).
        prefix: SkuId,
        /// At most this many SKUs.
        max: u32,
    },
    /// Pickups still to collect at a location, earliest collection deadline first (SPEC
    /// section 6, the store page). At most `max` (1..=[`crate::limits::PICKUPS_PER_QUERY_MAX`]).
    Pickups {
        /// The store.
        location: LocationId,
        /// At most this many pickup orders.
        max: u32,
    },
    /// The retention settings in force ([`Command::SetRetention`](crate::Command) changes
    /// them): the same on every replica that applied the same log.
    Retention,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// One entry per asked SKU, in the order asked.
    Availability(Vec<SkuAvailability>),
    /// Matching locations, nearest first.
    Nearby(Vec<NearbyRow>),
    /// A reservation.
    Reservation(ReservationView),
    /// An order.
    Order(OrderView),
    /// A return.
    Rma(RmaView),
    /// A transfer.
    Transfer(TransferView),
    /// A page of the change feed.
    Changes(ChangesPage),
    /// Counters.
    Status(LedgerStatus),
    /// A location's definition.
    Location(crate::command::LocationDef),
    /// The revoked credentials, by id.
    Revoked(Vec<crate::access::RevokedView>),
    /// SKUs matching a prefix.
    SkuSearch(SkuMatches),
    /// Pickups due at a location.
    Pickups(PickupsDue),
    /// The retention settings in force.
    Retention(crate::ledger::Config),
}

/// One SKU found by [`Query::SkuSearch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuMatch {
    /// The SKU.
    pub sku: SkuId,
    /// Its decimal scale (quantities are base units).
    pub scale: u8,
}

/// The answer to [`Query::SkuSearch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuMatches {
    /// Matching SKUs in byte order of their ids.
    pub skus: Vec<SkuMatch>,
    /// Whether more SKUs match than were returned (ask with a longer prefix).
    pub more: bool,
}

/// One SKU of a pickup order still to hand over at the asked location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupLineView {
    /// The SKU.
    pub sku: SkuId,
    /// Units still to hand over here, base units.
    pub qty: i64,
}

/// A pickup order with units still to collect at the asked location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupView {
    /// The order.
    pub order: OrderId,
    /// The selling channel.
    pub channel: ChannelId,
    /// Collection deadline, ms since the epoch (always after the query time).
    pub deadline_ms: u64,
    /// Whether `ready_for_pickup` was recorded.
    pub ready_for_pickup: bool,
    /// Its uncollected lines at this location.
    pub lines: Vec<PickupLineView>,
}

/// The answer to [`Query::Pickups`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupsDue {
    /// The location.
    pub location: LocationId,
    /// Pickup orders by (deadline, creation order).
    pub pickups: Vec<PickupView>,
    /// Whether more pickups are due here than were returned.
    pub more: bool,
}

/// One location's row of an availability answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityRow {
    /// The location.
    pub location: LocationId,
    /// Its balance as of the query time.
    pub balance: Balance,
    /// ATS for the asked channel (0 if the channel may not sell here).
    pub ats: i64,
    /// ATS for `pos` at this location.
    pub ats_pos: i64,
}

/// The rows of one SKU's availability, in sourcing order. Inline for one row (a SKU at one
/// location: a listing page of 50 SKUs decodes and builds without 50 heap allocations);
/// serialized as a sequence, exactly as a `Vec<AvailabilityRow>`.
pub type AvailabilityRows = smallvec::SmallVec<[AvailabilityRow; 1]>;

/// Availability of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuAvailability {
    /// The SKU.
    pub sku: SkuId,
    /// Its decimal scale (quantities are base units).
    pub scale: u8,
    /// One row per location of the target that has a balance, in sourcing order.
    pub rows: AvailabilityRows,
    /// Sum of the rows' ATS (each floored at 0 first).
    pub ats: i64,
    /// Sum of the rows' POS ATS.
    pub ats_pos: i64,
}

/// One location of a `nearby` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearbyRow {
    /// The location.
    pub location: LocationId,
    /// Its kind.
    pub kind: LocationKind,
    /// Whether it offers pickup.
    pub pickup: bool,
    /// Great-circle distance, metres (rounded).
    pub distance_m: u64,
    /// ATS for the asked channel.
    pub ats: i64,
}

/// State of a reservation (FORMAT.md: active | released | expired | placed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReservationState {
    /// Holding stock.
    Active,
    /// Released by the client.
    Released,
    /// Its deadline passed.
    Expired,
    /// Turned into an order.
    Placed,
}

impl ReservationState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Active => "active",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
            ReservationState::Placed => "placed",
        }
    }
}

/// A held line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLineView {
    /// Index of the request line.
    pub line: u16,
    /// The SKU.
    pub sku: SkuId,
    /// The chosen location.
    pub location: LocationId,
    /// Base units.
    pub qty: i64,
}

/// A reservation as of the query time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    /// Its id.
    pub id: ReservationId,
    /// Its state.
    pub state: ReservationState,
    /// The channel it was made for.
    pub channel: ChannelId,
    /// What it holds (or held).
    pub lines: Vec<HeldLineView>,
    /// When it was made, ms since the epoch.
    pub created_at_ms: u64,
    /// Its deadline, ms since the epoch.
    pub expires_at_ms: u64,
    /// The customer it was made for, if any.
    pub customer: Option<CustomerId>,
}

/// State of an order (FORMAT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderState {
    /// Nothing fulfilled yet, something unfulfilled.
    Open,
    /// Some fulfilled, some still unfulfilled.
    PartiallyFulfilled,
    /// Everything fulfilled, nothing cancelled.
    Fulfilled,
    /// Everything cancelled, nothing fulfilled.
    Cancelled,
    /// Nothing unfulfilled; partly fulfilled, partly cancelled.
    Closed,
}

impl OrderState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Open => "open",
            OrderState::PartiallyFulfilled => "partially_fulfilled",
            OrderState::Fulfilled => "fulfilled",
            OrderState::Cancelled => "cancelled",
            OrderState::Closed => "closed",
        }
    }

    /// The state of an order with these totals over its lines.
    pub fn from_totals(ordered: i64, fulfilled: i64, cancelled: i64) -> Self {
        let unfulfilled = ordered - fulfilled - cancelled;
        match (unfulfilled > 0, fulfilled > 0, cancelled > 0) {
            (true, false, _) => OrderState::Open,
            (true, true, _) => OrderState::PartiallyFulfilled,
            (false, true, false) => OrderState::Fulfilled,
            (false, false, _) => OrderState::Cancelled,
            (false, true, true) => OrderState::Closed,
        }
    }
}

/// One (SKU, location) line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineView {
    /// The SKU.
    pub sku: SkuId,
    /// The allocated location.
    pub location: LocationId,
    /// Collected at the location (pickup) rather than shipped.
    pub pickup: bool,
    /// Units ordered here (after reallocations).
    pub ordered: i64,
    /// Units shipped or handed over.
    pub fulfilled: i64,
    /// Units cancelled (including a missed pickup deadline).
    pub cancelled: i64,
}

/// An order as of the query time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Its id.
    pub id: OrderId,
    /// Its state.
    pub state: OrderState,
    /// The selling channel.
    pub channel: ChannelId,
    /// Its lines.
    pub lines: Vec<OrderLineView>,
    /// Units returned per SKU.
    pub returned: Vec<(SkuId, i64)>,
    /// Collection deadline, ms since the epoch, for pickup orders.
    pub pickup_deadline_ms: Option<u64>,
    /// Whether `ready_for_pickup` was recorded.
    pub ready_for_pickup: bool,
    /// When it was placed, ms since the epoch.
    pub created_at_ms: u64,
    /// The customer it was placed for, if any.
    pub customer: Option<CustomerId>,
    /// The RMA of the exchange that placed it, if any.
    pub exchange_of: Option<RmaId>,
}

/// One line of a received return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmaLineView {
    /// The SKU.
    pub sku: SkuId,
    /// Base units.
    pub qty: i64,
    /// Where received.
    pub received_at: LocationId,
    /// What happened to them.
    pub disposition: Disposition,
}

/// A received return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmaView {
    /// Its id.
    pub id: RmaId,
    /// The order.
    pub order: OrderId,
    /// Its lines.
    pub lines: Vec<RmaLineView>,
    /// When received, ms since the epoch.
    pub received_at_ms: u64,
    /// The new order of the exchange this return was part of, if any.
    pub exchange_of: Option<OrderId>,
}

/// State of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransferState {
    /// In transit.
    Shipped,
    /// Received (possibly with damage or losses).
    Received,
}

/// A transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferView {
    /// Its id.
    pub id: TransferId,
    /// The SKU.
    pub sku: SkuId,
    /// Shipping location.
    pub from: LocationId,
    /// Receiving location.
    pub to: LocationId,
    /// Units shipped.
    pub qty: i64,
    /// Its state.
    pub state: TransferState,
    /// Sellable units received.
    pub received: i64,
    /// Damaged units received.
    pub damaged: i64,
    /// Units lost in transit.
    pub lost: i64,
    /// When shipped, ms since the epoch.
    pub shipped_at_ms: u64,
}

/// Why a balance changed (SPEC section 3, `changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cause {
    /// A count.
    SetOnHand,
    /// A receipt or shrinkage.
    Adjust,
    /// Safety stock set.
    SafetyStock,
    /// Units marked unavailable.
    MarkUnavailable,
    /// Units restored from unavailable.
    RestoreUnavailable,
    /// A counter sale.
    Sell,
    /// A hold granted.
    Reserve,
    /// A hold released by the client.
    Release,
    /// A hold expired.
    Expire,
    /// An order placed (held -> allocated, or allocated directly).
    PlaceOrder,
    /// Units fulfilled (shipped or handed over).
    Fulfil,
    /// Unfulfilled allocation cancelled.
    Cancel,
    /// Allocation moved between locations.
    Reallocate,
    /// A pickup not collected by its deadline: its allocation released.
    PickupExpired,
    /// Returned units received.
    Return,
    /// A transfer shipped (source) or announced (target's incoming).
    TransferShip,
    /// A transfer received.
    TransferReceive,
    /// Holds and allocations exceed sellable units after this change; `shortfall` says by how
    /// much (SPEC section 3: "the ledger emits a shortage event with the shortfall").
    Shortage,
}

/// One entry of the change feed: a balance after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Position in the feed, from 1, without gaps.
    pub seq: u64,
    /// Log index of the batch that made the change.
    pub log_index: u64,
    /// Timestamp of that batch, ms since the epoch.
    pub timestamp_ms: u64,
    /// The request that made it; `None` for expiries and missed pickups.
    pub request_id: Option<RequestId>,
    /// Why.
    pub cause: Cause,
    /// The SKU.
    pub sku: SkuId,
    /// The location.
    pub location: LocationId,
    /// The balance after the change.
    pub balance: Balance,
    /// Units by which holds and allocations exceed sellable stock (non-zero on `Shortage`).
    pub shortfall: i64,
    /// Who made the write (the principal the server authenticated); `None` for expiries,
    /// missed pickups and writes without one.
    pub author: Option<crate::access::Author>,
}

/// A page of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesPage {
    /// Events from the asked position.
    pub events: Vec<ChangeEvent>,
    /// Sequence number to ask for next.
    pub next: u64,
    /// Oldest sequence number still retained; if `since` was older, events were missed and
    /// the consumer must resynchronise from an availability read.
    pub oldest: u64,
    /// Whether events between `since` and `oldest` were dropped by retention.
    pub truncated: bool,
}

/// Counters of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus {
    /// Log index of the last applied batch.
    pub applied_index: u64,
    /// Timestamp of the last applied batch, ms since the epoch.
    pub now_ms: u64,
    /// SKUs known.
    pub skus: u64,
    /// Locations defined.
    pub locations: u64,
    /// Balances held.
    pub balances: u64,
    /// Active reservations.
    pub live_reservations: u64,
    /// Orders with unfulfilled units.
    pub open_orders: u64,
    /// Request outcomes remembered for deduplication.
    pub dedup_entries: u64,
    /// Next change-feed sequence number.
    pub feed_next_seq: u64,
}

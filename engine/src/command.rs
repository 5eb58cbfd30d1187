//! Writes: the operations of SPEC section 3 that go through the replicated log.
//!
//! A [`Request`] is one write with its idempotency key. Requests are applied in batches
//! ([`crate::Ledger::apply`]); every request gets exactly one [`crate::Outcome`]. These types
//! are also the wire types of the protocol (postcard encoded), so they are plain data: ids are
//! unchecked strings and quantities are unchecked integers, validated by the engine.

use serde::{Deserialize, Serialize};

use crate::ids::{
    ChannelId, CustomerId, GroupId, LocationId, OrderId, Reason, RequestId, ReservationId, RmaId,
    SkuId, TransferId,
};

/// One write with its client-chosen idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Idempotency key (SPEC section 3): a replay returns the original outcome.
    pub request_id: RequestId,
    /// What to do.
    pub command: Command,
}

/// The kind of a location (SPEC section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LocationKind {
    /// A distribution centre.
    Warehouse,
    /// A shop with a counter (`pos` sales) and possibly pickup.
    Store,
    /// Stock held by a marketplace partner.
    Marketplace,
    /// Stock shipped by a supplier directly to the customer.
    Dropship,
}

impl LocationKind {
    /// The kind's name as used in case files and stockctl.
    pub fn as_str(self) -> &'static str {
        match self {
            LocationKind::Warehouse => "warehouse",
            LocationKind::Store => "store",
            LocationKind::Marketplace => "marketplace",
            LocationKind::Dropship => "dropship",
        }
    }

    /// Parses a kind name (`warehouse`, `store`, `marketplace`, `dropship`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "warehouse" => LocationKind::Warehouse,
            "store" => LocationKind::Store,
            "marketplace" => LocationKind::Marketplace,
            "dropship" => LocationKind::Dropship,
            _ => return None,
        })
    }
}

/// Geographic coordinates in micro-degrees (integers: no floating point in the ledger).
/// Latitude in -90e6..=90e6, longitude in -180e6..=180e6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Coordinates {
    /// Latitude, micro-degrees (north positive).
    pub lat_e6: i32,
    /// Longitude, micro-degrees (east positive).
    pub lon_e6: i32,
}

/// Definition of a location (`define_location`). Defining an existing id updates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationDef {
    /// The location's id.
    pub location: LocationId,
    /// What kind of place it is.
    pub kind: LocationKind,
    /// Whether customers can collect orders here (click and collect).
    pub pickup: bool,
    /// Where it is, for `nearby` queries.
    pub coordinates: Option<Coordinates>,
    /// Channels allowed to sell from it; `None` allows every channel.
    pub channels: Option<Vec<ChannelId>>,
}

/// Where a reservation or order line takes its stock from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// Exactly this location.
    Location(LocationId),
    /// The engine picks location(s) of the group, in the group's order (sourcing).
    Group(GroupId),
    /// The engine picks among all locations, in the order they were defined.
    All,
}

/// One line of a reservation or direct order: `qty` base units of `sku` from `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The SKU.
    pub sku: SkuId,
    /// A location, a group or all locations.
    pub target: Target,
    /// Base units, > 0.
    pub qty: i64,
}

/// One line naming an exact location (fulfil, cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocatedLine {
    /// The SKU.
    pub sku: SkuId,
    /// The location.
    pub location: LocationId,
    /// Base units, > 0.
    pub qty: i64,
}

/// How an order's lines reach the customer (SPEC section 3, Orders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fulfilment {
    /// Shipped from the line's location.
    Ship,
    /// Collected at the line's location (which must offer pickup) within `deadline_ms` of the
    /// batch that places the order (1..=[`crate::limits::PICKUP_DEADLINE_MS_MAX`]); not
    /// collected by then, the line is cancelled and its units released.
    Pickup {
        /// Collection window, ms from placement.
        deadline_ms: u64,
    },
}

/// Where a placed order's lines come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderSource {
    /// Turn an active reservation's held units into allocated units.
    Reservation(ReservationId),
    /// Reserve and place atomically (marketplace and POS orders).
    Lines {
        /// The selling channel.
        channel: ChannelId,
        /// What to allocate.
        lines: Vec<Line>,
    },
}

/// What happens to returned units (SPEC section 3, Returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Disposition {
    /// Back into sellable stock: on_hand += qty at the receiving location.
    Restock,
    /// Kept but not sellable: on_hand and unavailable += qty.
    Damaged,
    /// Destroyed: recorded on the RMA only.
    Scrap,
}

impl Disposition {
    /// The disposition's name as used in case files and stockctl.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Restock => "restock",
            Disposition::Damaged => "damaged",
            Disposition::Scrap => "scrap",
        }
    }

    /// Parses `restock`, `damaged` or `scrap`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "restock" => Disposition::Restock,
            "damaged" => Disposition::Damaged,
            "scrap" => Disposition::Scrap,
            _ => return None,
        })
    }
}

/// One line of a return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// The SKU, which the order must have fulfilled.
    pub sku: SkuId,
    /// Base units, > 0.
    pub qty: i64,
    /// Where the units arrived: any location, not necessarily the one that shipped them.
    pub received_at: LocationId,
    /// What happens to them.
    pub disposition: Disposition,
}

/// A write (SPEC section 3). Quantities are base units; durations are ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or update a location.
    DefineLocation(LocationDef),
    /// Create or replace a group: an ordered list of existing locations.
    DefineGroup {
        /// The group's id (must not be a location id, nor `all`).
        group: GroupId,
        /// Locations in sourcing order, distinct, 1..=[`crate::limits::GROUP_LOCATIONS_MAX`].
        locations: Vec<LocationId>,
    },
    /// Declare a SKU and its decimal scale (0..=6). The scale of a SKU that already has
    /// balances cannot change (`invalid_state`).
    DefineSku {
        /// The SKU.
        sku: SkuId,
        /// Decimal places of its base unit.
        scale: u8,
    },
    /// A count: on_hand := qty. With `expected`, a compare-and-set (`conflict` if on_hand
    /// differs). May leave on_hand below reserved + allocated (a `shortage` event).
    SetOnHand {
        /// The SKU.
        sku: SkuId,
        /// The location.
        location: LocationId,
        /// Counted units, >= 0.
        qty: i64,
        /// Why (e.g. `cycle-count`).
        reason: Reason,
        /// on_hand the counter saw, if this is a compare-and-set.
        expected: Option<i64>,
    },
    /// A receipt (+) or shrinkage (-) of on_hand; on_hand never goes below zero.
    Adjust {
        /// The SKU.
        sku: SkuId,
        /// The location.
        location: LocationId,
        /// Units, non-zero.
        delta: i64,
        /// Why (e.g. `receipt`, `shrinkage`).
        reason: Reason,
    },
    /// Set the buffer withheld from remote channels.
    SetSafetyStock {
        /// The SKU.
        sku: SkuId,
        /// The location.
        location: LocationId,
        /// Units, >= 0.
        qty: i64,
    },
    /// Move units of on_hand into `unavailable` (damaged, quarantine, QC).
    MarkUnavailable {
        /// The SKU.
        sku: SkuId,
        /// The location.
        location: LocationId,
        /// Units, > 0; unavailable never exceeds on_hand.
        qty: i64,
        /// Why.
        reason: Reason,
    },
    /// Return units from `unavailable` to sellable stock.
    RestoreUnavailable {
        /// The SKU.
        sku: SkuId,
        /// The location.
        location: LocationId,
        /// Units, > 0, at most the unavailable units.
        qty: i64,
        /// Why.
        reason: Reason,
    },
    /// A counter sale (channel `pos`) against POS ATS: on_hand -= qty.
    Sell {
        /// The SKU.
        sku: SkuId,
        /// The store.
        location: LocationId,
        /// Units, > 0.
        qty: i64,
    },
    /// An all-or-nothing hold of every line for `ttl_ms`.
    Reserve {
        /// The hold's id.
        reservation: ReservationId,
        /// The selling channel.
        channel: ChannelId,
        /// 1..=[`crate::limits::LINES_PER_REQUEST_MAX`] lines.
        lines: Vec<Line>,
        /// Time to live, 1..=[`crate::limits::TTL_MS_MAX`] ms.
        ttl_ms: u64,
    },
    /// Set an active hold's deadline to (batch timestamp + ttl_ms).
    Extend {
        /// The hold.
        reservation: ReservationId,
        /// New time to live from now, 1..=[`crate::limits::TTL_MS_MAX`] ms.
        ttl_ms: u64,
    },
    /// Release an active hold.
    Release {
        /// The hold.
        reservation: ReservationId,
    },
    /// Place an order from a hold or from lines (reserve + place atomically).
    PlaceOrder {
        /// The order's id.
        order: OrderId,
        /// A reservation or direct lines.
        source: OrderSource,
        /// Ship or pickup, for every line of the order.
        fulfilment: Fulfilment,
    },
    /// Record shipped / handed-over units: on_hand and allocated drop by qty.
    Fulfil {
        /// The order.
        order: OrderId,
        /// 1..=[`crate::limits::LINES_PER_REQUEST_MAX`] lines.
        lines: Vec<LocatedLine>,
    },
    /// Release unfulfilled allocation: the given lines, or everything unfulfilled.
    Cancel {
        /// The order.
        order: OrderId,
        /// Lines to cancel, or `None` for all unfulfilled units.
        lines: Option<Vec<LocatedLine>>,
    },
    /// Move `qty` of an order's unfulfilled allocation from one location to another, checking
    /// ATS at the target for the order's channel.
    Reallocate {
        /// The order.
        order: OrderId,
        /// The SKU.
        sku: SkuId,
        /// Where the allocation is now.
        from: LocationId,
        /// Where it moves.
        to: LocationId,
        /// Units, > 0.
        qty: i64,
    },
    /// Tell the customer a pickup order is ready (informational; once).
    ReadyForPickup {
        /// The order.
        order: OrderId,
    },
    /// The customer collected: fulfils every remaining pickup line.
    PickedUp {
        /// The order.
        order: OrderId,
    },
    /// Receive returned units of a fulfilled order, at any location.
    Return {
        /// The RMA's id (received once).
        rma: RmaId,
        /// The order the units were fulfilled on.
        order: OrderId,
        /// 1..=[`crate::limits::LINES_PER_REQUEST_MAX`] lines.
        lines: Vec<ReturnLine>,
    },
    /// Ship units from one location to another: from.on_hand -= qty (needs POS ATS there),
    /// to.incoming += qty.
    ShipTransfer {
        /// The transfer's id.
        transfer: TransferId,
        /// The SKU.
        sku: SkuId,
        /// Shipping location.
        from: LocationId,
        /// Receiving location (different from `from`).
        to: LocationId,
        /// Units, > 0.
        qty: i64,
    },
    /// Receive a shipped transfer: incoming -= shipped; received units into on_hand, damaged
    /// into on_hand and unavailable; the rest is recorded as lost in transit.
    ReceiveTransfer {
        /// The transfer.
        transfer: TransferId,
        /// Sellable units received, >= 0.
        received: i64,
        /// Damaged units received, >= 0; received + damaged <= shipped.
        damaged: i64,
    },
    /// Put a credential (a client certificate's serial or a token id, hex) on the deny list
    /// until `until_ms`, its own expiry (SPEC section 7). Every node refuses it from the batch
    /// that applies this on; revoking twice changes nothing.
    RevokeCredential {
        /// The credential id, 1..=[`crate::access::CREDENTIAL_BYTES_MAX`] hex digits.
        credential: String,
        /// When the credential expires anyway, ms since the epoch.
        until_ms: u64,
    },
    /// Issue a bearer token for the HTTP interface (SPEC section 7, `stockctl token create`):
    /// the ledger keeps only the token's hash and its principal, until its expiry. The token's
    /// id is its credential id (`RevokeCredential` names it). A second token with an id already
    /// issued is `already_exists`; more than [`crate::access::TOKENS_MAX`] live tokens is a
    /// `limit` rejection.
    CreateToken(crate::access::TokenDef),
    /// Define (or redefine) a kit: a SKU with no stock of its own, counted in whole kits,
    /// made of 1..=[`crate::limits::KIT_COMPONENTS_MAX`] distinct component SKUs (SPEC
    /// section 3, Kits). No nesting (`invalid`); a SKU any stock write touched, or a kit with
    /// live holds or unfulfilled order units, cannot be (re)defined (`invalid_state`).
    DefineKit {
        /// The kit's SKU.
        kit: SkuId,
        /// What one kit is made of.
        components: Vec<KitComponent>,
    },
    /// A `Reserve` or a direct `PlaceOrder` (from lines) made for a customer, whose units count
    /// against the purchase limits of their SKUs (SPEC section 3, purchase limits). Any other
    /// inner command is `invalid`.
    AsCustomer {
        /// Who buys.
        customer: CustomerId,
        /// The reserve or direct place_order.
        command: Box<Command>,
    },
    /// A return and a direct order in one all-or-nothing write (SPEC section 3, exchange).
    Exchange(Box<Exchange>),
    /// Set, change (`qty_max > 0`) or remove (`qty_max = 0`) the purchase limit of a SKU.
    SetPurchaseLimit {
        /// The limited SKU (a kit or a stocked SKU).
        sku: SkuId,
        /// Units a customer may hold plus buy within the window; 0 removes the limit and what
        /// it counted.
        qty_max: i64,
        /// The rolling window, ms
        /// ([`crate::limits::LIMIT_WINDOW_MS_MIN`]..=[`crate::limits::LIMIT_WINDOW_MS_MAX`]).
        window_ms: u64,
        /// Lines without a customer are `invalid` (else they are not limited).
        strict: bool,
    },
    /// Replace the retention settings (SPEC section 4: the dedup window, the change feed's
    /// retention, finished objects) with these five values, on every replica alike: they are
    /// replicated state, in every snapshot, changed only by this write. Each value must lie
    /// between its `_MIN` and its `_DEFAULT` constant in [`crate::limits`] (else `invalid`,
    /// [`crate::InvalidReason::RetentionOutOfRange`] naming the field). A lowered value drops
    /// what it no longer retains at once for every read and write, oldest first; the memory is
    /// given back over the following batches, a bounded amount per batch (`crate::retention`).
    SetRetention(crate::ledger::Config),
}

impl Exchange {
    /// The exchange's two halves as the writes they are received and placed as: the `Return`
    /// and the direct `PlaceOrder` (for deciding who may make it, as those two writes).
    pub fn halves(&self) -> (Command, Command) {
        let back = Command::Return {
            rma: self.rma.clone(),
            order: self.order.clone(),
            lines: self.returns.clone(),
        };
        let new = Command::PlaceOrder {
            order: self.new_order.clone(),
            source: OrderSource::Lines {
                channel: self.channel.clone(),
                lines: self.lines.clone(),
            },
            fulfilment: self.fulfilment,
        };
        (back, new)
    }
}

/// One component of a kit definition: `qty` base units of `sku` per kit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KitComponent {
    /// The component SKU (declared at scale 0 if never seen).
    pub sku: SkuId,
    /// Base units of the component in one kit, > 0.
    pub qty: i64,
}

/// An exchange (SPEC section 3): the return is received exactly as `Return` would, then the
/// new order placed exactly as a direct `PlaceOrder` would (it may use the units the return
/// restocked). Either half rejected: nothing changes, the answer is that half's code (the
/// return's if both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The RMA's id.
    pub rma: RmaId,
    /// The original order (the new one belongs to its customer, if any).
    pub order: OrderId,
    /// What comes back.
    pub returns: Vec<ReturnLine>,
    /// The new order's id.
    pub new_order: OrderId,
    /// The new order's channel.
    pub channel: ChannelId,
    /// The new order's lines.
    pub lines: Vec<Line>,
    /// Ship or pickup, for every line of the new order.
    pub fulfilment: Fulfilment,
}

impl Command {
    /// The operation's name as in SPEC section 3 (`reserve`, `place_order`...), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::DefineLocation(_) => "define_location",
            Command::DefineGroup { .. } => "define_group",
            Command::DefineSku { .. } => "define_sku",
            Command::SetOnHand { .. } => "set_on_hand",
            Command::Adjust { .. } => "adjust",
            Command::SetSafetyStock { .. } => "set_safety_stock",
            Command::MarkUnavailable { .. } => "mark_unavailable",
            Command::RestoreUnavailable { .. } => "restore_unavailable",
            Command::Sell { .. } => "sell",
            Command::Reserve { .. } => "reserve",
            Command::Extend { .. } => "extend",
            Command::Release { .. } => "release",
            Command::PlaceOrder { .. } => "place_order",
            Command::Fulfil { .. } => "fulfil",
            Command::Cancel { .. } => "cancel",
            Command::Reallocate { .. } => "reallocate",
            Command::ReadyForPickup { .. } => "ready_for_pickup",
            Command::PickedUp { .. } => "picked_up",
            Command::Return { .. } => "return",
            Command::ShipTransfer { .. } => "ship_transfer",
            Command::ReceiveTransfer { .. } => "receive_transfer",
            Command::RevokeCredential { .. } => "revoke_credential",
            Command::CreateToken(_) => "create_token",
            Command::DefineKit { .. } => "define_kit",
            Command::AsCustomer { command, .. } => match **command {
                Command::AsCustomer { .. } => "as_customer",
                ref inner => inner.name(),
            },
            Command::Exchange(_) => "exchange",
            Command::SetPurchaseLimit { .. } => "set_purchase_limit",
            Command::SetRetention(_) => "set_retention",
        }
    }
}

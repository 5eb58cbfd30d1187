//! Writes (SPEC section 3) as JSON: one route per operation and `POST /v1/batch`.
//!
//! Every body here becomes the engine's `Command` and runs as a protocol `Op::Write` whose
//! request id is the `Idempotency-Key` (`exec::run`). Quantities in requests are integers in
//! the SKU's base unit (as on the wire); answers carry base units and display strings. A
//! replay (same key) answers the original outcome with the same status and the same body; the
//! log index of the answer (which moves on a replay) is the `Stockd-Log-Index` header.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use engine::{
    ChannelId, Command, Coordinates, Disposition, Fulfilment, GroupId, Line, LocatedLine,
    LocationDef, LocationId, LocationKind, OrderId, OrderSource, Reason, Request, RequestId,
    ReservationId, ReturnLine, RmaId, SkuId, Target, TransferId,
};
use pki::Principal;
use protocol::{Op, OpResult};

use super::json::{balance, qty, time, BalanceJson, Qty, Time};
use super::kit_writes;
use super::problem::{HttpCode, Problem};
use super::router::{App, JsonBody};
use super::{exec, idempotency};

/// Header carrying the log index of a write's answer (use it with `consistency=at_least`).
pub const LOG_INDEX_HEADER: &str = "stockd-log-index";

/// A kind of location.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindJson {
    /// A warehouse.
    Warehouse,
    /// A store.
    Store,
    /// Stock held by a marketplace partner.
    Marketplace,
    /// A drop-shipping supplier.
    Dropship,
}

/// Coordinates in millionths of a degree.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
pub struct CoordinatesJson {
    /// Latitude x 1e6 (-90e6..=90e6).
    pub lat_e6: i32,
    /// Longitude x 1e6 (-180e6..=180e6).
    pub lon_e6: i32,
}

/// `define_location`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineLocation {
    /// The location id.
    pub location: String,
    /// Its kind.
    pub kind: KindJson,
    /// Whether it offers pickup (default false).
    #[serde(default)]
    pub pickup: bool,
    /// Its coordinates (for `nearby`).
    pub coordinates: Option<CoordinatesJson>,
    /// Channels allowed to sell from it (default: all).
    pub channels: Option<Vec<String>>,
}

/// `define_group`: a named, ordered list of locations.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineGroup {
    /// The group id.
    pub group: String,
    /// Its locations, in sourcing order.
    pub locations: Vec<String>,
}

/// `define_sku`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineSku {
    /// The SKU id.
    pub sku: String,
    /// Decimal scale of its quantities, 0..=6.
    pub scale: u8,
}

/// `set_on_hand`: a count (compare-and-set with `expected`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetOnHand {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Counted units, base units.
    pub qty: i64,
    /// Why (free text).
    pub reason: String,
    /// Refuse with `conflict` unless on_hand is this now.
    pub expected: Option<i64>,
}

/// `adjust`: receipts (+) and shrinkage (-).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Change of on_hand, base units.
    pub delta: i64,
    /// Why.
    pub reason: String,
}

/// `set_safety_stock`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSafetyStock {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units withheld from remote channels.
    pub qty: i64,
}

/// `mark_unavailable` / `restore_unavailable`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unavailable {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units, base units.
    pub qty: i64,
    /// Why.
    pub reason: String,
}

/// `sell`: a counter sale (channel `pos`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sell {
    /// The SKU.
    pub sku: String,
    /// The store.
    pub location: String,
    /// Units, base units.
    pub qty: i64,
}

/// A line to source: a location, a group, or (neither) the whole network.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineJson {
    /// The SKU.
    pub sku: String,
    /// Take it at this location.
    pub location: Option<String>,
    /// Or source it from this group (in its order).
    pub group: Option<String>,
    /// Units, base units.
    pub qty: i64,
}

/// A line at a location.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocatedLineJson {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units, base units.
    pub qty: i64,
}

/// `reserve`: an all-or-nothing checkout hold.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    /// The reservation id.
    pub reservation: String,
    /// The selling channel.
    pub channel: String,
    /// The lines.
    pub lines: Vec<LineJson>,
    /// Time to live, ms.
    pub ttl_ms: u64,
    /// The customer the hold is for (counted against purchase limits).
    pub customer: Option<String>,
}

/// `extend` a hold: its deadline becomes now + `ttl_ms`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// New time to live, ms.
    pub ttl_ms: u64,
}

/// How an order's lines are fulfilled.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FulfilmentJson {
    /// Shipped from its location.
    Ship,
    /// Handed over at a store that offers pickup, within a window.
    Pickup {
        /// Collection window, ms from placement (the answer carries the deadline).
        window_ms: u64,
    },
}

/// `place_order`: from a hold (`reservation`) or directly (`channel` and `lines`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The order id.
    pub order: String,
    /// Place this hold.
    pub reservation: Option<String>,
    /// Or reserve and place these lines at once, on this channel.
    pub channel: Option<String>,
    /// The lines of a direct order.
    pub lines: Option<Vec<LineJson>>,
    /// Ship (default) or pickup.
    pub fulfilment: Option<FulfilmentJson>,
    /// The customer a direct order is for (an order from a hold takes the hold's).
    pub customer: Option<String>,
}

/// Lines of an order (`fulfil`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinesBody {
    /// The lines.
    pub lines: Vec<LocatedLineJson>,
}

/// `cancel`: the named lines, or (none) everything unfulfilled.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Lines to cancel; absent: the whole unfulfilled remainder.
    pub lines: Option<Vec<LocatedLineJson>>,
}

/// `reallocate`: move allocation of an order between locations.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReallocateBody {
    /// The SKU.
    pub sku: String,
    /// From this location.
    pub from: String,
    /// To this one.
    pub to: String,
    /// Units, base units.
    pub qty: i64,
}

/// What happens to returned units.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispositionJson {
    /// Back on hand.
    Restock,
    /// On hand and unavailable.
    Damaged,
    /// Recorded only.
    Scrap,
}

/// A returned line.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLineJson {
    /// The SKU.
    pub sku: String,
    /// Units, base units.
    pub qty: i64,
    /// Where it was received (any location).
    pub received_at: String,
    /// What happens to it.
    pub disposition: DispositionJson,
}

/// `return`: an RMA of a fulfilled order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Return {
    /// The RMA id.
    pub rma: String,
    /// The order.
    pub order: String,
    /// The lines.
    pub lines: Vec<ReturnLineJson>,
}

/// `ship_transfer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipTransfer {
    /// The transfer id.
    pub transfer: String,
    /// The SKU.
    pub sku: String,
    /// Shipped from.
    pub from: String,
    /// To.
    pub to: String,
    /// Units, base units.
    pub qty: i64,
}

/// `receive_transfer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    /// Sellable units received.
    pub received: i64,
    /// Damaged units received.
    pub damaged: i64,
}

/// `revoke_credential` (admin): a certificate serial or token id.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The credential id (hex).
    pub credential: String,
    /// When the credential expires anyway, ms since the epoch.
    pub until_ms: u64,
}

fn sku(s: String) -> SkuId {
    SkuId::from(s)
}

fn loc(s: String) -> LocationId {
    LocationId::from(s)
}

fn bad(detail: &str) -> Problem {
    Problem::http(HttpCode::BadRequest, detail)
}

pub(super) fn line(l: LineJson) -> Result<Line, Problem> {
    let target = match (l.location, l.group) {
        (Some(_), Some(_)) => return Err(bad("a line names a location or a group, not both")),
        (Some(location), None) => Target::Location(loc(location)),
        (None, Some(group)) => Target::Group(GroupId::from(group)),
        (None, None) => Target::All,
    };
    Ok(Line {
        sku: sku(l.sku),
        target,
        qty: l.qty,
    })
}

pub(super) fn lines(ls: Vec<LineJson>) -> Result<Vec<Line>, Problem> {
    ls.into_iter().map(line).collect()
}

fn located(ls: Vec<LocatedLineJson>) -> Vec<LocatedLine> {
    ls.into_iter()
        .map(|l| LocatedLine {
            sku: sku(l.sku),
            location: loc(l.location),
            qty: l.qty,
        })
        .collect()
}

fn kind(k: KindJson) -> LocationKind {
    match k {
        KindJson::Warehouse => LocationKind::Warehouse,
        KindJson::Store => LocationKind::Store,
        KindJson::Marketplace => LocationKind::Marketplace,
        KindJson::Dropship => LocationKind::Dropship,
    }
}

fn disposition(d: DispositionJson) -> Disposition {
    match d {
        DispositionJson::Restock => Disposition::Restock,
        DispositionJson::Damaged => Disposition::Damaged,
        DispositionJson::Scrap => Disposition::Scrap,
    }
}

fn place_order(o: PlaceOrder) -> Result<Command, Problem> {
    let source = match (o.reservation, o.channel, o.lines) {
        (Some(hold), None, None) => OrderSource::Reservation(ReservationId::from(hold)),
        (None, Some(channel), Some(ls)) => OrderSource::Lines {
            channel: ChannelId::from(channel),
            lines: lines(ls)?,
        },
        _ => return Err(bad("an order names a reservation, or a channel and lines")),
    };
    let place = Command::PlaceOrder {
        order: OrderId::from(o.order),
        source,
        fulfilment: fulfilment(o.fulfilment),
    };
    Ok(kit_writes::for_customer(o.customer, place))
}

/// Ship (the default) or pickup within a window.
pub(super) fn fulfilment(f: Option<FulfilmentJson>) -> Fulfilment {
    match f {
        None | Some(FulfilmentJson::Ship) => Fulfilment::Ship,
        Some(FulfilmentJson::Pickup { window_ms }) => Fulfilment::Pickup {
            deadline_ms: window_ms,
        },
    }
}

/// A return line as the engine's.
pub(super) fn return_line(l: ReturnLineJson) -> ReturnLine {
    ReturnLine {
        sku: sku(l.sku),
        qty: l.qty,
        received_at: loc(l.received_at),
        disposition: disposition(l.disposition),
    }
}

fn define_location(d: DefineLocation) -> Command {
    Command::DefineLocation(LocationDef {
        location: loc(d.location),
        kind: kind(d.kind),
        pickup: d.pickup,
        coordinates: d.coordinates.map(|c| Coordinates {
            lat_e6: c.lat_e6,
            lon_e6: c.lon_e6,
        }),
        channels: d
            .channels
            .map(|cs| cs.into_iter().map(ChannelId::from).collect()),
    })
}

fn return_command(r: Return) -> Command {
    Command::Return {
        rma: RmaId::from(r.rma),
        order: OrderId::from(r.order),
        lines: r.lines.into_iter().map(return_line).collect(),
    }
}

/// One write, as `POST /v1/batch` takes it: the operation's name in `op` and its fields (the
/// routes' bodies, plus the id a route takes from its path).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    /// `POST /v1/locations`.
    DefineLocation(DefineLocation),
    /// `POST /v1/groups`.
    DefineGroup(DefineGroup),
    /// `POST /v1/skus`.
    DefineSku(DefineSku),
    /// `POST /v1/stock/counts`.
    SetOnHand(SetOnHand),
    /// `POST /v1/stock/adjustments`.
    Adjust(Adjust),
    /// `POST /v1/stock/safety`.
    SetSafetyStock(SetSafetyStock),
    /// `POST /v1/stock/unavailable`.
    MarkUnavailable(Unavailable),
    /// `POST /v1/stock/available`.
    RestoreUnavailable(Unavailable),
    /// `POST /v1/sales`.
    Sell(Sell),
    /// `POST /v1/reservations`.
    Reserve(Reserve),
    /// `POST /v1/reservations/{id}/extend`.
    Extend {
        /// The reservation.
        reservation: String,
        /// New time to live, ms.
        ttl_ms: u64,
    },
    /// `POST /v1/reservations/{id}/release`.
    Release {
        /// The reservation.
        reservation: String,
    },
    /// `POST /v1/orders`.
    PlaceOrder(PlaceOrder),
    /// `POST /v1/orders/{id}/fulfilments`.
    Fulfil {
        /// The order.
        order: String,
        /// The lines.
        lines: Vec<LocatedLineJson>,
    },
    /// `POST /v1/orders/{id}/cancellations`.
    Cancel {
        /// The order.
        order: String,
        /// Lines; absent: everything unfulfilled.
        lines: Option<Vec<LocatedLineJson>>,
    },
    /// `POST /v1/orders/{id}/reallocations`.
    Reallocate {
        /// The order.
        order: String,
        /// The SKU.
        sku: String,
        /// From.
        from: String,
        /// To.
        to: String,
        /// Units.
        qty: i64,
    },
    /// `POST /v1/orders/{id}/ready-for-pickup`.
    ReadyForPickup {
        /// The order.
        order: String,
    },
    /// `POST /v1/orders/{id}/picked-up`.
    PickedUp {
        /// The order.
        order: String,
    },
    /// `POST /v1/returns`.
    Return(Return),
    /// `POST /v1/transfers`.
    ShipTransfer(ShipTransfer),
    /// `POST /v1/transfers/{id}/receipts`.
    ReceiveTransfer {
        /// The transfer.
        transfer: String,
        /// Sellable units received.
        received: i64,
        /// Damaged units received.
        damaged: i64,
    },
    /// `POST /v1/credentials/revocations`.
    RevokeCredential(Revoke),
    /// `POST /v1/kits`.
    DefineKit(kit_writes::DefineKit),
    /// `POST /v1/exchanges`.
    Exchange(kit_writes::ExchangeJson),
    /// `POST /v1/limits`.
    SetPurchaseLimit(kit_writes::SetPurchaseLimit),
    /// `PUT /v1/retention` (admin).
    SetRetention(super::retention::RetentionJson),
}

impl WriteOp {
    /// The engine's command.
    pub fn command(self) -> Result<Command, Problem> {
        Ok(match self {
            WriteOp::DefineLocation(d) => define_location(d),
            WriteOp::DefineGroup(g) => Command::DefineGroup {
                group: GroupId::from(g.group),
                locations: g.locations.into_iter().map(loc).collect(),
            },
            WriteOp::DefineSku(d) => Command::DefineSku {
                sku: sku(d.sku),
                scale: d.scale,
            },
            WriteOp::PlaceOrder(o) => place_order(o)?,
            WriteOp::Reserve(r) => kit_writes::for_customer(
                r.customer,
                Command::Reserve {
                    reservation: ReservationId::from(r.reservation),
                    channel: ChannelId::from(r.channel),
                    lines: lines(r.lines)?,
                    ttl_ms: r.ttl_ms,
                },
            ),
            WriteOp::Return(r) => return_command(r),
            WriteOp::DefineKit(d) => kit_writes::define_kit(d),
            WriteOp::Exchange(x) => kit_writes::exchange(x)?,
            WriteOp::SetPurchaseLimit(l) => kit_writes::set_purchase_limit(l),
            WriteOp::SetRetention(r) => Command::SetRetention(r.config()),
            other => other.stock_or_order_command(),
        })
    }

    fn stock_or_order_command(self) -> Command {
        match self {
            WriteOp::SetOnHand(c) => Command::SetOnHand {
                sku: sku(c.sku),
                location: loc(c.location),
                qty: c.qty,
                reason: Reason::from(c.reason),
                expected: c.expected,
            },
            WriteOp::Adjust(a) => Command::Adjust {
                sku: sku(a.sku),
                location: loc(a.location),
                delta: a.delta,
                reason: Reason::from(a.reason),
            },
            WriteOp::SetSafetyStock(s) => Command::SetSafetyStock {
                sku: sku(s.sku),
                location: loc(s.location),
                qty: s.qty,
            },
            WriteOp::MarkUnavailable(u) => Command::MarkUnavailable {
                sku: sku(u.sku),
                location: loc(u.location),
                qty: u.qty,
                reason: Reason::from(u.reason),
            },
            WriteOp::RestoreUnavailable(u) => Command::RestoreUnavailable {
                sku: sku(u.sku),
                location: loc(u.location),
                qty: u.qty,
                reason: Reason::from(u.reason),
            },
            WriteOp::Sell(s) => Command::Sell {
                sku: sku(s.sku),
                location: loc(s.location),
                qty: s.qty,
            },
            other => other.order_command(),
        }
    }

    fn order_command(self) -> Command {
        match self {
            WriteOp::Extend {
                reservation,
                ttl_ms,
            } => Command::Extend {
                reservation: ReservationId::from(reservation),
                ttl_ms,
            },
            WriteOp::Release { reservation } => Command::Release {
                reservation: ReservationId::from(reservation),
            },
            WriteOp::Fulfil { order, lines } => Command::Fulfil {
                order: OrderId::from(order),
                lines: located(lines),
            },
            WriteOp::Cancel { order, lines } => Command::Cancel {
                order: OrderId::from(order),
                lines: lines.map(located),
            },
            WriteOp::Reallocate {
                order,
                sku: s,
                from,
                to,
                qty,
            } => Command::Reallocate {
                order: OrderId::from(order),
                sku: sku(s),
                from: loc(from),
                to: loc(to),
                qty,
            },
            WriteOp::ReadyForPickup { order } => Command::ReadyForPickup {
                order: OrderId::from(order),
            },
            WriteOp::PickedUp { order } => Command::PickedUp {
                order: OrderId::from(order),
            },
            other => other.transfer_command(),
        }
    }

    fn transfer_command(self) -> Command {
        match self {
            WriteOp::ShipTransfer(t) => Command::ShipTransfer {
                transfer: TransferId::from(t.transfer),
                sku: sku(t.sku),
                from: loc(t.from),
                to: loc(t.to),
                qty: t.qty,
            },
            WriteOp::ReceiveTransfer {
                transfer,
                received,
                damaged,
            } => Command::ReceiveTransfer {
                transfer: TransferId::from(transfer),
                received,
                damaged,
            },
            WriteOp::RevokeCredential(r) => Command::RevokeCredential {
                credential: r.credential,
                until_ms: r.until_ms,
            },
            // Every other variant was converted by the callers above.
            other => unreachable!("converted earlier: {other:?}"),
        }
    }
}

/// A located quantity of a write's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllocationJson {
    /// Index of the request line it serves.
    pub line: u16,
    /// The SKU of that line.
    pub sku: String,
    /// Where it was taken.
    pub location: String,
    /// How much.
    pub qty: Qty,
}

/// What a write did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteReply {
    /// Done; nothing more to say.
    Done,
    /// The balance after a stock write.
    Balance {
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// The balance after the write.
        balance: BalanceJson,
    },
    /// A hold: where each line is held, until when.
    Reserved {
        /// The hold's deadline.
        expires_at: Time,
        /// Per line, where and how much.
        allocations: Vec<AllocationJson>,
    },
    /// A hold's new deadline.
    Extended {
        /// The new deadline.
        expires_at: Time,
    },
    /// An order: where each line is allocated.
    OrderPlaced {
        /// Per line, where and how much.
        allocations: Vec<AllocationJson>,
        /// The pickup deadline, for a pickup order.
        pickup_deadline: Option<Time>,
    },
    /// A received transfer: units lost in transit.
    TransferReceived {
        /// Shipped minus received minus damaged.
        lost: Qty,
    },
}

/// The answer to a write that the ledger accepted (a rejection is a problem).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WriteResult {
    /// The request id (the idempotency key), 32 hex digits.
    pub request_id: String,
    /// The operation (`reserve`, `place_order`...).
    pub operation: String,
    /// What it did.
    pub result: WriteReply,
}

/// What an answer needs from its request: the SKUs of its lines and the target of a stock
/// write, to name them and find their scales.
pub(super) struct Context {
    operation: &'static str,
    line_skus: Vec<SkuId>,
    stock: Option<(SkuId, LocationId)>,
    hold: Option<ReservationId>,
}

pub(super) fn context(command: &Command) -> Context {
    let skus = |ls: &[Line]| ls.iter().map(|l| l.sku.clone()).collect();
    // A customer's write answers as the write it wraps (one level: the engine refuses more).
    let command = match command {
        Command::AsCustomer { command, .. } => command,
        other => other,
    };
    let (line_skus, stock, hold) = match command {
        Command::Exchange(x) => (skus(&x.lines), None, None),
        Command::Reserve { lines, .. }
        | Command::PlaceOrder {
            source: OrderSource::Lines { lines, .. },
            ..
        } => (skus(lines), None, None),
        Command::PlaceOrder {
            source: OrderSource::Reservation(id),
            ..
        } => (Vec::new(), None, Some(id.clone())),
        Command::SetOnHand { sku, location, .. }
        | Command::Adjust { sku, location, .. }
        | Command::SetSafetyStock { sku, location, .. }
        | Command::MarkUnavailable { sku, location, .. }
        | Command::RestoreUnavailable { sku, location, .. }
        | Command::Sell { sku, location, .. } => {
            (Vec::new(), Some((sku.clone(), location.clone())), None)
        }
        _ => (Vec::new(), None, None),
    };
    Context {
        operation: command.name(),
        line_skus,
        stock,
        hold,
    }
}

/// Builds the JSON of `reply` from the local ledger (scales, a hold's lines).
fn reply_json(app: &App, cx: &Context, reply: engine::Reply) -> WriteReply {
    let ledger = app.ledger();
    let scale = |s: &SkuId| ledger.sku_scale(s).unwrap_or(0);
    let mut line_skus = cx.line_skus.clone();
    if let Some(hold) = &cx.hold {
        let view = ledger.query(
            &engine::Query::Reservation(hold.clone()),
            app.ctx.clock.now_ms(),
        );
        if let Ok(engine::Answer::Reservation(v)) = view {
            line_skus = v.lines.iter().map(|l| l.sku.clone()).collect();
        }
    }
    let allocations = |allocs: engine::Allocations| {
        allocs
            .into_iter()
            .map(|a| {
                let sku = line_skus.get(usize::from(a.line)).cloned();
                let sku = sku.unwrap_or_else(|| SkuId::from(String::new()));
                AllocationJson {
                    line: a.line,
                    qty: qty(a.qty, scale(&sku)),
                    sku: sku.0.into_string(),
                    location: a.location.as_str().to_owned(),
                }
            })
            .collect()
    };
    match reply {
        engine::Reply::Done => WriteReply::Done,
        engine::Reply::Balance(b) => {
            let none = || (SkuId::from(String::new()), LocationId::from(String::new()));
            let (sku, location) = cx.stock.clone().unwrap_or_else(none);
            WriteReply::Balance {
                balance: balance(&b, scale(&sku)),
                sku: sku.0.into_string(),
                location: location.0.into_string(),
            }
        }
        engine::Reply::Reserved {
            expires_at_ms,
            allocations: a,
        } => WriteReply::Reserved {
            expires_at: time(expires_at_ms),
            allocations: allocations(a),
        },
        engine::Reply::Extended { expires_at_ms } => WriteReply::Extended {
            expires_at: time(expires_at_ms),
        },
        engine::Reply::OrderPlaced {
            allocations: a,
            pickup_deadline_ms,
        } => WriteReply::OrderPlaced {
            allocations: allocations(a),
            pickup_deadline: pickup_deadline_ms.map(time),
        },
        engine::Reply::TransferReceived { lost } => {
            WriteReply::TransferReceived { lost: qty(lost, 0) }
        }
    }
}

/// One write's answer: its status and its body (a [`WriteResult`] or a [`Problem`]), and the
/// log index it was answered at, if it reached the log.
pub struct Answered {
    /// 200, or the problem's status.
    pub status: StatusCode,
    /// The result, or the problem.
    pub body: Result<WriteResult, Problem>,
    /// The log index of the answer.
    pub log_index: Option<u64>,
}

/// Waits (briefly) until this node has applied `index`, so that a write answered here is seen
/// by this node's reads and its answer is built from a ledger that holds it.
async fn applied_here(app: &App, index: u64) {
    let mut applied = app.ctx.shared.applied();
    let wait = std::time::Duration::from_millis(crate::raft::proposer::READ_TIMEOUT_MS);
    let _ = tokio::time::timeout(wait, applied.wait_for(|a| *a >= index)).await;
}

/// The answer to one write's result.
pub(super) async fn answer(
    app: &App,
    cx: &Context,
    request_id: RequestId,
    result: OpResult,
) -> Answered {
    match result {
        OpResult::Written { outcome, log_index } => {
            applied_here(app, log_index).await;
            let body = match outcome {
                Ok(reply) => Ok(WriteResult {
                    request_id: format!("{:032x}", request_id.0),
                    operation: cx.operation.to_owned(),
                    result: reply_json(app, cx, reply),
                }),
                Err(rejection) => Err(Problem::rejection(&rejection)),
            };
            let status = body
                .as_ref()
                .map_or_else(Problem::status_code, |_| StatusCode::OK);
            Answered {
                status,
                body,
                log_index: Some(log_index),
            }
        }
        OpResult::Failed(e) => problem_answer(Problem::server(&e)),
        _ => problem_answer(Problem::server(&protocol::ServerError::Internal {
            message: "a write answered with something else".to_owned(),
        })),
    }
}

fn problem_answer(p: Problem) -> Answered {
    Answered {
        status: p.status_code(),
        body: Err(p),
        log_index: None,
    }
}

impl IntoResponse for Answered {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Ok(result) => (self.status, Json(result)).into_response(),
            Err(problem) => problem.into_response(),
        };
        if let Some(index) = self.log_index {
            response
                .headers_mut()
                .insert(LOG_INDEX_HEADER, HeaderValue::from(index));
        }
        response
    }
}

/// Runs one write of `principal` keyed by the request's `Idempotency-Key`.
pub async fn write(app: &App, principal: &Principal, headers: &HeaderMap, op: WriteOp) -> Response {
    let request_id = match idempotency::request_id(headers) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let command = match op.command() {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    let cx = context(&command);
    let op = Op::Write(Request {
        request_id,
        command,
    });
    let mut results = exec::run(&app.ctx, principal, vec![op]).await;
    let result = results
        .pop()
        .unwrap_or(OpResult::Failed(protocol::ServerError::Internal {
            message: "no result".to_owned(),
        }));
    answer(app, &cx, request_id, result).await.into_response()
}

/// A write route whose body is the whole operation.
macro_rules! write_route {
    ($name:ident, $path:literal, $body:ty, $variant:path, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "writes",
            request_body = $body,
            params(("Idempotency-Key" = String, Header, description = "the request id: a UUID or 32 hex digits, the same on every retry")),
            responses(
                (status = 200, description = "the ledger accepted the write", body = WriteResult),
                (status = "4XX", description = "refused (problem+json)", body = Problem, content_type = "application/problem+json"),
                (status = "5XX", description = "the node could not do it now (problem+json)", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            State(app): State<App>,
            Extension(principal): Extension<Principal>,
            headers: HeaderMap,
            JsonBody(body): JsonBody<$body>,
        ) -> Response {
            write(&app, &principal, &headers, $variant(body)).await
        }
    };
}

/// A write route on an object named by its path, with a body or none.
macro_rules! object_route {
    ($name:ident, $path:literal, $body:ty, $make:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "writes",
            request_body = $body,
            params(
                ("id" = String, Path, description = "the object's id"),
                ("Idempotency-Key" = String, Header, description = "the request id: a UUID or 32 hex digits, the same on every retry"),
            ),
            responses(
                (status = 200, description = "the ledger accepted the write", body = WriteResult),
                (status = "4XX", description = "refused (problem+json)", body = Problem, content_type = "application/problem+json"),
                (status = "5XX", description = "the node could not do it now (problem+json)", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            State(app): State<App>,
            Extension(principal): Extension<Principal>,
            Path(id): Path<String>,
            headers: HeaderMap,
            JsonBody(body): JsonBody<$body>,
        ) -> Response {
            let make: fn(String, $body) -> WriteOp = $make;
            write(&app, &principal, &headers, make(id, body)).await
        }
    };
}

/// An empty body (`{}`) for routes that need none.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

write_route!(
    define_location_route,
    "/v1/locations",
    DefineLocation,
    WriteOp::DefineLocation,
    "Defines a location."
);
write_route!(
    define_group_route,
    "/v1/groups",
    DefineGroup,
    WriteOp::DefineGroup,
    "Defines a location group."
);
write_route!(
    define_sku_route,
    "/v1/skus",
    DefineSku,
    WriteOp::DefineSku,
    "Declares a SKU and its scale."
);
write_route!(
    set_on_hand_route,
    "/v1/stock/counts",
    SetOnHand,
    WriteOp::SetOnHand,
    "Records a count (set on_hand)."
);
write_route!(
    adjust_route,
    "/v1/stock/adjustments",
    Adjust,
    WriteOp::Adjust,
    "Adjusts on_hand (receipts, shrinkage)."
);
write_route!(
    safety_stock_route,
    "/v1/stock/safety",
    SetSafetyStock,
    WriteOp::SetSafetyStock,
    "Sets safety stock."
);
write_route!(
    mark_unavailable_route,
    "/v1/stock/unavailable",
    Unavailable,
    WriteOp::MarkUnavailable,
    "Marks units unavailable."
);
write_route!(
    restore_unavailable_route,
    "/v1/stock/available",
    Unavailable,
    WriteOp::RestoreUnavailable,
    "Restores unavailable units."
);
write_route!(
    sell_route,
    "/v1/sales",
    Sell,
    WriteOp::Sell,
    "A counter sale (channel pos)."
);
write_route!(
    reserve_route,
    "/v1/reservations",
    Reserve,
    WriteOp::Reserve,
    "Reserves stock (a checkout hold)."
);
write_route!(
    place_order_route,
    "/v1/orders",
    PlaceOrder,
    WriteOp::PlaceOrder,
    "Places an order."
);
write_route!(
    return_route,
    "/v1/returns",
    Return,
    WriteOp::Return,
    "Receives a return (RMA)."
);
write_route!(
    ship_transfer_route,
    "/v1/transfers",
    ShipTransfer,
    WriteOp::ShipTransfer,
    "Ships a transfer."
);
write_route!(
    revoke_route,
    "/v1/credentials/revocations",
    Revoke,
    WriteOp::RevokeCredential,
    "Revokes a credential (admin)."
);

object_route!(
    extend_route,
    "/v1/reservations/{id}/extend",
    ExtendBody,
    |reservation, b| WriteOp::Extend {
        reservation,
        ttl_ms: b.ttl_ms
    },
    "Extends a hold."
);
object_route!(
    release_route,
    "/v1/reservations/{id}/release",
    NoBody,
    |reservation, _| WriteOp::Release { reservation },
    "Releases a hold."
);
object_route!(
    fulfil_route,
    "/v1/orders/{id}/fulfilments",
    LinesBody,
    |order, b| WriteOp::Fulfil {
        order,
        lines: b.lines
    },
    "Fulfils order lines (shipped or handed over)."
);
object_route!(
    cancel_route,
    "/v1/orders/{id}/cancellations",
    CancelBody,
    |order, b| WriteOp::Cancel {
        order,
        lines: b.lines
    },
    "Cancels unfulfilled order lines."
);
object_route!(
    reallocate_route,
    "/v1/orders/{id}/reallocations",
    ReallocateBody,
    |order, b| WriteOp::Reallocate {
        order,
        sku: b.sku,
        from: b.from,
        to: b.to,
        qty: b.qty
    },
    "Moves an order's allocation between locations."
);
object_route!(
    ready_route,
    "/v1/orders/{id}/ready-for-pickup",
    NoBody,
    |order, _| WriteOp::ReadyForPickup { order },
    "Tells the customer a pickup is ready."
);
object_route!(
    picked_up_route,
    "/v1/orders/{id}/picked-up",
    NoBody,
    |order, _| WriteOp::PickedUp { order },
    "Hands over every remaining pickup line."
);
object_route!(
    receive_route,
    "/v1/transfers/{id}/receipts",
    ReceiveBody,
    |transfer, b| WriteOp::ReceiveTransfer {
        transfer,
        received: b.received,
        damaged: b.damaged
    },
    "Receives a transfer."
);

/// Runs a batch of writes keyed from the request's `Idempotency-Key` (operation `i` has the
/// key plus `i`); a body that does not convert is that operation's problem, the others run.
pub async fn batch(
    app: &App,
    principal: &Principal,
    headers: &HeaderMap,
    operations: Vec<WriteOp>,
) -> Result<Vec<super::router::BatchItem>, Problem> {
    let key = idempotency::request_id(headers)?;
    let mut items: Vec<Option<super::router::BatchItem>> = Vec::new();
    let mut runs = Vec::new();
    let mut ops = Vec::new();
    for (i, op) in operations.into_iter().enumerate() {
        let request_id = idempotency::batch_request_id(key, i);
        match op.command() {
            Ok(command) => {
                runs.push((i, request_id, context(&command)));
                ops.push(Op::Write(Request {
                    request_id,
                    command,
                }));
                items.push(None);
            }
            Err(p) => items.push(Some(item(problem_answer(p)))),
        }
    }
    let results = exec::run(&app.ctx, principal, ops).await;
    for ((i, request_id, cx), result) in runs.into_iter().zip(results) {
        items[i] = Some(item(answer(app, &cx, request_id, result).await));
    }
    Ok(items.into_iter().flatten().collect())
}

fn item(a: Answered) -> super::router::BatchItem {
    let (result, problem) = match a.body {
        Ok(r) => (Some(r), None),
        Err(p) => (None, Some(p)),
    };
    super::router::BatchItem {
        status: a.status.as_u16(),
        result,
        problem,
    }
}
write_route!(
    define_kit_route,
    "/v1/kits",
    kit_writes::DefineKit,
    WriteOp::DefineKit,
    "Defines (or redefines) a kit: a SKU made of components, with no stock of its own."
);
write_route!(
    exchange_route,
    "/v1/exchanges",
    kit_writes::ExchangeJson,
    WriteOp::Exchange,
    "A return and a new order in one all-or-nothing write; answers as the new order."
);
write_route!(
    purchase_limit_route,
    "/v1/limits",
    kit_writes::SetPurchaseLimit,
    WriteOp::SetPurchaseLimit,
    "Sets, changes or (qty_max 0) removes a SKU's per-customer purchase limit."
);

//! Objects by id: reservations, orders, returns, transfers and locations (`GET
//! /v1/<kind>/{id}`), as JSON views with quantities at their SKU's scale.

use axum::extract::{Path, Query as QueryParams, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Serialize;
use utoipa::ToSchema;

use engine::{Answer, Query};
use pki::Principal;

use super::json::{qty, time, Qty, Time};
use super::problem::Problem;
use super::queries::{read, respond, unexpected, ReadParams};
use super::router::App;

/// A held line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeldLineJson {
    /// Index of the request line.
    pub line: u16,
    /// The SKU.
    pub sku: String,
    /// Where it is held.
    pub location: String,
    /// How much.
    pub qty: Qty,
}

/// A reservation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReservationJson {
    /// Its id.
    pub id: String,
    /// `active`, `released`, `expired` or `placed`.
    pub state: String,
    /// Its channel.
    pub channel: String,
    /// Its lines.
    pub lines: Vec<HeldLineJson>,
    /// When it was made.
    pub created_at: Time,
    /// Its deadline.
    pub expires_at: Time,
}

/// An order line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLineJson {
    /// The SKU.
    pub sku: String,
    /// Its location.
    pub location: String,
    /// Whether it is a pickup line.
    pub pickup: bool,
    /// Units ordered.
    pub ordered: Qty,
    /// Units fulfilled.
    pub fulfilled: Qty,
    /// Units cancelled.
    pub cancelled: Qty,
}

/// Units of a SKU returned from an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReturnedJson {
    /// The SKU.
    pub sku: String,
    /// Units returned.
    pub qty: Qty,
}

/// An order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderJson {
    /// Its id.
    pub id: String,
    /// `open`, `partially_fulfilled`, `fulfilled`, `cancelled` or `closed`.
    pub state: String,
    /// Its channel.
    pub channel: String,
    /// Its lines.
    pub lines: Vec<OrderLineJson>,
    /// Returned units per SKU.
    pub returned: Vec<ReturnedJson>,
    /// The pickup deadline, for a pickup order.
    pub pickup_deadline: Option<Time>,
    /// Whether the customer was told it is ready.
    pub ready_for_pickup: bool,
    /// When it was placed.
    pub created_at: Time,
}

/// A returned line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RmaLineJson {
    /// The SKU.
    pub sku: String,
    /// Units.
    pub qty: Qty,
    /// Where it was received.
    pub received_at: String,
    /// `restock`, `damaged` or `scrap`.
    pub disposition: String,
}

/// A return (RMA).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RmaJson {
    /// Its id.
    pub id: String,
    /// The order.
    pub order: String,
    /// Its lines.
    pub lines: Vec<RmaLineJson>,
    /// When it was received.
    pub received_at: Time,
}

/// A transfer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransferJson {
    /// Its id.
    pub id: String,
    /// The SKU.
    pub sku: String,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Units shipped.
    pub qty: Qty,
    /// `shipped` or `received`.
    pub state: String,
    /// Sellable units received.
    pub received: Qty,
    /// Damaged units received.
    pub damaged: Qty,
    /// Units lost in transit.
    pub lost: Qty,
    /// When it was shipped.
    pub shipped_at: Time,
}

/// A location's definition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocationJson {
    /// Its id.
    pub location: String,
    /// `warehouse`, `store`, `marketplace` or `dropship`.
    pub kind: String,
    /// Whether it offers pickup.
    pub pickup: bool,
    /// Latitude x 1e6, if it has coordinates.
    pub lat_e6: Option<i32>,
    /// Longitude x 1e6, if it has coordinates.
    pub lon_e6: Option<i32>,
    /// Channels allowed to sell from it; absent: all.
    pub channels: Option<Vec<String>>,
}

/// An enum's variant name in snake case (`PartiallyFulfilled` -> `partially_fulfilled`).
pub fn snake<T: std::fmt::Debug>(value: &T) -> String {
    let name = format!("{value:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn scales(app: &App) -> impl Fn(&engine::SkuId) -> u8 + '_ {
    move |sku| super::queries::scale_of(app, sku)
}

fn reservation_json(app: &App, v: engine::query::ReservationView) -> ReservationJson {
    let scale = scales(app);
    ReservationJson {
        id: v.id.0.into_string(),
        state: v.state.as_str().to_owned(),
        channel: v.channel.0.into_string(),
        lines: v
            .lines
            .into_iter()
            .map(|l| HeldLineJson {
                line: l.line,
                qty: qty(l.qty, scale(&l.sku)),
                sku: l.sku.0.into_string(),
                location: l.location.0.into_string(),
            })
            .collect(),
        created_at: time(v.created_at_ms),
        expires_at: time(v.expires_at_ms),
    }
}

fn order_json(app: &App, v: engine::query::OrderView) -> OrderJson {
    let scale = scales(app);
    OrderJson {
        id: v.id.0.into_string(),
        state: v.state.as_str().to_owned(),
        channel: v.channel.0.into_string(),
        lines: v
            .lines
            .into_iter()
            .map(|l| {
                let s = scale(&l.sku);
                OrderLineJson {
                    sku: l.sku.0.into_string(),
                    location: l.location.0.into_string(),
                    pickup: l.pickup,
                    ordered: qty(l.ordered, s),
                    fulfilled: qty(l.fulfilled, s),
                    cancelled: qty(l.cancelled, s),
                }
            })
            .collect(),
        returned: v
            .returned
            .into_iter()
            .map(|(sku, n)| ReturnedJson {
                qty: qty(n, scale(&sku)),
                sku: sku.0.into_string(),
            })
            .collect(),
        pickup_deadline: v.pickup_deadline_ms.map(time),
        ready_for_pickup: v.ready_for_pickup,
        created_at: time(v.created_at_ms),
    }
}

fn rma_json(app: &App, v: engine::query::RmaView) -> RmaJson {
    let scale = scales(app);
    RmaJson {
        id: v.id.0.into_string(),
        order: v.order.0.into_string(),
        lines: v
            .lines
            .into_iter()
            .map(|l| RmaLineJson {
                qty: qty(l.qty, scale(&l.sku)),
                sku: l.sku.0.into_string(),
                received_at: l.received_at.0.into_string(),
                disposition: l.disposition.as_str().to_owned(),
            })
            .collect(),
        received_at: time(v.received_at_ms),
    }
}

fn transfer_json(app: &App, v: engine::query::TransferView) -> TransferJson {
    let s = scales(app)(&v.sku);
    TransferJson {
        id: v.id.0.into_string(),
        sku: v.sku.0.into_string(),
        from: v.from.0.into_string(),
        to: v.to.0.into_string(),
        qty: qty(v.qty, s),
        state: snake(&v.state),
        received: qty(v.received, s),
        damaged: qty(v.damaged, s),
        lost: qty(v.lost, s),
        shipped_at: time(v.shipped_at_ms),
    }
}

fn location_json(d: engine::LocationDef) -> LocationJson {
    LocationJson {
        location: d.location.0.into_string(),
        kind: d.kind.as_str().to_owned(),
        pickup: d.pickup,
        lat_e6: d.coordinates.map(|c| c.lat_e6),
        lon_e6: d.coordinates.map(|c| c.lon_e6),
        channels: d
            .channels
            .map(|cs| cs.into_iter().map(|c| c.0.into_string()).collect()),
    }
}

/// A read of one object by id.
macro_rules! object_view {
    ($name:ident, $path:literal, $json:ty, $query:path, $doc:literal, |$app:ident, $answer:pat_param| $build:expr) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "queries",
            params(("id" = String, Path, description = "the object's id"), ReadParams),
            responses(
                (status = 200, description = "the object", body = $json),
                (status = "4XX", description = "refused or not found", body = Problem, content_type = "application/problem+json"),
                (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = [])))]
        pub async fn $name(
            State($app): State<App>,
            Extension(principal): Extension<Principal>,
            Path(id): Path<String>,
            QueryParams(params): QueryParams<ReadParams>,
        ) -> Response {
            let query = $query(id.into());
            match read(&$app, &principal, &params, query).await {
                Ok(($answer, index)) => respond($build, index),
                Ok(_) => unexpected(),
                Err(problem) => problem.into_response(),
            }
        }
    };
}

object_view!(
    reservation,
    "/v1/reservations/{id}",
    ReservationJson,
    Query::Reservation,
    "A reservation.",
    |app, Answer::Reservation(v)| reservation_json(&app, v)
);
object_view!(
    order,
    "/v1/orders/{id}",
    OrderJson,
    Query::Order,
    "An order.",
    |app, Answer::Order(v)| order_json(&app, v)
);
object_view!(
    rma,
    "/v1/returns/{id}",
    RmaJson,
    Query::Rma,
    "A return (RMA).",
    |app, Answer::Rma(v)| rma_json(&app, v)
);
object_view!(
    transfer,
    "/v1/transfers/{id}",
    TransferJson,
    Query::Transfer,
    "A transfer.",
    |app, Answer::Transfer(v)| transfer_json(&app, v)
);
object_view!(
    location,
    "/v1/locations/{id}",
    LocationJson,
    Query::Location,
    "A location's definition.",
    |app, Answer::Location(d)| location_json(d)
);

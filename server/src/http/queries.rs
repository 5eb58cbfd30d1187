//! Queries (SPEC section 3) as `GET` routes. Each becomes a protocol `Op::Read` with the
//! requested consistency (`linearizable` by default: forwarded to the leader from a
//! follower; `local`: this node's state; `at_least` with `min_index`: once this node applied
//! that index) and runs through the client path like a QUIC read.

use axum::extract::{Query as QueryParams, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use engine::{Answer, ChannelId, Coordinates, Query, SkuId, Target};
use pki::Principal;
use protocol::{Consistency, Op, OpResult};

use super::exec;
use super::json::{balance, qty, BalanceJson, Qty};
use super::problem::{HttpCode, Problem};
use super::router::App;

/// Header carrying the log index a read's answer reflects.
pub const APPLIED_INDEX_HEADER: &str = "stockd-applied-index";
/// The channel whose ATS a query shows when none is named.
pub const DEFAULT_CHANNEL: &str = "web";

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyJson {
    /// The leader answers after confirming it still leads (default).
    #[default]
    Linearizable,
    /// This node answers from what it has applied.
    Local,
    /// This node answers once it has applied `min_index`.
    AtLeast,
}

/// Consistency parameters every read takes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// `linearizable` (default), `local` or `at_least`.
    pub consistency: Option<ConsistencyJson>,
    /// For `at_least`: the log index to wait for (a write's `Stockd-Log-Index`).
    pub min_index: Option<u64>,
}

impl ReadParams {
    fn consistency(&self) -> Result<Consistency, Problem> {
        match (self.consistency.unwrap_or_default(), self.min_index) {
            (ConsistencyJson::Linearizable, _) => Ok(Consistency::Linearizable),
            (ConsistencyJson::Local, _) => Ok(Consistency::Local),
            (ConsistencyJson::AtLeast, Some(index)) => Ok(Consistency::AtLeast(index)),
            (ConsistencyJson::AtLeast, None) => Err(Problem::http(
                HttpCode::BadRequest,
                "consistency=at_least needs min_index",
            )),
        }
    }
}

/// Runs one query and hands its answer (or the problem) back with the applied index.
pub(super) async fn read(
    app: &App,
    principal: &Principal,
    params: &ReadParams,
    query: Query,
) -> Result<(Answer, u64), Problem> {
    let consistency = params.consistency()?;
    let op = Op::Read { query, consistency };
    let mut results = exec::run(&app.ctx, principal, vec![op]).await;
    match results.pop() {
        Some(OpResult::Read {
            answer: Ok(answer),
            applied_index,
        }) => Ok((answer, applied_index)),
        Some(OpResult::Read { answer: Err(r), .. }) => Err(Problem::rejection(&r)),
        Some(OpResult::Failed(protocol::ServerError::Timeout))
            if matches!(consistency, Consistency::AtLeast(_)) =>
        {
            // The node is up and answering; the index asked for is not in its state (a
            // `min_index` no write produced, or one this node has not received): the
            // request's precondition, not the node, failed.
            let applied = app.ctx.shared.applied_index();
            let detail = format!(
                "this node has not applied the index asked for within {} ms (applied: {applied})",
                crate::raft::proposer::READ_TIMEOUT_MS
            );
            Err(Problem::http(HttpCode::IndexNotReached, detail))
        }
        Some(OpResult::Failed(e)) => Err(Problem::server(&e)),
        _ => Err(Problem::server(&protocol::ServerError::Internal {
            message: "a read answered with something else".to_owned(),
        })),
    }
}

pub(super) fn respond<T: Serialize>(body: T, applied_index: u64) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(APPLIED_INDEX_HEADER, HeaderValue::from(applied_index));
    response
}

/// `GET /v1/availability` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityParams {
    /// SKU ids, comma-separated (at most `QUERY_SKUS_MAX`).
    pub sku: String,
    /// A location id, a group id, or `all` (default).
    pub at: Option<String>,
    /// The channel whose ATS to show (default `web`).
    pub channel: Option<String>,
    /// `linearizable` (default), `local` or `at_least`.
    pub consistency: Option<ConsistencyJson>,
    /// For `at_least`: the log index to wait for.
    pub min_index: Option<u64>,
}

/// One location's balance and ATS.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AvailabilityRowJson {
    /// The location.
    pub location: String,
    /// Its balance.
    pub balance: BalanceJson,
    /// ATS for the channel asked.
    pub ats: Qty,
    /// ATS for a counter sale there (`pos`).
    pub ats_pos: Qty,
}

/// One SKU's availability.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkuAvailabilityJson {
    /// The SKU.
    pub sku: String,
    /// Its decimal scale.
    pub scale: u8,
    /// Total ATS over the rows (each floored at 0 first).
    pub ats: Qty,
    /// Total POS ATS.
    pub ats_pos: Qty,
    /// Per location.
    pub rows: Vec<AvailabilityRowJson>,
}

/// The answer of `GET /v1/availability`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AvailabilityJson {
    /// One entry per SKU asked, in order.
    pub skus: Vec<SkuAvailabilityJson>,
}

/// The target `at` names: `all`, a location this node knows, else a group.
fn target(app: &App, at: Option<&str>) -> Target {
    let Some(at) = at.filter(|a| *a != "all") else {
        return Target::All;
    };
    let id = engine::LocationId::from(at.to_owned());
    match app.query_here(&Query::Location(id.clone())) {
        Ok(_) => Target::Location(id),
        Err(_) => Target::Group(engine::GroupId::from(at.to_owned())),
    }
}

fn availability_json(rows: Vec<engine::query::SkuAvailability>) -> AvailabilityJson {
    let skus = rows
        .into_iter()
        .map(|s| SkuAvailabilityJson {
            ats: qty(s.ats, s.scale),
            ats_pos: qty(s.ats_pos, s.scale),
            rows: s
                .rows
                .iter()
                .map(|r| AvailabilityRowJson {
                    location: r.location.0.to_string(),
                    balance: balance(&r.balance, s.scale),
                    ats: qty(r.ats, s.scale),
                    ats_pos: qty(r.ats_pos, s.scale),
                })
                .collect(),
            sku: s.sku.0.into_string(),
            scale: s.scale,
        })
        .collect();
    AvailabilityJson { skus }
}

/// Availability of SKUs at a location, a group or the whole network.
#[utoipa::path(get, path = "/v1/availability", tag = "queries", params(AvailabilityParams),
    responses(
        (status = 200, description = "balances and ATS", body = AvailabilityJson),
        (status = "4XX", description = "refused", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn availability(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    QueryParams(p): QueryParams<AvailabilityParams>,
) -> Response {
    let skus: Vec<SkuId> = p
        .sku
        .split(',')
        .map(|s| SkuId::from(s.trim().to_owned()))
        .collect();
    if skus.len() > engine::limits::QUERY_SKUS_MAX {
        let detail = format!("at most {} SKUs per query", engine::limits::QUERY_SKUS_MAX);
        return Problem::http(HttpCode::BadRequest, detail).into_response();
    }
    let query = Query::Availability {
        skus,
        target: target(&app, p.at.as_deref()),
        channel: ChannelId::from(p.channel.unwrap_or_else(|| DEFAULT_CHANNEL.to_owned())),
    };
    let read_params = ReadParams {
        consistency: p.consistency,
        min_index: p.min_index,
    };
    match read(&app, &principal, &read_params, query).await {
        Ok((Answer::Availability(rows), index)) => respond(availability_json(rows), index),
        Ok(_) => unexpected(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) fn unexpected() -> Response {
    Problem::server(&protocol::ServerError::Internal {
        message: "the ledger answered another kind of query".to_owned(),
    })
    .into_response()
}

/// `GET /v1/nearby` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NearbyParams {
    /// The SKU.
    pub sku: String,
    /// Latitude x 1e6.
    pub lat_e6: i32,
    /// Longitude x 1e6.
    pub lon_e6: i32,
    /// Search radius, km.
    pub radius_km: u32,
    /// Least ATS a location must have, base units (default 1).
    pub qty: Option<i64>,
    /// The channel whose ATS counts (default `web`).
    pub channel: Option<String>,
    /// `linearizable` (default), `local` or `at_least`.
    pub consistency: Option<ConsistencyJson>,
    /// For `at_least`: the log index to wait for.
    pub min_index: Option<u64>,
}

/// A location near a point with enough ATS.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NearbyJson {
    /// The location.
    pub location: String,
    /// Its kind (`store`, `warehouse`...).
    pub kind: String,
    /// Whether it offers pickup.
    pub pickup: bool,
    /// Distance, metres.
    pub distance_m: u64,
    /// ATS there, for the channel.
    pub ats: Qty,
}

/// Locations with ATS >= qty within a radius, nearest first.
#[utoipa::path(get, path = "/v1/nearby", tag = "queries", params(NearbyParams),
    responses(
        (status = 200, description = "nearest first", body = Vec<NearbyJson>),
        (status = "4XX", description = "refused", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn nearby(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    QueryParams(p): QueryParams<NearbyParams>,
) -> Response {
    let sku = SkuId::from(p.sku.as_str());
    let query = Query::Nearby {
        sku: sku.clone(),
        center: Coordinates {
            lat_e6: p.lat_e6,
            lon_e6: p.lon_e6,
        },
        radius_km: p.radius_km,
        qty: p.qty.unwrap_or(1),
        channel: ChannelId::from(p.channel.unwrap_or_else(|| DEFAULT_CHANNEL.to_owned())),
    };
    let read_params = ReadParams {
        consistency: p.consistency,
        min_index: p.min_index,
    };
    match read(&app, &principal, &read_params, query).await {
        Ok((Answer::Nearby(rows), index)) => {
            let scale = scale_of(&app, &sku);
            let rows: Vec<NearbyJson> = rows
                .into_iter()
                .map(|r| NearbyJson {
                    location: r.location.0.into_string(),
                    kind: r.kind.as_str().to_owned(),
                    pickup: r.pickup,
                    distance_m: r.distance_m,
                    ats: qty(r.ats, scale),
                })
                .collect();
            respond(rows, index)
        }
        Ok(_) => unexpected(),
        Err(problem) => problem.into_response(),
    }
}

/// The scale of `sku` on this node (0 if unknown).
pub fn scale_of(app: &App, sku: &SkuId) -> u8 {
    let ledger = app.ledger();
    ledger.sku_scale(sku).unwrap_or(0)
}

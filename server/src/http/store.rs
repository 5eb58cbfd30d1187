//! The store page (SPEC section 6): what a store associate's tablet needs that the other
//! routes do not give — SKUs by id prefix (`GET /v1/skus`) and the pickups due at a store
//! (`GET /v1/locations/{id}/pickups`) — and the page itself (`/`, `/app.js`, `/app.css`),
//! static files compiled into the binary.
//!
//! The page is open without identity (SPEC section 7: its static files are); everything it
//! shows comes from the API with the bearer token the associate enters. It is served with a
//! Content-Security-Policy that allows only this origin's script, style and API calls, so a
//! SKU id or an order id that reaches the page can never run as code (the page also only sets
//! `textContent`, never HTML).

use axum::extract::{Path, Query as QueryParams, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use engine::limits::{PICKUPS_PER_QUERY_MAX, SKU_SEARCH_RESULTS_MAX};
use engine::query::{PickupsDue, SkuMatches};
use engine::{Answer, LocationId, Query, SkuId};
use pki::Principal;

use super::json::{qty, time, Qty, Time};
use super::problem::Problem;
use super::queries::{read, respond, scale_of, unexpected, ConsistencyJson, ReadParams};
use super::router::App;

/// SKUs a prefix search returns when `limit` is not given.
pub const SKU_SEARCH_DEFAULT: u32 = 20;
/// Pickups listed when `limit` is not given.
pub const PICKUPS_DEFAULT: u32 = 100;

/// `GET /v1/skus` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SkuSearchParams {
    /// The start of the SKU id (1..=64 bytes of `[A-Za-z0-9._:/-]`; a whole id matches too).
    pub prefix: String,
    /// At most this many SKUs (1..=`SKU_SEARCH_RESULTS_MAX` = 100, default 20).
    pub limit: Option<u32>,
    /// `linearizable` (default), `local` or `at_least`.
    pub consistency: Option<ConsistencyJson>,
    /// For `at_least`: the log index to wait for.
    pub min_index: Option<u64>,
}

/// A SKU found by prefix.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkuMatchJson {
    /// The SKU id.
    pub sku: String,
    /// Its decimal scale.
    pub scale: u8,
}

/// The answer of `GET /v1/skus`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkuSearchJson {
    /// Matching SKUs in byte order of their ids.
    pub skus: Vec<SkuMatchJson>,
    /// Whether more SKUs match than were returned (a longer prefix narrows).
    pub more: bool,
}

fn sku_search_json(m: SkuMatches) -> SkuSearchJson {
    SkuSearchJson {
        skus: m
            .skus
            .into_iter()
            .map(|s| SkuMatchJson {
                sku: s.sku.0.into_string(),
                scale: s.scale,
            })
            .collect(),
        more: m.more,
    }
}

/// SKUs whose id starts with a prefix, in byte order of their ids, at most `limit`.
#[utoipa::path(get, path = "/v1/skus", tag = "queries", params(SkuSearchParams),
    responses(
        (status = 200, description = "matching SKUs", body = SkuSearchJson),
        (status = "4XX", description = "refused (a malformed prefix, a limit out of range)", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn sku_search(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    QueryParams(p): QueryParams<SkuSearchParams>,
) -> Response {
    let query = Query::SkuSearch {
        prefix: SkuId::from(p.prefix),
        max: p.limit.unwrap_or(SKU_SEARCH_DEFAULT),
    };
    let read_params = ReadParams {
        consistency: p.consistency,
        min_index: p.min_index,
    };
    match read(&app, &principal, &read_params, query).await {
        Ok((Answer::SkuSearch(m), index)) => respond(sku_search_json(m), index),
        Ok(_) => unexpected(),
        Err(problem) => problem.into_response(),
    }
}

/// `GET /v1/locations/{id}/pickups` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PickupsParams {
    /// At most this many orders (1..=`PICKUPS_PER_QUERY_MAX` = 1,000, default 100).
    pub limit: Option<u32>,
    /// `linearizable` (default), `local` or `at_least`.
    pub consistency: Option<ConsistencyJson>,
    /// For `at_least`: the log index to wait for.
    pub min_index: Option<u64>,
}

/// Units of a SKU still to hand over.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PickupLineJson {
    /// The SKU.
    pub sku: String,
    /// Units still to hand over at this store.
    pub qty: Qty,
}

/// A pickup order with units still to collect here.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PickupJson {
    /// The order.
    pub order: String,
    /// Its selling channel.
    pub channel: String,
    /// The collection deadline (after it, the units go back to stock).
    pub deadline: Time,
    /// Whether the customer was told it is ready.
    pub ready_for_pickup: bool,
    /// Its uncollected lines here.
    pub lines: Vec<PickupLineJson>,
}

/// The answer of `GET /v1/locations/{id}/pickups`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PickupsJson {
    /// The store.
    pub location: String,
    /// Earliest deadline first.
    pub pickups: Vec<PickupJson>,
    /// Whether more pickups are due than were returned.
    pub more: bool,
}

fn pickups_json(app: &App, due: PickupsDue) -> PickupsJson {
    let pickups = due
        .pickups
        .into_iter()
        .map(|p| PickupJson {
            lines: p
                .lines
                .into_iter()
                .map(|l| PickupLineJson {
                    qty: qty(l.qty, scale_of(app, &l.sku)),
                    sku: l.sku.0.into_string(),
                })
                .collect(),
            order: p.order.0.into_string(),
            channel: p.channel.0.into_string(),
            deadline: time(p.deadline_ms),
            ready_for_pickup: p.ready_for_pickup,
        })
        .collect();
    PickupsJson {
        location: due.location.0.into_string(),
        pickups,
        more: due.more,
    }
}

/// Pickup orders with units still to collect at a location, earliest deadline first; a
/// pickup whose deadline has passed is not listed.
#[utoipa::path(get, path = "/v1/locations/{id}/pickups", tag = "queries",
    params(("id" = String, Path, description = "the location (a store)"), PickupsParams),
    responses(
        (status = 200, description = "pickups due", body = PickupsJson),
        (status = "4XX", description = "refused or unknown location", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn pickups(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    QueryParams(p): QueryParams<PickupsParams>,
) -> Response {
    let query = Query::Pickups {
        location: LocationId::from(id),
        max: p.limit.unwrap_or(PICKUPS_DEFAULT),
    };
    let read_params = ReadParams {
        consistency: p.consistency,
        min_index: p.min_index,
    };
    match read(&app, &principal, &read_params, query).await {
        Ok((Answer::Pickups(due), index)) => respond(pickups_json(&app, due), index),
        Ok(_) => unexpected(),
        Err(problem) => problem.into_response(),
    }
}

const _: () = assert!(SKU_SEARCH_DEFAULT <= SKU_SEARCH_RESULTS_MAX);
const _: () = assert!(PICKUPS_DEFAULT <= PICKUPS_PER_QUERY_MAX);

/// The page's policy: scripts, styles and requests to this origin only; no inline code, no
/// frames, no plug-ins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/`: the store page.
pub async fn page() -> Response {
    static_file("text/html; charset=utf-8", INDEX_HTML)
}

/// `/app.js`: the page's script.
pub async fn page_js() -> Response {
    static_file("text/javascript; charset=utf-8", APP_JS)
}

/// `/app.css`: the page's style.
pub async fn page_css() -> Response {
    static_file("text/css; charset=utf-8", APP_CSS)
}

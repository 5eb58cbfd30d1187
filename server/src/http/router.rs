//! The routes, the identity check in front of the protected ones, body limits and fallbacks.
//!
//! Open without identity (SPEC section 7): `/healthz`, `/readyz`, `/openapi.json` and the
//! store page's static files (`/`, `/app.js`, `/app.css`). Every
//! other route needs a bearer token (`identity`); a request without a usable one is a 401
//! problem before any handler runs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pki::Principal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::problem::{HttpCode, Problem};
use super::{
    feed, identity, openapi, queries, retention, store, views, writes, Probes, BATCH_OPS_MAX,
    BODY_BYTES_MAX,
};
use crate::node::NodeCtx;

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    /// The node.
    pub ctx: Arc<NodeCtx>,
    /// Metrics and readiness.
    pub probes: Arc<dyn Probes>,
    /// Becomes true when the server stops: event streams end.
    pub stopping: watch::Receiver<bool>,
}

impl App {
    /// This node's ledger, read-locked (a poisoned lock still reads: an apply that panicked
    /// stops the node, and until then its state is what the node serves).
    pub fn ledger(&self) -> std::sync::RwLockReadGuard<'_, engine::Ledger> {
        self.ctx
            .shared
            .ledger
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `query` answered from this node's ledger as of the node's clock now.
    pub fn query_here(&self, query: &engine::Query) -> Result<engine::Answer, engine::Rejection> {
        self.ledger().query(query, self.ctx.clock.now_ms())
    }
}

/// A JSON body whose failures are problems: 413 above [`BODY_BYTES_MAX`], 400 if it does not
/// parse (an empty body reads as `{}`). The `Content-Type` is not checked.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                let detail = format!("a body is at most {BODY_BYTES_MAX} bytes");
                Problem::http(HttpCode::PayloadTooLarge, detail)
            } else {
                Problem::http(HttpCode::BadRequest, e.body_text())
            }
        })?;
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| Problem::http(HttpCode::BadRequest, format!("body: {e}")))
    }
}

async fn identify(State(app): State<App>, mut req: Request, next: Next) -> Response {
    match identity::principal(&app.ctx, req.headers()) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// The routes of a node.
pub fn router(app: App) -> Router {
    let protected = Router::new()
        .route("/v1/locations", post(writes::define_location_route))
        .route("/v1/locations/{id}", get(views::location))
        .route("/v1/locations/{id}/pickups", get(store::pickups))
        .route("/v1/groups", post(writes::define_group_route))
        .route(
            "/v1/skus",
            post(writes::define_sku_route).get(store::sku_search),
        )
        .route("/v1/stock/counts", post(writes::set_on_hand_route))
        .route("/v1/stock/adjustments", post(writes::adjust_route))
        .route("/v1/stock/safety", post(writes::safety_stock_route))
        .route(
            "/v1/stock/unavailable",
            post(writes::mark_unavailable_route),
        )
        .route(
            "/v1/stock/available",
            post(writes::restore_unavailable_route),
        )
        .route("/v1/sales", post(writes::sell_route))
        .route("/v1/reservations", post(writes::reserve_route))
        .route("/v1/reservations/{id}", get(views::reservation))
        .route("/v1/reservations/{id}/extend", post(writes::extend_route))
        .route("/v1/reservations/{id}/release", post(writes::release_route))
        .route("/v1/orders", post(writes::place_order_route))
        .route("/v1/orders/{id}", get(views::order))
        .route("/v1/orders/{id}/fulfilments", post(writes::fulfil_route))
        .route("/v1/orders/{id}/cancellations", post(writes::cancel_route))
        .route(
            "/v1/orders/{id}/reallocations",
            post(writes::reallocate_route),
        )
        .route(
            "/v1/orders/{id}/ready-for-pickup",
            post(writes::ready_route),
        )
        .route("/v1/orders/{id}/picked-up", post(writes::picked_up_route))
        .route("/v1/returns", post(writes::return_route))
        .route("/v1/returns/{id}", get(views::rma))
        .route("/v1/transfers", post(writes::ship_transfer_route))
        .route("/v1/transfers/{id}", get(views::transfer))
        .route("/v1/transfers/{id}/receipts", post(writes::receive_route))
        .merge(later_routes())
        .route("/v1/batch", post(batch))
        .route("/v1/availability", get(queries::availability))
        .route("/v1/nearby", get(queries::nearby))
        .route("/v1/changes", get(feed::changes))
        .route("/v1/changes/stream", get(feed::stream))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), identify));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_document))
        .route("/", get(store::page))
        .route("/app.js", get(store::page_js))
        .route("/app.css", get(store::page_css))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(app)
}

/// The routes added with kits, purchase limits, credentials and retention (behind the same
/// identity check as the others: `router` merges them before its layer).
fn later_routes() -> Router<App> {
    Router::new()
        .route("/v1/credentials/revocations", post(writes::revoke_route))
        .route("/v1/kits", post(writes::define_kit_route))
        .route("/v1/exchanges", post(writes::exchange_route))
        .route("/v1/limits", post(writes::purchase_limit_route))
        .route(
            "/v1/retention",
            get(retention::retention).put(retention::set_retention),
        )
}

async fn not_found() -> Problem {
    Problem::http(HttpCode::NotFoundRoute, "no such route (see /openapi.json)")
}

async fn method_not_allowed() -> Problem {
    Problem::http(
        HttpCode::MethodNotAllowed,
        "see /openapi.json for the methods",
    )
}

/// The answer of the probes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or why not in words.
    pub status: String,
    /// Why not, as a stable code (`removed`, `rebuilding`, `storage_failing`, `no_leader`:
    /// `NodeStatus.not_ready`'s names); absent when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// Whether the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        reason: None,
    })
}

/// Whether the node is ready (`NodeCtx::readiness`: not removed, state rebuilt, storage
/// working, a live leader known); 503 with the reason otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Health),
        (status = 503, description = "not ready, and why", body = Health),
    ))]
pub async fn readyz(State(app): State<App>) -> Response {
    match app.probes.readiness() {
        Ok(()) => Json(Health {
            status: "ok".to_owned(),
            reason: None,
        })
        .into_response(),
        Err(why) => {
            let body = Health {
                status: why.to_string(),
                reason: Some(why.code()),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// The Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "no identity", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.probes.metrics_text(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi_document() -> Response {
    let body = openapi::openapi_json();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `POST /v1/batch` body.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The writes, at most [`BATCH_OPS_MAX`]; write `i` has request id key + i.
    pub operations: Vec<writes::WriteOp>,
}

/// One write's answer in a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchItem {
    /// The status it would have alone.
    pub status: u16,
    /// Its result, if accepted.
    pub result: Option<writes::WriteResult>,
    /// Its problem, if refused.
    pub problem: Option<Problem>,
}

/// The answer of `POST /v1/batch`: one item per operation, in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResult {
    /// The answers.
    pub results: Vec<BatchItem>,
}

/// Up to a frame's worth of writes in one call (a checkout gateway), answered per operation.
#[utoipa::path(post, path = "/v1/batch", tag = "writes", request_body = BatchBody,
    params(("Idempotency-Key" = String, Header, description = "the request id of operation 0; operation i has this plus i")),
    responses(
        (status = 200, description = "one answer per operation", body = BatchResult),
        (status = "4XX", description = "refused as a whole", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn batch(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<BatchBody>,
) -> Response {
    if body.operations.len() > BATCH_OPS_MAX {
        let detail = format!("at most {BATCH_OPS_MAX} operations per batch");
        return Problem::http(HttpCode::BadRequest, detail).into_response();
    }
    match writes::batch(&app, &principal, &headers, body.operations).await {
        Ok(items) => Json(BatchResult { results: items }).into_response(),
        Err(problem) => problem.into_response(),
    }
}

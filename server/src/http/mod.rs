//! The HTTP/JSON front (SPEC section 6, docs/HTTP.md): every write and query of SPEC section 3
//! as JSON over HTTP/1.1 and HTTP/2 (h2c), on any node, with bearer tokens, idempotency keys,
//! RFC 9457 problems, an OpenAPI 3.1 document, the change feed as server-sent events, and the
//! operations endpoints (`/metrics`, `/healthz`, `/readyz`).
//!
//! It is a second door to the same rooms: a request becomes the protocol's `Op`s (the engine's
//! `Command` and `Query` types) and runs through `api::run_ops`, where `auth::decide` and the
//! proposer are, exactly as a QUIC frame's operations do. A write or linearizable read that
//! reaches a follower is forwarded to the leader with the caller's principal
//! (`raft::forward`), so the leader authorizes it and records the caller as its author.
//!
//! # Layout
//! - `router`: the routes, the identity check in front of them, limits, the fallback.
//! - `identity`: `Authorization: Bearer` tokens to principals.
//! - `exec`: running operations here or at the leader.
//! - `writes`, `queries`, `feed`: the handlers and their JSON types.
//! - `json`: quantities (base units and display strings) and times (ms and RFC 3339).
//! - `problem`: outcomes to statuses and problem+json bodies.
//! - `idempotency`: the `Idempotency-Key` header to a request id.
//! - `openapi`: the OpenAPI document, generated from the handlers' types.
//! - `retention`: `GET` and `PUT /v1/retention`, the replicated retention settings.
//! - `store`: the store page (`/`, `/app.js`, `/app.css`, files in `page/`) and the two
//!   queries it needs beyond the others (SKUs by prefix, pickups due at a store).

// A problem is the error of a request and is built once per failed request, on its way to the
// client: its size on the stack costs nothing that boxing would save.
#![allow(clippy::result_large_err)]

mod exec;
mod feed;
mod idempotency;
mod identity;
mod json;
mod kit_writes;
mod openapi;
mod problem;
mod queries;
mod retention;
mod router;
mod store;
mod views;
mod writes;

pub use identity::bootstrap_admin_token;
pub use openapi::openapi_json;
pub use problem::{status_of_rejection, status_of_server_error};

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::node::NodeCtx;

/// Largest request body, bytes (a protocol frame's limit: a batch of the most operations a
/// frame carries fits). A larger body is answered 413.
pub const BODY_BYTES_MAX: usize = protocol::FRAME_BYTES_MAX;
/// Operations in one `POST /v1/batch` (a frame's limit).
pub const BATCH_OPS_MAX: usize = protocol::OPS_PER_FRAME_MAX;
/// Events in one page of `GET /v1/changes` (and one server-sent burst).
pub const CHANGES_PAGE_MAX: u32 = 1_000;
/// Default HTTP port of the embedded default (`dev` nodes use 7480, 7481, ...).
pub const DEFAULT_HTTP_PORT: u16 = 7480;

/// What the operations endpoints serve: `/metrics` and `/readyz`. The node's implementation
/// is [`NodeProbes`]; tests of the router alone plug in their own.
pub trait Probes: Send + Sync + 'static {
    /// The Prometheus text exposition (`/metrics`).
    fn metrics_text(&self) -> String;
    /// Whether the node is ready (`/readyz`), else the first reason it is not
    /// (`NodeCtx::readiness`, the same rule as `NodeStatus.not_ready` and `stockd_ready`).
    fn readiness(&self) -> Result<(), protocol::NotReady>;
}

/// The node's probes: its metrics registry (`crate::metrics`) and its readiness rule.
pub struct NodeProbes {
    ctx: Arc<NodeCtx>,
}

impl NodeProbes {
    /// The probes of the node behind `ctx`.
    pub fn new(ctx: Arc<NodeCtx>) -> NodeProbes {
        NodeProbes { ctx }
    }
}

impl Probes for NodeProbes {
    fn metrics_text(&self) -> String {
        self.ctx.metrics.render()
    }

    fn readiness(&self) -> Result<(), protocol::NotReady> {
        self.ctx.readiness()
    }
}

/// A running HTTP server.
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds `listen` and serves the node behind `ctx` until [`HttpServer::stop`].
    pub async fn start(
        listen: SocketAddr,
        ctx: Arc<NodeCtx>,
        probes: Arc<dyn Probes>,
    ) -> std::io::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let app = router::router(router::App {
            ctx,
            probes,
            stopping: stopped.clone(),
        });
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
        tracing::info!(%addr, "HTTP listening");
        Ok(HttpServer { addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in progress finish (server-sent event streams end when
    /// the node's feed stops), waits for the server task at most `limit`.
    pub async fn stop(self, limit: std::time::Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

//! Accepting connections: the node-wide and per-address bounds, address validation under
//! load, and the identity each ALPN requires (SPEC section 7) before anything is served.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};

use crate::auth::access::{self, AddressCounts, HANDSHAKES_BEFORE_RETRY};
use crate::metrics::ConnectionKind;
use crate::node::NodeCtx;
use crate::raft::forward::ForwardFn;
use crate::raft::network::StatusFn;

/// Client and peer connections a node accepts at once; more are refused.
pub const CONNECTIONS_MAX: usize = 4_096;

/// Accepts connections until `shutdown`: each one within the node's and its address's bounds
/// gets a task that checks its identity and serves it.
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    ctx: Arc<NodeCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let addresses = AddressCounts::default();
    let handshaking = Arc::new(AtomicUsize::new(0));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        // Under a flood, make new peers prove their address (one stateless packet) before
        // the node keeps any state or does any crypto for them.
        if handshaking.load(Ordering::Relaxed) >= HANDSHAKES_BEFORE_RETRY
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            ctx.refusals.connection_limited();
            let _ = incoming.retry();
            continue;
        }
        let (Ok(permit), Some(slot)) = (
            permits.clone().try_acquire_owned(),
            addresses.take(incoming.remote_address().ip()),
        ) else {
            tracing::warn!(peer = %incoming.remote_address(), "connection limit reached; refusing");
            ctx.refusals.connection_limited();
            incoming.refuse();
            continue;
        };
        let (ctx, handshaking) = (ctx.clone(), handshaking.clone());
        tokio::spawn(async move {
            let _held = (permit, slot);
            handshaking.fetch_add(1, Ordering::Relaxed);
            let conn = incoming.await;
            handshaking.fetch_sub(1, Ordering::Relaxed);
            if let Ok(conn) = conn {
                serve(conn, ctx).await;
            }
        });
    }
}

/// Serves a connection by its ALPN once its identity fits: a client certificate for clients,
/// a node certificate for peers.
async fn serve(conn: quinn::Connection, ctx: Arc<NodeCtx>) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    match alpn.as_deref() {
        Some(p) if p == protocol::ALPN_CLIENT => match access::client_principal(&conn) {
            Ok(principal) => {
                let _open = ctx.metrics.connection(ConnectionKind::Client);
                crate::api::serve_client(conn, ctx.clone(), principal).await;
            }
            Err(why) => refuse(&conn, &ctx, &why),
        },
        Some(p) if p == protocol::ALPN_PEER => match access::check_peer(&conn) {
            Ok(()) => {
                let _open = ctx.metrics.connection(ConnectionKind::Peer);
                let (faults, election) = (ctx.faults.clone(), ctx.election.clone());
                let node = ctx.clone();
                let status: StatusFn = Arc::new(move || crate::api::status(&node));
                let node = ctx.clone();
                let forward: ForwardFn = Arc::new(move |forwarded| {
                    Box::pin(crate::api::run_forwarded(node.clone(), forwarded))
                });
                ctx.consensus
                    .serve_peer(conn, faults, election, status, forward)
                    .await;
            }
            Err(why) => refuse(&conn, &ctx, &why),
        },
        _ => conn.close(1u32.into(), b"unknown protocol"),
    }
}

fn refuse(conn: &quinn::Connection, ctx: &NodeCtx, why: &str) {
    tracing::info!(peer = %conn.remote_address(), "connection refused: {why}");
    ctx.refusals.refused_connection();
    conn.close(protocol::CLOSE_IDENTITY_REFUSED.into(), why.as_bytes());
}

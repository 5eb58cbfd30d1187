//! The client protocol on a node: streams, frames and operations (docs/PROTOCOL.md).
//!
//! Every client stream gets a reader loop and a writer task. Frames are processed concurrently
//! (at most [`protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX`] per stream; beyond that the reader
//! stops reading and QUIC flow control pushes back on the client) and their replies are
//! written as they complete. A malformed, truncated, oversized or unknown-version frame gets a
//! `ProtocolError` message and ends that stream only: the connection and its other streams go on.
//!
//! Replies are under budgets (the `replies` module): a frame first does whatever it waits for
//! (writes, leadership rounds, `at_least` indexes), then takes room for its reply and only then
//! reads the ledger and builds it. A stream without room stops reading frames; a connection
//! that does not read is closed by its watchdog; a node over its budget answers `busy`.

mod feed;
mod ops;
mod status;
mod streams;

pub use feed::{EVENTS_PER_MESSAGE_MAX, SUBSCRIPTION_CHECK_MS};
pub(crate) use ops::allowed;
pub use status::status;

use std::sync::Arc;

use tokio::sync::Semaphore;

use pki::Principal;
use protocol::{Op, OpResult, ServerError};

use crate::raft::forward::Forwarded;

use crate::node::NodeCtx;
use crate::replies::ConnectionReplies;

/// Why the node ends a client connection itself.
enum Ending {
    /// Its watchdog found it not reading its replies.
    RepliesNotRead(crate::replies::Verdict),
    /// Its credential was revoked or expired (SPEC section 7: enforced on open connections).
    Credential(crate::auth::Forbidden),
}

/// Serves a client connection of `principal` until it closes, or until the node closes it:
/// with [`protocol::CLOSE_REPLIES_NOT_READ`] when its watchdog finds it not reading its
/// replies, with [`protocol::CLOSE_IDENTITY_REFUSED`] once its credential is revoked (the
/// revocation applied on this node) or expired (`auth::credential_ends`); the reason says
/// which. A connection whose credential is already revoked is closed as soon as it is served.
pub async fn serve_client(conn: quinn::Connection, ctx: Arc<NodeCtx>, principal: Principal) {
    let caller = Arc::new(Caller::new(principal));
    let budget = Arc::new(Semaphore::new(CONNECTION_FRAME_KIB_MAX));
    let replies = Arc::new(ConnectionReplies::new(ctx.replies.clone()));
    let accept = async {
        while let Ok((send, recv)) = conn.accept_bi().await {
            let stream = streams::serve_stream(
                streams::Stream { send, recv },
                ctx.clone(),
                caller.clone(),
                budget.clone(),
                replies.clone(),
            );
            tokio::spawn(stream);
        }
    };
    let credential = &ctx.shared.credentials;
    let ending = tokio::select! {
        () = accept => None,
        verdict = crate::replies::watch(&replies) => Some(Ending::RepliesNotRead(verdict)),
        ended = crate::auth::credential_ends(credential, &ctx.clock, &caller.principal) => {
            Some(Ending::Credential(ended))
        }
    };
    let peer = conn.remote_address();
    match &ending {
        None => {}
        Some(Ending::RepliesNotRead(verdict)) => {
            tracing::warn!(%peer, "closing a client connection: {verdict}");
            let reason = verdict.to_string();
            conn.close(protocol::CLOSE_REPLIES_NOT_READ.into(), reason.as_bytes());
        }
        Some(Ending::Credential(ended)) => {
            tracing::info!(%peer, principal = %ended.principal, "closing a client connection: {ended}");
            ctx.refusals.refused_connection();
            let reason = ended.close_reason();
            conn.close(protocol::CLOSE_IDENTITY_REFUSED.into(), reason.as_bytes());
        }
    }
    // Whatever still waits for this connection's room gives up; its queues go with its
    // streams' writers, which fail now that the connection is closed.
    replies.close(matches!(ending, Some(Ending::RepliesNotRead(_))));
}

/// Runs operations of `caller` on this node through the client path (authorization, the
/// proposer, reads at their consistency) and answers each: the HTTP front and operations
/// forwarded by followers use it. Replies are not under the QUIC reply budgets (those bound
/// what a stream keeps unread); their size is bounded by the HTTP front's limits on a request
/// (operations per request, SKUs per query, events per page).
pub async fn run_ops(ctx: &Arc<NodeCtx>, caller: &Caller, ops: Vec<Op>) -> Vec<OpResult> {
    let bytes_per_op = FORWARDED_BYTES_PER_OP;
    let pending = ops::handle_ops(ctx, caller, ops, bytes_per_op).await;
    pending.into_iter().map(|p| p.into_result(ctx)).collect()
}

/// The size the proposer counts for an operation whose frame it did not see (HTTP or
/// forwarded), bytes: a typical one-line reservation.
pub const FORWARDED_BYTES_PER_OP: usize = 128;

/// Runs operations a follower forwarded (`raft::forward`) as its caller; an unknown role is
/// `forbidden` for each operation.
pub async fn run_forwarded(ctx: Arc<NodeCtx>, forwarded: Forwarded) -> Vec<OpResult> {
    let Some(principal) = forwarded.principal.principal() else {
        let refused = ServerError::Forbidden {
            message: format!("unknown role {:?}", forwarded.principal.role),
        };
        return vec![OpResult::Failed(refused); forwarded.ops.len()];
    };
    run_ops(&ctx, &Caller::new(principal), forwarded.ops).await
}

/// Who is on a connection: the principal its certificate names, and the author its writes
/// carry into the log (built once per connection).
pub struct Caller {
    /// The principal.
    pub principal: Principal,
    /// The same, as the ledger records it on change-feed events.
    pub author: Arc<engine::Author>,
}

impl Caller {
    /// The caller of a connection authenticated as `principal`.
    pub fn new(principal: Principal) -> Caller {
        let author = engine::Author {
            name: principal.name.clone(),
            role: principal.role.to_string(),
        };
        Caller {
            principal,
            author: Arc::new(author),
        }
    }
}

/// Bytes of frames being received that one connection may hold, in KiB (8 frames of the
/// largest size): a client cannot make the node buffer more than this for it.
pub const CONNECTION_FRAME_KIB_MAX: usize = 8 * (protocol::FRAME_BYTES_MAX >> 10);
/// Bytes of frames being received that the node holds for all connections together, in KiB
/// (512 MiB): beyond it, streams wait (backpressure) before reading the next frame's body.
pub const NODE_FRAME_KIB_MAX: usize = 512 << 10;

/// Frames up to this size are read without taking budget, bytes.
pub const SMALL_FRAME_BYTES: usize = 64 << 10;

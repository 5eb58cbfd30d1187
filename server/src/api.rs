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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use engine::{Answer, Query};
use protocol::{
    ClientFrame, Consistency, NodeAddr, NodeStatus, Op, OpResult, Role, ServerError, ServerMessage,
};

use crate::node::NodeCtx;
use crate::raft::proposer::READ_TIMEOUT_MS;
use crate::replies::{ConnectionReplies, NoRoom, Outbox, Room};

/// How often an idle subscription checks that its node is still a member, ms.
pub const SUBSCRIPTION_CHECK_MS: u64 = 1_000;

/// Events per message of a change-feed subscription.
pub const EVENTS_PER_MESSAGE_MAX: u32 = 1_000;

/// Serves a client connection until it closes, or until its watchdog closes it for not
/// reading its replies (then with [`protocol::CLOSE_REPLIES_NOT_READ`] and the reason).
pub async fn serve_client(conn: quinn::Connection, ctx: Arc<NodeCtx>) {
    let budget = Arc::new(Semaphore::new(CONNECTION_FRAME_KIB_MAX));
    let replies = Arc::new(ConnectionReplies::new(ctx.replies.clone()));
    let accept = async {
        while let Ok((send, recv)) = conn.accept_bi().await {
            let stream = serve_stream(send, recv, ctx.clone(), budget.clone(), replies.clone());
            tokio::spawn(stream);
        }
    };
    let verdict = tokio::select! {
        () = accept => None,
        verdict = crate::replies::watch(&replies) => Some(verdict),
    };
    if let Some(verdict) = &verdict {
        tracing::warn!(peer = %conn.remote_address(), "closing a client connection: {verdict}");
        let reason = verdict.to_string();
        conn.close(protocol::CLOSE_REPLIES_NOT_READ.into(), reason.as_bytes());
    }
    // Whatever still waits for this connection's room gives up; its queues go with its
    // streams' writers, which fail now that the connection is closed.
    replies.close(verdict.is_some());
}

/// Bytes of frames being received that one connection may hold, in KiB (8 frames of the
/// largest size): a client cannot make the node buffer more than this for it.
pub const CONNECTION_FRAME_KIB_MAX: usize = 8 * (protocol::FRAME_BYTES_MAX >> 10);
/// Bytes of frames being received that the node holds for all connections together, in KiB
/// (512 MiB): beyond it, streams wait (backpressure) before reading the next frame's body.
pub const NODE_FRAME_KIB_MAX: usize = 512 << 10;

/// Frames up to this size are read without taking budget, bytes.
pub const SMALL_FRAME_BYTES: usize = 64 << 10;

/// Reads the next frame of a stream; frames above [`SMALL_FRAME_BYTES`] first take their size
/// from the connection's and the node's byte budgets (released once read).
async fn read_budgeted(
    recv: &mut quinn::RecvStream,
    connection: &Arc<Semaphore>,
    node: &Arc<Semaphore>,
) -> Result<Option<Vec<u8>>, protocol::FrameError> {
    let Some(prefix) = protocol::read_prefix(recv).await? else {
        return Ok(None);
    };
    let total = protocol::frame_len(&prefix, protocol::FRAME_BYTES_MAX)?;
    if total <= SMALL_FRAME_BYTES {
        // Ordinary requests: not queued behind big frames. What they can hold is bounded by
        // streams x this size, and grows only with bytes that actually arrive.
        return protocol::read_rest(recv, prefix, total).await.map(Some);
    }
    let kib = u32::try_from(total.div_ceil(1024)).unwrap_or(u32::MAX);
    let closed = |_| protocol::FrameError::Io("node stopping".to_owned());
    let _connection = connection
        .clone()
        .acquire_many_owned(kib)
        .await
        .map_err(closed)?;
    let _node = node.clone().acquire_many_owned(kib).await.map_err(closed)?;
    protocol::read_rest(recv, prefix, total).await.map(Some)
}

/// Serves one stream: reads frames while the stream has room for a reply (backpressure),
/// processes them concurrently, and writes their replies through the stream's outbox.
async fn serve_stream(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: Arc<NodeCtx>,
    budget: Arc<Semaphore>,
    replies: Arc<ConnectionReplies>,
) {
    let (outbox, writer) = Outbox::new(replies);
    let writer = tokio::spawn(writer.run(send));
    let inflight = Arc::new(Semaphore::new(protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX));
    let mut subscribed = false;
    // No next frame while the stream has no room for its reply: the client's unread replies
    // stop its requests, through QUIC flow control.
    while outbox.room().await.is_some() {
        let (frame, len) = match next_frame(&mut recv, &budget, &ctx).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                protocol_error(&outbox, &e).await;
                break;
            }
        };
        if ctx.replies.over_budget() {
            ctx.replies.shed();
            let results = vec![OpResult::Failed(ServerError::Busy); frame.ops.len()];
            reply(&outbox, frame.id, results).await;
            continue;
        }
        if let Some(since) = frame.ops.iter().find_map(|op| match op {
            Op::Subscribe { since } => Some(*since),
            _ => None,
        }) {
            subscribed = subscribe(&ctx, &outbox, frame, since, subscribed).await;
            continue;
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        let (ctx, outbox) = (ctx.clone(), outbox.clone());
        tokio::spawn(async move {
            let per_op = len / frame.ops.len().max(1);
            let ready = handle_ops(&ctx, frame.ops, per_op).await;
            // Room first, then the ledger: a reply that waits for room holds no memory.
            if let Some(room) = outbox.room().await {
                let results = ready.into_iter().map(|r| r.answer(&ctx)).collect();
                let id = frame.id;
                outbox.send(room, &ServerMessage::Reply { id, results });
            }
            drop(permit);
        });
    }
    let _ = recv.stop(0u32.into());
    drop(outbox);
    let _ = writer.await;
}

/// Reads and decodes a stream's next frame and its length in bytes; `Ok(None)` at a clean end
/// of the stream.
async fn next_frame(
    recv: &mut quinn::RecvStream,
    budget: &Arc<Semaphore>,
    ctx: &NodeCtx,
) -> Result<Option<(ClientFrame, usize)>, protocol::FrameError> {
    let Some(bytes) = read_budgeted(recv, budget, &ctx.frame_budget).await? else {
        return Ok(None);
    };
    let frame = protocol::parse::<ClientFrame>(&bytes)?;
    if frame.ops.len() > protocol::OPS_PER_FRAME_MAX {
        return Err(protocol::FrameError::Malformed(format!(
            "{} operations in one frame (at most {})",
            frame.ops.len(),
            protocol::OPS_PER_FRAME_MAX
        )));
    }
    Ok(Some((frame, bytes.len())))
}

/// Answers a `Subscribe` frame: starts the stream's subscription unless it has one or the
/// frame carries more; returns whether the stream is subscribed now.
async fn subscribe(
    ctx: &Arc<NodeCtx>,
    outbox: &Outbox,
    frame: ClientFrame,
    since: u64,
    subscribed: bool,
) -> bool {
    if subscribed || frame.ops.len() != 1 {
        let refused = OpResult::Failed(ServerError::InvalidOp {
            message: "one subscription per stream, alone in its frame".to_owned(),
        });
        reply(outbox, frame.id, vec![refused]).await;
        return subscribed;
    }
    if let Some(removed) = ctx.membership.removed_error() {
        // Its feed stopped where the cluster left it.
        reply(outbox, frame.id, vec![OpResult::Failed(removed)]).await;
        return subscribed;
    }
    // The room for the message that ends a cut subscription is kept from the start, so the
    // subscriber always learns where to resume.
    let Some(last) = outbox.small_room().await else {
        return subscribed;
    };
    // `Subscribed` is queued before the first events.
    reply(outbox, frame.id, vec![OpResult::Subscribed]).await;
    tokio::spawn(subscription(since, ctx.clone(), outbox.clone(), last));
    true
}

/// Queues a reply once there is room for it.
async fn reply(outbox: &Outbox, id: u64, results: Vec<OpResult>) {
    if let Some(room) = outbox.room().await {
        outbox.send(room, &ServerMessage::Reply { id, results });
    }
}

async fn protocol_error(outbox: &Outbox, e: &protocol::FrameError) {
    let Some(code) = e.code() else { return };
    tracing::debug!(error = %e, "protocol error on a client stream");
    let message = ServerMessage::ProtocolError {
        code,
        message: e.to_string(),
        supported_versions: protocol::SUPPORTED_VERSIONS.to_vec(),
    };
    if let Some(room) = outbox.room().await {
        outbox.send(room, &message);
    }
}

/// An operation whose waiting is done: its result, or a query to answer from the ledger once
/// the reply has room.
// The large variant is the result every operation ends as anyway.
#[allow(clippy::large_enum_variant)]
enum Ready {
    Done(OpResult),
    Query(Query),
}

impl Ready {
    fn answer(self, ctx: &NodeCtx) -> OpResult {
        match self {
            Ready::Done(result) => result,
            Ready::Query(query) => answer(ctx, &query),
        }
    }
}

/// Runs a frame's operations concurrently: writes go to the proposer together (so they share
/// a batch), reads and the rest run concurrently. Results come back in operation order.
async fn handle_ops(ctx: &Arc<NodeCtx>, ops: Vec<Op>, bytes_per_op: usize) -> Vec<Ready> {
    if let Some(removed) = ctx.membership.removed_error() {
        // Its ledger is frozen where the cluster left it: only its status still answers.
        return ops
            .iter()
            .map(|op| match op {
                Op::Status => Ready::Done(OpResult::Status(Box::new(status(ctx)))),
                _ => Ready::Done(OpResult::Failed(removed.clone())),
            })
            .collect();
    }
    enum Slot {
        Done(OpResult),
        Write(tokio::sync::oneshot::Receiver<crate::raft::proposer::WriteResult>),
        Later(Op),
    }
    let no_quorum = ctx.quorum_lost_ms();
    let slots: Vec<Slot> = ops
        .into_iter()
        .map(|op| match op {
            Op::Write(_) if no_quorum.is_some() => {
                Slot::Done(OpResult::Failed(ServerError::Unavailable {
                    message: format!(
                        "this leader has heard from no majority for {} ms",
                        no_quorum.unwrap_or_default()
                    ),
                }))
            }
            Op::Write(request) => Slot::Write(ctx.proposer.submit(request, bytes_per_op)),
            Op::Status => Slot::Done(OpResult::Status(Box::new(status(ctx)))),
            other => Slot::Later(other),
        })
        .collect();
    // All at once: a frame may carry many callers' operations (clients coalesce), so its
    // reads must share a leadership round rather than wait for each other.
    let pending = slots.into_iter().map(|slot| async move {
        match slot {
            Slot::Done(result) => Ready::Done(result),
            Slot::Write(rx) => Ready::Done(match rx.await {
                Ok(Ok((outcome, log_index))) => OpResult::Written { outcome, log_index },
                Ok(Err(e)) => OpResult::Failed(e),
                Err(_) => OpResult::Failed(ServerError::Unavailable {
                    message: "node stopping".to_owned(),
                }),
            }),
            Slot::Later(op) => handle_op(ctx, op).await,
        }
    });
    futures_util::future::join_all(pending).await
}

/// The waiting part of one operation; a read ends ready to query the ledger.
async fn handle_op(ctx: &Arc<NodeCtx>, op: Op) -> Ready {
    let failed = |e| Ready::Done(OpResult::Failed(e));
    match op {
        Op::Read { query, consistency } => match read_ready(ctx, consistency).await {
            Ok(()) => Ready::Query(query),
            Err(e) => failed(e),
        },
        Op::Digest => {
            if !ctx.is_ready() {
                return failed(ServerError::NotReady);
            }
            let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
            Ready::Done(OpResult::Digest {
                applied_index: ctx.shared.applied_index(),
                digest: ledger.digest(),
            })
        }
        Op::Admin(admin) => Ready::Done(crate::raft::membership::admin(ctx, admin).await),
        Op::Write(_) | Op::Status | Op::Subscribe { .. } => failed(ServerError::Internal {
            message: "operation routed wrongly".to_owned(),
        }),
    }
}

/// Waits until this node may answer a read of `consistency`: ready, and leading with a
/// confirmed quorum (linearizable) or past the wanted index (at least).
async fn read_ready(ctx: &Arc<NodeCtx>, consistency: Consistency) -> Result<(), ServerError> {
    if !ctx.is_ready() {
        return Err(ServerError::NotReady);
    }
    match consistency {
        Consistency::Linearizable => {
            let leader = ctx.raft.metrics().borrow().current_leader;
            if leader != Some(ctx.id) {
                return Err(crate::raft::proposer::not_leader(&ctx.raft, leader));
            }
            ctx.reads.wait().await
        }
        Consistency::Local => Ok(()),
        Consistency::AtLeast(index) => {
            let mut applied = ctx.shared.applied();
            let reached = tokio::time::timeout(Duration::from_millis(READ_TIMEOUT_MS), async {
                applied.wait_for(|a| *a >= index).await.is_ok()
            })
            .await;
            match reached {
                Ok(true) => Ok(()),
                Ok(false) => Err(ServerError::Unavailable {
                    message: "node stopping".to_owned(),
                }),
                Err(_) => Err(ServerError::Timeout),
            }
        }
    }
}

/// Answers a query from the ledger as it is now (at least as new as when the read became
/// ready: the applied state only moves forward). The read lock is held for the query only.
fn answer(ctx: &NodeCtx, query: &Query) -> OpResult {
    if !ctx.shared.is_ready() {
        return OpResult::Failed(ServerError::NotReady);
    }
    let answer = {
        let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
        ledger.query(query, ctx.clock.now_ms())
    };
    OpResult::Read {
        answer,
        applied_index: ctx.shared.applied_index(),
    }
}

/// Streams change-feed events to a subscriber from `since`, waking on every apply. Before
/// reading the feed it takes room for a largest events message, waiting at most
/// `replies::SUBSCRIBER_WAIT_MS`: a subscriber that reads, however slowly, is served (and falls
/// behind in the feed, not in memory); one that does not is cut with `SubscriptionCut {
/// resume_from }` in the room `last` kept for it. It never holds the ledger lock while it waits,
/// so it never slows apply or other clients. A subscriber slower than the feed's retention
/// sees a gap in sequence numbers (and `truncated` on a `changes` read).
async fn subscription(mut since: u64, ctx: Arc<NodeCtx>, outbox: Outbox, last: Room) {
    let queue = Arc::new(Semaphore::new(
        crate::replies::SUBSCRIBER_QUEUE_KIB_MAX as usize,
    ));
    let mut applied = ctx.shared.applied();
    loop {
        let room = match outbox.events_room(&queue).await {
            Ok(room) => room,
            // `since` is the first event not queued: everything before it was.
            Err(NoRoom::Full(full)) => return outbox.cut(last, since, full),
            Err(NoRoom::Closed) => return,
        };
        let page = {
            let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
            let page = Query::Changes {
                since,
                max: EVENTS_PER_MESSAGE_MAX,
            };
            ledger.query(&page, ctx.clock.now_ms())
        };
        let Ok(Answer::Changes(page)) = page else {
            return;
        };
        since = page.next;
        if page.events.is_empty() {
            drop(room);
            // Wake on new entries, and now and then to notice a removal (a removed node applies
            // nothing more): ending the stream sends the client to resubscribe elsewhere.
            let wait = Duration::from_millis(SUBSCRIPTION_CHECK_MS);
            let changed = tokio::time::timeout(wait, applied.changed()).await;
            if matches!(changed, Ok(Err(_)))
                || outbox.is_closed()
                || ctx.membership.removed_error().is_some()
            {
                return;
            }
            continue;
        }
        if !outbox.send(room, &ServerMessage::Events(page.events)) {
            return;
        }
    }
}

/// This node's status.
pub fn status(ctx: &NodeCtx) -> NodeStatus {
    let metrics = ctx.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let members = membership
        .nodes()
        .map(|(id, n)| NodeAddr {
            id: *id,
            addr: n.addr.clone(),
        })
        .collect();
    let leader = metrics.current_leader.and_then(|id| {
        membership.get_node(&id).map(|n| NodeAddr {
            id,
            addr: n.addr.clone(),
        })
    });
    let role = match metrics.state {
        openraft::ServerState::Leader => Role::Leader,
        openraft::ServerState::Follower => Role::Follower,
        openraft::ServerState::Candidate => Role::Candidate,
        openraft::ServerState::Learner => Role::Learner,
        openraft::ServerState::Shutdown => Role::Shutdown,
    };
    // A removed node may still run elections (Raft never told it): it leads nothing.
    let removed = ctx.membership.removal().is_some();
    let (role, leader) = if removed {
        (Role::Removed, None)
    } else {
        (role, leader)
    };
    let ledger = match ctx
        .shared
        .ledger
        .read()
        .expect("ledger lock poisoned")
        .query(&Query::Status, ctx.clock.now_ms())
    {
        Ok(Answer::Status(s)) => s,
        _ => unreachable!("status always answers"),
    };
    NodeStatus {
        node: NodeAddr {
            id: ctx.id,
            addr: ctx.addr.clone(),
        },
        role,
        term: metrics.current_term,
        leader,
        members,
        applied_index: ctx.shared.applied_index(),
        last_log_index: metrics.last_log_index.unwrap_or(0),
        snapshot_index: ctx.shared.snapshot_index(),
        ready: ctx.is_ready() && !removed,
        durability: ctx.durability.clone(),
        batches: ctx.proposer.stats(),
        ledger,
        health: protocol::NodeHealth {
            recovering: ctx.log.recovering(),
            recovery_reason: ctx.log.recovery_reason().map(str::to_owned),
            storage_error: ctx.log.io_error().or_else(|| ctx.shared.snapshot_error()),
            storage_errors_total: ctx.log.io_errors_total(),
        },
        membership_index: metrics.membership_config.log_id().map_or(0, |l| l.index),
        membership: crate::raft::membership::members(ctx),
        replies: ctx.replies.stats(),
    }
}

impl NodeCtx {
    /// If this node leads but has heard from no majority for longer than two election
    /// timeouts, for how long (ms): a write could not commit, so it is answered `unavailable`
    /// at once instead of waiting out the write timeout.
    pub(crate) fn quorum_lost_ms(&self) -> Option<u64> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.current_leader != Some(self.id) {
            return None;
        }
        let since = metrics.millis_since_quorum_ack?;
        (since > 2 * self.timings.election_max_ms).then_some(since)
    }
}

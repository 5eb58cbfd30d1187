//! The client protocol on a node: streams, frames and operations (docs/PROTOCOL.md).
//!
//! Every client stream gets a reader loop and a writer task. Frames are processed concurrently
//! (at most [`protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX`] per stream; beyond that the reader
//! stops reading and QUIC flow control pushes back on the client) and their replies are
//! written as they complete. A malformed, truncated, oversized or unknown-version frame gets a
//! `ProtocolError` message and ends that stream only: the connection and its other streams go on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use engine::{Answer, Query};
use protocol::{
    ClientFrame, Consistency, NodeAddr, NodeStatus, Op, OpResult, Role, ServerError, ServerMessage,
};

use crate::node::NodeCtx;
use crate::proposer::READ_TIMEOUT_MS;

/// Replies written to a stream in one write when several are ready, bytes.
const REPLY_COALESCE_BYTES: usize = 64 << 10;

/// Events per message of a change-feed subscription.
pub const EVENTS_PER_MESSAGE_MAX: u32 = 1_000;

/// Serves a client connection until it closes.
pub async fn serve_client(conn: quinn::Connection, ctx: Arc<NodeCtx>) {
    let budget = Arc::new(Semaphore::new(CONNECTION_FRAME_KIB_MAX));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(stream) => stream,
            Err(_) => return,
        };
        tokio::spawn(serve_stream(send, recv, ctx.clone(), budget.clone()));
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

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: Arc<NodeCtx>,
    budget: Arc<Semaphore>,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX);
    let writer = tokio::spawn(async move {
        while let Some(mut frames) = out_rx.recv().await {
            // Replies that completed meanwhile go out in the same write.
            while frames.len() < REPLY_COALESCE_BYTES {
                match out_rx.try_recv() {
                    Ok(more) => frames.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if protocol::write_frame(&mut send, &frames).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    });
    let inflight = Arc::new(Semaphore::new(protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX));
    let mut subscribed = false;
    loop {
        let frame = match read_budgeted(&mut recv, &budget, &ctx.frame_budget).await {
            Ok(Some(bytes)) => protocol::parse::<ClientFrame>(&bytes).map(|f| (f, bytes.len())),
            Ok(None) => break,
            Err(e) => Err(e),
        };
        let (frame, len) = match frame {
            Ok((frame, _)) if frame.ops.len() > protocol::OPS_PER_FRAME_MAX => {
                let e = protocol::FrameError::Malformed(format!(
                    "{} operations in one frame (at most {})",
                    frame.ops.len(),
                    protocol::OPS_PER_FRAME_MAX
                ));
                protocol_error(&out_tx, &e).await;
                break;
            }
            Ok(ok) => ok,
            Err(e) => {
                protocol_error(&out_tx, &e).await;
                break;
            }
        };
        if let Some(since) = frame.ops.iter().find_map(|op| match op {
            Op::Subscribe { since } => Some(*since),
            _ => None,
        }) {
            let result = if subscribed || frame.ops.len() != 1 {
                OpResult::Failed(ServerError::InvalidOp {
                    message: "one subscription per stream, alone in its frame".to_owned(),
                })
            } else {
                subscribed = true;
                tokio::spawn(subscription(since, ctx.clone(), out_tx.clone()));
                OpResult::Subscribed
            };
            send_message(
                &out_tx,
                &ServerMessage::Reply {
                    id: frame.id,
                    results: vec![result],
                },
            )
            .await;
            continue;
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        let ctx = ctx.clone();
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            let per_op = len / frame.ops.len().max(1);
            let results = handle_ops(&ctx, frame.ops, per_op).await;
            send_message(
                &out_tx,
                &ServerMessage::Reply {
                    id: frame.id,
                    results,
                },
            )
            .await;
            drop(permit);
        });
    }
    let _ = recv.stop(0u32.into());
    drop(out_tx);
    let _ = writer.await;
}

async fn protocol_error(out: &mpsc::Sender<Vec<u8>>, e: &protocol::FrameError) {
    let Some(code) = e.code() else { return };
    tracing::debug!(error = %e, "protocol error on a client stream");
    let message = ServerMessage::ProtocolError {
        code,
        message: e.to_string(),
        supported_versions: protocol::SUPPORTED_VERSIONS.to_vec(),
    };
    send_message(out, &message).await;
}

async fn send_message(out: &mpsc::Sender<Vec<u8>>, message: &ServerMessage) {
    match protocol::encode(message) {
        Ok(frame) => {
            let _ = out.send(frame).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "reply does not fit a frame");
            if let ServerMessage::Reply { id, results } = message {
                let failed = ServerError::Internal {
                    message: format!("reply too large: {e}"),
                };
                let results = vec![OpResult::Failed(failed); results.len()];
                if let Ok(frame) = protocol::encode(&ServerMessage::Reply { id: *id, results }) {
                    let _ = out.send(frame).await;
                }
            }
        }
    }
}

/// Runs a frame's operations concurrently: writes go to the proposer together (so they share
/// a batch), reads and the rest run concurrently. Results come back in operation order.
async fn handle_ops(ctx: &Arc<NodeCtx>, ops: Vec<Op>, bytes_per_op: usize) -> Vec<OpResult> {
    if let Some(removed) = ctx.membership.removed_error() {
        // Its ledger is frozen where the cluster left it: only its status still answers.
        return ops
            .iter()
            .map(|op| match op {
                Op::Status => OpResult::Status(Box::new(status(ctx))),
                _ => OpResult::Failed(removed.clone()),
            })
            .collect();
    }
    enum Slot {
        Done(OpResult),
        Write(tokio::sync::oneshot::Receiver<crate::proposer::WriteResult>),
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
            Slot::Done(result) => result,
            Slot::Write(rx) => match rx.await {
                Ok(Ok((outcome, log_index))) => OpResult::Written { outcome, log_index },
                Ok(Err(e)) => OpResult::Failed(e),
                Err(_) => OpResult::Failed(ServerError::Unavailable {
                    message: "node stopping".to_owned(),
                }),
            },
            Slot::Later(op) => handle_op(ctx, op).await,
        }
    });
    futures_util::future::join_all(pending).await
}

async fn handle_op(ctx: &Arc<NodeCtx>, op: Op) -> OpResult {
    match op {
        Op::Read { query, consistency } => match read(ctx, &query, consistency).await {
            Ok(result) => result,
            Err(e) => OpResult::Failed(e),
        },
        Op::Digest => {
            if !ctx.is_ready() {
                return OpResult::Failed(ServerError::NotReady);
            }
            let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
            OpResult::Digest {
                applied_index: ctx.shared.applied_index(),
                digest: ledger.digest(),
            }
        }
        Op::Admin(admin) => crate::membership::admin(ctx, admin).await,
        Op::Write(_) | Op::Status | Op::Subscribe { .. } => {
            OpResult::Failed(ServerError::Internal {
                message: "operation routed wrongly".to_owned(),
            })
        }
    }
}

async fn read(
    ctx: &Arc<NodeCtx>,
    query: &Query,
    consistency: Consistency,
) -> Result<OpResult, ServerError> {
    if !ctx.is_ready() {
        return Err(ServerError::NotReady);
    }
    match consistency {
        Consistency::Linearizable => {
            let leader = ctx.raft.metrics().borrow().current_leader;
            if leader != Some(ctx.id) {
                return Err(crate::proposer::not_leader(&ctx.raft, leader));
            }
            ctx.reads.wait().await?;
        }
        Consistency::Local => {}
        Consistency::AtLeast(index) => {
            let mut applied = ctx.shared.applied();
            let reached = tokio::time::timeout(Duration::from_millis(READ_TIMEOUT_MS), async {
                applied.wait_for(|a| *a >= index).await.is_ok()
            })
            .await;
            match reached {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ServerError::Unavailable {
                        message: "node stopping".to_owned(),
                    })
                }
                Err(_) => return Err(ServerError::Timeout),
            }
        }
    }
    let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
    let answer = ledger.query(query, ctx.clock.now_ms());
    Ok(OpResult::Read {
        answer,
        applied_index: ctx.shared.applied_index(),
    })
}

/// Streams change-feed events to a subscriber from `since`, waking on every apply. Backpressure:
/// the stream's bounded writer queue; a subscriber slower than the feed's retention sees a gap
/// in sequence numbers (and `truncated` on a `changes` read).
async fn subscription(mut since: u64, ctx: Arc<NodeCtx>, out: mpsc::Sender<Vec<u8>>) {
    let mut applied = ctx.shared.applied();
    loop {
        let page = {
            let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
            ledger.query(
                &Query::Changes {
                    since,
                    max: EVENTS_PER_MESSAGE_MAX,
                },
                ctx.clock.now_ms(),
            )
        };
        let events = match page {
            Ok(Answer::Changes(page)) => {
                since = page.next;
                page.events
            }
            _ => return,
        };
        if events.is_empty() {
            if applied.changed().await.is_err() || out.is_closed() {
                return;
            }
            continue;
        }
        let Ok(frame) = protocol::encode(&ServerMessage::Events(events)) else {
            return;
        };
        if out.send(frame).await.is_err() {
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
        membership: crate::membership::members(ctx),
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

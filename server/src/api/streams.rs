//! A client stream: frames read under byte budgets, handled concurrently, replies queued
//! through the stream's outbox.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use protocol::{ClientFrame, Op, OpResult, ServerError, ServerMessage};

use super::{feed, ops, Caller, SMALL_FRAME_BYTES};
use crate::hops::{self, Hop};
use crate::metrics::{Operation, Outcome, Transport};
use crate::node::NodeCtx;
use crate::replies::{ConnectionReplies, Outbox};

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

/// A client's bidirectional stream.
pub(super) struct Stream {
    /// Where replies go.
    pub send: quinn::SendStream,
    /// Where frames come from.
    pub recv: quinn::RecvStream,
}

/// Serves one stream: reads frames while the stream has room for a reply (backpressure),
/// processes them concurrently, and writes their replies through the stream's outbox.
pub(super) async fn serve_stream(
    stream: Stream,
    ctx: Arc<NodeCtx>,
    caller: Arc<Caller>,
    budget: Arc<Semaphore>,
    replies: Arc<ConnectionReplies>,
) {
    let Stream { send, mut recv } = stream;
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
        let arrived = Instant::now();
        if ctx.replies.over_budget() {
            shed(&ctx, &outbox, &frame, arrived).await;
            continue;
        }
        if let Some((since, locations)) = frame.ops.iter().find_map(|op| match op {
            Op::Subscribe { since } => Some((*since, Vec::new())),
            Op::SubscribeAt { since, locations } => Some((*since, locations.clone())),
            _ => None,
        }) {
            let op = Op::Subscribe { since };
            if let Err(refused) = ops::allowed(&ctx, &caller.principal, &op) {
                let answered = [(Operation::Subscribe, Outcome::Forbidden)];
                ctx.metrics
                    .record_requests(Transport::Quic, answered, arrived.elapsed());
                reply(&outbox, frame.id, vec![OpResult::Failed(refused)]).await;
                continue;
            }
            let from = feed::From { since, locations };
            subscribed = feed::subscribe(&ctx, &outbox, frame, from, subscribed, arrived).await;
            continue;
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        hops::mark(Hop::Frame, frame.id, 0);
        let received = Received {
            frame,
            len,
            arrived,
        };
        let (ctx, outbox, caller) = (ctx.clone(), outbox.clone(), caller.clone());
        tokio::spawn(async move {
            answer(&ctx, &outbox, &caller, received).await;
            drop(permit);
        });
    }
    let _ = recv.stop(0u32.into());
    drop(outbox);
    let _ = writer.await;
}

/// A frame as read: its length in bytes and when it arrived.
struct Received {
    frame: ClientFrame,
    len: usize,
    arrived: Instant,
}

/// Runs a frame's operations and queues their replies once the stream has room for them.
async fn answer(ctx: &Arc<NodeCtx>, outbox: &Outbox, caller: &Caller, received: Received) {
    let Received {
        frame,
        len,
        arrived,
    } = received;
    let per_op = len / frame.ops.len().max(1);
    let mut pending = ops::handle_ops(ctx, caller, frame.ops, per_op).await;
    // Room first, then the ledger: a reply that waits for room holds no memory.
    if let Some(room) = outbox.room().await {
        for p in &mut pending {
            p.answer(ctx);
        }
        record(ctx, &pending, arrived);
        let results = pending.into_iter().map(|p| p.into_result(ctx)).collect();
        let id = frame.id;
        outbox.send(room, &ServerMessage::Reply { id, results });
        hops::mark(Hop::Replied, id, 0);
    }
}

/// Answers every operation of `frame` `busy`: the node holds too many unread replies.
async fn shed(ctx: &NodeCtx, outbox: &Outbox, frame: &ClientFrame, arrived: Instant) {
    ctx.replies.shed();
    let results = vec![OpResult::Failed(ServerError::Busy); frame.ops.len()];
    let answered = frame
        .ops
        .iter()
        .map(|op| (Operation::of_op(op), Outcome::Busy));
    ctx.metrics
        .record_requests(Transport::Quic, answered, arrived.elapsed());
    reply(outbox, frame.id, results).await;
}

/// Records a frame's answered operations, each taking the time since the frame `arrived`.
fn record(ctx: &NodeCtx, pending: &[ops::Pending], arrived: Instant) {
    let answered = pending
        .iter()
        .filter_map(|p| p.outcome().map(|outcome| (p.operation, outcome)));
    ctx.metrics
        .record_requests(Transport::Quic, answered, arrived.elapsed());
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

/// Queues a reply once there is room for it.
pub(super) async fn reply(outbox: &Outbox, id: u64, results: Vec<OpResult>) {
    if let Some(room) = outbox.room().await {
        outbox.send(room, &ServerMessage::Reply { id, results });
    }
}

/// Tells the client why its stream ends (a frame it could not read); an IO error needs no
/// answer.
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

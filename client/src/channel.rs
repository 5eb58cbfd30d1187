//! One long-lived bidirectional stream to a node, shared by many callers.
//!
//! A [`Channel`] owns a writer task and a reader task. Callers hand it a frame's operations; it
//! gives the frame a fresh id, queues the encoded bytes for the writer, and waits for the
//! reader to see the [`ServerMessage::Reply`] with that id (replies may come back in any order).
//! The channel is generic over tokio's `AsyncRead` / `AsyncWrite`, so tests drive it over an
//! in-memory duplex pipe; in production it runs on quinn's `RecvStream` / `SendStream`.
//!
//! Bounds: at most `frames_in_flight` calls wait for a reply (a semaphore; further callers
//! queue for a permit), at most [`protocol::OPS_PER_FRAME_MAX`] operations per frame, at most
//! [`protocol::FRAME_BYTES_MAX`] bytes per frame (checked by [`protocol::EncodedOps::encode`]
//! and [`protocol::encode_client_frame`]: the protocol crate builds the frames).
//!
//! Coalescing (on for request streams): the writer task puts the operations of every call
//! queued at that moment into ONE frame (up to the frame limits) and splits the reply's results
//! back to the callers. Nothing waits to fill a frame: under light load each call is its own
//! frame; under load, calls that queue while the previous write is in progress share one, which
//! saves a frame's per-message costs (encoding, a task and a reply on the node) for each of them.
//! The operations of one frame are concurrent on the node (docs/PROTOCOL.md), as independent
//! callers' operations are anyway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use engine::query::ChangeEvent;
use protocol::{CoalescedFrame, EncodedOps, Op, OpResult, ProtocolErrorCode, ServerMessage};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Why a call on a channel produced no results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The stream or its connection ended (or failed) before the reply came.
    Closed(String),
    /// No reply within the call's timeout: the frame may still be processed.
    NoReply,
    /// The node rejected the stream's input as a protocol error and closed the stream.
    Protocol {
        /// The node's code.
        code: ProtocolErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The frame breaks a protocol limit (too many operations, too many bytes).
    Limit(String),
    /// A reply that does not fit the frame (another number of results than operations).
    Unexpected(String),
    /// The node refused this client's identity (no certificate, one from another CA, expired
    /// or revoked, or a node's certificate): retrying cannot help.
    Refused(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Closed(why) => write!(f, "stream closed: {why}"),
            CallError::NoReply => f.write_str("no reply in time"),
            CallError::Protocol { code, message } => {
                write!(f, "protocol error {code:?}: {message}")
            }
            CallError::Limit(why) => write!(f, "limit exceeded: {why}"),
            CallError::Refused(why) => write!(f, "identity refused: {why}"),
            CallError::Unexpected(why) => write!(f, "unexpected reply: {why}"),
        }
    }
}

/// What a subscription stream delivers to its [`crate::Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Feed {
    /// A batch of events, in feed order.
    Events(Vec<ChangeEvent>),
    /// The node ended the subscription (it was not read): the events before
    /// `resume_from` were all delivered, and the stream carries nothing more.
    Cut {
        /// Sequence number of the first event not delivered.
        resume_from: u64,
        /// The node's explanation.
        reason: String,
    },
}

type Waiter = oneshot::Sender<Result<Vec<OpResult>, CallError>>;

/// One caller's share of a frame.
struct Part {
    /// How many of the frame's operations are this caller's (`usize::MAX`: all of them).
    ops: usize,
    /// Where its results go.
    waiter: Waiter,
}

/// The callers of one frame, in frame order.
type Parts = Vec<Part>;

/// A frame's callers that could not be registered because the channel closed.
struct Refused {
    why: CallError,
    parts: Parts,
}

/// Frames waiting for their reply, and why the channel closed (once it has).
#[derive(Default)]
struct Pending {
    closed: Option<CallError>,
    waiters: BTreeMap<u64, Parts>,
}

/// State shared by the callers, the writer and the reader. A std mutex: it is held only to
/// insert or remove one map entry, never across an await.
#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the channel closed and fails every waiting frame with `why`.
    fn close(&self, why: CallError) {
        let waiters = {
            let mut pending = self.lock();
            pending.closed.get_or_insert(why.clone());
            std::mem::take(&mut pending.waiters)
        };
        for part in waiters.into_values().flatten() {
            let _ = part.waiter.send(Err(why.clone()));
        }
    }

    /// Hands a reply's results to the frame's callers, each its own share in order. A reply
    /// nobody waits for (its callers timed out) is dropped; a reply with another number of
    /// results than the frame had operations gives each caller what it can take (the caller
    /// checks the count).
    fn complete(&self, id: u64, results: Vec<OpResult>) {
        let Some(parts) = self.lock().waiters.remove(&id) else {
            return;
        };
        if let [_] = parts.as_slice() {
            // The only caller takes every result, whatever their number.
            if let Some(part) = parts.into_iter().next() {
                let _ = part.waiter.send(Ok(results));
            }
            return;
        }
        let mut results = results.into_iter();
        for part in parts {
            let share: Vec<OpResult> = results.by_ref().take(part.ops).collect();
            let _ = part.waiter.send(Ok(share));
        }
    }

    /// Registers a frame's callers, unless the channel closed. Frames whose callers all gave
    /// up stay until their reply or the end of the stream; past `cap` entries the oldest is
    /// dropped (its callers, if any still wait, see the stream as closed).
    fn register(&self, id: u64, parts: Parts, cap: usize) -> Result<(), Refused> {
        let mut pending = self.lock();
        if let Some(why) = &pending.closed {
            return Err(Refused {
                why: why.clone(),
                parts,
            });
        }
        pending.waiters.insert(id, parts);
        while pending.waiters.len() > cap {
            let Some((_, dropped)) = pending.waiters.pop_first() else {
                break;
            };
            for part in dropped {
                let _ = part.waiter.send(Err(CallError::Closed(
                    "too many frames without a reply".into(),
                )));
            }
        }
        Ok(())
    }
}

/// Removes a frame's waiter when its call ends early (timeout or cancellation).
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiters.remove(&self.id);
    }
}

/// Frames coalesced into one write by the writer task, bytes.
const COALESCE_BYTES: usize = 64 << 10;

/// What callers hand the writer task.
enum Outgoing {
    /// A whole frame, already encoded with its id (coalescing off).
    Frame(Vec<u8>),
    /// One call's operations, encoded, to be put into the next frame.
    Ops {
        /// The operations.
        ops: EncodedOps,
        /// Where the call's results go.
        waiter: Waiter,
    },
}

/// A pipelined request/reply stream (see the module doc).
pub(crate) struct Channel {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Outgoing>,
    in_flight: Semaphore,
    next_id: Arc<AtomicU64>,
    coalesce: bool,
    /// The reader task, stopped when the channel is dropped (the writer task then finishes
    /// the stream by itself, once its queue's sender is gone).
    reader: tokio::task::AbortHandle,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Channel {
    /// Starts the writer and reader tasks on a stream. `events`, if given, receives the
    /// [`ServerMessage::Events`] of a subscription on this stream and its end if the node cuts
    /// it (the reader waits when it is full: backpressure reaches the node through the
    /// stream's flow control, and a node whose queue for us fills up cuts the subscription). With
    /// `coalesce`, calls queued together share frames (module doc).
    pub(crate) fn spawn<R, W>(
        reader: R,
        writer: W,
        frames_in_flight: usize,
        events: Option<mpsc::Sender<Feed>>,
        coalesce: bool,
    ) -> Arc<Channel>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let frames_in_flight = frames_in_flight.max(1);
        let shared = Arc::new(Shared::default());
        let next_id = Arc::new(AtomicU64::new(1));
        let (outgoing, queue) = mpsc::channel(frames_in_flight);
        let cap = 4 * frames_in_flight;
        tokio::spawn(write_loop(
            writer,
            queue,
            shared.clone(),
            next_id.clone(),
            cap,
        ));
        let reader = tokio::spawn(read_loop(reader, shared.clone(), events)).abort_handle();
        Arc::new(Channel {
            shared,
            outgoing,
            in_flight: Semaphore::new(frames_in_flight),
            next_id,
            coalesce,
            reader,
        })
    }

    /// Whether the channel can no longer carry frames (its stream ended or failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some() || self.outgoing.is_closed()
    }

    /// Sends one frame with `ops` and waits up to `timeout` for its reply (and as long again
    /// for a free slot among the frames in flight): one result per operation, in order.
    #[cfg(test)]
    pub(crate) async fn call(
        &self,
        ops: &[Op],
        timeout: Duration,
    ) -> Result<Vec<OpResult>, CallError> {
        self.call_queued(ops, timeout, timeout).await
    }

    /// Waits up to `queue_timeout` for a free slot among the calls in flight (a busy stream
    /// is not a failed node), then sends `ops` (in a frame of their own, or sharing one when
    /// coalescing) and waits up to `timeout` for the results: one per operation, in order.
    pub(crate) async fn call_queued(
        &self,
        ops: &[Op],
        timeout: Duration,
        queue_timeout: Duration,
    ) -> Result<Vec<OpResult>, CallError> {
        if ops.is_empty() || ops.len() > protocol::OPS_PER_FRAME_MAX {
            return Err(CallError::Limit(format!(
                "{} operations in a frame (1..={} allowed: OPS_PER_FRAME_MAX)",
                ops.len(),
                protocol::OPS_PER_FRAME_MAX
            )));
        }
        let too_large =
            |e: protocol::FrameError| CallError::Limit(format!("{e} (FRAME_BYTES_MAX)"));
        let message = if self.coalesce {
            Message::Ops(EncodedOps::encode(ops).map_err(too_large)?)
        } else {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            Message::Frame(
                id,
                protocol::encode_client_frame(id, ops).map_err(too_large)?,
            )
        };
        let _permit = tokio::time::timeout(queue_timeout, self.in_flight.acquire())
            .await
            .map_err(|_| CallError::NoReply)?
            .map_err(|_| CallError::Closed("channel shut down".into()))?;
        let exchange = async {
            match message {
                Message::Frame(id, bytes) => self.exchange(id, bytes).await,
                Message::Ops(encoded) => self.exchange_ops(encoded).await,
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(results)) if results.len() == ops.len() => Ok(results),
            Ok(Ok(results)) => Err(CallError::Unexpected(format!(
                "{} results for {} operations",
                results.len(),
                ops.len()
            ))),
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => Err(CallError::NoReply),
        }
    }

    async fn exchange(&self, id: u64, bytes: Vec<u8>) -> Result<Vec<OpResult>, CallError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.lock();
            if let Some(why) = &pending.closed {
                return Err(why.clone());
            }
            pending.waiters.insert(
                id,
                vec![Part {
                    ops: usize::MAX,
                    waiter: tx,
                }],
            );
        }
        let _forget = Forget {
            shared: &self.shared,
            id,
        };
        self.outgoing
            .send(Outgoing::Frame(bytes))
            .await
            .map_err(|_| CallError::Closed("writer ended".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(CallError::Closed("reader ended".into())))
    }

    /// Queues encoded operations for the writer, which gives them a frame (and an id) and
    /// registers the call; the results come back through `waiter`.
    async fn exchange_ops(&self, ops: EncodedOps) -> Result<Vec<OpResult>, CallError> {
        if let Some(why) = &self.shared.lock().closed {
            return Err(why.clone());
        }
        let (waiter, rx) = oneshot::channel();
        self.outgoing
            .send(Outgoing::Ops { ops, waiter })
            .await
            .map_err(|_| CallError::Closed("writer ended".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(CallError::Closed("reader ended".into())))
    }
}

/// A call's encoded message.
enum Message {
    /// A whole frame and its id.
    Frame(u64, Vec<u8>),
    /// Operations for a shared frame.
    Ops(EncodedOps),
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    cap: usize,
) {
    let mut held: Option<Outgoing> = None;
    loop {
        let first = match held.take() {
            Some(item) => item,
            None => match queue.recv().await {
                Some(item) => item,
                None => break,
            },
        };
        let mut buf = match first {
            Outgoing::Frame(bytes) => bytes,
            Outgoing::Ops { ops, waiter } => {
                // Take every call queued now that still fits one frame.
                let mut parts: Parts = vec![Part {
                    ops: ops.count(),
                    waiter,
                }];
                let mut frame = CoalescedFrame::new(ops);
                while let Ok(next) = queue.try_recv() {
                    match next {
                        Outgoing::Ops { ops, waiter } => {
                            let count = ops.count();
                            match frame.push(ops) {
                                Ok(()) => parts.push(Part { ops: count, waiter }),
                                Err(ops) => {
                                    held = Some(Outgoing::Ops { ops, waiter });
                                    break;
                                }
                            }
                        }
                        other => {
                            held = Some(other);
                            break;
                        }
                    }
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                if let Err(Refused { why, parts }) = shared.register(id, parts, cap) {
                    for part in parts {
                        let _ = part.waiter.send(Err(why.clone()));
                    }
                    continue;
                }
                frame.finish(id)
            }
        };
        // Whole frames queued behind it go out in the same write.
        while buf.len() < COALESCE_BYTES && held.is_none() {
            match queue.try_recv() {
                Ok(Outgoing::Frame(more)) => buf.extend_from_slice(&more),
                Ok(other) => held = Some(other),
                Err(_) => break,
            }
        }
        if let Err(e) = writer.write_all(&buf).await {
            shared.close(CallError::Closed(format!("write failed: {e}")));
            return;
        }
    }
    // Every handle is gone: finish our side of the stream.
    let _ = writer.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    shared: Arc<Shared>,
    events: Option<mpsc::Sender<Feed>>,
) {
    let why = loop {
        let bytes = match protocol::read_frame(&mut reader).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break CallError::Closed("the node ended the stream".into()),
            Err(e) => break CallError::Closed(e.to_string()),
        };
        match protocol::parse::<ServerMessage>(&bytes) {
            Ok(ServerMessage::Reply { id, results }) => shared.complete(id, results),
            Ok(ServerMessage::Events(batch)) => {
                if let Some(events) = &events {
                    if events.send(Feed::Events(batch)).await.is_err() {
                        break CallError::Closed("subscription dropped".into());
                    }
                }
            }
            Ok(ServerMessage::SubscriptionCut {
                resume_from,
                reason,
            }) => {
                let why = CallError::Closed(format!("subscription cut by the node: {reason}"));
                if let Some(events) = &events {
                    let _ = events
                        .send(Feed::Cut {
                            resume_from,
                            reason,
                        })
                        .await;
                }
                break why;
            }
            Ok(ServerMessage::ProtocolError { code, message, .. }) => {
                break CallError::Protocol { code, message }
            }
            Err(e) => break CallError::Closed(format!("undecodable message: {e}")),
        }
    };
    shared.close(why);
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Command, Request, RequestId, ReservationId};
    use protocol::{ClientFrame, ServerError};
    use tokio::io::{AsyncReadExt, DuplexStream};

    fn release(n: u128) -> Op {
        Op::Write(Request {
            request_id: RequestId(n),
            command: Command::Release {
                reservation: ReservationId::from("r1"),
            },
        })
    }

    /// Reads `count` frames from the node's end of the pipe.
    async fn read_frames(node: &mut DuplexStream, count: usize) -> Vec<ClientFrame> {
        let mut frames = Vec::new();
        for _ in 0..count {
            let bytes = protocol::read_frame(node)
                .await
                .expect("reads")
                .expect("a frame");
            frames.push(protocol::parse::<ClientFrame>(&bytes).expect("parses"));
        }
        frames
    }

    async fn reply(node: &mut DuplexStream, message: &ServerMessage) {
        let bytes = protocol::encode(message).expect("encodes");
        protocol::write_frame(node, &bytes).await.expect("writes");
    }

    /// The result a fake node gives for a frame: a digest naming the frame's first request id.
    fn answer(frame: &ClientFrame) -> Vec<OpResult> {
        frame
            .ops
            .iter()
            .map(|op| match op {
                Op::Write(r) => OpResult::Digest {
                    applied_index: frame.id,
                    digest: r.request_id.to_string(),
                },
                _ => OpResult::AdminDone,
            })
            .collect()
    }

    #[tokio::test]
    async fn coalesced_calls_share_frames_and_get_their_own_results() {
        let (ours, mut node) = tokio::io::duplex(1 << 20);
        let (r, w) = tokio::io::split(ours);
        let channel = Channel::spawn(r, w, 64, None, true);
        let calls: Vec<_> = (1..=40u128)
            .map(|n| {
                let channel = channel.clone();
                tokio::spawn(async move {
                    let ops = [release(n * 1000), release(n * 1000 + 1)];
                    (n, channel.call(&ops, Duration::from_secs(5)).await)
                })
            })
            .collect();
        // The fake node answers frames until it has seen all 80 operations.
        let mut seen = 0;
        let mut frames = 0;
        while seen < 80 {
            let frame = read_frames(&mut node, 1).await.remove(0);
            seen += frame.ops.len();
            frames += 1;
            let results = answer(&frame);
            reply(
                &mut node,
                &ServerMessage::Reply {
                    id: frame.id,
                    results,
                },
            )
            .await;
        }
        assert_eq!(seen, 80);
        assert!(frames <= 40, "{frames} frames for 40 calls");
        for call in calls {
            let (n, result) = call.await.expect("task");
            let digests: Vec<String> = result
                .expect("results")
                .into_iter()
                .map(|r| match r {
                    OpResult::Digest { digest, .. } => digest,
                    other => panic!("{other:?}"),
                })
                .collect();
            let want = vec![
                RequestId(n * 1000).to_string(),
                RequestId(n * 1000 + 1).to_string(),
            ];
            assert_eq!(digests, want, "call {n} got its own results");
        }
    }

    #[tokio::test]
    async fn replies_in_any_order_reach_their_callers() {
        let (ours, mut node) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let channel = Channel::spawn(r, w, 8, None, false);
        let calls: Vec<_> = (1..=3u128)
            .map(|n| {
                let channel = channel.clone();
                tokio::spawn(async move {
                    channel
                        .call(&[release(n), Op::Status], Duration::from_secs(5))
                        .await
                })
            })
            .collect();
        let frames = read_frames(&mut node, 3).await;
        let mut ids: Vec<u64> = frames.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3], "fresh frame ids");
        // Answer in reverse order of arrival.
        for frame in frames.iter().rev() {
            reply(
                &mut node,
                &ServerMessage::Reply {
                    id: frame.id,
                    results: answer(frame),
                },
            )
            .await;
        }
        for (n, call) in (1..=3u128).zip(calls) {
            let results = call.await.expect("joins").expect("answered");
            let OpResult::Digest { digest, .. } = &results[0] else {
                panic!("unexpected {results:?}");
            };
            assert_eq!(digest, &format!("{n:032x}"), "call {n} got its own reply");
            assert_eq!(results[1], OpResult::AdminDone);
        }
        assert!(!channel.is_closed());
    }

    #[tokio::test]
    async fn a_reply_for_nobody_and_a_late_reply_are_ignored() {
        let (ours, mut node) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let channel = Channel::spawn(r, w, 8, None, false);
        let first = channel.call(&[release(1)], Duration::from_millis(50)).await;
        assert_eq!(first, Err(CallError::NoReply));
        let late = read_frames(&mut node, 1).await.remove(0);
        reply(
            &mut node,
            &ServerMessage::Reply {
                id: 999,
                results: vec![],
            },
        )
        .await;
        reply(
            &mut node,
            &ServerMessage::Reply {
                id: late.id,
                results: answer(&late),
            },
        )
        .await;
        let second = {
            let channel = channel.clone();
            tokio::spawn(async move { channel.call(&[release(2)], Duration::from_secs(5)).await })
        };
        let frame = read_frames(&mut node, 1).await.remove(0);
        assert_eq!(frame.id, 2);
        reply(
            &mut node,
            &ServerMessage::Reply {
                id: 2,
                results: vec![OpResult::Failed(ServerError::Busy)],
            },
        )
        .await;
        assert_eq!(
            second.await.expect("joins"),
            Ok(vec![OpResult::Failed(ServerError::Busy)])
        );
    }

    #[tokio::test]
    async fn wrong_result_counts_protocol_errors_and_closing_fail_callers() {
        let (ours, mut node) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let channel = Channel::spawn(r, w, 8, None, false);
        let call = {
            let channel = channel.clone();
            tokio::spawn(async move {
                channel
                    .call(&[release(1), release(2)], Duration::from_secs(5))
                    .await
            })
        };
        let frame = read_frames(&mut node, 1).await.remove(0);
        reply(
            &mut node,
            &ServerMessage::Reply {
                id: frame.id,
                results: vec![OpResult::AdminDone],
            },
        )
        .await;
        assert_eq!(
            call.await.expect("joins"),
            Err(CallError::Unexpected("1 results for 2 operations".into()))
        );

        let pending = {
            let channel = channel.clone();
            tokio::spawn(async move { channel.call(&[release(3)], Duration::from_secs(5)).await })
        };
        read_frames(&mut node, 1).await;
        reply(
            &mut node,
            &ServerMessage::ProtocolError {
                code: ProtocolErrorCode::Malformed,
                message: "bad".into(),
                supported_versions: vec![1],
            },
        )
        .await;
        let expected = CallError::Protocol {
            code: ProtocolErrorCode::Malformed,
            message: "bad".into(),
        };
        assert_eq!(pending.await.expect("joins"), Err(expected.clone()));
        assert!(channel.is_closed());
        // Later calls fail at once with the same reason.
        assert_eq!(
            channel.call(&[release(4)], Duration::from_secs(5)).await,
            Err(expected)
        );
    }

    #[tokio::test]
    async fn the_node_ending_the_stream_fails_waiting_calls() {
        let (ours, mut node) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let channel = Channel::spawn(r, w, 8, None, false);
        let pending = {
            let channel = channel.clone();
            tokio::spawn(async move { channel.call(&[release(1)], Duration::from_secs(5)).await })
        };
        read_frames(&mut node, 1).await;
        drop(node);
        assert_eq!(
            pending.await.expect("joins"),
            Err(CallError::Closed("the node ended the stream".into()))
        );
        assert!(channel.is_closed());
    }

    #[tokio::test]
    async fn a_cut_subscription_is_delivered_after_its_events_and_ends_the_stream() {
        let (ours, mut node) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let (tx, mut feed) = mpsc::channel(4);
        let channel = Channel::spawn(r, w, 1, Some(tx), false);
        let event = |seq| ChangeEvent {
            seq,
            log_index: seq,
            timestamp_ms: 1,
            request_id: None,
            cause: engine::query::Cause::Expire,
            sku: engine::SkuId::from("A"),
            location: engine::LocationId::from("wh"),
            balance: engine::Balance::default(),
            shortfall: 0,
            author: None,
        };
        reply(&mut node, &ServerMessage::Events(vec![event(1), event(2)])).await;
        let cut = ServerMessage::SubscriptionCut {
            resume_from: 3,
            reason: "queue full".to_owned(),
        };
        reply(&mut node, &cut).await;
        assert_eq!(
            feed.recv().await,
            Some(Feed::Events(vec![event(1), event(2)]))
        );
        assert_eq!(
            feed.recv().await,
            Some(Feed::Cut {
                resume_from: 3,
                reason: "queue full".to_owned()
            })
        );
        assert_eq!(feed.recv().await, None, "nothing after the cut");
        let closed = channel.call(&[release(1)], Duration::from_secs(5)).await;
        assert_eq!(
            closed,
            Err(CallError::Closed(
                "subscription cut by the node: queue full".into()
            ))
        );
    }

    #[tokio::test]
    async fn limits_are_checked_before_sending() {
        let (ours, _node) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let channel = Channel::spawn(r, w, 8, None, false);
        let too_many = vec![Op::Status; protocol::OPS_PER_FRAME_MAX + 1];
        assert_eq!(
            channel.call(&too_many, Duration::from_secs(1)).await,
            Err(CallError::Limit(
                "1025 operations in a frame (1..=1024 allowed: OPS_PER_FRAME_MAX)".into()
            ))
        );
        assert!(matches!(
            channel.call(&[], Duration::from_secs(1)).await,
            Err(CallError::Limit(_))
        ));
        let huge = Op::Write(Request {
            request_id: RequestId(1),
            command: Command::Release {
                reservation: ReservationId::from("x".repeat(protocol::FRAME_BYTES_MAX)),
            },
        });
        assert!(matches!(
            channel.call(&[huge], Duration::from_secs(1)).await,
            Err(CallError::Limit(_))
        ));
    }

    #[tokio::test]
    async fn frames_in_flight_are_bounded() {
        let (ours, mut node) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let channel = Channel::spawn(r, w, 2, None, false);
        let calls: Vec<_> = (1..=3u128)
            .map(|n| {
                let channel = channel.clone();
                tokio::spawn(
                    async move { channel.call(&[release(n)], Duration::from_secs(5)).await },
                )
            })
            .collect();
        let first_two = read_frames(&mut node, 2).await;
        // The third frame is not sent while two wait for their replies.
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(100), node.read(&mut byte)).await;
        assert!(early.is_err(), "third frame sent early");
        reply(
            &mut node,
            &ServerMessage::Reply {
                id: first_two[0].id,
                results: answer(&first_two[0]),
            },
        )
        .await;
        let third = read_frames(&mut node, 1).await.remove(0);
        for frame in [&first_two[1], &third] {
            reply(
                &mut node,
                &ServerMessage::Reply {
                    id: frame.id,
                    results: answer(frame),
                },
            )
            .await;
        }
        for call in calls {
            assert!(call.await.expect("joins").is_ok());
        }
    }
}

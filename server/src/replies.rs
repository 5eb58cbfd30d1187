//! Replies under a budget (docs/PROTOCOL.md, "Reply budgets").
//!
//! A node builds replies as fast as it reads requests; a client that does not read them would
//! make it keep them all (issue 7: 64 streams of page reads never read grew a node to 1.9 GB).
//! So every reply queued for a client holds its size against three budgets (feed events four)
//! until the stream's writer has handed it to QUIC:
//! - its stream's ([`STREAM_REPLY_KIB_MAX`]) and its connection's
//!   ([`CONNECTION_REPLY_KIB_MAX`]): semaphores in KiB. Room for a whole reply
//!   ([`REPLY_KIB_MAX`]) is taken BEFORE the reply is built and shrunk to its size after, so a
//!   reply that waits for room holds no memory yet; a stream with no room stops reading frames
//!   (backpressure through QUIC flow control);
//! - the node's ([`NODE_REPLY_BYTES_MAX`]): a counter. Past it, new frames are answered `busy`
//!   instead of being processed (one client's unread replies must not stall every other
//!   client's, which waiting would do);
//! - a subscriber's ([`SUBSCRIBER_QUEUE_KIB_MAX`]): a subscription takes room for its next
//!   events before reading the feed, waiting at most [`SUBSCRIBER_WAIT_MS`]; a subscriber that
//!   does not read is then cut and told where to resume.
//!
//! A connection that writes none of its queued replies for [`REPLY_STALL_MS`], or whose budget
//! stays without room for a reply for [`CONNECTION_OVER_BUDGET_MS`] while its client reads
//! less than [`REPLY_READ_BYTES_PER_S_MIN`], is closed with
//! [`protocol::CLOSE_REPLIES_NOT_READ`]; everything it held is released with it. The decision is
//! the pure [`Watch::observe`]; the tasks around it only carry samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use protocol::{ReplyStats, ServerError, ServerMessage};

/// The largest reply, in KiB: a whole frame ([`protocol::FRAME_BYTES_MAX`]). Room for this much
/// is taken before a reply is built, since its size is known only after.
pub const REPLY_KIB_MAX: u32 = (protocol::FRAME_BYTES_MAX >> 10) as u32;
/// Bytes of replies one stream may have queued (built, not yet handed to QUIC), in KiB
/// (8 MiB: room for a largest reply while another is queued). A stream without room for a
/// largest reply stops reading frames until its client reads.
pub const STREAM_REPLY_KIB_MAX: u32 = 2 * REPLY_KIB_MAX;
/// Bytes of replies one connection may have queued, all its streams together, in KiB (64 MiB).
pub const CONNECTION_REPLY_KIB_MAX: u32 = 64 << 10;
/// Bytes of replies the node keeps queued for all clients together (1 GiB). Beyond it, new
/// frames are answered `busy` without being processed until clients read or are closed.
pub const NODE_REPLY_BYTES_MAX: u64 = 1 << 30;
/// Bytes of change-feed events queued for one subscriber, in KiB (1 MiB: at least 4 messages
/// of the largest events; QUIC's flow control holds more on the way). A subscription waits
/// for room in it before building its next message.
pub const SUBSCRIBER_QUEUE_KIB_MAX: u32 = 1 << 10;
/// How long a subscription waits for room for its next events message, ms: a subscriber
/// that reads, however slowly, gets room; one that does not is cut when this passes and told
/// where to resume. (It falls behind in the feed meanwhile, which the node keeps anyway.)
pub const SUBSCRIBER_WAIT_MS: u64 = 5_000;
/// Encoded bytes of one change event at most: every integer at its longest varint, ids at
/// [`engine::limits::ID_BYTES_MAX`] (checked by a test).
pub const EVENT_BYTES_MAX: usize = 256;
/// Room a subscription takes before building an events message, in KiB: the largest one
/// (`api::EVENTS_PER_MESSAGE_MAX` events of [`EVENT_BYTES_MAX`], plus the frame header).
pub const EVENTS_KIB_MAX: u32 =
    (crate::api::EVENTS_PER_MESSAGE_MAX as usize * EVENT_BYTES_MAX + 1024).div_ceil(1024) as u32;
/// A connection with replies queued that writes none of them for this long is closed, ms: its
/// peer stopped reading.
pub const REPLY_STALL_MS: u64 = 10_000;
/// A connection whose reply budget has had no room for a largest reply for this long, ms, is
/// closed if its client read less than [`REPLY_READ_BYTES_PER_S_MIN`] meanwhile: it asks far
/// faster than it reads. (A client that keeps its budget full but reads at speed is only held
/// back: that is backpressure working.)
pub const CONNECTION_OVER_BUDGET_MS: u64 = 10_000;
/// The slowest reading, bytes per second, that keeps a connection with a full reply budget
/// open (1 MiB/s: its 64 MiB drain in about a minute).
pub const REPLY_READ_BYTES_PER_S_MIN: u64 = 1 << 20;
/// How often a connection's budget and progress are sampled, ms.
pub const REPLY_WATCH_MS: u64 = 250;

const _: () = assert!(STREAM_REPLY_KIB_MAX >= REPLY_KIB_MAX);
const _: () = assert!(CONNECTION_REPLY_KIB_MAX >= STREAM_REPLY_KIB_MAX);
const _: () = assert!(SUBSCRIBER_QUEUE_KIB_MAX < STREAM_REPLY_KIB_MAX - REPLY_KIB_MAX);
const _: () = assert!(EVENTS_KIB_MAX * 4 <= SUBSCRIBER_QUEUE_KIB_MAX);
const _: () = assert!(EVENTS_KIB_MAX <= REPLY_KIB_MAX);
const _: () = assert!(NODE_REPLY_BYTES_MAX >= (CONNECTION_REPLY_KIB_MAX as u64) << 10);
const _: () = assert!(REPLY_WATCH_MS * 4 <= REPLY_STALL_MS);
const _: () = assert!(REPLY_WATCH_MS * 4 <= CONNECTION_OVER_BUDGET_MS);

/// KiB of budget for `bytes` (at least 1, so that every queued message holds some).
fn kib_of(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// The node-wide part: bytes queued for every client, and what the budgets did (`status`).
/// Atomics, not a semaphore: the node's budget is checked when a frame arrives, never waited
/// for (a waiting stream would hold its connection's other streams behind it).
#[derive(Debug, Default)]
pub struct NodeReplies {
    /// Bytes of every connection's queued messages (the sum of their [`Charge`]s).
    queued_bytes: AtomicU64,
    /// Connections closed by their watchdog, since start.
    connections_closed: AtomicU64,
    /// Subscriptions cut, since start.
    subscribers_cut: AtomicU64,
    /// Frames answered `busy` because [`NodeReplies::over_budget`], since start.
    frames_shed: AtomicU64,
}

impl NodeReplies {
    /// Whether the node holds [`NODE_REPLY_BYTES_MAX`] or more of queued replies: new frames
    /// are then answered `busy`.
    pub fn over_budget(&self) -> bool {
        self.queued_bytes.load(Ordering::Relaxed) >= NODE_REPLY_BYTES_MAX
    }

    /// The counters, for `status`.
    pub fn stats(&self) -> ReplyStats {
        ReplyStats {
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            connections_closed: self.connections_closed.load(Ordering::Relaxed),
            subscribers_cut: self.subscribers_cut.load(Ordering::Relaxed),
            frames_shed: self.frames_shed.load(Ordering::Relaxed),
        }
    }

    /// Counts a frame answered `busy` because of [`NodeReplies::over_budget`].
    pub fn shed(&self) {
        self.frames_shed.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's budget and how far its writers got.
#[derive(Debug)]
pub struct ConnectionReplies {
    /// KiB of room for replies, shared by the connection's streams.
    budget: Arc<Semaphore>,
    node: Arc<NodeReplies>,
    /// Bytes queued on the connection's streams (the watchdog's "has it something to write").
    queued_bytes: AtomicU64,
    /// Bytes handed to QUIC so far (the watchdog's "did it make progress").
    written_bytes: AtomicU64,
}

impl ConnectionReplies {
    /// A fresh connection's budget.
    pub fn new(node: Arc<NodeReplies>) -> ConnectionReplies {
        ConnectionReplies {
            budget: Arc::new(Semaphore::new(CONNECTION_REPLY_KIB_MAX as usize)),
            node,
            queued_bytes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
        }
    }

    /// What the watchdog looks at.
    pub fn sample(&self) -> Sample {
        Sample {
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            written_bytes: self.written_bytes.load(Ordering::Relaxed),
            room: self.budget.available_permits() >= REPLY_KIB_MAX as usize,
        }
    }

    /// Ends the budget: whoever waits for room gives up (the connection is gone).
    pub fn close(&self, closed_for_budget: bool) {
        self.budget.close();
        if closed_for_budget {
            self.node.connections_closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Room for one message, taken before the message is built: on its stream and connection,
/// and in its subscriber's queue for feed events.
#[derive(Debug)]
pub struct Room {
    stream: OwnedSemaphorePermit,
    connection: OwnedSemaphorePermit,
    subscriber: Option<OwnedSemaphorePermit>,
}

impl Room {
    /// Keeps `kib` of each part and gives the rest back at once. (The parts hold the same
    /// count; a message larger than its room keeps all of it.)
    fn shrink(&mut self, kib: usize) {
        if self.stream.num_permits() <= kib {
            return;
        }
        let keep = |permit: &mut OwnedSemaphorePermit| {
            if let Some(kept) = permit.split(kib) {
                *permit = kept;
            }
        };
        keep(&mut self.stream);
        keep(&mut self.connection);
        if let Some(subscriber) = &mut self.subscriber {
            keep(subscriber);
        }
    }
}

/// What a queued message holds until the writer has handed it to QUIC: its room, and its
/// bytes in the connection's and the node's counts.
#[derive(Debug)]
struct Charge {
    _room: Room,
    bytes: u64,
    replies: Arc<ConnectionReplies>,
}

impl Charge {
    fn new(room: Room, bytes: usize, replies: &Arc<ConnectionReplies>) -> Charge {
        let bytes = bytes as u64;
        replies.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        replies
            .node
            .queued_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        Charge {
            _room: room,
            bytes,
            replies: replies.clone(),
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let replies = &self.replies;
        replies
            .queued_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
        replies
            .node
            .queued_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// An encoded message in a stream's queue, with the budget it holds.
#[derive(Debug)]
struct Queued {
    bytes: Vec<u8>,
    charge: Charge,
    /// The stream ends after this message (a cut subscription).
    last: bool,
}

/// Which budget had no room for a subscriber's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The subscriber's own queue ([`SUBSCRIBER_QUEUE_KIB_MAX`]).
    Subscriber,
    /// Its stream's ([`STREAM_REPLY_KIB_MAX`]).
    Stream,
    /// Its connection's ([`CONNECTION_REPLY_KIB_MAX`]).
    Connection,
    /// The node's ([`NODE_REPLY_BYTES_MAX`]).
    Node,
}

impl Full {
    /// The reason sent to the subscriber.
    pub fn reason(self) -> &'static str {
        match self {
            Full::Subscriber => "events not read: the subscriber's queue on the node stayed full",
            Full::Stream => "events not read: the stream's reply budget stayed full",
            Full::Connection => "replies not read: the connection's reply budget stayed full",
            Full::Node => "the node's reply budget is full",
        }
    }
}

/// Why there is no room for a subscriber's next events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// A budget stayed full for [`SUBSCRIBER_WAIT_MS`] (or the node's is full): the
    /// subscription must be cut.
    Full(Full),
    /// The stream is gone (its writer stopped): nobody reads any more.
    Closed,
}

/// One stream's queue of encoded messages for its writer, under the budgets. Clones share the
/// queue (the stream's reader, its frame tasks and its subscription each hold one).
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: mpsc::UnboundedSender<Queued>,
    /// KiB of room on this stream.
    stream: Arc<Semaphore>,
    replies: Arc<ConnectionReplies>,
}

impl Outbox {
    /// A stream's outbox, and the writer that drains it.
    pub fn new(replies: Arc<ConnectionReplies>) -> (Outbox, Writer) {
        // Unbounded in count, bounded in bytes: every queued message holds at least 1 KiB
        // of the stream's budget.
        let (queue, rx) = mpsc::unbounded_channel();
        let stream = Arc::new(Semaphore::new(STREAM_REPLY_KIB_MAX as usize));
        let writer = Writer {
            queue: rx,
            stream: stream.clone(),
            replies: replies.clone(),
        };
        let outbox = Outbox {
            queue,
            stream,
            replies,
        };
        (outbox, writer)
    }

    /// Waits for room for a largest reply on this stream and its connection; `None` once the
    /// stream or the connection is gone.
    pub async fn room(&self) -> Option<Room> {
        self.room_of(REPLY_KIB_MAX).await
    }

    /// Waits for room for a message of at most 1 KiB (the end of a subscription).
    pub async fn small_room(&self) -> Option<Room> {
        self.room_of(1).await
    }

    async fn room_of(&self, kib: u32) -> Option<Room> {
        // Always the stream first, then the connection: no two waiters hold what the other
        // needs in the opposite order.
        let stream = self.stream.clone().acquire_many_owned(kib).await.ok()?;
        let connection = self
            .replies
            .budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .ok()?;
        Some(Room {
            stream,
            connection,
            subscriber: None,
        })
    }

    /// Waits for room for a largest events message ([`EVENTS_KIB_MAX`]) in the subscriber's
    /// queue (`subscriber`, [`SUBSCRIBER_QUEUE_KIB_MAX`] KiB), then on the stream and the
    /// connection; at most [`SUBSCRIBER_WAIT_MS`]. Says which budget stayed full (the node's
    /// is not waited for).
    pub async fn events_room(&self, subscriber: &Arc<Semaphore>) -> Result<Room, NoRoom> {
        if self.replies.node.over_budget() {
            return Err(NoRoom::Full(Full::Node));
        }
        let wait = Duration::from_millis(SUBSCRIBER_WAIT_MS);
        let room = async {
            let queue = subscriber.clone().acquire_many_owned(EVENTS_KIB_MAX).await;
            let queue = queue.ok()?;
            let mut room = self.room_of(EVENTS_KIB_MAX).await?;
            room.subscriber = Some(queue);
            Some(room)
        };
        match tokio::time::timeout(wait, room).await {
            Ok(Some(room)) => Ok(room),
            Ok(None) => Err(NoRoom::Closed),
            Err(_) if subscriber.available_permits() < EVENTS_KIB_MAX as usize => {
                Err(NoRoom::Full(Full::Subscriber))
            }
            Err(_) if self.stream.available_permits() < EVENTS_KIB_MAX as usize => {
                Err(NoRoom::Full(Full::Stream))
            }
            Err(_) => Err(NoRoom::Full(Full::Connection)),
        }
    }

    /// Queues `message` in the room taken for it, keeping only the KiB it needs. A reply too
    /// large for a frame goes out as one `internal` failure per operation instead. Returns
    /// whether the writer still runs.
    pub fn send(&self, room: Room, message: &ServerMessage) -> bool {
        match encode(message) {
            Some(bytes) => self.queue_in(room, bytes, false),
            None => false,
        }
    }

    fn queue_in(&self, mut room: Room, bytes: Vec<u8>, last: bool) -> bool {
        room.shrink(kib_of(bytes.len()) as usize);
        let charge = Charge::new(room, bytes.len(), &self.replies);
        let queued = Queued {
            bytes,
            charge,
            last,
        };
        self.queue.send(queued).is_ok()
    }

    /// Ends a subscription that had no room: queues [`ServerMessage::SubscriptionCut`] in the
    /// small room kept for it, after which the writer ends the stream; counts it.
    pub fn cut(&self, room: Room, resume_from: u64, full: Full) {
        self.replies
            .node
            .subscribers_cut
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(resume_from, reason = full.reason(), "subscription cut");
        let message = ServerMessage::SubscriptionCut {
            resume_from,
            reason: full.reason().to_owned(),
        };
        if let Some(bytes) = encode(&message) {
            self.queue_in(room, bytes, true);
        }
    }

    /// Whether the stream's writer stopped (nothing queued will be written).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// Encodes a message; a reply too large for a frame becomes one `internal` failure per
/// operation (the client learns that much instead of waiting). `None` if even that fails.
fn encode(message: &ServerMessage) -> Option<Vec<u8>> {
    let e = match protocol::encode(message) {
        Ok(bytes) => return Some(bytes),
        Err(e) => e,
    };
    tracing::error!(error = %e, "reply does not fit a frame");
    let ServerMessage::Reply { id, results } = message else {
        return None;
    };
    let failed = protocol::OpResult::Failed(ServerError::Internal {
        message: format!("reply too large: {e}"),
    });
    let results = vec![failed; results.len()];
    protocol::encode(&ServerMessage::Reply { id: *id, results }).ok()
}

/// Replies written to a stream in one write when several are ready, bytes.
const REPLY_COALESCE_BYTES: usize = 64 << 10;

/// The receiving end of an [`Outbox`]: writes what is queued to the stream.
#[derive(Debug)]
pub struct Writer {
    queue: mpsc::UnboundedReceiver<Queued>,
    stream: Arc<Semaphore>,
    replies: Arc<ConnectionReplies>,
}

impl Writer {
    /// Writes queued messages to `send` (those queued meanwhile together, up to 64 KiB per
    /// write) until every [`Outbox`] is dropped or a last message is written, then finishes
    /// the stream; or until writing fails (the client stopped or reset the stream, or the
    /// connection closed). Either way the stream's budget is closed (whoever waits for room
    /// gives up) and whatever is still queued is released.
    pub async fn run(mut self, mut send: quinn::SendStream) {
        while let Some(first) = self.queue.recv().await {
            let mut last = first.last;
            let mut bytes = first.bytes;
            let mut written = vec![first.charge];
            while !last && bytes.len() < REPLY_COALESCE_BYTES {
                match self.queue.try_recv() {
                    Ok(more) => {
                        last = more.last;
                        bytes.extend_from_slice(&more.bytes);
                        written.push(more.charge);
                    }
                    Err(_) => break,
                }
            }
            if !self.write(&mut send, &bytes).await || last {
                break;
            }
            drop(written);
        }
        self.stream.close();
        self.queue.close();
        let _ = send.finish();
    }

    /// Writes all of `bytes`, counting progress as QUIC takes them (a slow reader is not a
    /// stalled one). False if the stream or connection failed.
    async fn write(&self, send: &mut quinn::SendStream, bytes: &[u8]) -> bool {
        let mut at = 0;
        while at < bytes.len() {
            match send.write(&bytes[at..]).await {
                Ok(n) => {
                    at += n;
                    self.replies
                        .written_bytes
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => return false,
            }
        }
        true
    }
}

/// What the watchdog samples from a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Bytes queued on its streams.
    pub queued_bytes: u64,
    /// Bytes written to QUIC since the connection began.
    pub written_bytes: u64,
    /// Whether its budget has room for a largest reply.
    pub room: bool,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Replies were queued and none was written for `for_ms`.
    Stalled {
        /// Bytes queued at the last sample.
        queued_bytes: u64,
        /// How long nothing was written, ms.
        for_ms: u64,
    },
    /// The budget had no room for a largest reply for `for_ms`, while the client read only
    /// `read_bytes`.
    OverBudget {
        /// How long, ms.
        for_ms: u64,
        /// Bytes written meanwhile.
        read_bytes: u64,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Stalled {
                queued_bytes,
                for_ms,
            } => write!(
                f,
                "replies not read: {queued_bytes} bytes queued and none read for {for_ms} ms"
            ),
            Verdict::OverBudget { for_ms, read_bytes } => write!(
                f,
                "replies not read: the connection's reply budget ({} MiB) was full for {for_ms} \
                 ms while the client read {read_bytes} bytes (at least {} KiB/s wanted)",
                CONNECTION_REPLY_KIB_MAX >> 10,
                REPLY_READ_BYTES_PER_S_MIN >> 10
            ),
        }
    }
}

/// The watchdog's memory between samples of one connection.
#[derive(Debug, Default)]
pub struct Watch {
    written_bytes: u64,
    stalled_since_ms: Option<u64>,
    /// Since when the budget has had no room, and the bytes written by then.
    full_since: Option<(u64, u64)>,
}

impl Watch {
    /// Takes a sample at `now_ms` (any monotonic origin); says whether to close the
    /// connection: after [`REPLY_STALL_MS`] of samples with replies queued and no byte
    /// written, or [`CONNECTION_OVER_BUDGET_MS`] of samples without room during which less
    /// than [`REPLY_READ_BYTES_PER_S_MIN`] was written (a client fast enough is judged again
    /// over the next period).
    pub fn observe(&mut self, now_ms: u64, sample: Sample) -> Option<Verdict> {
        let progressed = sample.written_bytes != self.written_bytes;
        self.written_bytes = sample.written_bytes;
        self.stalled_since_ms = if sample.queued_bytes == 0 || progressed {
            None
        } else {
            Some(self.stalled_since_ms.unwrap_or(now_ms))
        };
        if let Some(since) = self.stalled_since_ms {
            let for_ms = now_ms.saturating_sub(since);
            if for_ms >= REPLY_STALL_MS {
                let queued_bytes = sample.queued_bytes;
                return Some(Verdict::Stalled {
                    queued_bytes,
                    for_ms,
                });
            }
        }
        let (since, written_then) = match self.full_since {
            _ if sample.room => {
                self.full_since = None;
                return None;
            }
            Some(full) => full,
            None => *self.full_since.insert((now_ms, sample.written_bytes)),
        };
        let for_ms = now_ms.saturating_sub(since);
        if for_ms < CONNECTION_OVER_BUDGET_MS {
            return None;
        }
        let read_bytes = sample.written_bytes.saturating_sub(written_then);
        if read_bytes < REPLY_READ_BYTES_PER_S_MIN.saturating_mul(for_ms) / 1_000 {
            return Some(Verdict::OverBudget { for_ms, read_bytes });
        }
        self.full_since = Some((now_ms, sample.written_bytes));
        None
    }
}

/// Samples a connection every [`REPLY_WATCH_MS`] until [`Watch::observe`] says to close it.
pub async fn watch(replies: &ConnectionReplies) -> Verdict {
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(REPLY_WATCH_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = Watch::default();
    loop {
        tick.tick().await;
        let now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(verdict) = watch.observe(now_ms, replies.sample()) {
            return verdict;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use protocol::OpResult;

    use super::*;

    fn sample(queued_bytes: u64, written_bytes: u64, room: bool) -> Sample {
        Sample {
            queued_bytes,
            written_bytes,
            room,
        }
    }

    #[test]
    fn a_connection_that_writes_none_of_its_queue_is_closed_after_the_stall_time() {
        let mut watch = Watch::default();
        assert_eq!(watch.observe(1_000, sample(100, 0, true)), None);
        let almost = 1_000 + REPLY_STALL_MS - 1;
        assert_eq!(watch.observe(almost, sample(100, 0, true)), None);
        assert_eq!(
            watch.observe(1_000 + REPLY_STALL_MS, sample(7, 0, true)),
            Some(Verdict::Stalled {
                queued_bytes: 7,
                for_ms: REPLY_STALL_MS
            })
        );
    }

    #[test]
    fn progress_or_an_empty_queue_restarts_the_stall_clock() {
        let mut watch = Watch::default();
        assert_eq!(watch.observe(0, sample(100, 0, true)), None);
        // One byte written just before the deadline: a slow reader, not a stalled one.
        assert_eq!(
            watch.observe(REPLY_STALL_MS - 1, sample(100, 1, true)),
            None
        );
        assert_eq!(watch.observe(REPLY_STALL_MS, sample(100, 1, true)), None);
        assert_eq!(
            watch.observe(2 * REPLY_STALL_MS - 1, sample(100, 1, true)),
            None
        );
        // Nothing queued: nothing to wait for, however long.
        assert_eq!(watch.observe(2 * REPLY_STALL_MS, sample(0, 1, true)), None);
        assert_eq!(watch.observe(4 * REPLY_STALL_MS, sample(0, 1, true)), None);
        assert_eq!(
            watch.observe(4 * REPLY_STALL_MS + 1, sample(5, 1, true)),
            None
        );
        assert_eq!(
            watch.observe(5 * REPLY_STALL_MS + 1, sample(5, 1, true)),
            Some(Verdict::Stalled {
                queued_bytes: 5,
                for_ms: REPLY_STALL_MS
            })
        );
    }

    #[test]
    fn a_full_budget_closes_the_connection_only_if_its_client_reads_too_slowly() {
        let mut watch = Watch::default();
        let full = |written| sample(1 << 20, written, false);
        assert_eq!(watch.observe(0, full(1)), None);
        // Room for a moment restarts the clock.
        assert_eq!(watch.observe(5_000, sample(1 << 20, 2, true)), None);
        assert_eq!(watch.observe(5_250, full(3)), None);
        let at = 5_250 + CONNECTION_OVER_BUDGET_MS;
        assert_eq!(watch.observe(at - 1, full(4)), None);
        // Reading, but a few bytes a second: it asks far faster than it reads.
        assert_eq!(
            watch.observe(at, full(5)),
            Some(Verdict::OverBudget {
                for_ms: CONNECTION_OVER_BUDGET_MS,
                read_bytes: 2
            })
        );
    }

    #[test]
    fn a_full_budget_read_at_speed_is_backpressure_not_a_reason_to_close() {
        let mut watch = Watch::default();
        let full = |written| sample(1 << 20, written, false);
        let period = CONNECTION_OVER_BUDGET_MS;
        let enough = REPLY_READ_BYTES_PER_S_MIN * period / 1_000;
        assert_eq!(watch.observe(0, full(0)), None);
        assert_eq!(watch.observe(period, full(enough)), None);
        // Judged again over the next period, from what it had read by then.
        assert_eq!(watch.observe(2 * period - 1, full(enough + 1)), None);
        assert_eq!(
            watch.observe(2 * period, full(2 * enough - 1)),
            Some(Verdict::OverBudget {
                for_ms: period,
                read_bytes: enough - 1
            })
        );
    }

    struct Fixture {
        node: Arc<NodeReplies>,
        connection: Arc<ConnectionReplies>,
        outbox: Outbox,
        writer: Writer,
    }

    fn fixture() -> Fixture {
        let node = Arc::new(NodeReplies::default());
        let connection = Arc::new(ConnectionReplies::new(node.clone()));
        let (outbox, writer) = Outbox::new(connection.clone());
        Fixture {
            node,
            connection,
            outbox,
            writer,
        }
    }

    /// A reply of about `bytes` bytes.
    fn reply_of(bytes: usize) -> ServerMessage {
        ServerMessage::Reply {
            id: 1,
            results: vec![OpResult::Digest {
                applied_index: 0,
                digest: "x".repeat(bytes),
            }],
        }
    }

    #[tokio::test]
    async fn a_queued_reply_holds_its_size_until_written() {
        let f = fixture();
        let room = f.outbox.room().await.expect("room");
        let stream_free = (STREAM_REPLY_KIB_MAX - REPLY_KIB_MAX) as usize;
        assert_eq!(f.outbox.stream.available_permits(), stream_free);
        let message = reply_of(3_000);
        let bytes = protocol::encode(&message).expect("encodes");
        assert!(f.outbox.send(room, &message));
        // 3 KiB kept, the rest of the room back at once.
        let stream_free = STREAM_REPLY_KIB_MAX as usize - 3;
        assert_eq!(f.outbox.stream.available_permits(), stream_free);
        let connection_free = CONNECTION_REPLY_KIB_MAX as usize - 3;
        assert_eq!(f.connection.budget.available_permits(), connection_free);
        assert_eq!(f.node.stats().queued_bytes, bytes.len() as u64);
        assert_eq!(f.connection.sample().queued_bytes, bytes.len() as u64);

        let mut writer = f.writer;
        let queued = writer.queue.try_recv().expect("queued");
        assert_eq!(queued.bytes, bytes);
        assert!(!queued.last);
        drop(queued); // what the writer does once QUIC has the bytes
        assert_eq!(f.node.stats().queued_bytes, 0);
        assert_eq!(f.connection.sample().queued_bytes, 0);
        let all = STREAM_REPLY_KIB_MAX as usize;
        assert_eq!(f.outbox.stream.available_permits(), all);
    }

    #[tokio::test]
    async fn a_stream_without_room_for_a_largest_reply_waits_until_its_queue_is_written() {
        let f = fixture();
        for _ in 0..2 {
            let room = f.outbox.room().await.expect("room");
            assert!(f.outbox.send(room, &reply_of(2_500_000)));
        }
        let waiting = tokio::time::timeout(Duration::from_millis(50), f.outbox.room()).await;
        assert!(
            waiting.is_err(),
            "5 MiB queued leaves no room for 4 MiB more"
        );
        assert!(
            f.connection.sample().room,
            "the stream's budget holds it back, not the connection's"
        );
        let mut writer = f.writer;
        drop(writer.queue.try_recv().expect("queued"));
        let room = tokio::time::timeout(Duration::from_secs(5), f.outbox.room()).await;
        assert!(room.expect("room once a reply is written").is_some());
    }

    /// Queues an events message of about `bytes` bytes in room taken for events.
    async fn queue_events(f: &Fixture, subscriber: &Arc<Semaphore>, bytes: usize) {
        let room = f.outbox.events_room(subscriber).await.expect("room");
        assert!(f.outbox.send(room, &reply_of(bytes)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscription_waits_for_room_then_is_told_which_budget_stayed_full() {
        let f = fixture();
        let subscriber = Arc::new(Semaphore::new(SUBSCRIBER_QUEUE_KIB_MAX as usize));
        // 4 messages of 240 KiB leave less than a largest events message free of 1 MiB.
        for _ in 0..4 {
            queue_events(&f, &subscriber, 240 << 10).await;
        }
        let start = tokio::time::Instant::now();
        let full = f.outbox.events_room(&subscriber).await;
        assert_eq!(full.err(), Some(NoRoom::Full(Full::Subscriber)));
        let waited = start.elapsed();
        assert_eq!(waited, Duration::from_millis(SUBSCRIBER_WAIT_MS));

        // A subscriber that reads, however late, gets room.
        let mut writer = f.writer;
        let waiting = f.outbox.events_room(&subscriber);
        let read = async {
            tokio::time::sleep(Duration::from_millis(SUBSCRIBER_WAIT_MS - 1)).await;
            drop(writer.queue.try_recv().expect("queued"));
        };
        let (room, ()) = tokio::join!(waiting, read);
        assert!(room.is_ok());
        drop(room);

        // Past the node's budget there is no wait at all.
        let node_full = NODE_REPLY_BYTES_MAX;
        f.node.queued_bytes.fetch_add(node_full, Ordering::Relaxed);
        let start = tokio::time::Instant::now();
        let full = f.outbox.events_room(&subscriber).await;
        assert_eq!(full.err(), Some(NoRoom::Full(Full::Node)));
        assert_eq!(start.elapsed(), Duration::ZERO);
        f.node.queued_bytes.fetch_sub(node_full, Ordering::Relaxed);

        // A stream whose writer stopped has no room, at once.
        writer.stream.close();
        let closed = f.outbox.events_room(&subscriber).await;
        assert_eq!(closed.err(), Some(NoRoom::Closed));
        drop(writer);
        assert_eq!(f.node.stats().queued_bytes, 0, "nothing left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_stream_or_connection_is_named_when_a_subscription_is_cut() {
        let f = fixture();
        let subscriber = Arc::new(Semaphore::new(SUBSCRIBER_QUEUE_KIB_MAX as usize));
        // Replies (and another subscription's events) fill the stream.
        for _ in 0..2 {
            let room = f.outbox.room().await.expect("room");
            assert!(f.outbox.send(room, &reply_of(4_000_000)));
        }
        let other = Arc::new(Semaphore::new(SUBSCRIBER_QUEUE_KIB_MAX as usize));
        queue_events(&f, &other, 250 << 10).await;
        let full = f.outbox.events_room(&subscriber).await;
        assert_eq!(full.err(), Some(NoRoom::Full(Full::Stream)));
        let all = SUBSCRIBER_QUEUE_KIB_MAX as usize;
        assert_eq!(subscriber.available_permits(), all, "nothing kept");

        // Other streams fill the connection.
        let g = fixture();
        let mut others = Vec::new();
        while g.connection.budget.available_permits() >= EVENTS_KIB_MAX as usize {
            let (outbox, writer) = Outbox::new(g.connection.clone());
            let (room, bytes) = match outbox.room_of(REPLY_KIB_MAX).now_or_never() {
                Some(Some(room)) => (room, 4_000_000),
                _ => (
                    outbox.room_of(EVENTS_KIB_MAX).await.expect("room"),
                    250 << 10,
                ),
            };
            assert!(outbox.send(room, &reply_of(bytes)));
            others.push((outbox, writer));
        }
        let full = g.outbox.events_room(&subscriber).await;
        assert_eq!(full.err(), Some(NoRoom::Full(Full::Connection)));
    }

    #[test]
    fn the_largest_events_message_fits_the_room_taken_for_it() {
        let id = "x".repeat(engine::limits::ID_BYTES_MAX);
        let event = engine::query::ChangeEvent {
            seq: u64::MAX,
            log_index: u64::MAX,
            timestamp_ms: u64::MAX,
            request_id: Some(engine::RequestId(u128::MAX)),
            cause: engine::query::Cause::Shortage,
            sku: engine::SkuId::from(id.as_str()),
            location: engine::LocationId::from(id),
            balance: engine::Balance {
                on_hand: i64::MIN,
                reserved: i64::MIN,
                allocated: i64::MIN,
                unavailable: i64::MIN,
                safety_stock: i64::MIN,
                incoming: i64::MIN,
            },
            shortfall: i64::MIN,
            author: None,
        };
        let one = postcard::to_allocvec(&event).expect("encodes").len();
        assert!(one <= EVENT_BYTES_MAX, "{one} bytes");
        let many = vec![event; crate::api::EVENTS_PER_MESSAGE_MAX as usize];
        let message = protocol::encode(&ServerMessage::Events(many)).expect("encodes");
        assert!(kib_of(message.len()) <= EVENTS_KIB_MAX);
    }

    #[tokio::test]
    async fn a_cut_is_the_last_message_fits_its_small_room_and_is_counted() {
        let f = fixture();
        let mut writer = f.writer;
        for (n, full) in [Full::Subscriber, Full::Stream, Full::Connection, Full::Node]
            .into_iter()
            .enumerate()
        {
            let room = f.outbox.small_room().await.expect("room");
            f.outbox.cut(room, 42, full);
            let queued = writer.queue.try_recv().expect("queued");
            assert!(queued.last);
            assert!(queued.bytes.len() <= 1024, "fits the 1 KiB kept for it");
            let message: ServerMessage = protocol::parse(&queued.bytes).expect("parses");
            let expected = ServerMessage::SubscriptionCut {
                resume_from: 42,
                reason: full.reason().to_owned(),
            };
            assert_eq!(message, expected);
            assert_eq!(f.node.stats().subscribers_cut, n as u64 + 1);
        }
    }

    #[tokio::test]
    async fn a_closed_connection_gives_no_room_and_is_counted_if_closed_for_its_budget() {
        let f = fixture();
        f.connection.close(false);
        assert!(f.outbox.room().await.is_none());
        assert_eq!(f.node.stats().connections_closed, 0);
        let g = fixture();
        g.connection.close(true);
        assert_eq!(g.node.stats().connections_closed, 1);
    }
}

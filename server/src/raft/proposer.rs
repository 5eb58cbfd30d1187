//! Write batching on the leader, deadline ticks, and coalesced linearizable reads.
//!
//! Writes from every connection go into one bounded queue ([`WRITE_QUEUE_MAX`]); a full queue
//! answers `busy` at once (SPEC section 4: overload sheds load). One proposer task takes up to
//! [`BATCH_WRITES_MAX`] writes (or [`BATCH_BYTES_MAX`]) from the queue, stamps
//! them with the leader's clock and proposes them as ONE Raft entry; up to
//! [`BATCHES_IN_FLIGHT_MAX`] entries replicate at once, so while one replicates the next fills.
//!
//! Deadlines fire on time without client writes: when the ledger's earliest hold or pickup
//! deadline has passed, the leader proposes an empty batch (a tick) that moves time.
//!
//! Linearizable reads queue for a read barrier: one `ensure_linearizable` round (a heartbeat
//! quorum) serves every read that arrived before it started.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use engine::{Author, Authors, Outcome, Request};
use protocol::{BatchStats, NodeAddr, ServerError};

use crate::clock::Clock;
use crate::hops::{self, Hop};
use crate::metrics::Metrics;
use crate::raft::state_machine::Shared;
use crate::raft::{Batch, NodeId, Raft};

/// Writes waiting for a batch, across all connections.
pub const WRITE_QUEUE_MAX: usize = 65_536;
/// Soft limit of the encoded size of one batch, bytes (a single request can exceed it).
pub const BATCH_BYTES_MAX: usize = 1 << 20;
/// Raft entries proposed and not yet applied.
pub const BATCHES_IN_FLIGHT_MAX: usize = 32;
/// Writes in one batch (one Raft entry) at most: fewer than the engine accepts
/// ([`engine::limits::BATCH_REQUESTS_MAX`]) because a whole entry applies under the ledger's
/// write lock. At 1 M balances a single-line reserve costs ~3 µs of apply (`reserve_loop 122
/// 4096 1 warm`: 3.1 µs; with 1,024: 3.4 µs), so the ~4,000 writes that fit in
/// [`BATCH_BYTES_MAX`] held the lock ~13 ms and 1,024 hold it ~3.5 ms (SPEC section 4 allows
/// 5 ms). At peak this costs little: 60,000 writes/s are still only ~60 entries/s,
/// [`BATCHES_IN_FLIGHT_MAX`] of them replicating at once.
pub const BATCH_WRITES_MAX: usize = 1_024;
/// How long a write waits for its entry to apply before answering `timeout`, ms.
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// How long a linearizable read waits for its leadership check, ms.
pub const READ_TIMEOUT_MS: u64 = 5_000;
/// Linearizable reads waiting for a barrier round.
pub const READ_QUEUE_MAX: usize = 65_536;
/// How often the leader looks for a passed deadline, ms.
pub const TICK_CHECK_MS: u64 = 5;

const _: () = assert!(BATCH_BYTES_MAX * 8 < protocol::PEER_FRAME_BYTES_MAX);
const _: () = assert!(BATCH_WRITES_MAX <= engine::limits::BATCH_REQUESTS_MAX);
// Every write the queue can hold fits in the entries that may be in flight.
const _: () = assert!(BATCH_WRITES_MAX * BATCHES_IN_FLIGHT_MAX >= WRITE_QUEUE_MAX / 2);

/// The answer to a write: the ledger's outcome and the log index that applied it.
pub type WriteResult = Result<(Outcome, u64), ServerError>;

/// A write waiting to be batched.
struct PendingWrite {
    request: Request,
    /// Who asked (shared by a connection's writes).
    author: Arc<Author>,
    bytes: usize,
    reply: oneshot::Sender<WriteResult>,
}

/// Counters of the batching (reported by `status`).
#[derive(Debug, Default)]
pub struct Stats {
    entries: AtomicU64,
    writes: AtomicU64,
    writes_max: AtomicU64,
    shed: AtomicU64,
    ticks: AtomicU64,
}

impl Stats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> BatchStats {
        BatchStats {
            entries: self.entries.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            writes_max: self.writes_max.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            ticks: self.ticks.load(Ordering::Relaxed),
        }
    }
}

/// Maps openraft's "forward to leader" into the protocol's hint.
pub fn not_leader(raft: &Raft, leader_id: Option<NodeId>) -> ServerError {
    let leader = leader_id.and_then(|id| {
        let metrics = raft.metrics();
        let membership = metrics.borrow().membership_config.clone();
        membership.membership().get_node(&id).map(|n| NodeAddr {
            id,
            addr: n.addr.clone(),
        })
    });
    ServerError::NotLeader { leader }
}

/// The handle to submit writes.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<PendingWrite>,
    stats: Arc<Stats>,
    /// The node's memory budget: over it, new demand (reservations, direct orders) is
    /// answered `busy`.
    memory: Arc<crate::memory::MemoryBudget>,
    /// Entries in flight: the proposer task takes a permit per entry until it is applied.
    inflight: Arc<Semaphore>,
}

impl Proposer {
    /// Starts the proposer task of node `id`; it stops when every handle is dropped.
    /// Writes per proposed entry go to the node's metrics (`shared.metrics()`); `memory` is
    /// the node's budget ([`crate::memory`]).
    pub fn start(
        id: NodeId,
        consensus: &super::consensus::Consensus,
        shared: Arc<Shared>,
        clock: Arc<Clock>,
        memory: Arc<crate::memory::MemoryBudget>,
    ) -> Proposer {
        let raft = consensus.raft().clone();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_MAX);
        let stats = Arc::new(Stats::default());
        let inflight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
        let batcher = Batcher {
            id,
            raft,
            consensus: consensus.clone(),
            metrics: shared.metrics().clone(),
            shared,
            clock,
            stats: stats.clone(),
            tick_pending: Arc::new(AtomicBool::new(false)),
            tick_applied: Arc::new(Notify::new()),
            last_ts: 0,
            last_stamp: None,
            clock_distrusted: false,
        };
        tokio::spawn(run(batcher, rx, inflight.clone()));
        Proposer {
            tx,
            stats,
            memory,
            inflight,
        }
    }

    /// Writes waiting in the queue for a batch.
    pub fn queued(&self) -> usize {
        WRITE_QUEUE_MAX - self.tx.capacity()
    }

    /// Entries proposed and not yet applied (at most [`BATCHES_IN_FLIGHT_MAX`]).
    pub fn in_flight(&self) -> usize {
        BATCHES_IN_FLIGHT_MAX - self.inflight.available_permits()
    }

    /// Queues a write (`bytes`: its approximate encoded size). A full queue answers `busy`, and
    /// so does a node over its memory budget to new demand (a reservation or a direct order).
    pub fn submit(
        &self,
        request: Request,
        author: Arc<Author>,
        bytes: usize,
    ) -> oneshot::Receiver<WriteResult> {
        let (reply, rx) = oneshot::channel();
        if self.memory.refuses(&request.command) {
            let _ = reply.send(Err(ServerError::Busy));
            return rx;
        }
        if let Err(e) = self.tx.try_send(PendingWrite {
            request,
            author,
            bytes,
            reply,
        }) {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
            let pending = match e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
            };
            let _ = pending.reply.send(Err(ServerError::Busy));
        }
        rx
    }

    /// The batching counters.
    pub fn stats(&self) -> BatchStats {
        self.stats.snapshot()
    }
}

/// The proposer task's state: what it needs to stamp and count batches.
struct Batcher {
    id: NodeId,
    raft: Raft,
    /// For leadership as stockd sees it (a leader whose disk fails proposes nothing).
    consensus: super::consensus::Consensus,
    shared: Arc<Shared>,
    clock: Arc<Clock>,
    stats: Arc<Stats>,
    /// Where writes per entry are recorded.
    metrics: Arc<Metrics>,
    /// A tick (an empty batch that only moves time) is in flight: no second one.
    tick_pending: Arc<AtomicBool>,
    /// Signalled when a tick has applied: if deadlines are still due (an expiry backlog, which
    /// a batch works off [`engine::limits::EXPIRY_STEPS_PER_BATCH`] steps at a time) the next
    /// tick goes at once, not after [`TICK_CHECK_MS`], so overdue holds leave the counts at
    /// the pace of Raft round trips (SPEC section 3: a passed deadline is not in counts).
    tick_applied: Arc<Notify>,
    /// The last batch's timestamp: batches never go back in time (SPEC section 4).
    last_ts: u64,
    /// The last stamp and the monotonic clock then (see `clock::next_stamp`).
    last_stamp: Option<(u64, u64)>,
    /// Whether the wall clock is ahead of the monotonic one (warned about once per jump).
    clock_distrusted: bool,
}

/// Takes queued writes into batches of at most [`BATCH_WRITES_MAX`] writes
/// and [`BATCH_BYTES_MAX`] bytes, at most [`BATCHES_IN_FLIGHT_MAX`] in flight; proposes a tick
/// when a deadline is due and nothing else is. Ends when every [`Proposer`] is dropped.
async fn run(mut batcher: Batcher, mut rx: mpsc::Receiver<PendingWrite>, inflight: Arc<Semaphore>) {
    loop {
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let first = tokio::select! {
            next = rx.recv() => match next {
                Some(p) => Some(p),
                None => return,
            },
            () = tokio::time::sleep(Duration::from_millis(TICK_CHECK_MS)) => None,
            () = batcher.tick_applied.notified() => None,
        };
        let batch = match first {
            Some(first) => gather(first, &mut rx),
            None if batcher.tick_due() => Vec::new(),
            None => continue,
        };
        if batcher.consensus.stepped_aside() {
            refuse_stepped_aside(batch);
            continue;
        }
        let timestamp_ms = batcher.stamp();
        let tick = batch.is_empty();
        let authors = authors_of(&batch);
        let (requests, replies): (Vec<Request>, Vec<oneshot::Sender<WriteResult>>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        batcher.count(tick, requests.len());
        hops::mark(Hop::Proposed, requests.len() as u64, 0);
        let proposed = batcher
            .raft
            .client_write_ff(Batch {
                timestamp_ms,
                requests: Arc::new(requests),
                authors: Arc::new(authors),
            })
            .await;
        let answered = answer(proposed, batcher.raft.clone(), replies);
        let (tick_pending, tick_applied) =
            (batcher.tick_pending.clone(), batcher.tick_applied.clone());
        tokio::spawn(async move {
            let applied = answered.await;
            if tick {
                tick_pending.store(false, Ordering::Release);
                // Only after an applied tick: one that failed waits for the next check.
                if applied {
                    tick_applied.notify_one();
                }
            }
            drop(permit);
        });
    }
}

/// The batch's authors: each distinct one once (a batch usually holds few), and per write
/// its index.
fn authors_of(batch: &[PendingWrite]) -> Authors {
    let mut authors = Authors::default();
    for write in batch {
        let known = authors.names.iter().position(|a| *a == *write.author);
        let index = known.unwrap_or_else(|| {
            authors.names.push((*write.author).clone());
            authors.names.len() - 1
        });
        authors
            .of_request
            .push(u16::try_from(index).unwrap_or(u16::MAX));
    }
    authors
}

/// Answers writes that reached a leader whose log cannot be written: they are not proposed
/// (an entry it appends keeps the others hearing from it), and the client retries elsewhere.
fn refuse_stepped_aside(batch: Vec<PendingWrite>) {
    for write in batch {
        let _ = write.reply.send(Err(ServerError::Unavailable {
            message: "this leader cannot write its raft log: it steps aside for a new leader"
                .to_owned(),
        }));
    }
}

/// The writes that are queued now after `first`, up to a batch's limits.
fn gather(first: PendingWrite, rx: &mut mpsc::Receiver<PendingWrite>) -> Vec<PendingWrite> {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < BATCH_WRITES_MAX && bytes < BATCH_BYTES_MAX {
        match rx.try_recv() {
            Ok(p) => {
                bytes += p.bytes;
                batch.push(p);
            }
            Err(_) => break,
        }
    }
    batch
}

impl Batcher {
    /// Whether this node leads and a deadline has passed with no tick in flight.
    fn tick_due(&self) -> bool {
        let stamp = crate::clock::next_stamp(
            self.last_stamp,
            self.clock.now_ms(),
            self.clock.monotonic_ms(),
        );
        let leads = self.consensus.leader() == Some(self.id);
        tick_due(leads, &self.shared, stamp, &self.tick_pending)
    }

    /// The next batch's timestamp: never before the previous one, and by the monotonic clock
    /// when the wall clock jumped ahead (`clock::next_stamp`).
    fn stamp(&mut self) -> u64 {
        let (wall, monotonic) = (self.clock.now_ms(), self.clock.monotonic_ms());
        let stamp = crate::clock::next_stamp(self.last_stamp, wall, monotonic);
        let distrusted = stamp < wall;
        if distrusted && !self.clock_distrusted {
            tracing::warn!(
                wall_ms = wall,
                stamp_ms = stamp,
                "the wall clock jumped ahead of the monotonic clock: stamping batches by the latter"
            );
        }
        self.clock_distrusted = distrusted;
        self.last_stamp = Some((stamp, monotonic));
        self.last_ts = self.last_ts.max(stamp);
        self.last_ts
    }

    /// Counts a proposed batch of `writes` writes, or a tick (then marked in flight).
    fn count(&self, tick: bool, writes: usize) {
        let stats = &self.stats;
        if tick {
            stats.ticks.fetch_add(1, Ordering::Relaxed);
            self.tick_pending.store(true, Ordering::Release);
            return;
        }
        stats.entries.fetch_add(1, Ordering::Relaxed);
        stats.writes.fetch_add(writes as u64, Ordering::Relaxed);
        stats.writes_max.fetch_max(writes as u64, Ordering::Relaxed);
        self.metrics.record_entry_writes(writes);
    }
}

/// What `client_write_ff` returned: a receiver of the entry's reply, or Raft's fatal error.
type Proposed = Result<
    oneshot::Receiver<
        Result<
            openraft::raft::ClientWriteResponse<super::TypeConfig>,
            openraft::error::ClientWriteError<NodeId, openraft::BasicNode>,
        >,
    >,
    openraft::error::Fatal<NodeId>,
>;

/// Waits (at most [`WRITE_TIMEOUT_MS`]) for a proposed batch to be committed and applied, and
/// answers each of its writers: its outcome and log index, or the batch's error. Returns
/// whether the batch applied.
async fn answer(
    proposed: Proposed,
    raft: Raft,
    replies: Vec<oneshot::Sender<WriteResult>>,
) -> bool {
    let result = match proposed {
        Err(fatal) => Err(ServerError::Unavailable {
            message: fatal.to_string(),
        }),
        Ok(rx) => match tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), rx).await {
            Err(_) => Err(ServerError::Timeout),
            Ok(Err(_)) => Err(ServerError::Unavailable {
                message: "raft stopped".to_owned(),
            }),
            Ok(Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(f)))) => {
                Err(not_leader(&raft, f.leader_id))
            }
            Ok(Ok(Err(e))) => Err(ServerError::Internal {
                message: e.to_string(),
            }),
            Ok(Ok(Ok(response))) => {
                hops::mark(Hop::Answered, response.log_id.index, 0);
                Ok(response.data)
            }
        },
    };
    match result {
        Ok(reply) => {
            if reply.outcomes.len() != replies.len() {
                tracing::error!(
                    "batch reply has {} outcomes for {} writes",
                    reply.outcomes.len(),
                    replies.len()
                );
            }
            for (tx, outcome) in replies.into_iter().zip(reply.outcomes) {
                let _ = tx.send(Ok((outcome, reply.log_index)));
            }
            true
        }
        Err(e) => {
            for tx in replies {
                let _ = tx.send(Err(e.clone()));
            }
            false
        }
    }
}

/// Whether this node leads and a deadline has passed with no tick in flight.
fn tick_due(leads: bool, shared: &Shared, stamp_ms: u64, tick_pending: &AtomicBool) -> bool {
    if tick_pending.load(Ordering::Acquire) || !leads {
        return false;
    }
    let next = shared
        .ledger
        .read()
        .expect("ledger lock poisoned")
        .next_deadline_ms();
    // The time the tick would carry, capped like the ledger's time: a clock beyond the year
    // 9999 (or one that jumped ahead) must not make a deadline look due forever while the ticks
    // never reach it, or ticks would be proposed without end.
    next.is_some_and(|at| at <= stamp_ms.min(engine::limits::TIMESTAMP_MS_MAX))
}

/// The queue of linearizable reads waiting for a leadership check.
#[derive(Clone)]
pub struct ReadBarrier {
    tx: mpsc::Sender<oneshot::Sender<Result<(), ServerError>>>,
}

impl ReadBarrier {
    /// Starts the barrier task.
    pub fn start(consensus: &super::consensus::Consensus) -> ReadBarrier {
        let raft = consensus.raft().clone();
        let (tx, rx) = mpsc::channel(READ_QUEUE_MAX);
        tokio::spawn(run_barrier(rx, raft));
        ReadBarrier { tx }
    }

    /// Linearizable reads waiting for a leadership round.
    pub fn queued(&self) -> usize {
        READ_QUEUE_MAX - self.tx.capacity()
    }

    /// Waits until this node has confirmed its leadership with a quorum after this call began
    /// and has applied everything committed before: a read of the local ledger afterwards is
    /// linearizable. A full queue answers `busy`.
    pub async fn wait(&self) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(tx).map_err(|_| ServerError::Busy)?;
        rx.await.unwrap_or(Err(ServerError::Unavailable {
            message: "node stopping".to_owned(),
        }))
    }
}

async fn run_barrier(mut rx: mpsc::Receiver<oneshot::Sender<Result<(), ServerError>>>, raft: Raft) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let result = match tokio::time::timeout(
            Duration::from_millis(READ_TIMEOUT_MS),
            raft.ensure_linearizable(),
        )
        .await
        {
            Err(_) => Err(ServerError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(openraft::error::RaftError::APIError(
                openraft::error::CheckIsLeaderError::ForwardToLeader(f),
            ))) => Err(not_leader(&raft, f.leader_id)),
            Ok(Err(e)) => Err(ServerError::Unavailable {
                message: e.to_string(),
            }),
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Command, RequestId};

    fn pending(i: usize) -> (PendingWrite, oneshot::Receiver<WriteResult>) {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            request_id: RequestId(i as u128),
            command: Command::Adjust {
                sku: "sku-1".into(),
                location: "store-1".into(),
                delta: 1,
                reason: "receipt".into(),
            },
        };
        let author = Arc::new(Author {
            name: "test".into(),
            role: "ops".into(),
        });
        let write = PendingWrite {
            request,
            author,
            bytes: 64,
            reply,
        };
        (write, answer)
    }

    /// One entry applies under the ledger's write lock: a long queue becomes several batches
    /// of at most `BATCH_WRITES_MAX` writes, in order, not one big one.
    #[test]
    fn a_long_queue_is_proposed_in_batches_of_at_most_batch_writes_max() {
        let queued = 2 * BATCH_WRITES_MAX + 5;
        let (tx, mut rx) = mpsc::channel(queued);
        let mut answers = Vec::new();
        for i in 0..queued {
            let (write, answer) = pending(i);
            assert!(tx.try_send(write).is_ok(), "room for every write");
            answers.push(answer);
        }
        let mut sizes = Vec::new();
        let mut ids = Vec::new();
        while let Ok(first) = rx.try_recv() {
            let batch = gather(first, &mut rx);
            sizes.push(batch.len());
            ids.extend(batch.iter().map(|p| p.request.request_id.0));
        }
        assert_eq!(sizes, [BATCH_WRITES_MAX, BATCH_WRITES_MAX, 5]);
        let want: Vec<u128> = (0..queued as u128).collect();
        assert_eq!(ids, want, "every write once, in queue order");
    }
}

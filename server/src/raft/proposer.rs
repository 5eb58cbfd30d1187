//! Write batching on the leader, deadline ticks, and coalesced linearizable reads.
//!
//! Writes from every connection go into one bounded queue ([`WRITE_QUEUE_MAX`]); a full queue
//! answers `busy` at once (SPEC section 4: overload sheds load). One proposer task takes up to
//! [`engine::limits::BATCH_REQUESTS_MAX`] writes (or [`BATCH_BYTES_MAX`]) from the queue, stamps
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

use tokio::sync::{mpsc, oneshot, Semaphore};

use engine::{Outcome, Request};
use protocol::{BatchStats, NodeAddr, ServerError};

use crate::clock::Clock;
use crate::raft::state_machine::Shared;
use crate::raft::{Batch, NodeId, Raft};

/// Writes waiting for a batch, across all connections.
pub const WRITE_QUEUE_MAX: usize = 65_536;
/// Soft limit of the encoded size of one batch, bytes (a single request can exceed it).
pub const BATCH_BYTES_MAX: usize = 1 << 20;
/// Raft entries proposed and not yet applied.
pub const BATCHES_IN_FLIGHT_MAX: usize = 32;
/// How long a write waits for its entry to apply before answering `timeout`, ms.
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// How long a linearizable read waits for its leadership check, ms.
pub const READ_TIMEOUT_MS: u64 = 5_000;
/// Linearizable reads waiting for a barrier round.
pub const READ_QUEUE_MAX: usize = 65_536;
/// How often the leader looks for a passed deadline, ms.
pub const TICK_CHECK_MS: u64 = 5;

const _: () = assert!(BATCH_BYTES_MAX * 8 < protocol::PEER_FRAME_BYTES_MAX);

/// The answer to a write: the ledger's outcome and the log index that applied it.
pub type WriteResult = Result<(Outcome, u64), ServerError>;

/// A write waiting to be batched.
struct PendingWrite {
    request: Request,
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
}

impl Proposer {
    /// Starts the proposer task of node `id`; it stops when every handle is dropped.
    pub fn start(
        id: NodeId,
        consensus: &super::consensus::Consensus,
        shared: Arc<Shared>,
        clock: Arc<Clock>,
    ) -> Proposer {
        let raft = consensus.raft().clone();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_MAX);
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(id, rx, raft, shared, clock, stats.clone()));
        Proposer { tx, stats }
    }

    /// Queues a write (`bytes`: its approximate encoded size). A full queue answers `busy`.
    pub fn submit(&self, request: Request, bytes: usize) -> oneshot::Receiver<WriteResult> {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.tx.try_send(PendingWrite {
            request,
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

async fn run(
    id: NodeId,
    mut rx: mpsc::Receiver<PendingWrite>,
    raft: Raft,
    shared: Arc<Shared>,
    clock: Arc<Clock>,
    stats: Arc<Stats>,
) {
    let inflight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let tick_pending = Arc::new(AtomicBool::new(false));
    let mut last_ts = 0u64;
    let mut last_stamp: Option<(u64, u64)> = None;
    let mut clock_distrusted = false;
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
        };
        let mut batch = Vec::new();
        let mut bytes = 0;
        if let Some(first) = first {
            bytes += first.bytes;
            batch.push(first);
            while batch.len() < engine::limits::BATCH_REQUESTS_MAX && bytes < BATCH_BYTES_MAX {
                match rx.try_recv() {
                    Ok(p) => {
                        bytes += p.bytes;
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
        } else if !tick_due(
            id,
            &raft,
            &shared,
            crate::clock::next_stamp(last_stamp, clock.now_ms(), clock.monotonic_ms()),
            &tick_pending,
        ) {
            continue;
        }
        let (wall, monotonic) = (clock.now_ms(), clock.monotonic_ms());
        let stamp = crate::clock::next_stamp(last_stamp, wall, monotonic);
        let distrusted = stamp < wall;
        if distrusted && !clock_distrusted {
            tracing::warn!(
                wall_ms = wall,
                stamp_ms = stamp,
                "the wall clock jumped ahead of the monotonic clock: stamping batches by the latter"
            );
        }
        clock_distrusted = distrusted;
        last_stamp = Some((stamp, monotonic));
        last_ts = last_ts.max(stamp);
        let tick = batch.is_empty();
        let (requests, replies): (Vec<Request>, Vec<oneshot::Sender<WriteResult>>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        if tick {
            stats.ticks.fetch_add(1, Ordering::Relaxed);
            tick_pending.store(true, Ordering::Release);
        } else {
            stats.entries.fetch_add(1, Ordering::Relaxed);
            stats
                .writes
                .fetch_add(requests.len() as u64, Ordering::Relaxed);
            stats
                .writes_max
                .fetch_max(requests.len() as u64, Ordering::Relaxed);
        }
        let proposed = raft
            .client_write_ff(Batch {
                timestamp_ms: last_ts,
                requests: Arc::new(requests),
            })
            .await;
        let raft = raft.clone();
        let tick_pending = tick_pending.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match proposed {
                Err(fatal) => Err(ServerError::Unavailable {
                    message: fatal.to_string(),
                }),
                Ok(rx) => {
                    match tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), rx).await {
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
                        Ok(Ok(Ok(response))) => Ok(response.data),
                    }
                }
            };
            if tick {
                tick_pending.store(false, Ordering::Release);
            }
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
                }
                Err(e) => {
                    for tx in replies {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// Whether this node leads and a deadline has passed with no tick in flight.
fn tick_due(
    id: NodeId,
    raft: &Raft,
    shared: &Shared,
    stamp_ms: u64,
    tick_pending: &AtomicBool,
) -> bool {
    if tick_pending.load(Ordering::Acquire) || raft.metrics().borrow().current_leader != Some(id) {
        return false;
    }
    let next = shared
        .ledger
        .read()
        .expect("ledger lock poisoned")
        .next_deadline_ms();
    // The time the tick would carry, capped like the ledger's time: a clock beyond the year
    // 9999 (or one that jumped ahead) must not make a deadline look due forever while the ticks
    // never reach it (a tick storm, found by the break-it pass).
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

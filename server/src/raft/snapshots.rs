//! When a node snapshots: entries applied and bytes of unpurged log since the last snapshot,
//! staggered across nodes and doubled on the leader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::consensus::Consensus;
use super::log_store::LogStore;
use super::state_machine::Shared;
use super::NodeId;

/// Raft entries between snapshots (node 1; nodes 2 and 3 wait 25% and 50% longer, so that the
/// replicas do not all stall at once); the log is purged behind each snapshot.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 100_000;
/// Encoded bytes of unpurged log that also trigger a snapshot (the log is kept in memory until
/// purged), staggered like the entry count.
pub const SNAPSHOT_LOG_BYTES_MAX: u64 = 256 << 20;
/// How often a node checks whether it should snapshot, ms.
pub const SNAPSHOT_CHECK_MS: u64 = 250;
/// Entries kept in the log behind a snapshot, so slightly lagging followers catch up from the
/// log rather than a snapshot.
pub const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 2_000;
/// How long a requested snapshot may take to land before it is asked for again, ms.
pub const SNAPSHOT_REQUEST_WAIT_MS: u64 = 60_000;

/// What the snapshot policy watches.
pub struct SnapshotPolicy {
    /// This node's id (its stagger).
    pub id: NodeId,
    /// Entries between snapshots (before stagger).
    pub every: u64,
    /// Raft, to trigger snapshots and to know whether this node leads.
    pub consensus: Consensus,
    /// Applied and snapshot indexes.
    pub shared: Arc<Shared>,
    /// Bytes of unpurged log.
    pub log: LogStore,
}

impl SnapshotPolicy {
    /// Triggers a snapshot when the entries applied since the last one, or the bytes of
    /// unpurged log, pass this node's thresholds, until `shutdown` or Raft stops. Thresholds
    /// grow with the node id (x1, x1.25, x1.5, ...) so the replicas of a cluster snapshot at
    /// different times: building one stops that node's apply for a moment, and a majority
    /// keeps going meanwhile; the leader's are doubled, since its pause would hold every
    /// client's answer and a follower's only that follower.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let stagger = 4 + (self.id.saturating_sub(1) % 3);
        let entries_max = self.every.saturating_mul(stagger) / 4;
        let bytes_max = SNAPSHOT_LOG_BYTES_MAX.saturating_mul(stagger) / 4;
        let mut requested: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(SNAPSHOT_CHECK_MS)) => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.shared.snapshot_index();
            let factor = if self.consensus.is_leader() { 2 } else { 1 };
            let due = self.shared.applied_index().saturating_sub(snapshot) >= entries_max * factor
                || self.log.memory_bytes() >= bytes_max * factor;
            // One request at a time: wait for the snapshot to land before asking again.
            let wait = Duration::from_millis(SNAPSHOT_REQUEST_WAIT_MS);
            let waiting =
                requested.is_some_and(|(at, when)| at == snapshot && when.elapsed() < wait);
            if due && !waiting {
                requested = Some((snapshot, Instant::now()));
                if !self.consensus.trigger_snapshot().await {
                    return;
                }
            }
        }
    }
}

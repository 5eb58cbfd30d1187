//! When a node snapshots: entries applied, bytes of unpurged log, or time since the last
//! snapshot, staggered across nodes and doubled on the leader (ARCHITECTURE.md says why).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::consensus::Consensus;
use super::log_store::LogStore;
use super::state_machine::Shared;
use super::NodeId;

/// Raft entries between snapshots (node 1 as a follower; see [`due`] for the others); the log
/// is purged behind each snapshot.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 100_000;
/// Encoded bytes of unpurged log that also trigger a snapshot (the log is kept in memory until
/// purged).
pub const SNAPSHOT_LOG_BYTES_DEFAULT: u64 = 256 << 20;
/// Time since the last snapshot that also triggers one, if anything was applied since, ms: at
/// a low write rate the entry count would take hours, and a restart replays everything since
/// the last snapshot.
pub const SNAPSHOT_INTERVAL_MS_DEFAULT: u64 = 600_000;
/// How often a node checks whether it should snapshot, ms.
pub const SNAPSHOT_CHECK_MS: u64 = 250;
/// Entries kept in the log behind a snapshot, so slightly lagging followers catch up from the
/// log rather than a snapshot.
pub const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 2_000;
/// How long a requested snapshot may take to land before it is asked for again, ms.
pub const SNAPSHOT_REQUEST_WAIT_MS: u64 = 60_000;

/// A node's snapshot thresholds, as configured (before stagger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotThresholds {
    /// Raft entries applied since the last snapshot.
    pub entries: u64,
    /// Bytes of unpurged log.
    pub log_bytes: u64,
    /// Time since the last snapshot, ms.
    pub interval_ms: u64,
}

/// What a node accumulated since its last snapshot (or since it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinceSnapshot {
    /// Raft entries applied.
    pub entries: u64,
    /// Bytes of unpurged log.
    pub log_bytes: u64,
    /// Time, ms.
    pub elapsed_ms: u64,
}

/// Whether node `id` should snapshot now. Each threshold is scaled by the node's stagger
/// (x1, x1.25, x1.5 for ids 1, 2, 3, then again) so that replicas fed the same log do not
/// build at the same moment, and doubled on the leader so that the followers build first.
/// Nothing applied since the last snapshot: nothing to do, whatever the log holds.
pub fn due(t: &SnapshotThresholds, id: NodeId, leader: bool, since: &SinceSnapshot) -> bool {
    let quarters = (4 + id.saturating_sub(1) % 3) * if leader { 2 } else { 1 };
    let scaled = |threshold: u64| {
        u64::try_from(u128::from(threshold) * u128::from(quarters) / 4).unwrap_or(u64::MAX)
    };
    since.entries > 0
        && (since.entries >= scaled(t.entries)
            || since.log_bytes >= scaled(t.log_bytes)
            || since.elapsed_ms >= scaled(t.interval_ms))
}

/// What the snapshot policy watches.
pub struct SnapshotPolicy {
    /// This node's id (its stagger).
    pub id: NodeId,
    /// The thresholds (before stagger).
    pub thresholds: SnapshotThresholds,
    /// Raft, to trigger snapshots and to know whether this node leads.
    pub consensus: Consensus,
    /// Applied and snapshot indexes.
    pub shared: Arc<Shared>,
    /// Bytes of unpurged log.
    pub log: LogStore,
}

impl SnapshotPolicy {
    /// Triggers a snapshot whenever [`due`] says so, until `shutdown` or Raft stops; one
    /// request at a time (a build in progress is waited for, up to
    /// [`SNAPSHOT_REQUEST_WAIT_MS`]).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut requested: Option<(u64, Instant)> = None;
        let mut last = (self.shared.snapshot_index(), Instant::now());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(SNAPSHOT_CHECK_MS)) => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.shared.snapshot_index();
            if snapshot != last.0 {
                last = (snapshot, Instant::now());
            }
            let since = SinceSnapshot {
                entries: self.shared.applied_index().saturating_sub(snapshot),
                log_bytes: self.log.log_bytes(),
                elapsed_ms: u64::try_from(last.1.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            let leader = self.consensus.is_leader();
            let wait = Duration::from_millis(SNAPSHOT_REQUEST_WAIT_MS);
            let waiting =
                requested.is_some_and(|(at, when)| at == snapshot && when.elapsed() < wait);
            if due(&self.thresholds, self.id, leader, &since) && !waiting {
                requested = Some((snapshot, Instant::now()));
                if !self.consensus.trigger_snapshot().await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SnapshotThresholds = SnapshotThresholds {
        entries: 1_000,
        log_bytes: 4_000,
        interval_ms: 10_000,
    };

    fn since(entries: u64, log_bytes: u64, elapsed_ms: u64) -> SinceSnapshot {
        SinceSnapshot {
            entries,
            log_bytes,
            elapsed_ms,
        }
    }

    #[test]
    fn each_threshold_triggers_scaled_by_node_and_doubled_on_the_leader() {
        // Entries: node 1 at 1,000, node 2 at 1,250, node 3 at 1,500, node 4 like node 1.
        assert!(!due(&T, 1, false, &since(999, 0, 0)));
        assert!(due(&T, 1, false, &since(1_000, 0, 0)));
        assert!(!due(&T, 2, false, &since(1_249, 0, 0)));
        assert!(due(&T, 2, false, &since(1_250, 0, 0)));
        assert!(!due(&T, 3, false, &since(1_499, 0, 0)));
        assert!(due(&T, 3, false, &since(1_500, 0, 0)));
        assert!(due(&T, 4, false, &since(1_000, 0, 0)));
        // The leader waits twice as long.
        assert!(!due(&T, 1, true, &since(1_999, 0, 0)));
        assert!(due(&T, 1, true, &since(2_000, 0, 0)));
        assert!(!due(&T, 3, true, &since(2_999, 0, 0)));
        assert!(due(&T, 3, true, &since(3_000, 0, 0)));
        // Log bytes and time, scaled the same way.
        assert!(!due(&T, 2, false, &since(1, 4_999, 12_499)));
        assert!(due(&T, 2, false, &since(1, 5_000, 0)));
        assert!(due(&T, 2, false, &since(1, 0, 12_500)));
        assert!(!due(&T, 2, true, &since(1, 9_999, 24_999)));
        assert!(due(&T, 2, true, &since(1, 0, 25_000)));
    }

    #[test]
    fn nothing_applied_since_the_last_snapshot_is_never_due() {
        assert!(!due(&T, 1, false, &since(0, u64::MAX, u64::MAX)));
        let huge = SnapshotThresholds {
            entries: u64::MAX,
            log_bytes: u64::MAX,
            interval_ms: u64::MAX,
        };
        assert!(
            !due(&huge, 3, true, &since(u64::MAX - 1, 0, 0)),
            "no overflow"
        );
    }
}

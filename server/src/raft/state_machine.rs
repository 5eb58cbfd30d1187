//! The Raft state machine: decodes entries and hands batches to the engine; builds, stores and
//! installs snapshots of the ledger.
//!
//! The ledger sits behind a [`LedgerLock`] shared with the read path: apply takes the write
//! lock once per entry (one batch), reads take the read lock for the duration of one query. Neither is held across an `.await`.
//!
//! A snapshot holds the lock only to freeze the ledger (`Ledger::freeze`: pointer copies, tens
//! of µs at 10 M balances). openraft asks for a builder on its state machine task, between two
//! applies, so the frozen view and the applied log id agree; it then runs the build in a task
//! of its own, which encodes, checksums and writes the file ([`super::snapshot_file`]) on a
//! thread of its own, at a low CPU priority, while apply and reads go on. openraft starts one build at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use tokio::sync::watch;

use engine::{BatchHeader, Frozen, Ledger};
use protocol::{SnapshotBuilding, SnapshotBuilt, SnapshotStats};

use crate::auth::CredentialCopy;
use crate::hops::{self, Hop};
use crate::metrics::Metrics;

use super::ledger_lock::LedgerLock;
use super::network::Faults;
use super::snapshot_data::SnapshotBytes;
use super::snapshot_file::{self, Stopped};
use super::{
    io_error, BatchReply, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// What the state machine knows besides the ledger.
#[derive(Debug, Clone, Default)]
struct Meta {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The latest snapshot, kept in memory to serve followers.
#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

/// Snapshot builds since the node started (`status`: [`SnapshotStats`]).
#[derive(Debug, Default)]
struct Builds {
    /// The build in progress: the index it freezes and when it froze.
    building: Option<(u64, Instant)>,
    last: Option<SnapshotBuilt>,
    built_total: u64,
    write_error: Option<String>,
    write_failures_total: u64,
}

/// Which path stores a snapshot: it decides where a write failure is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Built here, off the apply path: the node keeps serving while the write is retried.
    Build,
    /// Received from the leader: apply waits for it, so the node is not ready meanwhile.
    Install,
}

/// State shared between the Raft state machine and the node's read path.
#[derive(Debug)]
pub struct Shared {
    /// The ledger. Write-locked by apply and snapshot install; read-locked by queries and
    /// by a snapshot's freeze.
    pub ledger: LedgerLock,
    /// The ledger's credential tables, read without a lock by every access check; swapped
    /// (under the ledger's write lock) when an entry or a snapshot changes them.
    pub credentials: CredentialCopy,
    meta: Mutex<Meta>,
    /// The newest snapshot. Taken with `store` held: a build that finishes after an install
    /// of a newer snapshot must not replace it.
    current: Mutex<Option<StoredSnapshot>>,
    /// Orders the writes of snapshot files (a build's and an install's may overlap).
    store: Mutex<()>,
    dir: PathBuf,
    /// Last applied log index (including blank and membership entries), for `AtLeast` reads,
    /// subscriptions and readiness.
    applied: watch::Sender<u64>,
    /// False while the state is being rebuilt (startup replay, snapshot install).
    ready: AtomicBool,
    /// The error writing an installed snapshot's file, while it is retried (apply waits).
    snapshot_error: Mutex<Option<String>>,
    builds: Mutex<Builds>,
    /// Set when the node stops: a held or failing snapshot build gives up.
    stopping: AtomicBool,
    /// The test hook that holds builds before encoding.
    faults: Arc<Faults>,
    /// Where apply and snapshot times are recorded.
    metrics: Arc<Metrics>,
}

impl Shared {
    /// Whether the node has its whole state and may answer reads.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the node ready (after startup replay) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The error that keeps a received snapshot from being written right now, if any (the
    /// node is not ready meanwhile: apply waits for the snapshot).
    pub fn snapshot_error(&self) -> Option<String> {
        lock(&self.snapshot_error).clone()
    }

    /// A receiver of the applied log index.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The applied log index now.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The node's metrics (the state machine records apply and snapshot times, the proposer
    /// the writes per entry).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The index of the newest snapshot, 0 if none.
    pub fn snapshot_index(&self) -> u64 {
        lock(&self.current)
            .as_ref()
            .and_then(|s| s.meta.last_log_id)
            .map_or(0, |l| l.index)
    }

    /// Snapshot builds: in progress, the last one, write failures.
    pub fn snapshot_stats(&self) -> SnapshotStats {
        let builds = lock(&self.builds);
        SnapshotStats {
            building: builds.building.map(|(index, since)| SnapshotBuilding {
                index,
                elapsed_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
            }),
            last: builds.last,
            built_total: builds.built_total,
            write_error: builds.write_error.clone(),
            write_failures_total: builds.write_failures_total,
        }
    }

    /// The node stops: a snapshot build that is held or failing to write gives up.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Writes a snapshot's file (retrying failures) and makes it the current one, unless a
    /// newer one is already current (then `Ok(false)`: its file would only be deleted).
    fn store_snapshot(
        &self,
        meta: &SnapshotMeta,
        data: Arc<Vec<u8>>,
        origin: Origin,
    ) -> Result<bool, Stopped> {
        let _order = lock(&self.store);
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let newest = lock(&self.current)
            .as_ref()
            .map(|s| s.meta.last_log_id.map_or(0, |l| l.index));
        if origin == Origin::Build && newest.is_some_and(|newest| newest >= index) {
            return Ok(false);
        }
        let failed = |error: String| match origin {
            Origin::Build => {
                let mut builds = lock(&self.builds);
                builds.write_error = Some(error);
                builds.write_failures_total += 1;
            }
            Origin::Install => *lock(&self.snapshot_error) = Some(error),
        };
        let stopping = || origin == Origin::Build && self.is_stopping();
        snapshot_file::persist_with_retry(&self.dir, meta, &data, failed, stopping)?;
        let recovered = match origin {
            Origin::Build => lock(&self.builds).write_error.take().is_some(),
            Origin::Install => lock(&self.snapshot_error).take().is_some(),
        };
        if recovered {
            tracing::warn!(dir = %self.dir.display(), index, "snapshot written after failures");
        }
        let replaced = lock(&self.current).replace(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        // The previous snapshot's bytes (150 MB at 1 M balances) are freed after the lock is
        // released: openraft reads `current` on its state machine task.
        drop(replaced);
        Ok(true)
    }
}

/// Locks a mutex, treating poisoning as fatal (a panic while holding ledger state means a bug:
/// the node must stop, not continue with possibly half-applied state).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("state machine lock poisoned: a previous apply panicked")
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The state machine handed to openraft (cheap to clone: all clones share one [`Shared`]).
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

impl StateMachine {
    /// Opens the state machine of a node: the newest valid snapshot in `dir`, if any, restored
    /// into a ledger. Invalid or unreadable snapshot files are skipped with a warning.
    /// `faults` holds snapshot builds for tests ([`Faults::hold_snapshots`]); apply and
    /// snapshot times go to `metrics`.
    pub fn open(
        dir: &Path,
        faults: Arc<Faults>,
        metrics: Arc<Metrics>,
    ) -> Result<StateMachine, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let mut files = snapshot_file::snapshot_files(dir)?;
        files.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
        let mut loaded = None;
        for (_, path) in files {
            match snapshot_file::read_snapshot_file(&path) {
                Ok(found) => {
                    loaded = Some(found);
                    break;
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping unusable snapshot")
                }
            }
        }
        let (ledger, meta, current) = match loaded {
            Some(found) => (
                found.ledger,
                Meta {
                    last_applied: found.meta.last_log_id,
                    membership: found.meta.last_membership.clone(),
                },
                Some(StoredSnapshot {
                    meta: found.meta,
                    data: Arc::new(found.data),
                }),
            ),
            None => (Ledger::default(), Meta::default(), None),
        };
        let applied = meta.last_applied.map_or(0, |l| l.index);
        let shared = Arc::new(Shared {
            credentials: CredentialCopy::new(&ledger),
            ledger: LedgerLock::new(ledger),
            meta: Mutex::new(meta),
            current: Mutex::new(current),
            store: Mutex::new(()),
            dir: dir.to_path_buf(),
            applied: watch::channel(applied).0,
            ready: AtomicBool::new(false),
            snapshot_error: Mutex::new(None),
            builds: Mutex::new(Builds::default()),
            stopping: AtomicBool::new(false),
            faults,
            metrics,
        });
        Ok(StateMachine { shared })
    }

    /// The state shared with the read path.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// The snapshot metadata of a state machine at `meta`.
fn snapshot_meta(meta: &Meta) -> SnapshotMeta {
    let last = meta.last_applied;
    SnapshotMeta {
        last_log_id: last,
        last_membership: meta.membership.clone(),
        snapshot_id: format!(
            "{}-{}",
            last.map_or(0, |l| l.leader_id.term),
            last.map_or(0, |l| l.index)
        ),
    }
}

/// A snapshot being built: the ledger frozen between two applies, and its metadata.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    /// Taken by the build (a builder builds once).
    frozen: Option<Frozen>,
    meta: SnapshotMeta,
    /// When the freeze started, and how long it held the ledger.
    started: Instant,
    freeze_us: u64,
}

/// The nice value of a snapshot encoder's thread (0 is normal, 19 the lowest priority). The
/// encoder is background work that takes a core for seconds at 10 M balances; where cores are
/// shared (several nodes on one host, a busy host), it should yield to apply, replication and
/// client traffic rather than compete with them as an equal; at 10 it still gets about a tenth
/// of a contended core, so a build on a saturated node still ends.
pub const SNAPSHOT_ENCODER_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`SNAPSHOT_ENCODER_NICE`] (Linux: the nice
/// value is per thread). A failure only costs priority: it is logged, not returned.
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), SNAPSHOT_ENCODER_NICE)
    {
        tracing::warn!(error = %e, "the snapshot encoder runs at normal priority");
    }
}

/// Runs [`encode_and_store`] on a thread of its own at a low priority (not a pooled blocking
/// thread: a thread's priority cannot be raised again, and the pool's threads also restore
/// received snapshots, which apply waits for).
fn spawn_encoder(
    shared: Arc<Shared>,
    frozen: Frozen,
    meta: SnapshotMeta,
) -> std::io::Result<tokio::sync::oneshot::Receiver<Result<Arc<Vec<u8>>, Stopped>>> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("snapshot-encoder".to_owned())
        .spawn(move || {
            lower_own_priority();
            let _ = done.send(encode_and_store(&shared, frozen, &meta));
        })?;
    Ok(result)
}

/// Encodes a frozen view, then writes it (the ledger is not locked meanwhile).
fn encode_and_store(
    shared: &Shared,
    frozen: Frozen,
    meta: &SnapshotMeta,
) -> Result<Arc<Vec<u8>>, Stopped> {
    shared
        .faults
        .wait_while_snapshots_held(|| shared.is_stopping());
    if shared.is_stopping() {
        return Err(Stopped);
    }
    let data = frozen.encode();
    // While the view lives, the first write to each page it shares copies that page (the
    // after-freeze cost on apply): let it go as soon as it is encoded.
    drop(frozen);
    let data = Arc::new(data);
    shared.store_snapshot(meta, data.clone(), Origin::Build)?;
    Ok(data)
}

impl SnapshotBuilder {
    /// Records the end of this build in the node's statistics.
    fn finish(&self, built: Option<u64>) {
        let mut builds = lock(&self.shared.builds);
        builds.building = None;
        if let Some(bytes) = built {
            self.shared
                .metrics
                .record_snapshot_build(self.started.elapsed());
            builds.built_total += 1;
            builds.last = Some(SnapshotBuilt {
                index: self.meta.last_log_id.map_or(0, |l| l.index),
                freeze_us: self.freeze_us,
                build_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                bytes,
            });
        }
    }
}

impl Drop for SnapshotBuilder {
    fn drop(&mut self) {
        if self.frozen.is_some() {
            // Never built (openraft dropped it): no build is in progress any more.
            self.finish(None);
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(self.meta.signature()));
        let frozen = self
            .frozen
            .take()
            .ok_or_else(|| io_error(subject(), ErrorVerb::Read, "snapshot builder used twice"))?;
        let built = match spawn_encoder(self.shared.clone(), frozen, self.meta.clone()) {
            Ok(encoder) => encoder.await.unwrap_or(Err(Stopped)),
            Err(e) => {
                self.finish(None);
                return Err(io_error(subject(), ErrorVerb::Write, e));
            }
        };
        let Ok(data) = built else {
            // The node stops (or the encoder panicked, which the log shows).
            self.finish(None);
            return Err(io_error(subject(), ErrorVerb::Write, "node stopping"));
        };
        self.finish(Some(data.len() as u64));
        tracing::info!(
            index = self.meta.last_log_id.map_or(0, |l| l.index),
            bytes = data.len(),
            freeze_us = self.freeze_us,
            build_ms = self.started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(SnapshotBytes::shared(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let meta = lock(&self.shared.meta);
        Ok((meta.last_applied, meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchReply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut replies = Vec::new();
        let mut last = None;
        for entry in entries {
            // The lock is taken per entry, not for the whole run openraft hands over (which
            // is thousands of entries when a node catches up): a read waits for one batch at
            // most, and a pause is one batch's apply.
            let mut ledger = self.shared.ledger.write();
            let mut meta = lock(&self.shared.meta);
            let started = Instant::now();
            let log_index = entry.log_id.index;
            hops::mark(Hop::Applying, log_index, 0);
            let outcomes = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => ledger.apply_by(
                    BatchHeader {
                        log_index,
                        timestamp_ms: batch.timestamp_ms,
                    },
                    &batch.requests,
                    &batch.authors,
                ),
                EntryPayload::Membership(membership) => {
                    meta.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            // Before the write lock is released: no reader sees a revocation in the ledger
            // that the access check does not.
            self.shared.credentials.follow(&ledger);
            meta.last_applied = Some(entry.log_id);
            last = Some(log_index);
            self.shared.metrics.record_apply(started.elapsed());
            replies.push(BatchReply {
                log_index,
                outcomes,
            });
        }
        if let Some(index) = last {
            self.shared.applied.send_replace(index);
        }
        Ok(replies)
    }

    /// Freezes the ledger now, on openraft's state machine task (so no apply runs meanwhile
    /// and the view matches `last_applied`); the build runs later, elsewhere.
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let started = Instant::now();
        let (frozen, meta) = {
            let ledger = self.shared.ledger.read().expect("ledger lock poisoned");
            (ledger.freeze(), lock(&self.shared.meta).clone())
        };
        let freeze_us = micros(started.elapsed());
        // The freeze is the only pause a snapshot causes.
        self.shared.metrics.record_pause(started.elapsed());
        let index = meta.last_applied.map_or(0, |l| l.index);
        debug_assert!(
            frozen.applied_index() <= index,
            "the view is of the applied state"
        );
        lock(&self.shared.builds).building = Some((index, started));
        SnapshotBuilder {
            shared: self.shared.clone(),
            frozen: Some(frozen),
            meta: snapshot_meta(&meta),
            started,
            freeze_us,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBytes>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotBytes>,
    ) -> Result<(), StorageError> {
        let started = Instant::now();
        let data = snapshot.into_inner();
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let was_ready = self.shared.is_ready();
        self.shared.set_ready(false);
        let (restored, data) = tokio::task::spawn_blocking(move || (Ledger::restore(&data), data))
            .await
            .map_err(|e| io_error(subject(), ErrorVerb::Read, e))?;
        let ledger = restored.map_err(|e| io_error(subject(), ErrorVerb::Read, e))?;
        let replaced = {
            let mut current = self.shared.ledger.write();
            let mut m = lock(&self.shared.meta);
            m.last_applied = meta.last_log_id;
            m.membership = meta.last_membership.clone();
            let replaced = std::mem::replace(&mut *current, ledger);
            self.shared.credentials.follow(&current);
            replaced
        };
        let shared = self.shared.clone();
        let meta_copy = meta.clone();
        tokio::task::spawn_blocking(move || {
            // The old ledger is dropped here, not under the lock (at 10 M balances that takes
            // a while).
            drop(replaced);
            shared.store_snapshot(&meta_copy, data, Origin::Install)
        })
        .await
        .map_err(|e| io_error(subject(), ErrorVerb::Write, e))?
        .map_err(|Stopped| io_error(subject(), ErrorVerb::Write, "node stopping"))?;
        self.shared
            .applied
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        self.shared.set_ready(was_ready);
        self.shared
            .metrics
            .record_snapshot_install(started.elapsed());
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(lock(&self.shared.current).as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(SnapshotBytes::shared(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_encoder_lowers_only_its_own_thread() {
        let encoder = std::thread::spawn(|| {
            lower_own_priority();
            rustix::process::getpriority_process(Some(rustix::thread::gettid()))
        });
        let others = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        assert_eq!(
            encoder.join().expect("thread").ok(),
            Some(SNAPSHOT_ENCODER_NICE)
        );
        assert_eq!(
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok(),
            others.ok()
        );
    }

    fn entry(index: u64, requests: Vec<engine::Request>) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(super::super::Batch {
                timestamp_ms: 1_000,
                requests: Arc::new(requests),
                authors: Arc::default(),
            }),
        }
    }

    fn revoked(sm: &StateMachine, credential: &str) -> bool {
        sm.shared().credentials.load().is_revoked(credential)
    }

    #[tokio::test]
    async fn the_credential_copy_follows_apply_snapshot_install_and_restart() {
        let dir = std::env::temp_dir().join(format!("stockd-sm-deny-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let open = |name: &str| {
            StateMachine::open(&dir.join(name), Arc::default(), Arc::default()).expect("open")
        };
        let mut sm = open("a");
        sm.apply(vec![entry(1, Vec::new())]).await.expect("apply");
        assert_eq!(
            sm.shared().credentials.revision(),
            0,
            "no credential changed"
        );
        let revoke = engine::Request {
            request_id: engine::RequestId(1),
            command: engine::Command::RevokeCredential {
                credential: "0a".to_owned(),
                until_ms: u64::MAX,
            },
        };
        sm.apply(vec![entry(2, vec![revoke])]).await.expect("apply");
        assert!(revoked(&sm, "0a"), "apply");
        assert_eq!(sm.shared().credentials.revision(), 1);

        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("built");
        let mut follower = open("b");
        assert!(!revoked(&follower, "0a"));
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("installed");
        assert!(revoked(&follower, "0a"), "snapshot install");

        drop(sm);
        assert!(revoked(&open("a"), "0a"), "restart from the snapshot file");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_newest_valid_snapshot_file_is_loaded_at_open() {
        let dir = std::env::temp_dir().join(format!("stockd-sm-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let data = Ledger::default().snapshot();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-42".to_owned(),
        };
        snapshot_file::persist_snapshot(&dir, &meta, &data).expect("persist");
        let sm = StateMachine::open(&dir, Arc::default(), Arc::default()).expect("open");
        assert_eq!(sm.shared().applied_index(), 42);
        assert_eq!(sm.shared().snapshot_index(), 42);
        let path = dir.join("snapshot-42.bin");
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let sm = StateMachine::open(&dir, Arc::default(), Arc::default())
            .expect("open skips the bad file");
        assert_eq!(sm.shared().applied_index(), 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}

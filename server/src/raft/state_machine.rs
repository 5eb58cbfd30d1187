//! The Raft state machine: decodes entries and hands batches to the engine; builds, stores and
//! installs snapshots of the ledger.
//!
//! The ledger sits behind a `std::sync::RwLock` shared with the read path: apply takes the write
//! lock once per call (for all entries openraft hands over), reads take the read lock for the
//! duration of one query. Neither is held across an `.await`.
//!
//! Snapshots are files `snapshot-<index>.bin` in the node's snapshot directory:
//! `b"STKDSNAP"`, a u32 LE length and the postcard-encoded [`SnapshotMeta`], the engine's snapshot
//! bytes, then a 32-byte BLAKE3 of everything before. The newest valid file is loaded at startup;
//! older ones are deleted once a newer one is durable.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use tokio::sync::watch;

use engine::{BatchHeader, Ledger};

use crate::metrics::Metrics;

use super::{
    io_error, BatchReply, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// First bytes of a snapshot file.
const SNAPSHOT_FILE_MAGIC: &[u8; 8] = b"STKDSNAP";

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

/// State shared between the Raft state machine and the node's read path.
#[derive(Debug)]
pub struct Shared {
    /// The ledger. Write-locked by apply and snapshot install; read-locked by queries.
    pub ledger: RwLock<Ledger>,
    meta: Mutex<Meta>,
    current: Mutex<Option<StoredSnapshot>>,
    dir: PathBuf,
    /// Last applied log index (including blank and membership entries), for `AtLeast` reads,
    /// subscriptions and readiness.
    applied: watch::Sender<u64>,
    /// False while the state is being rebuilt (startup replay, snapshot install).
    ready: AtomicBool,
    /// The error writing a snapshot file, while the writer retries it.
    snapshot_error: Mutex<Option<String>>,
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

    /// The error that keeps a snapshot from being written right now, if any (the node is not
    /// ready meanwhile: apply waits for the snapshot).
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
}

/// Locks a mutex, treating poisoning as fatal (a panic while holding ledger state means a bug:
/// the node must stop, not continue with possibly half-applied state).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("state machine lock poisoned: a previous apply panicked")
}

/// The state machine handed to openraft (cheap to clone: all clones share one [`Shared`]).
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

impl StateMachine {
    /// Opens the state machine of a node: the newest valid snapshot in `dir`, if any, restored
    /// into a ledger. Invalid or unreadable snapshot files are skipped with a warning. Apply
    /// and snapshot times go to `metrics`.
    pub fn open(dir: &Path, metrics: Arc<Metrics>) -> Result<StateMachine, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let mut files = snapshot_files(dir)?;
        files.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
        let mut loaded = None;
        for (_, path) in files {
            match read_snapshot_file(&path) {
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
            Some((meta, data, ledger)) => (
                ledger,
                Meta {
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                },
                Some(StoredSnapshot {
                    meta,
                    data: Arc::new(data),
                }),
            ),
            None => (Ledger::default(), Meta::default(), None),
        };
        let applied = meta.last_applied.map_or(0, |l| l.index);
        let shared = Arc::new(Shared {
            ledger: RwLock::new(ledger),
            meta: Mutex::new(meta),
            current: Mutex::new(current),
            dir: dir.to_path_buf(),
            applied: watch::channel(applied).0,
            ready: AtomicBool::new(false),
            snapshot_error: Mutex::new(None),
            metrics,
        });
        Ok(StateMachine { shared })
    }

    /// The state shared with the read path.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

fn snapshot_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, std::io::Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(index) = name
            .strip_prefix("snapshot-")
            .and_then(|n| n.strip_suffix(".bin"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((index, path));
        }
    }
    Ok(out)
}

/// Encodes a snapshot file.
fn encode_snapshot_file(meta: &SnapshotMeta, data: &[u8]) -> Result<Vec<u8>, String> {
    let meta_bytes = postcard::to_allocvec(meta).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(8 + 4 + meta_bytes.len() + data.len() + 32);
    out.extend_from_slice(SNAPSHOT_FILE_MAGIC);
    out.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta_bytes);
    out.extend_from_slice(data);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

/// Reads and checks a snapshot file: its meta, the engine bytes and the restored ledger.
fn read_snapshot_file(path: &Path) -> Result<(SnapshotMeta, Vec<u8>, Ledger), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 8 + 4 + 32 || &bytes[..8] != SNAPSHOT_FILE_MAGIC {
        return Err("not a snapshot file".to_owned());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err("checksum mismatch".to_owned());
    }
    let meta_len = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    let meta_end = 12usize
        .checked_add(meta_len)
        .filter(|end| *end <= body.len())
        .ok_or("bad meta length")?;
    let meta: SnapshotMeta =
        postcard::from_bytes(&body[12..meta_end]).map_err(|e| e.to_string())?;
    let data = body[meta_end..].to_vec();
    let ledger = Ledger::restore(&data).map_err(|e| e.to_string())?;
    Ok((meta, data, ledger))
}

/// [`persist_snapshot`] until it succeeds: a full or failing disk delays the snapshot (and
/// apply, which waits for it) but never loses one nor stops the node. The error is reported in
/// `shared` and logged once per [`crate::raft::log_store::IO_ERROR_LOG_INTERVAL_MS`]; the
/// temporary file is removed between tries so that it does not hold the space.
fn persist_with_retry(shared: &Shared, meta: &SnapshotMeta, data: &[u8]) {
    use crate::raft::log_store::{IO_ERROR_LOG_INTERVAL_MS, IO_RETRY_MS_MAX, IO_RETRY_MS_MIN};
    let mut wait = IO_RETRY_MS_MIN;
    let mut logged: Option<std::time::Instant> = None;
    loop {
        match persist_snapshot(&shared.dir, meta, data) {
            Ok(()) => break,
            Err(e) => {
                let message = format!("writing a snapshot in {} failed: {e}", shared.dir.display());
                if logged.is_none_or(|at| {
                    at.elapsed().as_millis() >= u128::from(IO_ERROR_LOG_INTERVAL_MS)
                }) {
                    tracing::error!(error = %message, "apply waits until the snapshot is written; retrying");
                    logged = Some(std::time::Instant::now());
                }
                *lock(&shared.snapshot_error) = Some(message);
                let index = meta.last_log_id.map_or(0, |l| l.index);
                let _ = std::fs::remove_file(shared.dir.join(format!("snapshot-{index}.tmp")));
                std::thread::sleep(std::time::Duration::from_millis(wait));
                wait = (wait * 2).min(IO_RETRY_MS_MAX);
            }
        }
    }
    if lock(&shared.snapshot_error).take().is_some() {
        tracing::warn!(dir = %shared.dir.display(), "snapshot written after failures");
    }
}

/// Writes a snapshot file durably (temp file, fsync, rename, fsync dir) and deletes older ones.
fn persist_snapshot(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let bytes = encode_snapshot_file(meta, data)?;
    let tmp = dir.join(format!("snapshot-{index}.tmp"));
    let path = dir.join(format!("snapshot-{index}.bin"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
    file.write_all(&bytes).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| e.to_string())?;
    for (old, old_path) in snapshot_files(dir).map_err(|e| e.to_string())? {
        if old < index {
            let _ = std::fs::remove_file(old_path);
        }
    }
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        // Copy the state under the lock, encode outside it: apply stalls only for the copy.
        let (ledger, meta) = {
            let ledger = self.shared.ledger.read().expect("ledger lock poisoned");
            let meta = lock(&self.shared.meta).clone();
            (ledger.clone(), meta)
        };
        self.shared.metrics.record_pause(started.elapsed());
        let shared = self.shared.clone();
        let last = meta.last_applied;
        let snapshot_meta = SnapshotMeta {
            last_log_id: last,
            last_membership: meta.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index)
            ),
        };
        let meta_for_disk = snapshot_meta.clone();
        let data = tokio::task::spawn_blocking(move || {
            let data = ledger.snapshot();
            persist_with_retry(&shared, &meta_for_disk, &data);
            data
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let data = Arc::new(data);
        *lock(&self.shared.current) = Some(StoredSnapshot {
            meta: snapshot_meta.clone(),
            data: data.clone(),
        });
        self.shared.metrics.record_snapshot_build(started.elapsed());
        tracing::info!(
            index = last.map_or(0, |l| l.index),
            bytes = data.len(),
            "snapshot built"
        );
        Ok(Snapshot {
            meta: snapshot_meta,
            snapshot: Box::new(Cursor::new(data.as_ref().clone())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

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
        {
            let mut ledger = self.shared.ledger.write().expect("ledger lock poisoned");
            let mut meta = lock(&self.shared.meta);
            for entry in entries {
                let started = std::time::Instant::now();
                let log_index = entry.log_id.index;
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
                meta.last_applied = Some(entry.log_id);
                last = Some(log_index);
                self.shared.metrics.record_apply(started.elapsed());
                replies.push(BatchReply {
                    log_index,
                    outcomes,
                });
            }
        }
        if let Some(index) = last {
            self.shared.applied.send_replace(index);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let data = snapshot.into_inner();
        let signature = Some(meta.signature());
        let was_ready = self.shared.is_ready();
        self.shared.set_ready(false);
        let (restored, data) = tokio::task::spawn_blocking(move || (Ledger::restore(&data), data))
            .await
            .map_err(|e| {
                io_error(
                    ErrorSubject::Snapshot(signature.clone()),
                    ErrorVerb::Read,
                    e,
                )
            })?;
        let ledger = restored.map_err(|e| {
            io_error(
                ErrorSubject::Snapshot(signature.clone()),
                ErrorVerb::Read,
                e,
            )
        })?;
        {
            let mut current = self.shared.ledger.write().expect("ledger lock poisoned");
            *current = ledger;
            let mut m = lock(&self.shared.meta);
            m.last_applied = meta.last_log_id;
            m.membership = meta.last_membership.clone();
        }
        let shared = self.shared.clone();
        let meta_copy = meta.clone();
        let data = Arc::new(data);
        let on_disk = data.clone();
        tokio::task::spawn_blocking(move || persist_with_retry(&shared, &meta_copy, &on_disk))
            .await
            .map_err(|e| {
                io_error(
                    ErrorSubject::Snapshot(signature.clone()),
                    ErrorVerb::Write,
                    e,
                )
            })?;
        *lock(&self.shared.current) = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
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
            snapshot: Box::new(Cursor::new(s.data.as_ref().clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_round_trip_and_reject_corruption() {
        let dir = std::env::temp_dir().join(format!("stockd-sm-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let ledger = Ledger::default();
        let data = ledger.snapshot();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-42".to_owned(),
        };
        persist_snapshot(&dir, &meta, &data).expect("persist");
        let path = dir.join("snapshot-42.bin");
        let (read_meta, read_data, restored) = read_snapshot_file(&path).expect("read back");
        assert_eq!(read_meta, meta);
        assert_eq!(read_data, data);
        assert_eq!(restored.snapshot(), data);
        let sm = StateMachine::open(&dir, Arc::default()).expect("open");
        assert_eq!(sm.shared().applied_index(), 42);
        assert_eq!(sm.shared().snapshot_index(), 42);
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(
            read_snapshot_file(&path).err().as_deref(),
            Some("checksum mismatch")
        );
        let sm = StateMachine::open(&dir, Arc::default()).expect("open skips the bad file");
        assert_eq!(sm.shared().applied_index(), 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}

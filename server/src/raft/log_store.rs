//! The Raft log on disk: openraft's [`RaftLogStorage`] for stockd.
//!
//! # Files
//!
//! A node's log directory holds:
//! - segment files `<first index, 20 digits>.seg`: the magic `STKDLOG\x01`, then one record per
//!   entry, `payload_len: u32 LE | crc32: u32 LE | postcard(Entry)` (the CRC-32 covers the
//!   length bytes and the payload). A new segment starts once the current one reaches
//!   [`SEGMENT_BYTES_MAX`].
//! - `vote`: the last vote, replaced durably (temp file, fsync, rename, fsync of the directory)
//!   on every `save_vote`, whatever the durability mode: a node that forgets its vote may vote
//!   twice in a term, which breaks Raft.
//! - `purged`: the last purged log id, written durably before any segment is deleted.
//! - `shutdown`: written durably by a graceful stop after the last fsync (the last log id and
//!   the committed one), removed durably at the next open: its absence means a crash.
//!
//! Segments also carry commit markers (see `format`): the committed log id as known when the
//! records before the marker were written, durable with them. [`LogStore::open`] reports the
//! newest one as the committed log id, so a restart replays everything committed that its
//! log holds before it serves a read.
//!
//! Small files are `magic (8 bytes) | postcard(value) | crc32 LE`.
//!
//! # Durability ([`Durability`], SPEC section 4)
//!
//! - `replicated` (default): `append` reports the entries persisted as soon as they are in
//!   memory and queued for the writer; openraft then counts this node in the majority. The
//!   writer `write`s them to the segment promptly and fsyncs within the flush interval
//!   ([`FLUSH_INTERVAL_MS_DEFAULT`]) of the first unsynced write. So a write acknowledged by a
//!   majority in memory reaches this node's disk within the flush interval (plus the time to
//!   drain the queue, at most [`WRITER_QUEUE_COMMANDS_MAX`] commands); a process crash loses only
//!   what is still queued, a power loss or kernel crash at most the last flush interval. A
//!   whole-cluster power loss can therefore lose acknowledged writes younger than the interval.
//! - `fsync`: `append` completes (the [`LogFlushed`] callback) only after the entries are
//!   fsynced. The writer groups every append queued while the previous fsync ran into one
//!   `write` and one fsync (group commit). A whole-cluster restart recovers every acknowledged
//!   write.
//!
//! Votes, truncations and purges are durable in both modes before their call returns, and are
//! ordered with the appends: the writer executes every command in the order it was issued, and
//! fsyncs the appends before a command that is not an append.
//!
//! # Memory
//!
//! The newest entries stay in memory (a `VecDeque`): every entry not yet applied, and applied
//! ones up to [`LOG_CACHE_BYTES_MAX`] of encoded bytes, so replication and apply reads do not
//! touch the disk. Older applied entries are dropped from memory as appends come (at most
//! [`LOG_EVICT_ENTRIES_PER_APPEND_MAX`] per append) and read back from the segments, through
//! the writer, when a follower far behind asks for them. So a node's memory does not grow with
//! the log between snapshots (it did: hundreds of MiB per snapshot cycle at peak, freed at
//! once by each purge). The snapshot policy bounds the log on disk.
//!
//! # Recovery
//!
//! [`LogStore::open`] reads every segment in order and checks every record. A bad record at the
//! end of the last segment (cut short, or followed only by zeros: a crash during a write) is cut
//! off with a warning. Any other damage (a bad record followed by data, a missing segment, a
//! damaged vote or purge file) is an error: the node refuses to start rather than silently lose
//! acknowledged entries. To recover such a node, move its data directory away and let it rejoin
//! (the leader sends it a snapshot and the log).
//!
//! The saved vote is read back as not committed: a restarted node never resumes leadership
//! from it (its log may have lost entries it counted in a majority); it becomes leader again
//! only through an election, which voters grant on log up-to-dateness.
//!
//! A node that may have lost entries it acknowledged is *recovering* ([`LogStore::recovering`]):
//! after any crash (in `replicated` mode the unflushed tail may be gone; in `fsync` mode a disk
//! may have dropped confirmed writes, or the log was written in the other mode), after
//! cutting a torn tail, or when its log ends before the entry it ended with at its last
//! graceful stop (in `fsync` mode that is damage: the store refuses to open, at every start,
//! until the operator acts). While recovering,
//! appends complete only once fsynced, and the election rules (see `raft::election`) keep the
//! node from granting votes until it holds the leader's committed log again.
//!
//! # IO errors
//!
//! A failing disk (ENOSPC, EIO) never stops the store: the writer retries until the disk works
//! (see `writer`), appends complete only once durable meanwhile, and [`LogStore::io_error`]
//! says what fails so the node reports itself not ready.

mod format;
mod recover;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};

use self::recover::{PreviousEnd, Vote};
use self::writer::{lock, Command, Done, Reply, Shared, Writer};
use super::{io_error, Entry, LogId, StorageError, TypeConfig};
use crate::hops::{self, Hop};

/// Default `replicated` mode flush interval: appended entries are fsynced at most this long
/// after they were written.
pub const FLUSH_INTERVAL_MS_DEFAULT: u64 = 50;
/// Largest accepted flush interval.
pub const FLUSH_INTERVAL_MS_MAX: u64 = 10_000;
/// A segment file is closed and a new one started once it reaches this size (it may exceed it
/// by one record).
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Largest encoded entry: an entry must fit in one peer frame anyway.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = protocol::PEER_FRAME_BYTES_MAX;
/// Capacity of the writer's queue, in commands (one per `append` call); a full queue makes
/// `append` wait (back pressure) instead of growing memory.
pub const WRITER_QUEUE_COMMANDS_MAX: usize = 1_024;
pub use self::writer::{IO_ERROR_LOG_INTERVAL_MS, IO_RETRY_MS_MAX, IO_RETRY_MS_MIN};
/// A disk counts as failing until this long after its last failed IO step, ms: a full disk
/// may let a write through now and then (a page that still had room), and a leader must not
/// flap between leading and stepping aside with it.
pub const DISK_SETTLE_MS: u64 = 1_000;
/// Encoded bytes of applied entries kept in memory: older applied entries are dropped from
/// memory and read back from the segments when asked for (a follower far behind).
pub const LOG_CACHE_BYTES_MAX: u64 = 16 << 20;
/// Entries dropped from memory per append at most, so that a large backlog (after a restart,
/// everything since the last snapshot) is freed a little at a time, not in one long step.
pub const LOG_EVICT_ENTRIES_PER_APPEND_MAX: usize = 1_024;

/// When an appended entry counts as persisted on this node (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Persisted once in memory and queued: the majority is a majority of memories. Each node
    /// writes its log at once and fsyncs it within `flush_interval_ms`.
    Replicated {
        /// The longest an appended entry stays unsynced, in ms
        /// (`1..=`[`FLUSH_INTERVAL_MS_MAX`]).
        flush_interval_ms: u64,
    },
    /// Persisted once fsynced: the majority is a majority of disks.
    Fsync,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Replicated {
            flush_interval_ms: FLUSH_INTERVAL_MS_DEFAULT,
        }
    }
}

impl Durability {
    /// `replicated` or `fsync`, as in the configuration and `status`.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Replicated { .. } => "replicated",
            Durability::Fsync => "fsync",
        }
    }

    /// Checks the flush interval against its limits.
    pub fn validate(self) -> Result<(), String> {
        match self {
            Durability::Replicated { flush_interval_ms } if !(1..=FLUSH_INTERVAL_MS_MAX).contains(&flush_interval_ms) => {
                Err(format!("flush_interval_ms must be in 1..={FLUSH_INTERVAL_MS_MAX}, not {flush_interval_ms}"))
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for Durability {
    type Err = String;

    /// `replicated` (with the default flush interval) or `fsync`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "replicated" => Ok(Durability::default()),
            "fsync" => Ok(Durability::Fsync),
            _ => Err(format!(
                "unknown durability mode {s:?} (expected replicated or fsync)"
            )),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Replicated { flush_interval_ms } => {
                write!(f, "replicated ({flush_interval_ms} ms flush)")
            }
            Durability::Fsync => f.write_str("fsync"),
        }
    }
}

/// The Raft log store: a cheap handle (clones share one log and one writer thread).
///
/// Openraft issues the writes (`append`, `save_vote`, `truncate`, `purge`) one at a time;
/// reads may come from any clone at any time.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    durability: Durability,
    /// Why this node may have lost acknowledged entries, if it may have (kept for status).
    recovery: Option<String>,
    /// The log as openraft sees it. A std mutex: held for short copies, never across `.await`.
    log: Mutex<MemLog>,
    shared: Arc<Shared>,
    /// The node's applied log index, once the node has handed it over
    /// ([`LogStore::follow_applied`]): only applied entries leave memory.
    applied: std::sync::OnceLock<tokio::sync::watch::Receiver<u64>>,
    /// The writer's queue; `None` only while dropping.
    tx: Option<Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

impl Inner {
    /// Queues `command` without waiting and wakes the writer. The writer parks rather than
    /// blocking in the channel's `recv`: that spun and called `sched_yield` up to four times
    /// per wake-up before sleeping, and at 1,000 checkouts/s (one Raft entry per write, two
    /// commands each) those yields were 10-13% of a node's CPU (docs/BENCHMARKS.md, AC).
    fn try_queue(&self, command: Command) -> Result<(), TrySendError<Command>> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(TrySendError::Disconnected(command));
        };
        tx.try_send(command)?;
        self.wake_writer();
        Ok(())
    }

    /// Unparks the writer thread (a no-op store when it is not parked).
    fn wake_writer(&self) {
        if let Some(writer) = &self.writer {
            writer.thread().unpark();
        }
    }
}

/// The in-memory log.
struct MemLog {
    /// The newest entries after the purge point, consecutive: the `evicted` entries before
    /// them are only on disk. While `evicted > 0` its first entry is an applied one (so
    /// committed: Raft never cuts it, and the log never ends out of memory).
    entries: VecDeque<Entry>,
    /// Entries after the purge point and before `entries` (applied, dropped from memory).
    evicted: usize,
    /// The encoded size of each entry after the purge point, bytes: the `evicted` ones, then
    /// one per entry of `entries`.
    sizes: VecDeque<u32>,
    /// Sum of `sizes`: what the unpurged log takes on disk.
    bytes: u64,
    /// Sum of the first `evicted` of `sizes`.
    evicted_bytes: u64,
    /// [`LOG_CACHE_BYTES_MAX`] (tests use less).
    cache_bytes_max: u64,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

impl MemLog {
    /// The index the next appended entry must have, if the log constrains it.
    fn next_index(&self) -> Option<u64> {
        match (self.entries.back(), self.last_purged) {
            (Some(last), _) => Some(last.log_id.index + 1),
            (None, Some(purged)) => Some(purged.index + 1),
            (None, None) => None,
        }
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|e| e.log_id).or(self.last_purged)
    }

    /// Index of the first entry kept in memory (`None` when the log holds no entry).
    fn first_cached(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    /// Forgets every entry up to `log_id` (the store's purge): returns those still in memory,
    /// to be freed after the lock is released.
    fn purge(&mut self, log_id: LogId) -> VecDeque<Entry> {
        // How many entries after the old purge point go: on disk only, then in memory.
        let first_kept = match (self.first_cached(), self.last_purged) {
            (Some(first), _) => first - self.evicted as u64,
            (None, Some(purged)) => purged.index + 1,
            (None, None) => 0,
        };
        self.last_purged = Some(log_id);
        let gone = (log_id.index + 1).saturating_sub(first_kept);
        let gone_evicted = gone.min(self.evicted as u64) as usize;
        let gone_cached = self
            .entries
            .partition_point(|e| e.log_id.index <= log_id.index);
        // Split off what stays (the entries since the snapshot: few) rather than draining what
        // goes (everything since the previous snapshot), so the lock is held for a short copy.
        let sized = (gone_evicted + gone_cached).min(self.sizes.len());
        let kept_sizes = self.sizes.split_off(sized);
        let sizes_gone = std::mem::replace(&mut self.sizes, kept_sizes);
        let freed: u64 = sizes_gone.iter().map(|&b| u64::from(b)).sum();
        let freed_evicted: u64 = sizes_gone
            .iter()
            .take(gone_evicted)
            .map(|&b| u64::from(b))
            .sum();
        self.bytes -= freed;
        self.evicted_bytes -= freed_evicted;
        self.evicted -= gone_evicted;
        let kept = self.entries.split_off(gone_cached);
        std::mem::replace(&mut self.entries, kept)
    }

    /// Drops from memory the oldest applied entries (index <= `applied`) while the entries
    /// in memory take more than [`LOG_CACHE_BYTES_MAX`], at most `max` of them, never the
    /// newest applied one: the unapplied entries may be cut (a new leader), and the log must
    /// then still end with an entry in memory. Returns them, to be freed after the lock is
    /// released.
    fn evict(&mut self, applied: u64, max: usize) -> Vec<Entry> {
        let mut dropped = Vec::new();
        while dropped.len() < max
            && self.bytes - self.evicted_bytes > self.cache_bytes_max
            && self
                .entries
                .get(1)
                .is_some_and(|e| e.log_id.index <= applied)
        {
            let Some(entry) = self.entries.pop_front() else {
                break;
            };
            self.evicted_bytes += u64::from(self.sizes.get(self.evicted).copied().unwrap_or(0));
            self.evicted += 1;
            dropped.push(entry);
        }
        dropped
    }
}

impl Drop for Inner {
    /// The last handle is gone: let the writer write and fsync what is left, and wait for it.
    fn drop(&mut self) {
        drop(self.tx.take());
        self.wake_writer();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "the log writer thread panicked");
            }
        }
    }
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`: recovers it (see the module docs) and starts the
    /// writer thread. Blocking file IO: call it before serving, or from a blocking task.
    pub fn open(dir: &Path, durability: Durability) -> Result<LogStore, io::Error> {
        LogStore::open_with(dir, durability, SEGMENT_BYTES_MAX, false)
    }

    /// [`LogStore::open`] for a node started with its cluster's voters (`--peer`): a new log
    /// there may be a member's whose directory was wiped or replaced, which must not vote as
    /// if it had lost nothing, so it starts recovering (a brand-new cluster's nodes all do, and
    /// elect as soon as they have heard each other).
    pub fn open_as_member(dir: &Path, durability: Durability) -> Result<LogStore, io::Error> {
        LogStore::open_with(dir, durability, SEGMENT_BYTES_MAX, true)
    }

    /// [`LogStore::open`] with another segment size (tests use small segments), for a listed
    /// member or not.
    fn open_with(
        dir: &Path,
        durability: Durability,
        segment_bytes_max: u64,
        member: bool,
    ) -> Result<LogStore, io::Error> {
        durability
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut recovered = recover::recover(dir)?;
        let recovery = recovery_reason(&recovered.end, durability, member)?;
        // Only once the node may start: a refusal must hold at every start until the operator
        // acts, so the record it rests on stays until then.
        recover::forget_shutdown(dir)?;
        if let Some(why) = &recovery {
            tracing::warn!(dir = %dir.display(), %why, "this node may have lost entries it acknowledged: it votes again once it has caught up with the leader");
        }
        // Never lead again from a saved vote (see the module docs).
        if let Some(vote) = recovered.vote.as_mut() {
            vote.committed = false;
        }
        let shared = Arc::new(Shared {
            committed: Mutex::new(recovered.committed),
            recovering: std::sync::atomic::AtomicBool::new(recovery.is_some()),
            ..Shared::default()
        });
        let mut sizes = VecDeque::with_capacity(recovered.entries.len());
        let mut scratch = Vec::new();
        for entry in &recovered.entries {
            scratch.clear();
            let len = format::encode_record(entry, &mut scratch)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            sizes.push_back(len);
        }
        let bytes = sizes.iter().map(|s| u64::from(*s)).sum();
        let log = MemLog {
            sizes,
            bytes,
            evicted: 0,
            evicted_bytes: 0,
            cache_bytes_max: LOG_CACHE_BYTES_MAX,
            entries: recovered.entries,
            last_purged: recovered.last_purged,
            vote: recovered.vote,
        };
        let last_on_disk = log.entries.back().map(|e| e.log_id);
        let writer = Writer::new(
            dir.to_path_buf(),
            durability,
            segment_bytes_max,
            shared.clone(),
            recovered.segments,
            last_on_disk,
        )?;
        let (tx, rx) = crossbeam_channel::bounded(WRITER_QUEUE_COMMANDS_MAX);
        let handle = std::thread::Builder::new()
            .name("stockd-log-writer".to_owned())
            .spawn(move || writer.run(rx))?;
        tracing::info!(
            dir = %dir.display(),
            %durability,
            entries = log.entries.len(),
            last_purged = ?log.last_purged,
            last = ?log.last_log_id(),
            "raft log opened"
        );
        let inner = Inner {
            dir: dir.to_path_buf(),
            durability,
            recovery,
            log: Mutex::new(log),
            shared,
            applied: std::sync::OnceLock::new(),
            tx: Some(tx),
            writer: Some(handle),
        };
        Ok(LogStore {
            inner: Arc::new(inner),
        })
    }

    /// Encoded bytes of the log entries after the purge point (on disk): the node snapshots
    /// when this grows past its limit, which purges them.
    pub fn log_bytes(&self) -> u64 {
        lock(&self.inner.log).bytes
    }

    /// Encoded bytes of the log entries kept in memory (see the module docs, Memory).
    pub fn cached_bytes(&self) -> u64 {
        let log = lock(&self.inner.log);
        log.bytes - log.evicted_bytes
    }

    /// Lets the store drop applied entries from memory: `applied` follows the node's applied
    /// log index. Until this is called nothing leaves memory (a store on its own, in tests).
    /// A store follows one node: a second call is ignored, with a warning.
    pub fn follow_applied(&self, applied: tokio::sync::watch::Receiver<u64>) {
        if self.inner.applied.set(applied).is_err() {
            tracing::warn!(dir = %self.inner.dir.display(), "the log store already follows an applied index; the second one is ignored");
        }
    }

    /// The durability mode the store was opened with.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// The IO error the writer is retrying right now, if any: the node is not ready while
    /// there is one.
    pub fn io_error(&self) -> Option<String> {
        lock(&self.inner.shared.io_error).clone()
    }

    /// Whether the log cannot be written now or could not be within [`DISK_SETTLE_MS`]: such a
    /// node must not lead, stand or vote (a leader that cannot write its log would hold the
    /// cluster without committing anything; a vote it cannot save durably is no vote).
    pub fn disk_failing(&self) -> bool {
        let settle = std::time::Duration::from_millis(DISK_SETTLE_MS);
        self.io_error().is_some()
            || lock(&self.inner.shared.last_failure).is_some_and(|at| at.elapsed() < settle)
    }

    /// IO steps that failed since the store was opened (each retried).
    pub fn io_errors_total(&self) -> u64 {
        self.inner
            .shared
            .io_errors_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this node may still miss entries it acknowledged before it restarted (see the
    /// module docs): it must not grant votes yet.
    pub fn recovering(&self) -> bool {
        self.inner
            .shared
            .recovering
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Index of the last entry known committed (0 if none): a restarted node is ready once it
    /// has applied this far again.
    pub fn committed_index(&self) -> u64 {
        lock(&self.inner.shared.committed).map_or(0, |l| l.index)
    }

    /// The log id of the last entry (or of the purge point if the log is empty).
    pub fn last_log_id(&self) -> Option<LogId> {
        lock(&self.inner.log).last_log_id()
    }

    /// Why the node started recovering, if it did (whether or not it still is).
    pub fn recovery_reason(&self) -> Option<&str> {
        self.inner.recovery.as_deref()
    }

    /// The node holds (durably) the log up to a leader's committed index again: it stops
    /// recovering.
    pub fn caught_up(&self) {
        let was = self
            .inner
            .shared
            .recovering
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        if was {
            tracing::info!(dir = %self.inner.dir.display(), "caught up with the leader: this node votes again");
        }
    }

    /// Makes the next `count` writes or fsyncs of the log fail with ENOSPC (fault injection
    /// for tests; the writer retries them like real failures).
    pub fn inject_io_failures(&self, count: u32) {
        self.inner
            .shared
            .injected_failures
            .store(count, std::sync::atomic::Ordering::Release);
    }

    /// Whether an append completes only once fsynced: always in `fsync` mode; in
    /// `replicated` mode while recovering or while the disk fails (a node that cannot write
    /// must not count in a majority from memory).
    fn durable_acks(&self) -> bool {
        self.inner.durability == Durability::Fsync
            || self.recovering()
            || lock(&self.inner.shared.io_error).is_some()
    }

    /// Writes and fsyncs everything appended so far (for a graceful shutdown in `replicated`
    /// mode; dropping the last handle does the same and waits for it).
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.request(|reply| Command::Flush { reply })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    /// Appends consecutive entries; `done` runs once they count as persisted (see
    /// [`Durability`]).
    async fn append_entries(&self, entries: Vec<Entry>, done: Done) -> Result<(), StorageError> {
        let write_error = |e: String| io_error(ErrorSubject::Logs, ErrorVerb::Write, e);
        // Entries at or below the purge point are already part of a snapshot: nothing to keep.
        // (Openraft does not send them; its storage test suite does.)
        let mut entries = entries;
        let applied = self.inner.applied.get().map_or(0, |a| *a.borrow());
        let evicted;
        if let Some(purged) = lock(&self.inner.log).last_purged {
            entries.retain(|e| e.log_id.index > purged.index);
        }
        let mut records = Vec::new();
        let mut lens = Vec::with_capacity(entries.len());
        for entry in &entries {
            lens.push(format::encode_record(entry, &mut records).map_err(write_error)?);
        }
        let first_index = entries.first().map_or(0, |e| e.log_id.index);
        let last = entries.last().map(|e| e.log_id);
        hops::mark(Hop::Appended, first_index, last.map_or(0, |l| l.index));
        if entries
            .iter()
            .enumerate()
            .any(|(i, e)| e.log_id.index != first_index + i as u64)
        {
            return Err(write_error(
                "non-consecutive entries in one append".to_owned(),
            ));
        }
        {
            let mut log = lock(&self.inner.log);
            if let Some(expected) = log
                .next_index()
                .filter(|x| *x != first_index && !entries.is_empty())
            {
                return Err(write_error(format!(
                    "non-consecutive append: log index {first_index}, expected {expected}"
                )));
            }
            for len in &lens {
                log.sizes.push_back(*len);
                log.bytes += u64::from(*len);
            }
            log.entries.extend(entries);
            evicted = log.evict(applied, LOG_EVICT_ENTRIES_PER_APPEND_MAX);
        }
        drop(evicted); // freed outside the lock
        let (in_writer, now) = if self.durable_acks() {
            (Some(done), None)
        } else {
            (None, Some(done))
        };
        let command = Command::Append {
            first_index,
            last,
            records,
            lens,
            done: in_writer,
        };
        self.send(command).await.map_err(write_error)?;
        if let Some(done) = now {
            done(Ok(()));
        }
        Ok(())
    }

    /// Queues a command; waits (off the async threads) while the queue is full.
    async fn send(&self, command: Command) -> Result<(), String> {
        const STOPPED: &str = "the log writer has stopped";
        match self.inner.try_queue(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(command)) => {
                let Some(tx) = self.inner.tx.clone() else {
                    return Err(STOPPED.to_owned());
                };
                let writer = self.inner.writer.as_ref().map(|w| w.thread().clone());
                // The wake-up happens on the blocking thread, after the send and after this
                // sender is dropped: if this future is dropped meanwhile, the command still
                // lands and the writer still wakes (and sees the queue closed at shutdown).
                tokio::task::spawn_blocking(move || {
                    let sent = tx.send(command).map_err(|_| STOPPED.to_owned());
                    drop(tx);
                    if let Some(writer) = writer {
                        writer.unpark();
                    }
                    sent
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Err(TrySendError::Disconnected(_)) => Err(STOPPED.to_owned()),
        }
    }

    /// Sends a command and waits for the writer's answer.
    async fn request(&self, command: impl FnOnce(Reply) -> Command) -> Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(command(reply)).await?;
        answer
            .await
            .map_err(|_| "the log writer has stopped".to_owned())?
    }

    /// Reads entries that left memory back from the segments (see the module docs, Memory).
    async fn read_evicted(&self, range: std::ops::Range<u64>) -> Result<Vec<Entry>, StorageError> {
        let read_error = |e: String| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Command::Read {
            from: range.start,
            to: range.end,
            reply,
        })
        .await
        .map_err(read_error)?;
        answer
            .await
            .map_err(|_| read_error("the log writer has stopped".to_owned()))?
            .map_err(read_error)
    }

    /// Keeps at most `bytes` of applied entries in memory instead of [`LOG_CACHE_BYTES_MAX`].
    #[cfg(test)]
    fn set_cache_bytes_max(&self, bytes: u64) {
        lock(&self.inner.log).cache_bytes_max = bytes;
    }

    /// Stops the writer at once, without writing what it has not written yet: what a killed
    /// process leaves behind.
    #[cfg(test)]
    async fn crash(self) {
        let _ = self.send(Command::Crash).await;
    }
}

/// Purged entries freed per step of [`drop_in_steps`].
const PURGE_DROP_STEP_ENTRIES: usize = 256;

/// Frees purged entries on the runtime that allocated them, a step at a time with a yield
/// between steps. Freed on another thread, they went to the allocating thread's heap as
/// cross-thread frees, which mimalloc then collects in bulk inside whatever allocates next:
/// an apply under the ledger lock.
async fn drop_in_steps(mut purged: VecDeque<Entry>) {
    while !purged.is_empty() {
        let step = PURGE_DROP_STEP_ENTRIES.min(purged.len());
        purged.drain(..step);
        tokio::task::yield_now().await;
    }
}

/// Whether (and why) a node starts recovering after the way its previous process ended; an
/// error for damage the durability mode cannot excuse.
fn recovery_reason(
    end: &PreviousEnd,
    durability: Durability,
    member: bool,
) -> io::Result<Option<String>> {
    Ok(match (end, durability) {
        (PreviousEnd::Pristine, _) if member => Some(
            "a new log on a node started with its cluster's voters: it may have been a member \
             before (a wiped or replaced data directory)"
                .to_owned(),
        ),
        (PreviousEnd::Pristine | PreviousEnd::Clean, _) => None,
        (PreviousEnd::Crashed { torn: Some(torn) }, _) => {
            Some(format!("a torn log tail was cut off ({torn})"))
        }
        // In fsync mode nothing acknowledged should be lost, but nothing on reopen tells a
        // crash apart from a disk that dropped confirmed writes at a record boundary, or from
        // a log written in replicated mode by the previous process: recovering costs a crashed
        // node a few seconds of not voting, and never an acknowledged write.
        (PreviousEnd::Crashed { torn: None }, _) => Some(
            "the previous process did not stop gracefully: writes it acknowledged may be lost \
             (unflushed in replicated mode, or dropped by the disk)"
                .to_owned(),
        ),
        (PreviousEnd::Shortened { detail }, Durability::Replicated { .. }) => Some(detail.clone()),
        (PreviousEnd::Shortened { detail }, Durability::Fsync) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{detail}. In fsync mode every acknowledged entry was on this disk, so the \
                     disk lost data: check it, then restore the directory from a backup, or \
                     move it away so that the node resynchronises from the cluster"
                ),
            ))
        }
    })
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let (on_disk, cached) = {
            let log = lock(&self.inner.log);
            let Some(first) = log.first_cached() else {
                return Ok(Vec::new());
            };
            let from = start.saturating_sub(first).min(log.entries.len() as u64) as usize;
            let to = end.saturating_sub(first).min(log.entries.len() as u64) as usize;
            let cached: Vec<Entry> = log.entries.range(from..to.max(from)).cloned().collect();
            let first_kept = first - log.evicted as u64;
            (start.max(first_kept)..end.min(first), cached)
        };
        if on_disk.is_empty() {
            return Ok(cached);
        }
        let mut entries = self.read_evicted(on_disk.clone()).await?;
        // A purge may have removed the oldest of them meanwhile: then the answer starts later,
        // as it does for entries purged from memory.
        if entries
            .last()
            .is_some_and(|e| e.log_id.index + 1 == on_disk.end)
        {
            entries.extend(cached);
            Ok(entries)
        } else {
            Ok(cached)
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = lock(&self.inner.log);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.request(|reply| Command::SaveVote { vote, reply })
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        lock(&self.inner.log).vote = Some(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.inner.log).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *lock(&self.inner.shared.committed) = committed;
        // Have the marker written now (not with the next append), so that a crash right after
        // a reply still replays up to it. A full queue means a group is coming anyway.
        let _ = self.inner.try_queue(Command::Committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(*lock(&self.inner.shared.committed))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let done: Done = Box::new(move |result| callback.log_io_completed(result));
        self.append_entries(entries.into_iter().collect(), done)
            .await
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let error = |e: String| io_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e);
        let last = {
            let mut log = lock(&self.inner.log);
            if log.last_purged.is_some_and(|p| log_id.index <= p.index) {
                return Err(error(format!(
                    "cannot truncate at {log_id}: at or before the purge point"
                )));
            }
            if let Some(first) = log.first_cached() {
                // Only applied entries leave memory, the first one kept is applied too, and
                // Raft never cuts a committed entry.
                if log_id.index <= first && log.evicted > 0 {
                    return Err(error(format!(
                        "cannot truncate at {log_id}: entry {first} and the ones before it are applied"
                    )));
                }
                let keep = log_id
                    .index
                    .saturating_sub(first)
                    .min(log.entries.len() as u64);
                log.entries.truncate(keep as usize);
                // `sizes` also holds the sizes of the entries out of memory, before these.
                while log.sizes.len() > log.evicted + log.entries.len() {
                    let len = log.sizes.pop_back().unwrap_or(0);
                    log.bytes -= u64::from(len);
                }
            }
            log.last_log_id()
        };
        self.request(|reply| Command::Truncate {
            index: log_id.index,
            last,
            reply,
        })
        .await
        .map_err(error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged = {
            let mut log = lock(&self.inner.log);
            if log.last_purged.is_some_and(|p| log_id.index <= p.index) {
                return Ok(());
            }
            log.purge(log_id)
        };
        // openraft awaits a purge on its core task, so nothing slow may happen before this
        // returns: a snapshot's purge frees everything since the previous one (hundreds of ms
        // of frees after a bulk load), so the frees run in small steps in a task of their own
        // (`drop_in_steps`); and the writer's part (an fsync, the purge file, deleting
        // segments: 200-300 ms with a snapshot being written beside it) is queued, not
        // awaited. The purge needs no durability before openraft goes on: until the purge file
        // is written, a restart keeps the older entries, which the snapshot already covers
        // (openraft purges them again).
        if !purged.is_empty() {
            tokio::spawn(drop_in_steps(purged));
        }
        self.send(Command::Purge { log_id })
            .await
            .map_err(|e| io_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }
}

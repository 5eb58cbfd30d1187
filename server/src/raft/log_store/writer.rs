//! The writer thread: the only code that writes the log's files.
//!
//! It takes commands from a bounded channel in order, so every write (appends, vote, truncate,
//! purge) reaches the disk in the order openraft issued it. Each wake-up drains every command
//! already queued (up to [`DRAIN_COMMANDS_MAX`]) and writes the appended records with one
//! positional write; then, if any append waits for durability (`fsync` mode, or a `replicated`
//! node that acknowledges only durable entries for now), it fsyncs once and completes them all
//! (group commit). Otherwise it fsyncs when the oldest unsynced write is one flush interval
//! old. Any command that is not an append first writes and fsyncs everything before it.
//!
//! Commit markers: when the committed log id has advanced, a marker record naming it (clamped
//! to the last entry written) follows the group's records, so the log itself says how far it
//! was committed, durable with the same fsync (see `format`).
//!
//! IO errors are not fatal. A failed write, fsync, file creation, deletion or read (of entries
//! no longer in memory) is retried with backoff until it succeeds
//! ([`IO_RETRY_MS_MIN`]..[`IO_RETRY_MS_MAX`]); later commands wait behind it. Meanwhile the store reports the error (the node is not ready and acknowledges
//! appends only once durable) and it is logged once per [`IO_ERROR_LOG_INTERVAL_MS`]. After a
//! failed fsync the kernel may already have dropped the dirty pages, so a retry rewrites every
//! byte since the last successful fsync from memory instead of trusting the page cache. Every
//! step updates the writer's state only once its IO succeeded, so a retried step neither skips
//! nor repeats a record.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use super::format::{decode_record, encode_commit_marker, segment_name, Record, SEGMENT_MAGIC};
use super::recover::{
    sync_dir, write_small_file, Segment, ShutdownRecord, Vote, PURGED_FILE, PURGED_MAGIC,
    SHUTDOWN_FILE, SHUTDOWN_MAGIC, VOTE_FILE, VOTE_MAGIC,
};
use super::Durability;
use crate::raft::{Entry, LogId};

/// Commands drained and handled per group commit.
pub(super) const DRAIN_COMMANDS_MAX: usize = 4_096;
/// Staged record bytes that trigger a `write` before the end of a group.
const WRITE_BUFFER_BYTES_MAX: usize = 4 << 20;
/// First wait before retrying a failed IO step, ms; doubled at each failure.
pub const IO_RETRY_MS_MIN: u64 = 10;
/// Longest wait between two tries of a failing IO step, ms.
pub const IO_RETRY_MS_MAX: u64 = 1_000;
/// A failing disk is logged at most once per this period, ms (and once when it heals).
pub const IO_ERROR_LOG_INTERVAL_MS: u64 = 60_000;
/// At shutdown, how long the last flush retries a failing disk before giving up, ms.
pub const SHUTDOWN_RETRY_MS: u64 = 10_000;
/// How long the thread sleeps with nothing to do, ms.
const IDLE_WAKE_MS: u64 = 1_000;

/// Completion of an append: called once its records are durable (or failed).
pub(super) type Done = Box<dyn FnOnce(Result<(), io::Error>) + Send>;
/// Where the writer answers a command that the caller waits for.
pub(super) type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;
/// Where the writer answers a read of entries no longer kept in memory.
pub(super) type ReadReply = tokio::sync::oneshot::Sender<Result<Vec<Entry>, String>>;

/// What the store asks the writer to do.
pub(super) enum Command {
    /// Write these records (already encoded, consecutive from `first_index`).
    Append {
        first_index: u64,
        /// Log id of the last entry, `None` for an empty append.
        last: Option<LogId>,
        records: Vec<u8>,
        /// Length of each record in `records`.
        lens: Vec<u32>,
        /// `Some` when the append completes only once durable: called after the fsync that
        /// covers these records.
        done: Option<Done>,
    },
    /// Write the vote durably.
    SaveVote { vote: Vote, reply: Reply },
    /// Cut the log from `index` on; `last` is the log id of the entry before it, if any.
    Truncate {
        index: u64,
        last: Option<LogId>,
        reply: Reply,
    },
    /// Record the purge point durably and delete the segments wholly at or below it. Nobody
    /// waits for it (see `LogStore::purge`); a failure that outlasts the retries is logged.
    Purge { log_id: LogId },
    /// Write and fsync everything before.
    Flush { reply: Reply },
    /// The committed log id advanced: write its marker now rather than with the next append.
    Committed,
    /// Read the entries `from..to` back from the segments (the store keeps only the newest
    /// entries in memory). Queued after the appends of those entries, so they are staged.
    Read {
        from: u64,
        to: u64,
        reply: ReadReply,
    },
    /// Stop at once without writing what is staged: a simulated process crash.
    #[cfg(test)]
    Crash,
}

/// State shared by the store handles and the writer.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The IO error the writer is retrying, while it is.
    pub io_error: Mutex<Option<String>>,
    /// IO steps that failed since the store was opened.
    pub io_errors_total: AtomicU64,
    /// The latest committed log id reported by openraft; the writer records it in markers.
    pub committed: Mutex<Option<LogId>>,
    /// The node may miss entries it acknowledged before a restart (see `LogStore::recovering`).
    pub recovering: AtomicBool,
    /// Injected faults: this many coming writes or fsyncs fail with ENOSPC.
    pub injected_failures: AtomicU32,
    /// When an IO step last failed (see `LogStore::disk_failing`).
    pub last_failure: Mutex<Option<Instant>>,
}

/// Locks a mutex; poisoning cannot leave these plain values half-updated.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The active segment's bytes that are not known to be on disk yet.
#[derive(Debug, Default)]
struct Unsynced {
    /// Everything appended to the active segment after `synced_len`, kept until an fsync
    /// covers it so that a failed write or fsync can be redone in full.
    bytes: Vec<u8>,
    /// How many of `bytes` were written to the file.
    written: usize,
    /// Length of the active segment known to be durable.
    synced_len: u64,
    /// A step failed: the file may hold a partial write past `synced_len + written`.
    cut_first: bool,
    /// When the oldest byte of `bytes` was written.
    since: Option<Instant>,
}

/// How the writer is doing with a failing disk.
#[derive(Debug, Default)]
struct Failing {
    /// Steps failed in a row.
    failures: u64,
    last_logged: Option<Instant>,
}

/// The writer thread's state.
pub(super) struct Writer {
    dir: PathBuf,
    durability: Durability,
    segment_bytes_max: u64,
    shared: Arc<Shared>,
    /// The segments on disk, in order; `len` counts staged bytes too. The last one is open
    /// in `active`.
    segments: Vec<Segment>,
    /// The last segment, open for writing; `None` iff `segments` is empty.
    active: Option<File>,
    unsynced: Unsynced,
    /// Completions waiting for the next fsync.
    waiting: Vec<Done>,
    /// The last entry staged.
    last_log_id: Option<LogId>,
    /// The committed log id of the last marker staged.
    marker: Option<LogId>,
    failing: Failing,
    /// The channel closed: retries give up after [`SHUTDOWN_RETRY_MS`].
    stopping: bool,
}

/// Whether the thread goes on.
enum Flow {
    Continue,
    #[cfg(test)]
    Stop,
}

impl Writer {
    /// A writer over the recovered `segments`, whose last entry is `last_log_id`.
    pub(super) fn new(
        dir: PathBuf,
        durability: Durability,
        segment_bytes_max: u64,
        shared: Arc<Shared>,
        segments: Vec<Segment>,
        last_log_id: Option<LogId>,
    ) -> io::Result<Writer> {
        let marker = *lock(&shared.committed);
        let unsynced = Unsynced {
            synced_len: segments.last().map_or(0, |s| s.len),
            ..Unsynced::default()
        };
        let mut writer = Writer {
            dir,
            durability,
            segment_bytes_max,
            shared,
            segments,
            active: None,
            unsynced,
            waiting: Vec::new(),
            last_log_id,
            marker,
            failing: Failing::default(),
            stopping: false,
        };
        writer.open_active()?;
        // The previous process may have died with writes only in the page cache.
        if let Some(file) = &writer.active {
            file.sync_data()?;
        }
        Ok(writer)
    }

    /// The thread's body: runs until every store handle is gone, then writes and fsyncs the
    /// rest and leaves the shutdown record. With nothing queued it parks until the store
    /// unparks it after queueing a command, or until the next periodic duty; the store's
    /// `unpark` after its `try_send` cannot be missed (a token left by an early `unpark` makes
    /// the next `park` return at once).
    pub(super) fn run(mut self, rx: Receiver<Command>) {
        loop {
            match rx.try_recv() {
                Ok(first) => {
                    let mut next = Some(first);
                    let mut handled = 0;
                    while let Some(command) = next {
                        match self.handle(command) {
                            Flow::Continue => {}
                            #[cfg(test)]
                            Flow::Stop => return,
                        }
                        handled += 1;
                        next = if handled < DRAIN_COMMANDS_MAX {
                            rx.try_recv().ok()
                        } else {
                            None
                        };
                    }
                    let _ = self.retry(Writer::end_group);
                }
                Err(TryRecvError::Empty) => std::thread::park_timeout(self.idle_timeout()),
                Err(TryRecvError::Disconnected) => break,
            }
            let _ = self.retry(Writer::tick);
        }
        self.stop();
    }

    /// The last flush and the shutdown record (which tells the next start that nothing
    /// acknowledged was lost).
    fn stop(&mut self) {
        self.stopping = true;
        let flushed = self.retry(|w| {
            w.stage_marker();
            w.sync()
        });
        if flushed.is_err() {
            return;
        }
        let record = ShutdownRecord {
            last: self.last_log_id,
            committed: self.marker,
        };
        let _ =
            self.retry(|w| write_small_file(&w.dir, SHUTDOWN_FILE, SHUTDOWN_MAGIC, &record, true));
    }

    /// How long to wait for a command before the next periodic duty.
    fn idle_timeout(&self) -> Duration {
        let idle = Duration::from_millis(IDLE_WAKE_MS);
        match (self.durability, self.unsynced.since) {
            (Durability::Replicated { flush_interval_ms }, Some(since)) => {
                Duration::from_millis(flush_interval_ms)
                    .saturating_sub(since.elapsed())
                    .min(idle)
            }
            _ => idle,
        }
    }

    fn handle(&mut self, command: Command) -> Flow {
        let answer = |reply: Reply, result: io::Result<()>| {
            let _ = reply.send(result.map_err(|e| e.to_string()));
        };
        match command {
            Command::Append {
                first_index,
                last,
                records,
                lens,
                done,
            } => {
                let staged = self.retry(|w| w.stage(first_index, &records, &lens));
                if staged.is_ok() && last.is_some() {
                    self.last_log_id = last;
                }
                if let Some(done) = done {
                    self.waiting.push(done);
                }
            }
            Command::SaveVote { vote, reply } => {
                let result = self.retry(|w| {
                    w.sync()?;
                    write_small_file(&w.dir, VOTE_FILE, VOTE_MAGIC, &vote, true)
                });
                answer(reply, result);
            }
            Command::Truncate { index, last, reply } => {
                let result = self.retry(|w| {
                    w.sync()?;
                    w.truncate(index, last)
                });
                answer(reply, result);
            }
            Command::Purge { log_id } => {
                let result = self.retry(|w| {
                    w.sync()?;
                    w.purge(log_id)
                });
                if let Err(e) = result {
                    tracing::warn!(index = log_id.index, error = %e, "log purge not finished (a restart finishes it)");
                }
            }
            Command::Flush { reply } => {
                let result = self.retry(|w| {
                    w.stage_marker();
                    w.sync()
                });
                answer(reply, result);
            }
            Command::Committed => {}
            Command::Read { from, to, reply } => {
                // A failed IO step is retried like a write's: openraft 0.9 takes a storage
                // error from a replication read as fatal (its Raft stops for good).
                let result = self.retry(|w| {
                    w.write_buf()?;
                    w.read(from, to)
                });
                let _ = reply.send(result.map_err(|e| e.to_string()).and_then(|read| read));
            }
            #[cfg(test)]
            Command::Crash => return Flow::Stop,
        }
        Flow::Continue
    }

    /// Runs `step` until it succeeds, waiting longer after each failure; reports the failure
    /// meanwhile. Gives up only when stopping, after [`SHUTDOWN_RETRY_MS`].
    fn retry<T>(&mut self, mut step: impl FnMut(&mut Writer) -> io::Result<T>) -> io::Result<T> {
        let started = Instant::now();
        let mut wait = IO_RETRY_MS_MIN;
        loop {
            match step(self) {
                Ok(value) => {
                    self.healed();
                    return Ok(value);
                }
                Err(e) => {
                    self.failed(&e);
                    let giving_up = self.stopping
                        && started.elapsed() >= Duration::from_millis(SHUTDOWN_RETRY_MS);
                    if giving_up {
                        tracing::error!(dir = %self.dir.display(), error = %e, "giving up the last flush of the raft log");
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(wait));
                    wait = (wait * 2).min(IO_RETRY_MS_MAX);
                }
            }
        }
    }

    /// Records a failed step: the store reports it, and the next write first cuts whatever a
    /// partial write may have left.
    fn failed(&mut self, e: &io::Error) {
        self.unsynced.cut_first = true;
        self.failing.failures += 1;
        self.shared.io_errors_total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.shared.last_failure) = Some(Instant::now());
        let message = format!("raft log IO failed in {}: {e}", self.dir.display());
        let due = self
            .failing
            .last_logged
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(IO_ERROR_LOG_INTERVAL_MS));
        if due {
            tracing::error!(
                error = %message,
                failures = self.failing.failures,
                "the node acknowledges nothing until its log can be written; retrying"
            );
            self.failing.last_logged = Some(Instant::now());
        }
        *lock(&self.shared.io_error) = Some(message);
    }

    /// A step succeeded: if the disk was failing, it works again.
    fn healed(&mut self) {
        if self.failing.failures == 0 {
            return;
        }
        tracing::warn!(
            dir = %self.dir.display(),
            failures = self.failing.failures,
            "the raft log is written again"
        );
        self.failing = Failing::default();
        *lock(&self.shared.io_error) = None;
    }

    /// Fails this step if a fault was injected for it.
    fn injected(&self) -> io::Result<()> {
        let failures = &self.shared.injected_failures;
        let take = failures.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        match take {
            Ok(_) => Err(io::Error::from_raw_os_error(28)),
            Err(_) => Ok(()),
        }
    }

    /// Stages records (consecutive from `first_index`) for the active segment, rotating to a
    /// new segment when the active one is full. Records staged by an earlier, failed try are
    /// skipped.
    fn stage(&mut self, first_index: u64, records: &[u8], lens: &[u32]) -> io::Result<()> {
        let mut offset = 0usize;
        for (i, &len) in lens.iter().enumerate() {
            let index = first_index + i as u64;
            let record = &records[offset..offset + len as usize];
            offset += len as usize;
            if self.segments.last().is_some_and(|s| index < s.next_index()) {
                continue;
            }
            self.prepare_segment(index)?;
            let Some(segment) = self.segments.last_mut() else {
                unreachable!("prepare_segment leaves an active segment");
            };
            segment.offsets.push(segment.len);
            segment.len += u64::from(len);
            self.unsynced.bytes.extend_from_slice(record);
            if self.unsynced.bytes.len() - self.unsynced.written >= WRITE_BUFFER_BYTES_MAX {
                self.write_buf()?;
            }
        }
        Ok(())
    }

    /// Makes sure the active segment can take the record of entry `index`.
    fn prepare_segment(&mut self, index: u64) -> io::Result<()> {
        if let Some(segment) = self.segments.last() {
            // The store checks consecutiveness before queueing: anything else is a bug, and
            // writing on would corrupt the log.
            assert_eq!(
                segment.next_index(),
                index,
                "non-consecutive append reached the log writer"
            );
            if segment.len < self.segment_bytes_max {
                return Ok(());
            }
            // Full: finish it (data and size on disk) before starting the next one.
            self.sync()?;
        }
        let path = self.dir.join(segment_name(index));
        let file = File::create(&path)?;
        sync_dir(&self.dir)?;
        self.active = Some(file);
        self.unsynced = Unsynced::default();
        self.unsynced.bytes.extend_from_slice(SEGMENT_MAGIC);
        self.segments.push(Segment {
            first_index: index,
            path,
            offsets: Vec::new(),
            len: SEGMENT_MAGIC.len() as u64,
        });
        Ok(())
    }

    /// Stages a commit marker if the committed log id advanced since the last one.
    fn stage_marker(&mut self) {
        let Some(mut committed) = *lock(&self.shared.committed) else {
            return;
        };
        // Entries up to the commit point that are still queued are not written yet; the last
        // staged entry is committed too (a node's log matches the leader's up to its commit).
        if let Some(last) = self.last_log_id.filter(|l| l.index < committed.index) {
            committed = last;
        }
        if self.marker.is_some_and(|m| m.index >= committed.index) {
            return;
        }
        let Some(segment) = self.segments.last_mut() else {
            return;
        };
        segment.len += u64::from(encode_commit_marker(&committed, &mut self.unsynced.bytes));
        self.marker = Some(committed);
    }

    /// Writes the staged bytes to the active segment (no fsync).
    fn write_buf(&mut self) -> io::Result<()> {
        if self.unsynced.written == self.unsynced.bytes.len() {
            return Ok(());
        }
        self.injected()?;
        let unsynced = &mut self.unsynced;
        let Some(file) = self.active.as_ref() else {
            unreachable!("staged records without an active segment");
        };
        let at = unsynced.synced_len + unsynced.written as u64;
        if unsynced.cut_first {
            file.set_len(at)?;
            unsynced.cut_first = false;
        }
        file.write_all_at(&unsynced.bytes[unsynced.written..], at)?;
        unsynced.written = unsynced.bytes.len();
        unsynced.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Writes and fsyncs everything staged, then completes the waiting appends.
    fn sync(&mut self) -> io::Result<()> {
        self.write_buf()?;
        if !self.unsynced.bytes.is_empty() {
            self.injected()?;
            if let Some(file) = &self.active {
                if let Err(e) = file.sync_data() {
                    // The kernel may have dropped the pages: write them all again.
                    self.unsynced.written = 0;
                    return Err(e);
                }
            }
            let unsynced = &mut self.unsynced;
            unsynced.synced_len += unsynced.bytes.len() as u64;
            unsynced.bytes.clear();
            unsynced.written = 0;
            unsynced.since = None;
        }
        for done in self.waiting.drain(..) {
            done(Ok(()));
        }
        Ok(())
    }

    /// After a group of commands: the commit marker, then write what is staged; fsync it if
    /// an append waits for durability.
    fn end_group(&mut self) -> io::Result<()> {
        self.stage_marker();
        if self.durability == Durability::Fsync || !self.waiting.is_empty() {
            self.sync()
        } else {
            self.write_buf()
        }
    }

    /// Periodic duties: a pending commit marker, and the `replicated` mode flush.
    fn tick(&mut self) -> io::Result<()> {
        self.stage_marker();
        let flush_due = match (self.durability, self.unsynced.since) {
            (Durability::Replicated { flush_interval_ms }, Some(since)) => {
                since.elapsed() >= Duration::from_millis(flush_interval_ms)
            }
            _ => false,
        };
        if flush_due {
            self.sync()
        } else {
            self.write_buf()
        }
    }

    /// Cuts the log from `index` on (everything before is already written and fsynced).
    fn truncate(&mut self, index: u64, last: Option<LogId>) -> io::Result<()> {
        self.active = None;
        let mut removed = false;
        while let Some(segment) = self.segments.last().filter(|s| s.first_index >= index) {
            remove_if_exists(&segment.path)?;
            self.segments.pop();
            removed = true;
        }
        if let Some(segment) = self.segments.last_mut() {
            if index < segment.next_index() {
                let keep = (index - segment.first_index) as usize;
                let at = segment.offsets[keep];
                let file = OpenOptions::new().write(true).open(&segment.path)?;
                file.set_len(at)?;
                file.sync_all()?;
                segment.offsets.truncate(keep);
                segment.len = at;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        self.last_log_id = last;
        // The cut may have taken the newest marker with it: write it again.
        self.marker = None;
        self.open_active()
    }

    /// Records the purge point durably, then deletes the segments wholly at or below it.
    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        write_small_file(&self.dir, PURGED_FILE, PURGED_MAGIC, &log_id, true)?;
        let keep_from = log_id.index + 1;
        let mut removed = false;
        while let Some(segment) = self
            .segments
            .first()
            .filter(|s| s.next_index() <= keep_from)
        {
            remove_if_exists(&segment.path)?;
            self.segments.remove(0);
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        if self.segments.is_empty() {
            self.active = None;
            self.unsynced = Unsynced::default();
        }
        Ok(())
    }

    /// The entries `from..to` as written in the segments (everything staged must be written
    /// first). Entries before the first segment (purged meanwhile) are left out, so the answer
    /// is a suffix of the range. A failed IO step is an `Err` (to retry); a segment that does
    /// not hold what the writer wrote there (gone, shorter, or a record that is not the
    /// expected entry) is damage, which no retry mends: `Ok(Err(..))`.
    fn read(&self, from: u64, to: u64) -> io::Result<Result<Vec<Entry>, String>> {
        let mut entries = Vec::new();
        let first = self.segments.partition_point(|s| s.next_index() <= from);
        for segment in self.segments[first..]
            .iter()
            .take_while(|s| s.first_index < to)
        {
            let start = from.max(segment.first_index);
            let end = to.min(segment.next_index());
            if start >= end {
                continue; // a new segment with no record yet
            }
            let at = segment.offsets[(start - segment.first_index) as usize];
            let until = match segment.offsets.get((end - segment.first_index) as usize) {
                Some(next) => *next,
                None => segment.len,
            };
            let mut bytes = vec![0; (until - at) as usize];
            self.injected()?;
            let damage = |e: &dyn std::fmt::Display| format!("{}: {e}", segment.path.display());
            let read = File::open(&segment.path).and_then(|f| f.read_exact_at(&mut bytes, at));
            match read {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(Err(damage(&e)));
                }
                other => other?,
            }
            if let Err(e) = decode_entries(&bytes, start, end, &mut entries) {
                return Ok(Err(damage(&e)));
            }
        }
        Ok(Ok(entries))
    }

    /// Opens the last segment for writing; its whole length is durable (called after syncs).
    fn open_active(&mut self) -> io::Result<()> {
        self.active = None;
        self.unsynced = Unsynced::default();
        if let Some(segment) = self.segments.last() {
            let file = OpenOptions::new().write(true).open(&segment.path)?;
            self.unsynced.synced_len = segment.len;
            self.active = Some(file);
        }
        Ok(())
    }
}

/// Decodes the entries `start..end` from `bytes`, a run of records that starts with entry
/// `start`'s (commit markers between them are skipped), onto `out`.
fn decode_entries(bytes: &[u8], start: u64, end: u64, out: &mut Vec<Entry>) -> Result<(), String> {
    let (mut pos, mut index) = (0, start);
    while index < end {
        let (record, len) =
            decode_record(&bytes[pos..]).map_err(|e| format!("at entry {index}: {e}"))?;
        pos += len;
        if let Record::Entry(entry) = record {
            if entry.log_id.index != index {
                return Err(format!("expected entry {index}, found {}", entry.log_id));
            }
            out.push(entry);
            index += 1;
        }
    }
    Ok(())
}

/// Removes a file; one that is already gone (a retried step) is fine.
fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

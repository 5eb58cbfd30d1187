//! The writer thread: the only code that writes the log's files.
//!
//! It takes commands from a bounded channel in order, so every write (appends, vote, truncate,
//! purge) reaches the disk in the order openraft issued it. Each wake-up drains every command
//! already queued (up to [`DRAIN_COMMANDS_MAX`]) and writes the appended records with one
//! `write` per segment; in `fsync` mode it then fsyncs once and completes all the callbacks
//! (group commit). In `replicated` mode callbacks were completed by `append` and the thread
//! fsyncs when the oldest unsynced write is one flush interval old. Any command that is not an
//! append first writes and fsyncs everything before it.
//!
//! An IO error is sticky: the thread fails every pending and later command with it, because
//! after a failed write or fsync nobody knows what is on disk (the node must stop).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::format::{segment_name, SEGMENT_MAGIC};
use super::recover::{
    sync_dir, write_small_file, Segment, Vote, COMMITTED_FILE, COMMITTED_MAGIC, PURGED_FILE,
    PURGED_MAGIC, VOTE_FILE, VOTE_MAGIC,
};
use super::{Durability, COMMITTED_SAVE_INTERVAL_MS};
use crate::raft::LogId;

/// Commands drained and handled per group commit.
pub(super) const DRAIN_COMMANDS_MAX: usize = 4_096;
/// Staged record bytes that trigger a `write` before the end of a group.
const WRITE_BUFFER_BYTES_MAX: usize = 4 << 20;

/// Completion of an append: called once its records are durable (or failed).
pub(super) type Done = Box<dyn FnOnce(Result<(), io::Error>) + Send>;
/// Where the writer answers a command that the caller waits for.
pub(super) type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// What the store asks the writer to do.
pub(super) enum Command {
    /// Write these records (already encoded, consecutive from `first_index`).
    Append {
        first_index: u64,
        /// Log id of the last entry, `None` for an empty append (a flush barrier).
        last: Option<LogId>,
        records: Vec<u8>,
        /// Length of each record in `records`.
        lens: Vec<u32>,
        /// `Some` in `fsync` mode: called after the fsync that covers these records.
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
    /// Record the purge point durably and delete the segments wholly at or below it.
    Purge { log_id: LogId, reply: Reply },
    /// Write and fsync everything before.
    Flush { reply: Reply },
    /// Stop at once without writing what is staged: a simulated process crash.
    #[cfg(test)]
    Crash,
}

/// State shared by the store handles and the writer.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The sticky IO error, once the writer has failed.
    pub failed: Mutex<Option<String>>,
    /// The latest committed log id reported by openraft; the writer saves it lazily.
    pub committed: Mutex<Option<LogId>>,
}

/// Locks a mutex; poisoning cannot leave these plain values half-updated.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread's state.
pub(super) struct Writer {
    dir: PathBuf,
    durability: Durability,
    segment_bytes_max: u64,
    shared: Arc<Shared>,
    /// The segments on disk, in order. The last one is open in `active`.
    segments: Vec<Segment>,
    /// The last segment, open for writing at its end; `None` iff `segments` is empty.
    active: Option<File>,
    /// Records staged for `active`, not yet written.
    buf: Vec<u8>,
    /// `fsync` mode: completions waiting for the next fsync.
    waiting: Vec<Done>,
    /// When data was first written to `active` since its last fsync.
    unsynced_since: Option<Instant>,
    /// The last entry written or staged.
    last_log_id: Option<LogId>,
    /// The last entry known to be on disk (fsynced).
    durable_log_id: Option<LogId>,
    committed_saved: Option<LogId>,
    committed_saved_at: Instant,
    failed: Option<String>,
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
        let committed_saved = *lock(&shared.committed);
        let mut writer = Writer {
            dir,
            durability,
            segment_bytes_max,
            shared,
            segments,
            active: None,
            buf: Vec::new(),
            waiting: Vec::new(),
            unsynced_since: None,
            last_log_id,
            durable_log_id: last_log_id,
            committed_saved,
            committed_saved_at: Instant::now(),
            failed: None,
        };
        writer.open_active()?;
        // The previous process may have died with writes only in the page cache.
        if let Some(file) = &writer.active {
            file.sync_data()?;
        }
        Ok(writer)
    }

    /// The thread's body: runs until every store handle is gone, then writes and fsyncs the
    /// rest.
    pub(super) fn run(mut self, rx: Receiver<Command>) {
        loop {
            match rx.recv_timeout(self.idle_timeout()) {
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
                    let result = self.end_group();
                    self.check(result);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let result = self.tick();
            self.check(result);
        }
        if self.failed.is_none() {
            let result = self.sync();
            self.check(result);
            self.save_committed();
        }
    }

    /// How long to wait for a command before the next periodic duty.
    fn idle_timeout(&self) -> Duration {
        let committed = Duration::from_millis(COMMITTED_SAVE_INTERVAL_MS);
        match (self.durability, self.unsynced_since) {
            (Durability::Replicated { flush_interval_ms }, Some(since)) => {
                Duration::from_millis(flush_interval_ms)
                    .saturating_sub(since.elapsed())
                    .min(committed)
            }
            _ => committed,
        }
    }

    fn handle(&mut self, command: Command) -> Flow {
        match command {
            Command::Append {
                first_index,
                last,
                records,
                lens,
                done,
            } => {
                if let Some(failed) = &self.failed {
                    if let Some(done) = done {
                        done(Err(io::Error::other(failed.clone())));
                    }
                    return Flow::Continue;
                }
                let result = self.stage(first_index, &records, &lens);
                if let Some(done) = done {
                    self.waiting.push(done);
                }
                if result.is_ok() && last.is_some() {
                    self.last_log_id = last;
                }
                self.check(result);
            }
            Command::SaveVote { vote, reply } => {
                let result = self.run_op(|w| {
                    w.sync()?;
                    write_small_file(&w.dir, VOTE_FILE, VOTE_MAGIC, &vote, true)
                });
                let _ = reply.send(result);
            }
            Command::Truncate { index, last, reply } => {
                let result = self.run_op(|w| {
                    w.sync()?;
                    w.truncate(index, last)
                });
                let _ = reply.send(result);
            }
            Command::Purge { log_id, reply } => {
                let result = self.run_op(|w| {
                    w.sync()?;
                    w.purge(log_id)
                });
                let _ = reply.send(result);
            }
            Command::Flush { reply } => {
                let result = self.run_op(Writer::sync);
                let _ = reply.send(result);
            }
            #[cfg(test)]
            Command::Crash => return Flow::Stop,
        }
        Flow::Continue
    }

    /// Runs an operation unless the writer has failed; an error makes the failure sticky.
    fn run_op(&mut self, op: impl FnOnce(&mut Writer) -> io::Result<()>) -> Result<(), String> {
        if let Some(failed) = &self.failed {
            return Err(failed.clone());
        }
        let result = op(self);
        self.check(result);
        match &self.failed {
            Some(failed) => Err(failed.clone()),
            None => Ok(()),
        }
    }

    /// Records an IO error as the sticky failure and fails every waiting completion.
    fn check(&mut self, result: io::Result<()>) {
        let Err(e) = result else { return };
        if self.failed.is_none() {
            let msg = format!("raft log IO failed in {}: {e}", self.dir.display());
            tracing::error!(error = %msg, "the log store stops accepting writes");
            *lock(&self.shared.failed) = Some(msg.clone());
            self.failed = Some(msg);
        }
        let msg = self.failed.clone().unwrap_or_default();
        for done in self.waiting.drain(..) {
            done(Err(io::Error::other(msg.clone())));
        }
    }

    /// Stages records (consecutive from `first_index`) for the active segment, rotating to a
    /// new segment when the active one is full.
    fn stage(&mut self, first_index: u64, records: &[u8], lens: &[u32]) -> io::Result<()> {
        let mut offset = 0usize;
        for (i, &len) in lens.iter().enumerate() {
            let index = first_index + i as u64;
            self.prepare_segment(index)?;
            let Some(segment) = self.segments.last_mut() else {
                return Err(io::Error::other("no active segment"));
            };
            let end = offset + len as usize;
            segment.offsets.push(segment.len);
            segment.len += u64::from(len);
            self.buf.extend_from_slice(&records[offset..end]);
            offset = end;
            if self.buf.len() >= WRITE_BUFFER_BYTES_MAX {
                self.write_buf()?;
            }
        }
        Ok(())
    }

    /// Makes sure the active segment can take the record of entry `index`.
    fn prepare_segment(&mut self, index: u64) -> io::Result<()> {
        if let Some(segment) = self.segments.last() {
            if segment.next_index() != index {
                return Err(io::Error::other(format!(
                    "non-consecutive append: log index {index} after {}",
                    segment.next_index()
                )));
            }
            if segment.len < self.segment_bytes_max {
                return Ok(());
            }
            // Full: finish it (data and size on disk) before starting the next one.
            self.write_buf()?;
            if let Some(file) = &self.active {
                file.sync_data()?;
            }
        }
        let path = self.dir.join(segment_name(index));
        let file = File::create(&path)?;
        sync_dir(&self.dir)?;
        self.active = Some(file);
        self.unsynced_since = None;
        self.buf.extend_from_slice(SEGMENT_MAGIC);
        self.segments.push(Segment {
            first_index: index,
            path,
            offsets: Vec::new(),
            len: SEGMENT_MAGIC.len() as u64,
        });
        Ok(())
    }

    /// Writes the staged records to the active segment (no fsync).
    fn write_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(file) = self.active.as_mut() else {
            return Err(io::Error::other("staged records without an active segment"));
        };
        file.write_all(&self.buf)?;
        self.buf.clear();
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Writes and fsyncs everything staged, then completes the waiting appends.
    fn sync(&mut self) -> io::Result<()> {
        self.write_buf()?;
        if self.unsynced_since.is_some() {
            if let Some(file) = &self.active {
                file.sync_data()?;
            }
            self.unsynced_since = None;
        }
        self.durable_log_id = self.last_log_id;
        for done in self.waiting.drain(..) {
            done(Ok(()));
        }
        Ok(())
    }

    /// After a group of commands: write what is staged, and in `fsync` mode fsync it.
    fn end_group(&mut self) -> io::Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        match self.durability {
            Durability::Fsync => self.sync(),
            Durability::Replicated { .. } => self.write_buf(),
        }
    }

    /// Periodic duties: the `replicated` mode flush and the lazy save of the committed id.
    fn tick(&mut self) -> io::Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        if let (Durability::Replicated { flush_interval_ms }, Some(since)) =
            (self.durability, self.unsynced_since)
        {
            if since.elapsed() >= Duration::from_millis(flush_interval_ms) {
                self.sync()?;
            }
        }
        if self.committed_saved_at.elapsed() >= Duration::from_millis(COMMITTED_SAVE_INTERVAL_MS) {
            self.save_committed();
        }
        Ok(())
    }

    /// Saves the committed log id, clamped to the durable log so that a restart never finds a
    /// committed entry missing. Not fsynced: losing it only makes a restart replay less.
    fn save_committed(&mut self) {
        self.committed_saved_at = Instant::now();
        let committed = *lock(&self.shared.committed);
        let (Some(c), Some(durable)) = (committed, self.durable_log_id) else {
            return;
        };
        let c = if c.index <= durable.index { c } else { durable };
        if Some(c) == self.committed_saved {
            return;
        }
        match write_small_file(&self.dir, COMMITTED_FILE, COMMITTED_MAGIC, &c, false) {
            Ok(()) => self.committed_saved = Some(c),
            Err(e) => tracing::warn!(error = %e, "could not save the committed log id"),
        }
    }

    /// Cuts the log from `index` on (everything before is already written and fsynced).
    fn truncate(&mut self, index: u64, last: Option<LogId>) -> io::Result<()> {
        self.active = None;
        let mut removed = false;
        while self.segments.last().is_some_and(|s| s.first_index >= index) {
            if let Some(segment) = self.segments.pop() {
                std::fs::remove_file(&segment.path)?;
                removed = true;
            }
        }
        if let Some(segment) = self.segments.last_mut() {
            if index < segment.next_index() {
                let at = segment.offsets[(index - segment.first_index) as usize];
                segment
                    .offsets
                    .truncate((index - segment.first_index) as usize);
                segment.len = at;
                let file = OpenOptions::new().write(true).open(&segment.path)?;
                file.set_len(at)?;
                file.sync_all()?;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        if self.committed_saved.is_some_and(|c| c.index >= index) {
            // Cannot happen (committed entries are never truncated); keep the hint consistent.
            self.committed_saved = None;
        }
        self.last_log_id = last;
        self.durable_log_id = last;
        self.open_active()
    }

    /// Records the purge point durably, then deletes the segments wholly at or below it.
    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        write_small_file(&self.dir, PURGED_FILE, PURGED_MAGIC, &log_id, true)?;
        let keep_from = log_id.index + 1;
        let mut removed = 0;
        while self
            .segments
            .get(removed)
            .is_some_and(|s| s.next_index() <= keep_from)
        {
            removed += 1;
        }
        if removed == 0 {
            return Ok(());
        }
        if removed == self.segments.len() {
            self.active = None;
        }
        for segment in self.segments.drain(..removed) {
            std::fs::remove_file(&segment.path)?;
        }
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Opens the last segment for appending at its end.
    fn open_active(&mut self) -> io::Result<()> {
        self.active = None;
        if let Some(segment) = self.segments.last() {
            let mut file = OpenOptions::new().write(true).open(&segment.path)?;
            file.seek(SeekFrom::Start(segment.len))?;
            self.active = Some(file);
        }
        Ok(())
    }
}

//! Opening a log directory: reads the small files and the segments, checks every record, cuts
//! a torn tail, finishes an interrupted purge, and hands the result to the store and its
//! writer. Also the file helpers shared with the writer.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::format::{self, decode_small, encode_small, parse_segment, parse_segment_name};
use crate::raft::{Entry, LogId, NodeId};

/// The vote file: the last vote saved (Raft's term and voted-for), always durable.
pub(super) const VOTE_FILE: &str = "vote";
/// Magic of the vote file.
pub(super) const VOTE_MAGIC: &[u8; 8] = b"STKDVOTE";
/// The purge file: the last purged log id, durable before any segment is deleted.
pub(super) const PURGED_FILE: &str = "purged";
/// Magic of the purge file.
pub(super) const PURGED_MAGIC: &[u8; 8] = b"STKDPURG";
/// The shutdown record: written durably by a graceful stop after the last fsync, removed at
/// the next open. Its absence means the previous process crashed (or lost power).
pub(super) const SHUTDOWN_FILE: &str = "shutdown";
/// Magic of the shutdown record.
pub(super) const SHUTDOWN_MAGIC: &[u8; 8] = b"STKDSHUT";
/// Written by versions before commit markers (a lazily saved committed id); removed at open.
const OBSOLETE_COMMITTED_FILE: &str = "committed";

/// What a graceful stop leaves for the next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct ShutdownRecord {
    /// The last entry of the log, fsynced.
    pub last: Option<LogId>,
    /// The committed log id as known at the stop.
    pub committed: Option<LogId>,
}

/// Openraft's vote for our node id type.
pub(super) type Vote = openraft::Vote<NodeId>;

/// One segment file as the writer tracks it.
#[derive(Debug)]
pub(super) struct Segment {
    /// Index of the first entry (also in the file name).
    pub first_index: u64,
    /// The file.
    pub path: PathBuf,
    /// File offset of each record; entry `first_index + i` starts at `offsets[i]`.
    pub offsets: Vec<u64>,
    /// File length: the end of the last record.
    pub len: u64,
}

impl Segment {
    /// The index the next record appended to this segment must have.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }
}

/// What a log directory holds.
#[derive(Debug)]
pub(super) struct Recovered {
    pub vote: Option<Vote>,
    pub last_purged: Option<LogId>,
    /// The newest committed log id the directory records (commit markers, shutdown record),
    /// never past the log's end: entries up to it may be applied at once.
    pub committed: Option<LogId>,
    /// The entries after the purge point, consecutive.
    pub entries: VecDeque<Entry>,
    /// The segments still on disk, in order; the last one is where appends go.
    pub segments: Vec<Segment>,
    /// How the previous process ended, and what the log may have lost.
    pub end: PreviousEnd,
}

/// How the previous process left the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PreviousEnd {
    /// A new directory.
    Pristine,
    /// A graceful stop, and the log holds everything it had then.
    Clean,
    /// A crash: no shutdown record. Entries never written or never fsynced may be gone
    /// (`torn` says if a torn tail was cut off).
    Crashed {
        /// Why records at the end of the last segment were dropped, if some were.
        torn: Option<String>,
    },
    /// A graceful stop, but the log now ends before the entry it ended with then: data was
    /// lost on disk since (a cut or deleted segment).
    Shortened {
        /// What is missing, for the operator.
        detail: String,
    },
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads (and repairs a torn tail in) the log in `dir`, creating the directory if needed.
pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
    create_dir_durably(dir)?;
    remove_temp_files(dir)?;
    let vote: Option<Vote> = read_small_file(dir, VOTE_FILE, VOTE_MAGIC)?;
    let last_purged: Option<LogId> = read_small_file(dir, PURGED_FILE, PURGED_MAGIC)?;
    let shutdown: Option<ShutdownRecord> = read_small_file(dir, SHUTDOWN_FILE, SHUTDOWN_MAGIC)
        .unwrap_or_else(|e| {
            tracing::warn!(dir = %dir.display(), error = %e, "ignoring unreadable shutdown record");
            None
        });
    let keep_from = last_purged.map_or(0, |p| p.index + 1);
    let read = read_segments(dir, keep_from)?;
    let entries = read.entries;
    if let (Some(p), Some(first)) = (last_purged, entries.front()) {
        if first.log_id.index != p.index + 1 {
            return Err(invalid(format!(
                "log in {} starts at index {} but the last purged index is {}: entries are missing",
                dir.display(),
                first.log_id.index,
                p.index
            )));
        }
    }
    let last = entries.back().map(|e| e.log_id).or(last_purged);
    let end = previous_end(
        dir,
        vote.is_some() || last.is_some(),
        shutdown,
        last,
        read.torn,
    );
    let committed = [read.committed, shutdown.and_then(|s| s.committed)]
        .into_iter()
        .flatten()
        .max_by_key(|c| c.index);
    let committed = check_committed(dir, committed, &entries, last_purged);
    remove_durably(dir, OBSOLETE_COMMITTED_FILE)?;
    Ok(Recovered {
        vote,
        last_purged,
        committed,
        entries,
        segments: read.segments,
        end,
    })
}

/// Removes the shutdown record once the store may open: it describes the process that just
/// ended, and from now on a crash must find none. Durable before anything new is written.
pub(super) fn forget_shutdown(dir: &Path) -> io::Result<()> {
    remove_durably(dir, SHUTDOWN_FILE)
}

/// Tells how the previous process ended from the shutdown record and the log's last entry.
fn previous_end(
    dir: &Path,
    used: bool,
    shutdown: Option<ShutdownRecord>,
    last: Option<LogId>,
    torn: Option<String>,
) -> PreviousEnd {
    match shutdown {
        None if !used => PreviousEnd::Pristine,
        None => PreviousEnd::Crashed { torn },
        Some(record) if record.last.map(|l| l.index) > last.map(|l| l.index) => {
            PreviousEnd::Shortened {
                detail: format!(
                    "{}: the log ends at index {} but it ended at index {} when the node last \
                     stopped: entries were lost on disk since (a cut or deleted segment)",
                    dir.display(),
                    last.map_or_else(|| "none".to_owned(), |l| l.index.to_string()),
                    record.last.map_or(0, |l| l.index)
                ),
            }
        }
        Some(_) => PreviousEnd::Clean,
    }
}

/// Removes a file if it exists and makes the removal durable.
fn remove_durably(dir: &Path, name: &str) -> io::Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The segments of a log directory as read at startup.
struct ReadSegments {
    entries: VecDeque<Entry>,
    segments: Vec<Segment>,
    /// The last commit marker of the log.
    committed: Option<LogId>,
    /// Why a torn tail was cut off, if one was.
    torn: Option<String>,
}

/// Cuts a segment's torn tail (a crash during a write) at `valid_len`, or removes the segment
/// if not even its header survived; returns whether the segment is kept.
fn cut_torn_tail(dir: &Path, path: &Path, why: &str, valid_len: u64) -> io::Result<bool> {
    tracing::warn!(segment = %path.display(), %why, "torn tail of the log cut off (crash during a write)");
    if valid_len < format::SEGMENT_MAGIC.len() as u64 {
        std::fs::remove_file(path)?;
        sync_dir(dir)?;
        return Ok(false);
    }
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(valid_len)?;
    file.sync_all()?;
    Ok(true)
}

/// Reads the segments in order, dropping the ones wholly at or below the purge point.
fn read_segments(dir: &Path, keep_from: u64) -> io::Result<ReadSegments> {
    let mut names = segment_files(dir)?;
    // A segment whose successor starts at or below `keep_from` holds only purged entries: a
    // purge was interrupted after the purge file was written. Finish it.
    while names.len() > 1 && names[1].0 <= keep_from {
        let (_, path) = names.remove(0);
        std::fs::remove_file(&path)?;
    }
    let mut entries = VecDeque::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut committed = None;
    let mut torn = None;
    let count = names.len();
    for (i, (first_index, path)) in names.into_iter().enumerate() {
        if let Some(prev) = segments.last() {
            if prev.next_index() != first_index {
                return Err(invalid(format!(
                    "segment {} starts at index {first_index}, expected {}: a segment is missing or damaged",
                    path.display(),
                    prev.next_index()
                )));
            }
        }
        let is_last = i + 1 == count;
        let bytes = std::fs::read(&path)?;
        let parsed = parse_segment(&bytes, first_index, is_last).map_err(|e| {
            invalid(format!(
                "corrupt log segment {}: {e}; refusing to start",
                path.display()
            ))
        })?;
        committed = parsed.committed.or(committed);
        if let Some(why) = &parsed.torn {
            torn = Some(format!("{}: {why}", path.display()));
            if !cut_torn_tail(dir, &path, why, parsed.valid_len)? {
                continue;
            }
        }
        let segment = Segment {
            first_index,
            path,
            offsets: parsed.offsets,
            len: parsed.valid_len,
        };
        entries.extend(
            parsed
                .entries
                .into_iter()
                .filter(|e| e.log_id.index >= keep_from),
        );
        segments.push(segment);
    }
    // The last segment may hold only purged entries too (a purge past the end of the log).
    while segments
        .first()
        .is_some_and(|s| s.next_index() <= keep_from)
    {
        let segment = segments.remove(0);
        std::fs::remove_file(&segment.path)?;
        sync_dir(dir)?;
    }
    Ok(ReadSegments {
        entries,
        segments,
        committed,
        torn,
    })
}

/// The committed log id if it is consistent with the log, clamped to the log's end (a marker
/// never names an entry written after it, but the shutdown record may outlive a lost tail):
/// every entry a node holds up to its commit point was committed, so the last one is too.
fn check_committed(
    dir: &Path,
    committed: Option<LogId>,
    entries: &VecDeque<Entry>,
    last_purged: Option<LogId>,
) -> Option<LogId> {
    let mut c = committed?;
    if let Some(last) = entries.back().filter(|last| last.log_id.index < c.index) {
        c = last.log_id;
    }
    let first = entries.front().map_or(u64::MAX, |e| e.log_id.index);
    let consistent = match c.index.checked_sub(first) {
        Some(offset) => entries.get(offset as usize).is_some_and(|e| e.log_id == c),
        None => last_purged.is_some_and(|p| c.index <= p.index),
    };
    if !consistent {
        tracing::warn!(dir = %dir.display(), committed = %c, "ignoring committed log id not matching the log");
        return None;
    }
    Some(c)
}

/// The segment files in `dir`, sorted by first index.
fn segment_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(first) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_name)
        {
            out.push((first, path));
        }
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Ok(out)
}

fn remove_temp_files(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Creates `dir` (and parents) and makes its existence durable.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    sync_dir(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Makes the directory's entries (created, renamed, deleted files) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a small file; `None` if it does not exist, an error if it is damaged.
pub(super) fn read_small_file<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
) -> io::Result<Option<T>> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode_small(magic, &bytes)
        .map(Some)
        .map_err(|e| invalid(format!("damaged {}: {e}", path.display())))
}

/// Replaces a small file atomically (temp file + rename). With `durable`, the content is
/// fsynced before the rename and the directory after it, so the new value survives a crash
/// once this returns; without, a crash may leave the old value (never a torn one).
pub(super) fn write_small_file<T: Serialize>(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    value: &T,
    durable: bool,
) -> io::Result<()> {
    let bytes = encode_small(magic, value).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

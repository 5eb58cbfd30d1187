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
/// The committed file: a committed log id no newer than the durable log (a restart hint).
pub(super) const COMMITTED_FILE: &str = "committed";
/// Magic of the committed file.
pub(super) const COMMITTED_MAGIC: &[u8; 8] = b"STKDCOMM";

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
    pub committed: Option<LogId>,
    /// The entries after the purge point, consecutive.
    pub entries: VecDeque<Entry>,
    /// The segments still on disk, in order; the last one is where appends go.
    pub segments: Vec<Segment>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads (and repairs a torn tail in) the log in `dir`, creating the directory if needed.
pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
    create_dir_durably(dir)?;
    remove_temp_files(dir)?;
    let vote = read_small_file(dir, VOTE_FILE, VOTE_MAGIC)?;
    let last_purged: Option<LogId> = read_small_file(dir, PURGED_FILE, PURGED_MAGIC)?;
    let committed: Option<LogId> = read_small_file(dir, COMMITTED_FILE, COMMITTED_MAGIC)
        .unwrap_or_else(|e| {
            tracing::warn!(dir = %dir.display(), error = %e, "ignoring unreadable committed file");
            None
        });
    let keep_from = last_purged.map_or(0, |p| p.index + 1);
    let (entries, segments) = read_segments(dir, keep_from)?;
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
    // The saved committed id is never ahead of what was fsynced, so a log that ends before
    // it lost entries the cluster acknowledged (a cut or deleted segment, not a crash): serving
    // would silently drop them. Refuse; the operator restores the directory or moves it away so
    // that the node resynchronises from the cluster.
    if let Some(c) = committed {
        let last = entries
            .back()
            .map(|e| e.log_id.index)
            .or(last_purged.map(|p| p.index));
        if last.is_none_or(|last| last < c.index) {
            return Err(invalid(format!(
                "{}: the log ends at index {} but index {} was committed: committed entries are \
                 missing (a damaged or deleted segment). Restore this directory from a backup, or \
                 move it away so that the node resynchronises from the cluster",
                dir.display(),
                last.map_or_else(|| "none".to_owned(), |i| i.to_string()),
                c.index
            )));
        }
    }
    let committed = check_committed(dir, committed, &entries, last_purged);
    Ok(Recovered {
        vote,
        last_purged,
        committed,
        entries,
        segments,
    })
}

/// Reads the segments in order, dropping the ones wholly at or below the purge point.
fn read_segments(dir: &Path, keep_from: u64) -> io::Result<(VecDeque<Entry>, Vec<Segment>)> {
    let mut names = segment_files(dir)?;
    // A segment whose successor starts at or below `keep_from` holds only purged entries: a
    // purge was interrupted after the purge file was written. Finish it.
    while names.len() > 1 && names[1].0 <= keep_from {
        let (_, path) = names.remove(0);
        std::fs::remove_file(&path)?;
    }
    let mut entries = VecDeque::new();
    let mut segments: Vec<Segment> = Vec::new();
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
        if let Some(why) = &parsed.torn {
            tracing::warn!(segment = %path.display(), %why, "torn tail of the log cut off (crash during a write)");
            if parsed.valid_len < format::SEGMENT_MAGIC.len() as u64 {
                std::fs::remove_file(&path)?;
                sync_dir(dir)?;
                continue;
            }
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(parsed.valid_len)?;
            file.sync_all()?;
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
    Ok((entries, segments))
}

/// The committed log id if it is consistent with the log; a hint only, so dropped otherwise.
fn check_committed(
    dir: &Path,
    committed: Option<LogId>,
    entries: &VecDeque<Entry>,
    last_purged: Option<LogId>,
) -> Option<LogId> {
    let c = committed?;
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

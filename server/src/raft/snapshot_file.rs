//! Snapshot files: `snapshot-<index>.bin` in the node's snapshot directory.
//!
//! A file is `b"STKDSNAP"`, a u32 LE length and the postcard-encoded [`SnapshotMeta`], the
//! engine's snapshot bytes, then a 32-byte BLAKE3 of everything before. It is written to a
//! temporary file, fsynced and renamed, so a crash leaves the old file or the new one, never
//! half of one; older files are deleted once a newer one is durable. The newest valid file is
//! loaded at startup.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::Ledger;

use super::log_store::{IO_ERROR_LOG_INTERVAL_MS, IO_RETRY_MS_MAX, IO_RETRY_MS_MIN};
use super::SnapshotMeta;

/// First bytes of a snapshot file.
const SNAPSHOT_FILE_MAGIC: &[u8; 8] = b"STKDSNAP";
/// Bytes of the checksum at the end of a file.
const CHECKSUM_BYTES: usize = 32;

/// Why a snapshot file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotFileError {
    /// The file could not be read.
    Io(String),
    /// The file does not start like a snapshot file, or is too short to be one.
    NotASnapshot,
    /// The checksum does not match the content.
    Checksum,
    /// The metadata is not decodable or its length is wrong.
    Meta(String),
    /// The engine refused the ledger's bytes.
    Ledger(String),
}

impl std::fmt::Display for SnapshotFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotFileError::Io(e) => write!(f, "reading: {e}"),
            SnapshotFileError::NotASnapshot => f.write_str("not a snapshot file"),
            SnapshotFileError::Checksum => f.write_str("checksum mismatch"),
            SnapshotFileError::Meta(e) => write!(f, "metadata: {e}"),
            SnapshotFileError::Ledger(e) => write!(f, "ledger: {e}"),
        }
    }
}

impl std::error::Error for SnapshotFileError {}

/// A snapshot read back from its file.
pub struct LoadedSnapshot {
    /// Its Raft metadata.
    pub meta: SnapshotMeta,
    /// The engine's bytes.
    pub data: Vec<u8>,
    /// The ledger they restore to (every invariant checked).
    pub ledger: Ledger,
}

/// The snapshot files in `dir` with their indexes, in no order.
pub fn snapshot_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, std::io::Error> {
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

/// Reads and checks a snapshot file.
pub fn read_snapshot_file(path: &Path) -> Result<LoadedSnapshot, SnapshotFileError> {
    let mut bytes = std::fs::read(path).map_err(|e| SnapshotFileError::Io(e.to_string()))?;
    if bytes.len() < 8 + 4 + CHECKSUM_BYTES || &bytes[..8] != SNAPSHOT_FILE_MAGIC {
        return Err(SnapshotFileError::NotASnapshot);
    }
    let body_len = bytes.len() - CHECKSUM_BYTES;
    if blake3::hash(&bytes[..body_len]).as_bytes() != &bytes[body_len..] {
        return Err(SnapshotFileError::Checksum);
    }
    let meta_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let meta_end = 12usize
        .checked_add(meta_len)
        .filter(|end| *end <= body_len)
        .ok_or_else(|| SnapshotFileError::Meta("length past the end".to_owned()))?;
    let meta: SnapshotMeta = postcard::from_bytes(&bytes[12..meta_end])
        .map_err(|e| SnapshotFileError::Meta(e.to_string()))?;
    // The engine's bytes in place: no second copy of a large snapshot at startup.
    bytes.truncate(body_len);
    bytes.drain(..meta_end);
    let ledger = Ledger::restore(&bytes).map_err(|e| SnapshotFileError::Ledger(e.to_string()))?;
    Ok(LoadedSnapshot {
        meta,
        data: bytes,
        ledger,
    })
}

/// Writes a snapshot file durably (temporary file, fsync, rename, fsync of the directory) and
/// deletes older ones. The checksum is computed while writing: the ledger's bytes are not
/// copied into the file's.
pub fn persist_snapshot(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<(), String> {
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let meta_bytes = postcard::to_allocvec(meta).map_err(|e| e.to_string())?;
    let meta_len = u32::try_from(meta_bytes.len()).map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(12 + meta_bytes.len());
    head.extend_from_slice(SNAPSHOT_FILE_MAGIC);
    head.extend_from_slice(&meta_len.to_le_bytes());
    head.extend_from_slice(&meta_bytes);
    let mut sum = blake3::Hasher::new();
    sum.update(&head);
    sum.update(data);
    let tmp = dir.join(format!("snapshot-{index}.tmp"));
    let path = dir.join(format!("snapshot-{index}.bin"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
    for part in [&head[..], data, sum.finalize().as_bytes()] {
        file.write_all(part).map_err(|e| e.to_string())?;
    }
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

/// The node stopped while a snapshot file was still failing to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// [`persist_snapshot`] until it succeeds or `stopping()` says the node stops: a full or
/// failing disk delays a snapshot but never loses one nor stops the node. Each failure is
/// passed to `failed` and logged at most once per [`IO_ERROR_LOG_INTERVAL_MS`]; the
/// temporary file is removed between tries so that it does not hold the space.
pub fn persist_with_retry(
    dir: &Path,
    meta: &SnapshotMeta,
    data: &[u8],
    failed: impl Fn(String),
    stopping: impl Fn() -> bool,
) -> Result<(), Stopped> {
    let mut wait = IO_RETRY_MS_MIN;
    let mut logged: Option<Instant> = None;
    let index = meta.last_log_id.map_or(0, |l| l.index);
    loop {
        let error = match persist_snapshot(dir, meta, data) {
            Ok(()) => return Ok(()),
            Err(e) => format!("writing a snapshot in {} failed: {e}", dir.display()),
        };
        if logged.is_none_or(|at| at.elapsed() >= Duration::from_millis(IO_ERROR_LOG_INTERVAL_MS)) {
            tracing::error!(error = %error, index, "retrying the snapshot write");
            logged = Some(Instant::now());
        }
        failed(error);
        let _ = std::fs::remove_file(dir.join(format!("snapshot-{index}.tmp")));
        if stopping() {
            return Err(Stopped);
        }
        std::thread::sleep(Duration::from_millis(wait));
        wait = (wait * 2).min(IO_RETRY_MS_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{LogId, StoredMembership};

    #[test]
    fn snapshot_files_round_trip_and_reject_corruption() {
        let dir = std::env::temp_dir().join(format!("stockd-snapfile-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let data = Ledger::default().snapshot();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-42".to_owned(),
        };
        persist_snapshot(&dir, &meta, &data).expect("persist");
        let path = dir.join("snapshot-42.bin");
        let loaded = read_snapshot_file(&path).expect("read back");
        assert_eq!(loaded.meta, meta);
        assert_eq!(loaded.data, data);
        assert_eq!(loaded.ledger.snapshot(), data);
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            read_snapshot_file(&path).err(),
            Some(SnapshotFileError::Checksum)
        );
        std::fs::write(&path, &bytes[..20]).expect("write");
        assert_eq!(
            read_snapshot_file(&path).err(),
            Some(SnapshotFileError::NotASnapshot)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_failing_write_is_retried_and_reported_until_the_node_stops() {
        let dir = std::env::temp_dir().join(format!("stockd-snapfile-gone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let meta = SnapshotMeta::default();
        let failures = std::cell::Cell::new(0);
        let result = persist_with_retry(
            &dir, // does not exist: every write fails
            &meta,
            b"bytes",
            |e| {
                assert!(e.contains("writing a snapshot"), "{e}");
                failures.set(failures.get() + 1);
            },
            || failures.get() >= 3,
        );
        assert_eq!(result, Err(Stopped));
        assert_eq!(failures.get(), 3);
        std::fs::create_dir_all(&dir).expect("dir");
        let result = persist_with_retry(&dir, &meta, b"bytes", |e| panic!("{e}"), || false);
        assert_eq!(result, Ok(()), "written once the directory exists");
        std::fs::remove_dir_all(&dir).ok();
    }
}

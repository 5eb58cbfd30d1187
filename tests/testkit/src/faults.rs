//! Faults injected on disk (network faults are [`crate::Cluster::isolate`]).

use std::path::{Path, PathBuf};

/// What [`cut_tail`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file that lost its tail.
    pub segment: PathBuf,
    /// Bytes cut off.
    pub cut: u64,
}

/// Cuts the last `bytes` bytes off the newest segment of the log in `data_dir` (the node
/// must be stopped): the torn tail a power cut leaves when the writes of the last moments
/// never reached the disk. Never cuts into the 8-byte magic, since a segment cut to nothing
/// is another case (a new segment).
pub fn cut_tail(data_dir: &Path, bytes: u64) -> std::io::Result<TornTail> {
    let log_dir = data_dir.join("log");
    // Named in the error: a node that never started has no log directory.
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", log_dir.display()));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .map_err(named)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let segment = segments
        .pop()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no log segment"))?;
    let len = std::fs::metadata(&segment)?.len();
    let cut = bytes.min(len.saturating_sub(8));
    let file = std::fs::OpenOptions::new().write(true).open(&segment)?;
    file.set_len(len - cut)?;
    file.sync_all()?;
    Ok(TornTail { segment, cut })
}

//! Temporary directories that remove themselves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Error;

/// A fresh, empty directory, removed when dropped (kept, and its place printed, when the
/// owner asked to keep it for a failing test: node logs explain the failure).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep_if_panicking: bool,
}

impl TempDir {
    /// A new directory under the system's temporary directory, named after `name`, this
    /// process and a counter, so parallel tests and earlier runs never share one.
    pub fn new(name: &str) -> Result<TempDir, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = format!("stockd-{name}-{}-{n}", std::process::id());
        TempDir::at(std::env::temp_dir().join(dir))
    }

    /// Takes `path` as the directory: whatever is there is removed first (a directory left by
    /// a killed run must not leak old data into a new cluster).
    pub fn at(path: PathBuf) -> Result<TempDir, Error> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|source| Error::Dir {
            path: path.clone(),
            source,
        })?;
        Ok(TempDir {
            path,
            keep_if_panicking: false,
        })
    }

    /// Keeps the directory when it is dropped during a panic (a failed test).
    pub fn keep_if_panicking(mut self) -> TempDir {
        self.keep_if_panicking = true;
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep_if_panicking && std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.path.display());
        } else {
            remove(&self.path);
        }
    }
}

/// Removes `path`, trying again a few times: a process or thread that has just stopped may
/// still have been creating files in it, which makes one pass fail with "not empty".
fn remove(path: &Path) {
    for _ in 0..5 {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => return,
        }
    }
    eprintln!("could not remove {}", path.display());
}

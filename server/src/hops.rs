//! The hop trace: where a write's time goes inside a cluster, for measurements.
//!
//! When the environment variable [`HOP_TRACE_ENV`] names a path prefix, the node writes one line
//! per step ([`Hop`]) of each write's way through it to `PREFIX.PID`: `MICROS PID HOP A B`, the
//! wall clock in µs since the epoch (one clock for every process of a host, so that a write can
//! be followed from the leader to its followers and back), the step's name and two numbers whose
//! meaning each [`Hop`] gives. `scripts/hops.py PREFIX` turns the files of a local cluster into a
//! table of the time between steps (docs/BENCHMARKS.md, section Z).
//!
//! Off (the default), a mark is one relaxed atomic load. On, lines are buffered
//! ([`HOP_TRACE_BUFFER_BYTES`]) and written when the buffer is full and when the node stops: a
//! killed node loses its last buffer. A trace that cannot be written stops tracing (one warning);
//! it never stops the node.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that turns the trace on: a path prefix (`/tmp/hops` writes
/// `/tmp/hops.PID`).
pub const HOP_TRACE_ENV: &str = "STOCKD_HOP_TRACE";
/// Bytes of lines kept before they are written (about 2,000 lines).
pub const HOP_TRACE_BUFFER_BYTES: usize = 64 * 1024;

/// A step of a write through a node, in the order a replicated write takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// A client frame was read and parsed (leader or follower). A: the frame's id.
    Frame,
    /// The proposer hands a batch to Raft. A: writes in it.
    Proposed,
    /// Entries were appended to this node's log (leader and followers). A, B: first and last
    /// log index.
    Appended,
    /// An AppendEntries is sent to a peer. A, B: first and last log index (0, 0: none, a
    /// heartbeat or a commit index).
    RpcSent,
    /// The peer answered it. A: its first log index (0: none); B: the peer's node id.
    RpcAnswered,
    /// A follower read an AppendEntries. A, B: first and last log index (0, 0: none).
    PeerReceived,
    /// The follower has its answer. A, B: as in `PeerReceived`.
    PeerAnswered,
    /// An entry's apply starts. A: its log index.
    Applying,
    /// The proposer has the entry's outcomes. A: its log index.
    Answered,
    /// A frame's reply is queued on its stream. A: the frame's id.
    Replied,
}

impl Hop {
    /// The name written in the trace.
    pub fn name(self) -> &'static str {
        match self {
            Hop::Frame => "frame",
            Hop::Proposed => "proposed",
            Hop::Appended => "appended",
            Hop::RpcSent => "rpc_sent",
            Hop::RpcAnswered => "rpc_answered",
            Hop::PeerReceived => "peer_received",
            Hop::PeerAnswered => "peer_answered",
            Hop::Applying => "applying",
            Hop::Answered => "answered",
            Hop::Replied => "replied",
        }
    }
}

/// Whether the trace is on: read once, at the first mark.
static ON: AtomicBool = AtomicBool::new(false);
static TRACE: OnceLock<Option<Mutex<Trace>>> = OnceLock::new();

struct Trace {
    file: File,
    pid: u32,
    buffer: Vec<u8>,
}

/// Opens the trace if [`HOP_TRACE_ENV`] asks for one. Called once at start; marks before it
/// (or without it) are not written.
pub fn init() {
    let trace = TRACE.get_or_init(|| {
        let prefix = std::env::var_os(HOP_TRACE_ENV)?;
        match Trace::open(prefix, std::process::id()) {
            Ok(trace) => Some(Mutex::new(trace)),
            Err(e) => {
                tracing::warn!(error = %e, "no hop trace: its file cannot be created");
                None
            }
        }
    });
    ON.store(trace.is_some(), Ordering::Relaxed);
}

/// Notes that a write reached `hop` now; `a` and `b` as the [`Hop`] says.
#[inline]
pub fn mark(hop: Hop, a: u64, b: u64) {
    if ON.load(Ordering::Relaxed) {
        record(hop, a, b);
    }
}

#[cold]
fn record(hop: Hop, a: u64, b: u64) {
    let Some(Some(trace)) = TRACE.get() else {
        return;
    };
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    trace
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .line(micros, hop, a, b);
}

/// Writes what is buffered (at a node's stop).
pub fn flush() {
    if let Some(Some(trace)) = TRACE.get() {
        trace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_out();
    }
}

impl Trace {
    /// Creates `PREFIX.PID`.
    fn open(prefix: std::ffi::OsString, pid: u32) -> std::io::Result<Trace> {
        let mut path = prefix;
        path.push(format!(".{pid}"));
        Ok(Trace {
            file: File::create(&path)?,
            pid,
            buffer: Vec::with_capacity(HOP_TRACE_BUFFER_BYTES),
        })
    }

    fn line(&mut self, micros: u128, hop: Hop, a: u64, b: u64) {
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buffer, "{micros} {} {} {a} {b}", self.pid, hop.name());
        if self.buffer.len() >= HOP_TRACE_BUFFER_BYTES {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        if let Err(e) = self.file.write_all(&self.buffer) {
            ON.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "the hop trace cannot be written: tracing stops");
        }
        self.buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_distinct_one_word_name() {
        let all = [
            Hop::Frame,
            Hop::Proposed,
            Hop::Appended,
            Hop::RpcSent,
            Hop::RpcAnswered,
            Hop::PeerReceived,
            Hop::PeerAnswered,
            Hop::Applying,
            Hop::Answered,
            Hop::Replied,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|h| h.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(names.iter().all(|n| !n.contains(' ')));
    }

    #[test]
    fn lines_reach_the_file_when_the_buffer_fills_and_at_flush() {
        let dir = std::env::temp_dir().join(format!("stockd-hops-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut trace = Trace::open(dir.join("t").into_os_string(), 42).expect("open");
        let path = dir.join("t.42");
        trace.line(1_000_001, Hop::RpcSent, 7, 9);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "",
            "still buffered"
        );
        let mut lines = 1;
        while !trace.buffer.is_empty() || lines == 1 {
            trace.line(1_000_002, Hop::Answered, 7, 0);
            lines += 1;
        }
        let written = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            written.lines().count(),
            lines,
            "a full buffer is written whole"
        );
        assert_eq!(written.lines().next(), Some("1000001 42 rpc_sent 7 9"));
        trace.line(1_000_003, Hop::Replied, 3, 0);
        trace.write_out();
        let written = std::fs::read_to_string(&path).expect("read");
        assert_eq!(written.lines().last(), Some("1000003 42 replied 3 0"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

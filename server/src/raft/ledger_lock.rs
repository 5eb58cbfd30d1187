//! The ledger behind its lock, and the node's own measurement of how long that lock stopped
//! apply and reads (SPEC section 4, "No stalls"; `status` reports it as [`PauseStats`]).
//!
//! Apply takes the write lock once per entry (one batch); reads take the read lock for one query; a snapshot takes it only to freeze the ledger. A
//! pause counts from the moment the lock is asked for until it is released (a write) or
//! granted (a read): an apply that waits for a long read counts that wait, and a read that
//! waits behind an apply counts it too. The cost: an uncontended read is one `try_read` and
//! reads no clock; anything else reads the clock twice and updates two atomic maxima.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LockResult, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{Instant, SystemTime};

use engine::Ledger;
use protocol::{PauseSecond, PauseStats, PAUSE_SECONDS_REPORTED};

/// Per-second slots kept, a ring indexed by the second: more than are reported, so that the
/// oldest second reported is never one being overwritten.
const PAUSE_SLOTS: usize = 64;
const _: () = assert!(PAUSE_SLOTS > PAUSE_SECONDS_REPORTED + 1);

/// A slot packs the second it belongs to (the low [`SECOND_BITS`] bits of the second since
/// start: a slot is mistaken for a current one only after 2^26 s, two years, unwritten) and
/// that second's maximum in µs (at most [`SLOT_US_MAX`], 76 hours), so that one
/// compare-and-swap both starts a new second and raises its maximum.
const SECOND_BITS: u32 = 26;
/// Bits of the µs part of a slot.
const US_BITS: u32 = 64 - SECOND_BITS;
/// Largest pause a slot holds, µs; longer ones are kept as this.
const SLOT_US_MAX: u64 = (1 << US_BITS) - 1;

/// What a slot holds for `second` after a pause of `us`, or `None` if it already holds as
/// much (the common case: one load, no store).
fn raised(slot: u64, second: u64, us: u64) -> Option<u64> {
    let tag = second & ((1 << SECOND_BITS) - 1);
    let us = us.min(SLOT_US_MAX);
    let same_second = slot >> US_BITS == tag;
    if same_second && slot & SLOT_US_MAX >= us {
        return None;
    }
    Some(tag << US_BITS | us)
}

/// The maximum a slot holds for `second` (0 if it holds another second).
fn slot_value(slot: u64, second: u64) -> u64 {
    if slot >> US_BITS == second & ((1 << SECOND_BITS) - 1) {
        slot & SLOT_US_MAX
    } else {
        0
    }
}

/// One kind of pause: its maximum since start and per second.
struct PauseMax {
    since_start_us: AtomicU64,
    seconds: [AtomicU64; PAUSE_SLOTS],
}

impl PauseMax {
    fn new() -> PauseMax {
        PauseMax {
            since_start_us: AtomicU64::new(0),
            seconds: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn record(&self, second: u64, us: u64) {
        self.since_start_us.fetch_max(us, Ordering::Relaxed);
        let slot = &self.seconds[(second % PAUSE_SLOTS as u64) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        while let Some(new) = raised(current, second, us) {
            match slot.compare_exchange_weak(current, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    fn at(&self, second: u64) -> u64 {
        slot_value(
            self.seconds[(second % PAUSE_SLOTS as u64) as usize].load(Ordering::Relaxed),
            second,
        )
    }
}

/// The longest apply pause and read wait of a node, since start and per second.
pub struct Pauses {
    started: Instant,
    /// The wall clock at `started`, ms since the Unix epoch, to name the seconds.
    started_unix_ms: u64,
    apply: PauseMax,
    read: PauseMax,
    /// The applying thread's CPU time within each apply pause.
    apply_cpu: PauseMax,
}

impl Pauses {
    fn new() -> Pauses {
        let started_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Pauses {
            started: Instant::now(),
            started_unix_ms,
            apply: PauseMax::new(),
            read: PauseMax::new(),
            apply_cpu: PauseMax::new(),
        }
    }

    fn second_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_secs()
    }

    fn record(&self, kind: &PauseMax, asked: Instant, done: Instant) {
        let us =
            u64::try_from(done.saturating_duration_since(asked).as_micros()).unwrap_or(u64::MAX);
        kind.record(self.second_of(done), us);
    }

    /// The maxima since start and for the last [`PAUSE_SECONDS_REPORTED`] seconds up to `now`
    /// (the seconds with neither kind of pause left out).
    pub fn stats(&self, now: Instant) -> PauseStats {
        let last = self.second_of(now);
        let first = last.saturating_sub(PAUSE_SECONDS_REPORTED as u64 - 1);
        let recent = (first..=last)
            .map(|second| PauseSecond {
                start_ms: self
                    .started_unix_ms
                    .saturating_add(second.saturating_mul(1_000)),
                apply_pause_max_us: self.apply.at(second),
                read_wait_max_us: self.read.at(second),
                apply_cpu_max_us: self.apply_cpu.at(second),
            })
            .filter(|s| s.apply_pause_max_us > 0 || s.read_wait_max_us > 0)
            .collect();
        PauseStats {
            apply_pause_max_us: self.apply.since_start_us.load(Ordering::Relaxed),
            read_wait_max_us: self.read.since_start_us.load(Ordering::Relaxed),
            apply_cpu_max_us: self.apply_cpu.since_start_us.load(Ordering::Relaxed),
            recent,
        }
    }
}

/// The ledger and its lock, measured (module doc). Only `raft/` writes to the ledger.
pub struct LedgerLock {
    ledger: RwLock<Ledger>,
    pauses: Pauses,
}

impl std::fmt::Debug for LedgerLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerLock").finish_non_exhaustive()
    }
}

impl LedgerLock {
    /// `ledger` behind a lock; pauses count from now.
    pub fn new(ledger: Ledger) -> LedgerLock {
        LedgerLock {
            ledger: RwLock::new(ledger),
            pauses: Pauses::new(),
        }
    }

    /// Read-locks the ledger, as `RwLock::read` (poisoned if an apply panicked), recording
    /// how long the read waited if it had to.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, Ledger>> {
        match self.ledger.try_read() {
            Ok(guard) => return Ok(guard),
            Err(TryLockError::Poisoned(poisoned)) => return Err(poisoned),
            Err(TryLockError::WouldBlock) => {}
        }
        let asked = Instant::now();
        let guard = self.ledger.read();
        self.pauses.record(&self.pauses.read, asked, Instant::now());
        guard
    }

    /// Write-locks the ledger until the returned guard is dropped, which records the pause.
    /// Panics if a previous apply panicked: a half-applied ledger must stop the node.
    pub(in crate::raft) fn write(&self) -> LedgerWrite<'_> {
        let asked = Instant::now();
        let cpu_asked_ns = thread_cpu_ns();
        let guard = self
            .ledger
            .write()
            .expect("ledger lock poisoned: a previous apply panicked");
        LedgerWrite {
            guard,
            asked,
            cpu_asked_ns,
            pauses: &self.pauses,
        }
    }

    /// The longest apply pause and read wait since start, and per second recently.
    pub fn pauses(&self) -> PauseStats {
        self.pauses.stats(Instant::now())
    }
}

/// The ledger write-locked; dropping it releases the lock and records the pause.
pub(in crate::raft) struct LedgerWrite<'a> {
    guard: RwLockWriteGuard<'a, Ledger>,
    asked: Instant,
    /// This thread's CPU time when it asked for the lock (the guard is not `Send`: it is
    /// dropped on the same thread).
    cpu_asked_ns: u64,
    pauses: &'a Pauses,
}

/// The calling thread's CPU time, ns (`CLOCK_THREAD_CPUTIME_ID`: a system call, ~0.1-0.5 µs,
/// twice per entry applied).
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

impl std::ops::Deref for LedgerWrite<'_> {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.guard
    }
}

impl std::ops::DerefMut for LedgerWrite<'_> {
    fn deref_mut(&mut self) -> &mut Ledger {
        &mut self.guard
    }
}

impl Drop for LedgerWrite<'_> {
    fn drop(&mut self) {
        // The lock is released right after this (the guard field drops next): the few
        // nanoseconds in between are not worth a second clock read.
        let done = Instant::now();
        let cpu_us = thread_cpu_ns().saturating_sub(self.cpu_asked_ns) / 1_000;
        self.pauses.record(&self.pauses.apply, self.asked, done);
        self.pauses
            .apply_cpu
            .record(self.pauses.second_of(done), cpu_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_slot_keeps_the_maximum_of_its_second_and_restarts_on_a_new_one() {
        let s5 = raised(0, 5, 300).expect("a new second");
        assert_eq!(slot_value(s5, 5), 300);
        assert_eq!(slot_value(s5, 5 + PAUSE_SLOTS as u64), 0, "another second");
        assert_eq!(raised(s5, 5, 200), None, "a shorter pause changes nothing");
        assert_eq!(raised(s5, 5, 300), None);
        let higher = raised(s5, 5, 301).expect("a longer one raises it");
        assert_eq!(slot_value(higher, 5), 301);
        let next = raised(higher, 5 + PAUSE_SLOTS as u64, 7).expect("a later second");
        assert_eq!(
            slot_value(next, 5 + PAUSE_SLOTS as u64),
            7,
            "starts from nothing"
        );
        let huge = raised(0, 1, u64::MAX).expect("raised");
        assert_eq!(slot_value(huge, 1), SLOT_US_MAX, "capped, not wrapped");
    }

    #[test]
    fn pauses_are_reported_since_start_and_per_second() {
        let pauses = Pauses::new();
        let t0 = pauses.started;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        pauses.record(&pauses.apply, at(100), at(103)); // 3 ms in second 0
        pauses.record(&pauses.apply, at(200), at(201)); // 1 ms in second 0
        pauses.record(&pauses.read, at(2_500), at(2_502)); // 2 ms in second 2
        pauses.record(&pauses.apply, at(70_000), at(70_009)); // 9 ms in second 70
        let stats = pauses.stats(at(70_500));
        assert_eq!(stats.apply_pause_max_us, 9_000);
        assert_eq!(stats.read_wait_max_us, 2_000);
        // Seconds 0 and 2 are more than 60 s before second 70: only second 70 is recent.
        assert_eq!(
            stats.recent,
            vec![PauseSecond {
                start_ms: pauses.started_unix_ms + 70_000,
                apply_pause_max_us: 9_000,
                read_wait_max_us: 0,
                apply_cpu_max_us: 0,
            }]
        );
        let early = pauses.stats(at(2_900));
        let seconds: Vec<(u64, u64, u64)> = early
            .recent
            .iter()
            .map(|s| {
                (
                    s.start_ms - pauses.started_unix_ms,
                    s.apply_pause_max_us,
                    s.read_wait_max_us,
                )
            })
            .collect();
        // Second 70's slot is 6 (70 % 64) and holds 70, not 6: nothing leaks backwards.
        assert_eq!(seconds, vec![(0, 3_000, 0), (2_000, 0, 2_000)]);
    }

    #[test]
    fn an_apply_that_waits_for_a_read_counts_the_wait() {
        let lock = std::sync::Arc::new(LedgerLock::new(Ledger::default()));
        let read = lock.read().expect("read");
        let writer = {
            let lock = lock.clone();
            std::thread::spawn(move || drop(lock.write()))
        };
        // std's lock turns new readers away once a writer waits: then the writer has asked.
        let asking = Instant::now();
        while lock.ledger.try_read().is_ok() {
            assert!(
                asking.elapsed() < Duration::from_secs(10),
                "the writer never asked"
            );
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        drop(read);
        writer.join().expect("writer");
        assert!(
            lock.pauses().apply_pause_max_us >= 20_000,
            "{:?}",
            lock.pauses()
        );
        assert_eq!(lock.pauses().read_wait_max_us, 0, "the read never waited");
        let cpu = lock.pauses().apply_cpu_max_us;
        assert!(cpu < 10_000, "blocked on the lock is not CPU: {cpu} µs");
    }

    /// The CPU time of a pause counts the applying thread's work only: a thread holding the
    /// lock while it is off the CPU (here asleep; in a node, descheduled) adds wall time, not
    /// CPU time.
    #[test]
    fn the_cpu_of_an_apply_counts_work_not_waiting() {
        let lock = LedgerLock::new(Ledger::default());
        {
            let _held = lock.write();
            std::thread::sleep(Duration::from_millis(30));
        }
        let slept = lock.pauses();
        assert!(slept.apply_pause_max_us >= 30_000, "{slept:?}");
        assert!(slept.apply_cpu_max_us < 10_000, "{slept:?}");
        {
            let _held = lock.write();
            let start = thread_cpu_ns();
            let mut spins = 0u64;
            while thread_cpu_ns().saturating_sub(start) < 40_000_000 {
                spins = std::hint::black_box(spins + 1);
            }
        }
        let worked = lock.pauses();
        assert!(worked.apply_cpu_max_us >= 40_000, "{worked:?}");
        assert!(worked.apply_cpu_max_us <= worked.apply_pause_max_us.max(40_000) + 1_000);
        let second = worked.recent.last().expect("this second");
        assert!(second.apply_cpu_max_us >= 40_000, "{worked:?}");
    }
}

//! The leader's clock: wall time in ms since the Unix epoch, plus an offset that only tests
//! move (to run scenario cases with `advance 1h` against a live cluster without sleeping).
//!
//! Only the proposer (batch timestamps) and the read path (query time) read it; the state
//! machine never does (SPEC section 3: time enters the ledger only through the batch).

use std::sync::atomic::{AtomicU64, Ordering};

/// A wall clock with a forward-only offset.
#[derive(Debug)]
pub struct Clock {
    offset_ms: AtomicU64,
    /// Reference for [`Clock::monotonic_ms`].
    started: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }
}

/// How far the wall clock may run ahead of the monotonic clock between two batch stamps
/// before the proposer distrusts it, ms.
pub const CLOCK_JUMP_TOLERANCE_MS: u64 = 2_000;

/// The timestamp for the next batch, given the previous stamp and both clocks at that moment
/// and now (SPEC section 4: time never goes backwards; a leader's wall clock that jumps ahead
/// -- an NTP step, an operator's mistake -- would move every deadline and the dedup window
/// forward for good, so a jump beyond what the monotonic clock measured, plus a tolerance, is
/// replaced by what the monotonic clock measured). Pure, for tests.
pub fn next_stamp(previous: Option<(u64, u64)>, wall_ms: u64, monotonic_ms: u64) -> u64 {
    let Some((last_stamp, last_monotonic)) = previous else {
        return wall_ms;
    };
    let measured = last_stamp.saturating_add(monotonic_ms.saturating_sub(last_monotonic));
    if wall_ms > measured.saturating_add(CLOCK_JUMP_TOLERANCE_MS) {
        measured
    } else {
        wall_ms.max(last_stamp)
    }
}

impl Clock {
    /// Now, ms since the Unix epoch (plus the offset).
    pub fn now_ms(&self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        wall.saturating_add(self.offset_ms.load(Ordering::Acquire))
    }

    /// Milliseconds on a monotonic clock (plus the offset: a test's `advance` is a real jump,
    /// not a wall-clock error).
    pub fn monotonic_ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64)
            .saturating_add(self.offset_ms.load(Ordering::Acquire))
    }

    /// Moves this clock forward by `ms` (tests: every node of a test cluster shares one clock).
    pub fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_follow_the_wall_clock_unless_it_jumps_ahead() {
        // First stamp: the wall clock.
        assert_eq!(next_stamp(None, 1_000_000, 5), 1_000_000);
        // 100 ms later on both clocks.
        assert_eq!(next_stamp(Some((1_000_000, 5)), 1_000_100, 105), 1_000_100);
        // The wall clock stepped back: time does not go backwards.
        assert_eq!(next_stamp(Some((1_000_000, 5)), 999_000, 105), 1_000_000);
        // Within the tolerance of drift: the wall clock.
        assert_eq!(next_stamp(Some((1_000_000, 5)), 1_002_100, 105), 1_002_100);
        // A day ahead while 100 ms passed: the monotonic measure.
        assert_eq!(
            next_stamp(Some((1_000_000, 5)), 1_000_000 + 86_400_000, 105),
            1_000_100
        );
    }

    #[test]
    fn advance_moves_now_forward() {
        let clock = Clock::default();
        let before = clock.now_ms();
        clock.advance(3_600_000);
        let after = clock.now_ms();
        assert!(
            after >= before + 3_600_000 && after < before + 3_700_000,
            "{before} {after}"
        );
    }
}

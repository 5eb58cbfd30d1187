//! The leader's clock: wall time in ms since the Unix epoch, plus an offset that only tests
//! move (to run scenario cases with `advance 1h` against a live cluster without sleeping).
//!
//! Only the proposer (batch timestamps) and the read path (query time) read it; the state
//! machine never does (SPEC section 3: time enters the ledger only through the batch).

use std::sync::atomic::{AtomicU64, Ordering};

/// A wall clock with a forward-only offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicU64,
}

impl Clock {
    /// Now, ms since the Unix epoch (plus the offset).
    pub fn now_ms(&self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        wall.saturating_add(self.offset_ms.load(Ordering::Acquire))
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

//! An in-process engine as a [`CaseTarget`]: `stockctl case FILE...` without `--connect`, and
//! the fast tests of every case.

use engine::{Answer, BatchHeader, Ledger, Outcome, Query, Rejection, Request};

use super::{CaseTarget, TargetError};

/// A fresh [`engine::Ledger`], one batch per submit, a simulated clock starting at
/// 2026-01-01T00:00:00Z. The ledger's invariants are checked after every batch.
pub struct EngineTarget {
    /// The ledger under test.
    pub ledger: Ledger,
    /// The simulated clock, ms since the epoch.
    pub now_ms: u64,
    next_index: u64,
}

impl Default for EngineTarget {
    fn default() -> Self {
        EngineTarget {
            ledger: Ledger::default(),
            now_ms: 1_767_225_600_000,
            next_index: 1,
        }
    }
}

impl CaseTarget for EngineTarget {
    fn submit(&mut self, requests: Vec<Request>) -> Result<Vec<Outcome>, TargetError> {
        let header = BatchHeader {
            log_index: self.next_index,
            timestamp_ms: self.now_ms,
        };
        self.next_index += 1;
        let outcomes = self.ledger.apply(header, &requests);
        self.ledger
            .check_invariants()
            .map_err(TargetError::Invariant)?;
        Ok(outcomes)
    }

    fn advance(&mut self, ms: u64) -> Result<(), TargetError> {
        self.now_ms += ms;
        Ok(())
    }

    fn query(&mut self, query: Query) -> Result<Result<Answer, Rejection>, TargetError> {
        Ok(self.ledger.query(&query, self.now_ms))
    }
}

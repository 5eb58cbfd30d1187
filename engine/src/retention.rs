//! `set_retention`: the retention settings ([`Config`]) as replicated state. They change only
//! through the log ([`crate::Command::SetRetention`]), so every replica holds the same values
//! and snapshots stay byte-identical (SPEC section 4, Determinism); a per-node setting would
//! make replicas keep different objects.
//!
//! Lowering a value costs no batch more than a bounded amount of work (SPEC section 4, "No
//! stalls"), however much it drops:
//! - at once, in the write's own batch, the heads of the dedup log, the retirement queue and
//!   the change feed move past what the new values drop: O(1) for a count (`end - count`),
//!   O(log n) for a time (the binary searches of `Ledger::advance_retention`). From then on no
//!   read or write sees a dropped entry: a dropped request id is new again, a dropped object
//!   is `not_found`, a dropped event is behind the feed's `oldest`;
//! - the physical clean-up behind the heads (index entries removed, slots freed, directories
//!   dropped) is the ledger's usual bounded step, at most
//!   [`limits::CLEANUP_STEPS_PER_BATCH`] entries of each log per batch: a reduction from 10 M
//!   retained finished objects to 1,000 is worked off over about 150 later batches.
//!
//! Raising a value keeps only what is still retained: nothing dropped comes back.

use crate::ledger::{invalid, Config, Ledger};
use crate::limits;
use crate::outcome::{InvalidReason, Outcome, Reply};

impl Config {
    /// Checks every value against its range, `_MIN..=_DEFAULT` of [`crate::limits`]
    /// (`DEDUP_WINDOW_MS_MIN`, `DEDUP_ENTRIES_MIN`, `FEED_EVENTS_MIN`, `RETIRED_MS_MIN`,
    /// `RETIRED_ENTRIES_MIN`): the first one outside is
    /// [`InvalidReason::RetentionOutOfRange`], naming the field.
    pub fn check(&self) -> Result<(), InvalidReason> {
        let ranges = [
            (
                "dedup_window_ms",
                self.dedup_window_ms,
                limits::DEDUP_WINDOW_MS_MIN,
                limits::DEDUP_WINDOW_MS_DEFAULT,
            ),
            (
                "dedup_entries",
                self.dedup_entries as u64,
                limits::DEDUP_ENTRIES_MIN as u64,
                limits::DEDUP_ENTRIES_DEFAULT as u64,
            ),
            (
                "feed_events",
                self.feed_events as u64,
                limits::FEED_EVENTS_MIN as u64,
                limits::FEED_EVENTS_DEFAULT as u64,
            ),
            (
                "retired_ms",
                self.retired_ms,
                limits::RETIRED_MS_MIN,
                limits::RETIRED_MS_DEFAULT,
            ),
            (
                "retired_entries",
                self.retired_entries as u64,
                limits::RETIRED_ENTRIES_MIN as u64,
                limits::RETIRED_ENTRIES_DEFAULT as u64,
            ),
        ];
        match ranges
            .into_iter()
            .find(|&(_, value, min, max)| value < min || value > max)
        {
            None => Ok(()),
            Some((field, _, min, max)) => Err(InvalidReason::RetentionOutOfRange {
                field: field.to_owned(),
                min,
                max,
            }),
        }
    }
}

impl Ledger {
    /// `set_retention`: checks `config` ([`Config::check`]), makes it the ledger's and drops
    /// at once what it no longer retains (module doc). Answers `Done`.
    pub(crate) fn set_retention(&mut self, config: &Config) -> Outcome {
        if let Err(reason) = config.check() {
            return invalid(reason);
        }
        self.state.config = *config;
        self.enforce_counts();
        self.advance_retention();
        Ok(Reply::Done)
    }

    /// Moves the head of each log so that at most its count setting stays live: O(1) each.
    /// The entries behind are cleaned up by `Ledger::clean_up`, a bounded number per batch.
    fn enforce_counts(&mut self) {
        let state = &mut self.state;
        let config = state.config;
        let dedup_end = state.dedup.end();
        state
            .dedup
            .advance_head(dedup_end.saturating_sub(config.dedup_entries as u64));
        let retired_end = state.retired.end();
        state
            .retired
            .advance_head(retired_end.saturating_sub(config.retired_entries as u64));
        let feed_end = state.feed.end();
        state
            .feed
            .advance_head(feed_end.saturating_sub(config.feed_events as u64));
        debug_assert!(state.dedup.len() <= config.dedup_entries as u64);
        debug_assert!(state.retired.len() <= config.retired_entries as u64);
        debug_assert!(state.feed.len() <= config.feed_events as u64);
    }
}

#[cfg(test)]
mod tests;

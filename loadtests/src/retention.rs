//! `--retention-finished`, `--retention-dedup`, `--retention-feed` of `run` and `compare`: the
//! cluster's retention settings, set right after it starts and before any load (one
//! replicated `set_retention` write, as the administrator), so that a soak's memory levels off
//! at what the settings keep instead of growing towards the defaults (10 M finished objects,
//! 4 M request ids, 1 M feed events: several GB per node; docs/OPERATIONS.md, "Retention").

use engine::Config;

/// The values to set; each one not given keeps the cluster's current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionChange {
    /// Finished reservations, orders, returns and transfers kept (`retired_entries`).
    pub finished_entries: Option<u64>,
    /// Request outcomes remembered for deduplication (`dedup_entries`).
    pub dedup_entries: Option<u64>,
    /// Change-feed events kept (`feed_events`).
    pub feed_events: Option<u64>,
}

impl RetentionChange {
    /// Whether nothing is to change (then the cluster is left as it is, not even read).
    pub fn is_empty(&self) -> bool {
        *self == RetentionChange::default()
    }

    /// `current` with the values given replaced (a count too large for `usize` saturates and
    /// is then refused by the ledger as above its maximum).
    pub fn applied_to(&self, current: Config) -> Config {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Config {
            retired_entries: self.finished_entries.map_or(current.retired_entries, count),
            dedup_entries: self.dedup_entries.map_or(current.dedup_entries, count),
            feed_events: self.feed_events.map_or(current.feed_events, count),
            ..current
        }
    }
}

/// Reads the cluster's settings, applies `change` and writes them; returns the settings in
/// force afterwards. The error says why in words: no answer, not admin (`forbidden`), or a
/// value out of range (`invalid`, naming the field).
pub async fn set(config: &client::ClientConfig, change: RetentionChange) -> Result<Config, String> {
    let client = client::Client::connect(config.clone())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let result = async {
        let current = client.retention().await.map_err(|e| e.to_string())?;
        let wanted = change.applied_to(current);
        let written = client
            .set_retention(wanted)
            .await
            .map_err(|e| e.to_string())?;
        written.outcome.map_err(|r| format!("rejected: {r}"))?;
        Ok(wanted)
    }
    .await;
    client.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_values_given_change() {
        let current = Config::default();
        assert!(RetentionChange::default().is_empty());
        let change = RetentionChange {
            finished_entries: Some(100_000),
            feed_events: Some(50_000),
            ..RetentionChange::default()
        };
        let expected = Config {
            retired_entries: 100_000,
            feed_events: 50_000,
            ..current
        };
        assert_eq!(change.applied_to(current), expected);
        assert!(!change.is_empty());
    }
}

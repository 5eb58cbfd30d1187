//! `stockctl retention show | set`: the cluster's retention settings (`engine::Config`, changed
//! only by the replicated `set_retention` write, so every node keeps the same).
//!
//! `set` reads the settings in force, replaces the values given on the command line and writes
//! all five: values not given keep theirs. The read and the write are two operations: another
//! operator's change in between is overwritten by the values this one read.

use client::{new_request_id, Client};
use engine::{Command, Config, Query, Request, RequestId};
use protocol::Consistency;
use serde_json::json;

use super::command::{RetentionChange, RetentionCmd};
use super::execute::{print_outcome, query, Out};
use super::show::{self, ReplyContext};
use super::{Exit, Fail};

/// One day, ms.
const DAY_MS: u64 = 86_400_000;

impl RetentionChange {
    /// `current` with the values given replaced: days and seconds become ms. A value too large
    /// for its field saturates, and the ledger then rejects it as above its maximum (`invalid`,
    /// naming the field), as it does any value outside its range.
    pub fn applied_to(&self, current: Config) -> Config {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Config {
            dedup_window_ms: self
                .dedup_window_s
                .map_or(current.dedup_window_ms, |s| s.saturating_mul(1_000)),
            dedup_entries: self.dedup_entries.map_or(current.dedup_entries, count),
            feed_events: self.feed_events.map_or(current.feed_events, count),
            retired_ms: self
                .finished_days
                .map_or(current.retired_ms, |d| d.saturating_mul(DAY_MS)),
            retired_entries: self.finished_entries.map_or(current.retired_entries, count),
        }
    }
}

/// `retention show` (a linearizable read) or `retention set` (with `request_id` if the user
/// chose one).
pub(super) async fn run(
    client: &Client,
    out: &Out,
    request_id: Option<RequestId>,
    action: RetentionCmd,
) -> Result<Exit, Fail> {
    match action {
        RetentionCmd::Show => query(client, out, Query::Retention, Consistency::Linearizable).await,
        RetentionCmd::Set(change) => {
            let request_id = request_id.unwrap_or_else(new_request_id);
            set(client, out, request_id, &change).await
        }
    }
}

/// `retention set`: read, change, write; prints the settings written (or the rejection).
async fn set(
    client: &Client,
    out: &Out,
    request_id: RequestId,
    change: &RetentionChange,
) -> Result<Exit, Fail> {
    let wanted = change.applied_to(client.retention().await?);
    let request = Request {
        request_id,
        command: Command::SetRetention(wanted),
    };
    let result = client.write_with_id(request).await?;
    if result.outcome.is_err() {
        return Ok(print_outcome(out, &result, &ReplyContext::default()));
    }
    let trailer = format!("  request={} log={}", result.request_id, result.log_index);
    out.print(
        || format!("ok\n{}\n{trailer}", show::retention(&wanted)),
        || {
            json!({"code": "ok", "request_id": result.request_id.to_string(),
                   "log_index": result.log_index, "retention": wanted})
        },
    );
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_not_given_keep_theirs_and_units_become_ms() {
        let current = Config::default();
        let change = RetentionChange {
            finished_entries: Some(1_000),
            finished_days: Some(7),
            dedup_window_s: Some(600),
            ..RetentionChange::default()
        };
        let expected = Config {
            retired_entries: 1_000,
            retired_ms: 7 * DAY_MS,
            dedup_window_ms: 600_000,
            ..current
        };
        assert_eq!(change.applied_to(current), expected);
        assert_eq!(RetentionChange::default().applied_to(current), current);
        let huge = RetentionChange {
            finished_days: Some(u64::MAX),
            ..RetentionChange::default()
        };
        assert_eq!(huge.applied_to(current).retired_ms, u64::MAX);
    }
}

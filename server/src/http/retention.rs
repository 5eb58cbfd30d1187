//! The retention settings over HTTP: `GET /v1/retention` reads them (any role), `PUT
//! /v1/retention` replaces all five (admin; a write like the others: `Idempotency-Key`,
//! replicated through the log as the engine's `Command::SetRetention`, so every node keeps the
//! same values). `POST /v1/batch` takes the same body as `{"op": "set_retention", ...}`.

use axum::extract::{Query as QueryParams, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use engine::{Answer, Config, Query};
use pki::Principal;

use super::problem::Problem;
use super::queries::{read, respond, unexpected, ReadParams};
use super::router::{App, JsonBody};
use super::writes::{write, WriteOp, WriteResult};

/// The retention settings (SPEC section 4: the dedup window, the change feed's retention,
/// finished objects). Each value lies in its range, `engine::limits`' `_MIN..=_DEFAULT`
/// (docs/OPERATIONS.md, "Retention"); a value outside is a 422 `invalid` naming the field.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionJson {
    /// A request id is remembered this long, ms (60,000..=86,400,000).
    pub dedup_window_ms: u64,
    /// At most this many request outcomes are remembered (524,288..=4,000,000).
    pub dedup_entries: u64,
    /// Change-feed events retained (10,000..=1,000,000).
    pub feed_events: u64,
    /// Finished reservations, orders, returns and transfers stay queryable this long, ms
    /// (60,000..=7,776,000,000).
    pub retired_ms: u64,
    /// At most this many finished objects are retained, all kinds together, the oldest
    /// dropped first (1..=10,000,000).
    pub retired_entries: u64,
}

impl From<Config> for RetentionJson {
    fn from(c: Config) -> RetentionJson {
        RetentionJson {
            dedup_window_ms: c.dedup_window_ms,
            dedup_entries: c.dedup_entries as u64,
            feed_events: c.feed_events as u64,
            retired_ms: c.retired_ms,
            retired_entries: c.retired_entries as u64,
        }
    }
}

impl RetentionJson {
    /// The engine's settings. A count too large for this machine's `usize` saturates (and is
    /// then refused by the engine as above its maximum).
    pub fn config(self) -> Config {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Config {
            dedup_window_ms: self.dedup_window_ms,
            dedup_entries: count(self.dedup_entries),
            feed_events: count(self.feed_events),
            retired_ms: self.retired_ms,
            retired_entries: count(self.retired_entries),
        }
    }
}

/// The retention settings in force (the same on every node that applied the same log).
#[utoipa::path(get, path = "/v1/retention", tag = "queries",
    params(ReadParams),
    responses(
        (status = 200, description = "the settings", body = RetentionJson),
        (status = "4XX", description = "refused", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn retention(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    QueryParams(params): QueryParams<ReadParams>,
) -> Response {
    match read(&app, &principal, &params, Query::Retention).await {
        Ok((Answer::Retention(config), index)) => respond(RetentionJson::from(config), index),
        Ok(_) => unexpected(),
        Err(problem) => problem.into_response(),
    }
}

/// Replaces the retention settings (admin). A lowered value drops the oldest retained entries
/// at once on every node; their memory is given back over the following batches.
#[utoipa::path(put, path = "/v1/retention", tag = "writes",
    request_body = RetentionJson,
    params(("Idempotency-Key" = String, Header, description = "the request id: a UUID or 32 hex digits, the same on every retry")),
    responses(
        (status = 200, description = "the ledger accepted the write", body = WriteResult),
        (status = "4XX", description = "refused (problem+json)", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "the node could not do it now (problem+json)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_retention(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RetentionJson>,
) -> Response {
    write(&app, &principal, &headers, WriteOp::SetRetention(body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_engine_settings_both_ways() {
        let config = Config::default();
        let json = RetentionJson::from(config);
        assert_eq!(json.config(), config);
        let text = serde_json::to_value(json).expect("serializes");
        assert_eq!(text["retired_entries"], 10_000_000);
        assert_eq!(text["dedup_window_ms"], 86_400_000);
        let unknown = r#"{"dedup_window_ms": 1, "dedup_entries": 1, "feed_events": 1,
            "retired_ms": 1, "retired_entries": 1, "retired_days": 1}"#;
        assert!(serde_json::from_str::<RetentionJson>(unknown).is_err());
    }
}

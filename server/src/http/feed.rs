//! The change feed (SPEC section 3: the audit trail): pages with `GET /v1/changes` and a live
//! stream of server-sent events with `GET /v1/changes/stream`.
//!
//! The stream sends each event with `id:` its sequence number, so a client that reconnects
//! with `Last-Event-ID: N` (what browsers' `EventSource` does by itself) resumes at `N + 1`;
//! `since` does the same for a first connection. Like a QUIC subscription (`api::feed`) it
//! reads the answering node's own applied feed, on a follower as on the leader (every node
//! applies the same entries, so sequence numbers are the same everywhere), as entries apply,
//! and is paced by the client: the next page is read only once the previous one was taken by
//! the connection. Every burst re-checks the principal (`auth::decide`), so a revoked token's
//! stream ends within one poll; and, as a QUIC subscription, a node removed from the cluster
//! refuses a stream (503 `removed`) and ends those it serves, so the client resumes on a
//! member.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query as QueryParams, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use engine::query::ChangeEvent;
use engine::{Answer, LocationId, Query};
use pki::Principal;
use protocol::{Op, OpResult, ServerError};

use super::json::{balance, qty, time, BalanceJson, Qty, Time};
use super::problem::Problem;
use super::queries::{read, respond, unexpected, ReadParams};
use super::router::App;
use super::views::snake;
use super::CHANGES_PAGE_MAX;
use crate::metrics::{Operation, Outcome, Transport};

/// How often an idle stream checks for new events and for its principal's revocation, ms.
pub const STREAM_POLL_MS: u64 = 1_000;
/// Keep-alive comment interval of an idle stream, s (proxies close silent connections).
pub const KEEP_ALIVE_S: u64 = 15;

/// Who made a change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorJson {
    /// The principal's name.
    pub name: String,
    /// Its role.
    pub role: String,
}

/// One balance change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeJson {
    /// Gapless sequence number (the server-sent event id).
    pub seq: u64,
    /// The log entry that made it.
    pub log_index: u64,
    /// When (batch time).
    pub at: Time,
    /// The write's request id (32 hex digits); absent for expiries.
    pub request_id: Option<String>,
    /// What caused it (`reserve`, `expire`, `fulfil`...).
    pub cause: String,
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// The balance after the change.
    pub balance: BalanceJson,
    /// Units short after a count below reserved + allocated.
    pub shortfall: Qty,
    /// Who made the write.
    pub author: Option<AuthorJson>,
}

/// A page of the change feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangesJson {
    /// The events, oldest first.
    pub events: Vec<ChangeJson>,
    /// The sequence number to ask for next.
    pub next: u64,
    /// The oldest sequence number still kept.
    pub oldest: u64,
    /// Whether events between `since` and `oldest` were dropped (retention).
    pub truncated: bool,
}

/// `GET /v1/changes` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// First sequence number wanted (default 0).
    pub since: Option<u64>,
    /// Most events (default and at most 1,000).
    pub max: Option<u32>,
    /// `linearizable` (default), `local` or `at_least`.
    pub consistency: Option<super::queries::ConsistencyJson>,
    /// For `at_least`: the log index to wait for.
    pub min_index: Option<u64>,
    /// Only events at these locations (comma-separated): a store's alerts. The page scans at
    /// most 100,000 events, so it may be empty and still move `next` on.
    pub at: Option<String>,
}

fn change_json(ledger: &engine::Ledger, e: ChangeEvent) -> ChangeJson {
    let scale = ledger.sku_scale(&e.sku).unwrap_or(0);
    ChangeJson {
        seq: e.seq,
        log_index: e.log_index,
        at: time(e.timestamp_ms),
        request_id: e.request_id.map(|r| format!("{:032x}", r.0)),
        cause: snake(&e.cause),
        balance: balance(&e.balance, scale),
        shortfall: qty(e.shortfall, scale),
        sku: e.sku.0.into_string(),
        location: e.location.0.into_string(),
        author: e.author.map(|a| AuthorJson {
            name: a.name,
            role: a.role,
        }),
    }
}

fn page_json(app: &App, page: engine::query::ChangesPage) -> ChangesJson {
    let ledger = app.ledger();
    ChangesJson {
        events: page
            .events
            .into_iter()
            .map(|e| change_json(&ledger, e))
            .collect(),
        next: page.next,
        oldest: page.oldest,
        truncated: page.truncated,
    }
}

/// A page of the change feed from `since`.
#[utoipa::path(get, path = "/v1/changes", tag = "feed", params(ChangesParams),
    responses(
        (status = 200, description = "a page of events", body = ChangesJson),
        (status = "4XX", description = "refused", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "not now", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn changes(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    QueryParams(p): QueryParams<ChangesParams>,
) -> Response {
    let (since, max) = (
        p.since.unwrap_or(0),
        p.max.unwrap_or(CHANGES_PAGE_MAX).min(CHANGES_PAGE_MAX),
    );
    let query = match p.at.as_deref() {
        None => Query::Changes { since, max },
        Some(at) => Query::ChangesAt {
            since,
            max,
            locations: at.split(',').map(engine::LocationId::from).collect(),
        },
    };
    let params = ReadParams {
        consistency: p.consistency,
        min_index: p.min_index,
    };
    match read(&app, &principal, &params, query).await {
        Ok((Answer::Changes(page), index)) => respond(page_json(&app, page), index),
        Ok(_) => unexpected(),
        Err(problem) => problem.into_response(),
    }
}

/// One server-sent event of the stream, as its fields arrive.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamEvent {
    /// Always `change`.
    pub event: String,
    /// The change's sequence number (send it back as `Last-Event-ID` to resume after it).
    pub id: String,
    /// The change as JSON text (a `ChangeJson`).
    pub data: String,
}

/// `GET /v1/changes/stream` parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// First sequence number wanted (default 0); `Last-Event-ID` wins.
    pub since: Option<u64>,
    /// Only events at these locations (comma-separated): a store's live alerts.
    pub at: Option<String>,
}

/// Where a stream starts: after the `Last-Event-ID` the client saw, else at `since`.
fn start(headers: &HeaderMap, since: Option<u64>) -> u64 {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match last {
        Some(seen) => seen.saturating_add(1),
        None => since.unwrap_or(0),
    }
}

/// The change feed as server-sent events (`event: change`, `id:` the sequence number).
#[utoipa::path(get, path = "/v1/changes/stream", tag = "feed",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header, description = "resume after this sequence number")),
    responses(
        (status = 200, description = "server-sent events, `data:` a change as JSON", content_type = "text/event-stream", body = StreamEvent),
        (status = "4XX", description = "refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn stream(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<StreamParams>,
) -> Response {
    let arrived = std::time::Instant::now();
    let since = start(&headers, p.since);
    let refused = refusal(&app, &principal, since);
    let result = match &refused {
        None => OpResult::Subscribed,
        Some(e) => OpResult::Failed(e.clone()),
    };
    let answered = [(Operation::Subscribe, Outcome::of_result(&result))];
    app.ctx
        .metrics
        .record_requests(Transport::Http, answered, arrived.elapsed());
    if let Some(e) = refused {
        return Problem::server(&e).into_response();
    }
    let locations: Vec<LocationId> =
        p.at.as_deref()
            .map(|at| at.split(',').map(LocationId::from).collect())
            .unwrap_or_default();
    if let Err(problem) = known(&app, &locations) {
        return problem.into_response();
    }
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_S));
    Sse::new(events(app, Arc::new(principal), since, Arc::new(locations)))
        .keep_alive(keep_alive)
        .into_response()
}

/// Why a stream from `since` may not start or go on: the node was removed from the cluster
/// (its feed stopped where the cluster left it), or the principal may not read the feed.
fn refusal(app: &App, principal: &Principal, since: u64) -> Option<ServerError> {
    if let Some(removed) = app.ctx.membership.removed_error() {
        return Some(removed);
    }
    let op = Op::Subscribe { since };
    crate::api::allowed(&app.ctx, principal, &op).err()
}

/// Refuses a stream of unknown locations (or too many) before it starts, as the feed would.
fn known(app: &App, locations: &[LocationId]) -> Result<(), Problem> {
    if locations.is_empty() {
        return Ok(());
    }
    let probe = Query::ChangesAt {
        since: u64::MAX,
        max: 1,
        locations: locations.to_vec(),
    };
    match app.query_here(&probe) {
        Ok(_) => Ok(()),
        Err(rejection) => Err(Problem::rejection(&rejection)),
    }
}

/// The feed page from `since`: every event, or those at `locations`.
fn page_query(since: u64, locations: &[LocationId]) -> Query {
    if locations.is_empty() {
        Query::Changes {
            since,
            max: CHANGES_PAGE_MAX,
        }
    } else {
        Query::ChangesAt {
            since,
            max: CHANGES_PAGE_MAX,
            locations: locations.to_vec(),
        }
    }
}

/// The events from `since` on (at `locations`, if any), in bursts of at most a page, waiting
/// for applies in between.
fn events(
    app: App,
    principal: Arc<Principal>,
    since: u64,
    locations: Arc<Vec<LocationId>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = (
        app,
        (principal, locations),
        since,
        Vec::<Event>::new().into_iter(),
    );
    futures_util::stream::unfold(state, |(app, who, mut since, mut queued)| async move {
        loop {
            if let Some(event) = queued.next() {
                return Some((Ok(event), (app, who, since, queued)));
            }
            let (principal, locations) = &who;
            if *app.stopping.borrow() || refusal(&app, principal, since).is_some() {
                return None;
            }
            // Taken before the read: an apply after it wakes the wait below.
            let mut applied = app.ctx.shared.applied();
            let page = match app.query_here(&page_query(since, locations)) {
                Ok(Answer::Changes(page)) => page,
                _ => return None,
            };
            // A filtered page may scan events without matching any: go on while it moves.
            let moved = page.next > since;
            since = page.next;
            if page.events.is_empty() && moved && !locations.is_empty() {
                continue;
            }
            if page.events.is_empty() {
                let wait = Duration::from_millis(STREAM_POLL_MS);
                let _ = tokio::time::timeout(wait, applied.changed()).await;
                continue;
            }
            let burst: Vec<Event> = page_json(&app, page)
                .events
                .into_iter()
                .filter_map(|e| {
                    let id = e.seq.to_string();
                    Event::default().event("change").id(id).json_data(&e).ok()
                })
                .collect();
            queued = burst.into_iter();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_resumes_after_the_last_event_id() {
        let mut headers = HeaderMap::new();
        assert_eq!(start(&headers, Some(7)), 7);
        assert_eq!(start(&headers, None), 0);
        headers.insert("last-event-id", "41".parse().expect("header"));
        assert_eq!(start(&headers, Some(7)), 42);
    }
}

//! Outcomes to HTTP statuses, and errors as RFC 9457 problem+json bodies carrying the stable
//! code (docs/HTTP.md, "Statuses").
//!
//! One table decides every status: ledger rejections by their `Code` ([`status_of_rejection`]),
//! node errors by their kind ([`status_of_server_error`]), and the front's own refusals (no
//! identity, no idempotency key, a malformed body) by [`HttpCode`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use engine::{Code, Rejection};
use protocol::ServerError;

/// Media type of problem bodies (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client is told to wait after `busy` (`Retry-After`).
pub const RETRY_AFTER_S: u32 = 1;

/// An RFC 9457 problem: what went wrong, with the stable code and the facts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:stockd:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The stable code: a ledger rejection's (`insufficient_stock`...), a node error's
    /// (`not_leader`, `busy`, `forbidden`...), or the front's (`unauthorized`,
    /// `missing_idempotency_key`, `bad_request`, `payload_too_large`, `not_found_route`).
    pub code: String,
    /// The rejection's facts as the ledger gave them (e.g. `insufficient_stock`: `sku`, `at`,
    /// `requested`, `available`, in base units), or a node error's; absent when there are none.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<serde_json::Value>,
}

/// Refusals of the HTTP front itself (before anything runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpCode {
    /// No usable identity: 401.
    Unauthorized,
    /// A write without an `Idempotency-Key`, or with one that is not a UUID or 32 hex
    /// digits: 400.
    MissingIdempotencyKey,
    /// A body or parameter that does not parse: 400.
    BadRequest,
    /// A body above `BODY_BYTES_MAX`: 413.
    PayloadTooLarge,
    /// No such route: 404.
    NotFoundRoute,
    /// The route exists, the method does not: 405.
    MethodNotAllowed,
    /// A `consistency=at_least` read whose `min_index` this node did not reach within the read
    /// deadline: 409 (the request's precondition is not met; the node itself is fine).
    IndexNotReached,
}

impl HttpCode {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            HttpCode::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "No valid identity",
            ),
            HttpCode::MissingIdempotencyKey => (
                StatusCode::BAD_REQUEST,
                "missing_idempotency_key",
                "A write needs an Idempotency-Key",
            ),
            HttpCode::BadRequest => (StatusCode::BAD_REQUEST, "bad_request", "Malformed request"),
            HttpCode::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
            ),
            HttpCode::NotFoundRoute => (StatusCode::NOT_FOUND, "not_found_route", "No such route"),
            HttpCode::IndexNotReached => (
                StatusCode::CONFLICT,
                "index_not_reached",
                "The index asked for was not reached",
            ),
            HttpCode::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed here",
            ),
        }
    }
}

/// The status of a ledger rejection: 404 for an unknown object, 410 for one past its deadline,
/// 422 for a request the ledger finds malformed or not allowed at a location, 409 for one that
/// conflicts with the state (stock, object state, compare-and-set, already issued ids).
pub fn status_of_rejection(code: Code) -> StatusCode {
    match code {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Expired => StatusCode::GONE,
        Code::Invalid | Code::ChannelNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
        Code::InsufficientStock
        | Code::InvalidState
        | Code::Conflict
        | Code::OverFulfil
        | Code::OverReturn
        | Code::NothingToCancel
        | Code::AlreadyExists
        | Code::LimitExceeded => StatusCode::CONFLICT,
        // Not a rejection; never reaches here (kept total for the compiler).
        Code::Ok => StatusCode::OK,
    }
}

/// The status of a node error: 503 while the node or cluster cannot serve now (`busy` with
/// `Retry-After`), 504 for a timeout, 403 for `forbidden`, 400 for an operation used wrongly,
/// 500 for `internal`.
pub fn status_of_server_error(e: &ServerError) -> StatusCode {
    match e {
        ServerError::NotLeader { .. }
        | ServerError::Busy
        | ServerError::NotReady
        | ServerError::Unavailable { .. }
        | ServerError::Removed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ServerError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ServerError::InvalidOp { .. } => StatusCode::BAD_REQUEST,
        ServerError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        ServerError::Forbidden { .. } => StatusCode::FORBIDDEN,
    }
}

/// The inner fields of an externally tagged enum value (`{"Variant": {...}}` -> `{...}`).
fn facts_of<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    match serde_json::to_value(value).ok()? {
        serde_json::Value::Object(mut map) if map.len() == 1 => {
            let (_, inner) = map.iter_mut().next()?;
            match inner.take() {
                serde_json::Value::Null => None,
                other => Some(other),
            }
        }
        _ => None,
    }
}

impl Problem {
    fn new(status: StatusCode, code: &str, title: &str, detail: String) -> Problem {
        Problem {
            kind: format!("urn:stockd:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            facts: None,
        }
    }

    /// A refusal of the front, with what was wrong.
    pub fn http(code: HttpCode, detail: impl Into<String>) -> Problem {
        let (status, code, title) = code.parts();
        Problem::new(status, code, title, detail.into())
    }

    /// A ledger rejection.
    pub fn rejection(r: &Rejection) -> Problem {
        let code = r.code();
        let status = status_of_rejection(code);
        let mut p = Problem::new(
            status,
            code.as_str(),
            "Rejected by the ledger",
            r.to_string(),
        );
        p.facts = facts_of(r);
        p
    }

    /// A node error.
    pub fn server(e: &ServerError) -> Problem {
        let status = status_of_server_error(e);
        let mut p = Problem::new(
            status,
            e.code(),
            "The node could not do this",
            e.to_string(),
        );
        p.facts = facts_of(e);
        p
    }

    /// The status this problem is answered with.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let busy = self.code == "busy";
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if busy || status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_status() {
        let table: Vec<(Code, u16)> = Code::ALL
            .into_iter()
            .map(|c| (c, status_of_rejection(c).as_u16()))
            .collect();
        let expect = [
            (Code::Ok, 200),
            (Code::InsufficientStock, 409),
            (Code::Expired, 410),
            (Code::NotFound, 404),
            (Code::InvalidState, 409),
            (Code::Conflict, 409),
            (Code::Invalid, 422),
            (Code::OverFulfil, 409),
            (Code::OverReturn, 409),
            (Code::NothingToCancel, 409),
            (Code::ChannelNotAllowed, 422),
            (Code::AlreadyExists, 409),
            (Code::LimitExceeded, 409),
        ];
        assert_eq!(table, expect);
        let busy = status_of_server_error(&ServerError::Busy);
        let forbidden = ServerError::Forbidden {
            message: String::new(),
        };
        assert_eq!(busy.as_u16(), 503);
        assert_eq!(status_of_server_error(&forbidden).as_u16(), 403);
        assert_eq!(status_of_server_error(&ServerError::NotReady).as_u16(), 503);
        assert_eq!(status_of_server_error(&ServerError::Timeout).as_u16(), 504);
    }

    #[test]
    fn a_rejection_carries_its_code_and_facts() {
        let r = Rejection::InsufficientStock {
            sku: engine::SkuId::from("A".to_owned()),
            at: "w1".to_owned(),
            requested: 5,
            available: 2,
        };
        let p = Problem::rejection(&r);
        assert_eq!((p.status, p.code.as_str()), (409, "insufficient_stock"));
        assert_eq!(p.kind, "urn:stockd:problem:insufficient_stock");
        let facts = p.facts.expect("facts");
        assert_eq!(facts["available"], 2);
        assert_eq!(facts["sku"], "A");
        let busy = Problem::server(&ServerError::Busy).into_response();
        assert_eq!(busy.status().as_u16(), 503);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        assert_eq!(busy.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}

//! The `Idempotency-Key` header: the request id of a write (SPEC section 6: a UUID or 32 hex
//! digits; a write without one is a 400).
//!
//! The key IS the request id, so a retried HTTP write, a QUIC client's retry and a replay after
//! a leader change are all the engine's dedup: the original outcome, same status, same body.

use axum::http::HeaderMap;

use engine::RequestId;

use super::problem::{HttpCode, Problem};

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Reads a key: a UUID in any of its usual spellings (hyphenated, braced, URN, simple) or 32
/// hex digits, either case; zero is refused (the engine's `ZeroRequestId`).
pub fn parse_key(text: &str) -> Option<RequestId> {
    let id = uuid::Uuid::try_parse(text.trim()).ok()?.as_u128();
    (id != 0).then_some(RequestId(id))
}

/// The request id a write's headers carry, or the 400 problem.
pub fn request_id(headers: &HeaderMap) -> Result<RequestId, Problem> {
    let missing = || {
        Problem::http(
            HttpCode::MissingIdempotencyKey,
            "send Idempotency-Key: a UUID or 32 hex digits, the same on every retry",
        )
    };
    let value = headers.get(IDEMPOTENCY_KEY).ok_or_else(missing)?;
    let text = value.to_str().map_err(|_| missing())?;
    parse_key(text).ok_or_else(missing)
}

/// The request id of operation `index` of a batch sent with `key`: the key plus the index
/// (wrapping), so a replayed batch replays each operation, and operation 0 is the key itself.
pub fn batch_request_id(key: RequestId, index: usize) -> RequestId {
    RequestId(key.0.wrapping_add(index as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_uuids_or_32_hex_digits() {
        let want = Some(RequestId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
        for text in [
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEF",
            "01234567-89ab-cdef-0123-456789abcdef",
            " 01234567-89ab-cdef-0123-456789abcdef ",
        ] {
            assert_eq!(parse_key(text), want, "{text}");
        }
        for bad in [
            "",
            "abc",
            "0123456789abcdef0123456789abcde",
            "00000000000000000000000000000000",
            "g123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(parse_key(bad), None, "{bad:?}");
        }
        assert_eq!(batch_request_id(RequestId(u128::MAX), 1), RequestId(0));
    }
}

//! # Baselines: the same reservation workload on Redis and PostgreSQL
//!
//! SPEC section 5 asks for stockd's reservation throughput to be at least that of "a single,
//! unreplicated Redis running the same check-and-decrement as a Lua script, measured in the
//! same run with the same load generator". This module is that Redis, plus a PostgreSQL doing
//! the same with one transaction per reservation, behind one async API that the load generator
//! drives exactly like it drives stockd:
//!
//! - [`RedisBaseline`]: one Lua script per operation (EVALSHA), atomic because Redis runs a
//!   script alone; a few multiplexed connections.
//! - [`PostgresBaseline`]: one READ COMMITTED transaction per operation with conditional
//!   updates; a pool of `N` connections.
//!
//! `scripts/baselines.sh start` runs both servers on loopback and `scripts/baselines.sh env`
//! prints `STOCKD_REDIS_URL` and `STOCKD_PG_URL` for [`RedisBaseline::connect`] and
//! [`PostgresBaseline::connect`].
//!
//! ## Semantics (the same for both backends, and stockd's reserve where they overlap)
//!
//! - A balance is `(sku, location) -> (on_hand, reserved)`. There is no `allocated`, no
//!   `unavailable` and no `safety_stock` in the baselines: **ATS = max(0, on_hand - reserved)**.
//!   Stock comes from [`RedisBaseline::load_stock`] (a count: it sets `on_hand`, keeps `reserved`);
//!   a balance never loaded has ATS 0.
//! - `reserve(id, lines, ttl_ms)` holds ALL lines or none. Demand for the same
//!   `(sku, location)` inside one request is summed before checking. When it does not fit, the
//!   answer names the line the engine would name: walking the lines in request order with a
//!   running sum per balance, the first line whose running demand exceeds its balance's ATS, with
//!   that ATS ([`ReserveOutcome::Insufficient`]).
//! - Hold ids are unique forever (until [`RedisBaseline::reset`]): reusing the id of a live,
//!   released, committed or expired hold is [`ReserveOutcome::AlreadyExists`], like stockd (which
//!   keeps finished reservations for its retention period).
//! - A hold lives until `reserve time + ttl_ms`; at that instant it has expired (a deadline
//!   `<= now` is past, as in the engine) and counts nowhere: not in ATS, not in
//!   [`RedisBaseline::totals`]; `release` and `commit` on it answer `false`. "Now" is the
//!   database server's clock (Redis `TIME`, PostgreSQL `now()`), like stockd where the leader
//!   stamps the time.
//! - `release(id)` returns the held units to ATS; `commit(id)` is stockd's `place_order` plus a
//!   full `fulfil`: the held units leave both `reserved` and `on_hand`. Both answer `false`, and
//!   change nothing, when `id` is not a live hold.
//! - Ids, SKUs and locations must be stockd ids (1..=64 bytes of `[A-Za-z0-9._:/-]`),
//!   quantities `1..=QTY_MAX`, at most `LINES_PER_REQUEST_MAX` lines, `ttl_ms` in
//!   `1..=TTL_MS_MAX` (the engine's limits); anything else is a [`BaselineError`], not an
//!   outcome. There are no request ids: a retry of a reserve is a new reserve.
//!
//! How each backend expires holds and why its concurrency is safe is in [`redis`] and
//! [`postgres`].

pub mod postgres;
pub mod redis;

use std::collections::BTreeMap;
use std::fmt;

use engine::limits::{LINES_PER_REQUEST_MAX, QTY_MAX, TTL_MS_MAX};

pub use self::postgres::PostgresBaseline;
pub use self::redis::RedisBaseline;

/// One line of a reservation: `qty` units of `sku` at `location`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Line {
    /// The SKU id.
    pub sku: String,
    /// The location id (no groups in the baselines).
    pub location: String,
    /// Units wanted, `1..=QTY_MAX`.
    pub qty: i64,
}

impl Line {
    /// A line of `qty` units of `sku` at `location`.
    pub fn new(sku: impl Into<String>, location: impl Into<String>, qty: i64) -> Line {
        Line {
            sku: sku.into(),
            location: location.into(),
            qty,
        }
    }
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReserveOutcome {
    /// Every line is held.
    Granted,
    /// Nothing is held: this balance cannot cover the demand (see the module doc for which line
    /// is named); `available` is its ATS as seen by the check.
    Insufficient {
        /// The SKU of the short line.
        sku: String,
        /// The location of the short line.
        location: String,
        /// The ATS of that balance when checked.
        available: i64,
    },
    /// A hold with this id exists or existed (live, released, committed or expired).
    AlreadyExists,
}

/// A failure of a baseline call: bad input, or the database or connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineError(pub String);

impl fmt::Display for BaselineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BaselineError {}

impl BaselineError {
    pub(crate) fn invalid(what: impl fmt::Display) -> BaselineError {
        BaselineError(format!("invalid: {what}"))
    }
}

/// Checks an id, SKU or location against stockd's id rules.
pub(crate) fn check_id(field: &str, value: &str) -> Result<(), BaselineError> {
    if engine::ids::is_valid_id(value) {
        Ok(())
    } else {
        Err(BaselineError::invalid(format!(
            "{field} {value:?} is not 1..=64 bytes of [A-Za-z0-9._:/-]"
        )))
    }
}

/// Checks a reserve request's shape (not its stock).
pub(crate) fn check_reserve(id: &str, lines: &[Line], ttl_ms: u64) -> Result<(), BaselineError> {
    check_id("hold id", id)?;
    if lines.is_empty() || lines.len() > LINES_PER_REQUEST_MAX {
        return Err(BaselineError::invalid(format!(
            "{} lines (1..={LINES_PER_REQUEST_MAX})",
            lines.len()
        )));
    }
    if ttl_ms == 0 || ttl_ms > TTL_MS_MAX {
        return Err(BaselineError::invalid(format!(
            "ttl_ms {ttl_ms} (1..={TTL_MS_MAX})"
        )));
    }
    for line in lines {
        check_id("sku", &line.sku)?;
        check_id("location", &line.location)?;
        if line.qty <= 0 || line.qty > QTY_MAX {
            return Err(BaselineError::invalid(format!(
                "qty {} (1..={QTY_MAX})",
                line.qty
            )));
        }
    }
    Ok(())
}

/// Checks a `load_stock` row.
pub(crate) fn check_stock_row(
    sku: &str,
    location: &str,
    on_hand: i64,
) -> Result<(), BaselineError> {
    check_id("sku", sku)?;
    check_id("location", location)?;
    if !(0..=QTY_MAX).contains(&on_hand) {
        return Err(BaselineError::invalid(format!(
            "on_hand {on_hand} (0..={QTY_MAX})"
        )));
    }
    Ok(())
}

/// The demand of a request summed per balance, in `(sku, location)` byte order: the order in
/// which the PostgreSQL baseline locks rows, the same for every transaction.
pub(crate) fn summed(lines: &[Line]) -> Vec<(&str, &str, i64)> {
    let mut demand: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for line in lines {
        // Cannot overflow: at most LINES_PER_REQUEST_MAX lines of at most QTY_MAX each.
        *demand
            .entry((line.sku.as_str(), line.location.as_str()))
            .or_insert(0) += line.qty;
    }
    demand.into_iter().map(|((s, l), q)| (s, l, q)).collect()
}

/// The line the engine names when a request does not fit: in request order with a running sum
/// per balance, the first line whose running demand exceeds `ats` of its balance. Returns the
/// line's index and that ATS, or `None` when everything fits.
pub(crate) fn first_short(
    lines: &[Line],
    mut ats: impl FnMut(&str, &str) -> i64,
) -> Option<(usize, i64)> {
    let mut taken: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let key = (line.sku.as_str(), line.location.as_str());
        let t = taken.entry(key).or_insert(0);
        *t += line.qty;
        let available = ats(key.0, key.1).max(0);
        if *t > available {
            return Some((i, available));
        }
    }
    None
}

/// The [`ReserveOutcome::Insufficient`] for line `i` of `lines`.
pub(crate) fn insufficient(lines: &[Line], i: usize, available: i64) -> ReserveOutcome {
    match lines.get(i) {
        Some(line) => ReserveOutcome::Insufficient {
            sku: line.sku.clone(),
            location: line.location.clone(),
            available,
        },
        // The scripts only name lines they were given; keep the answer typed regardless.
        None => ReserveOutcome::Insufficient {
            sku: String::new(),
            location: String::new(),
            available,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summed_is_sorted_and_adds_up() {
        let lines = [
            Line::new("b", "x", 2),
            Line::new("a", "y", 1),
            Line::new("b", "x", 3),
            Line::new("a", "x", 4),
        ];
        assert_eq!(
            summed(&lines),
            vec![("a", "x", 4), ("a", "y", 1), ("b", "x", 5)]
        );
    }

    #[test]
    fn first_short_uses_running_sums_in_request_order() {
        // A has 6, B has 5: line 1 (B 10) fails before A's total (8) does.
        let lines = [
            Line::new("A", "l", 3),
            Line::new("B", "l", 10),
            Line::new("A", "l", 5),
        ];
        let ats = |s: &str, _: &str| if s == "A" { 6 } else { 5 };
        assert_eq!(first_short(&lines, ats), Some((1, 5)));
        let lines = [Line::new("A", "l", 3), Line::new("A", "l", 4)];
        assert_eq!(first_short(&lines, ats), Some((1, 6)));
        let lines = [Line::new("A", "l", 3), Line::new("A", "l", 3)];
        assert_eq!(first_short(&lines, ats), None);
        // Negative ATS reads as 0.
        assert_eq!(first_short(&lines, |_, _| -4), Some((0, 0)));
    }

    #[test]
    fn requests_are_checked() {
        let ok = [Line::new("s", "l", 1)];
        assert!(check_reserve("r1", &ok, 1000).is_ok());
        assert!(check_reserve("", &ok, 1000).is_err());
        assert!(check_reserve("r 1", &ok, 1000).is_err());
        assert!(check_reserve("r1", &[], 1000).is_err());
        assert!(check_reserve("r1", &ok, 0).is_err());
        assert!(check_reserve("r1", &ok, TTL_MS_MAX + 1).is_err());
        assert!(check_reserve("r1", &[Line::new("s", "l", 0)], 1000).is_err());
        assert!(check_reserve("r1", &[Line::new("s", "l", QTY_MAX + 1)], 1000).is_err());
        assert!(check_stock_row("s", "l", -1).is_err());
        assert!(check_stock_row("s", "l", 0).is_ok());
    }
}

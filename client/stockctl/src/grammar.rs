//! The one text grammar of stockctl: the words of its command line and of case lines
//! (`../shared/cases/FORMAT.md`) read by the same pure functions, so that a line stockctl
//! accepts means the same thing in a case file.
//!
//! Shapes:
//! - `SKU@LOCATION` ([`SkuAt`]), `SKU@PLACE:QTY` ([`LineText`]; PLACE a location, a group or
//!   `all`), `SKU@RECEIVED_AT:QTY:DISPOSITION` ([`ReturnText`]), `FROM->TO` ([`FromTo`]).
//!   Ids may contain `:` (SPEC section 1: `[A-Za-z0-9._:/-]`) but never `@`, and a quantity or
//!   a disposition never contains `:`. So the SKU ends at the FIRST `@`, and the quantity (and
//!   the disposition) are what follows the LAST `:`s: `A@eu:par:2` is 2 units of `A` at `eu:par`.
//! - Quantities ([`Qty`]) are DISPLAY units (SPEC section 2): `3`, `0.59`, `-2`, `+3`. They stay
//!   text until the SKU's scale is known ([`Qty::to_base`]).
//! - Durations: `500ms`, `10s`, `15m`, `2h`, `2d` ([`duration_ms`]).
//! - stockctl's other arguments: read consistency, request ids, node ids, `HOST:PORT`,
//!   `ID=HOST:PORT`, decimal degrees, location kinds.
//!
//! Every parser returns a [`GrammarError`] naming the text and the shape expected; clap shows it
//! as a usage error (exit status 2), the case runner as the line's failure. A quantity that is
//! not a number or has too many decimals is the ledger's `invalid`, decided locally
//! ([`GrammarError::is_quantity`]).

use engine::units::{parse_display, UnitError};
use engine::{Coordinates, Disposition, LocationKind, RequestId};
use protocol::{Consistency, NodeAddr};

/// Collection window of a pickup order without a deadline (`deadline=` in a case,
/// `--deadline` on the command line): 48 hours.
pub const DEFAULT_PICKUP_MS: u64 = 48 * 3_600_000;

/// Why a word does not fit the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The word does not have the shape `expected` (e.g. `SKU@LOCATION:QTY`).
    #[error("{text:?}: expected {expected}")]
    Shape {
        /// The word as written.
        text: String,
        /// The shape wanted, for humans.
        expected: &'static str,
    },
    /// A quantity that is not `[+|-]digits[.digits]`.
    #[error("{text:?} is not a decimal quantity ([-]digits[.digits])")]
    Quantity {
        /// The quantity as written.
        text: String,
    },
    /// A quantity that does not convert at its SKU's scale: more decimals than the scale, or
    /// above `QTY_MAX` base units.
    #[error("quantity {text}: {why}")]
    Units {
        /// The quantity as written.
        text: String,
        /// What is wrong with it at that scale.
        why: UnitError,
    },
    /// A duration that overflows 64-bit milliseconds.
    #[error("duration {text:?} too long")]
    DurationTooLong {
        /// The duration as written.
        text: String,
    },
    /// Request id zero (the ledger reserves it).
    #[error("the request id must not be zero")]
    ZeroRequestId,
}

impl GrammarError {
    /// Whether this is a bad quantity, which the ledger would reject as `invalid` (SPEC
    /// section 2): stockctl and the case runner decide that locally rather than fail the line.
    pub fn is_quantity(&self) -> bool {
        matches!(
            self,
            GrammarError::Quantity { .. } | GrammarError::Units { .. }
        )
    }
}

fn shape(text: &str, expected: &'static str) -> GrammarError {
    GrammarError::Shape {
        text: text.to_owned(),
        expected,
    }
}

/// A quantity in display units, as typed (`3`, `0.59`, `-2`; a leading `+` is dropped):
/// syntactically a decimal number, its decimals checked against the SKU's scale by
/// [`Qty::to_base`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qty(String);

impl Qty {
    /// Parses a display quantity's syntax. `+3` reads as 3 (`adjust A@wh1 +3`, a receipt).
    pub fn parse(text: &str) -> Result<Qty, GrammarError> {
        let text = text.strip_prefix('+').unwrap_or(text);
        match parse_display(text, engine::limits::SCALE_MAX) {
            Err(UnitError::Malformed) => Err(GrammarError::Quantity {
                text: text.to_owned(),
            }),
            _ => Ok(Qty(text.to_owned())),
        }
    }

    /// The quantity as written (without a leading `+`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Base units at `scale` (the SKU's). More decimals than the scale, or a value above
    /// `QTY_MAX`, is [`GrammarError::Units`].
    pub fn to_base(&self, scale: u8) -> Result<i64, GrammarError> {
        parse_display(&self.0, scale).map_err(|why| GrammarError::Units {
            text: self.0.clone(),
            why,
        })
    }
}

/// `SKU@LOCATION`: where a stock write applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuAt {
    /// The SKU id.
    pub sku: String,
    /// The location id.
    pub location: String,
}

/// Splits `SKU@REST` at the first `@` (ids never contain `@`); neither part may be empty.
fn sku_and_rest<'t>(
    text: &'t str,
    expected: &'static str,
) -> Result<(&'t str, &'t str), GrammarError> {
    match text.split_once('@') {
        Some((sku, rest)) if !sku.is_empty() && !rest.is_empty() => Ok((sku, rest)),
        _ => Err(shape(text, expected)),
    }
}

/// Splits `REST:LAST` at the last `:`; neither part may be empty.
fn last_colon<'t>(
    text: &'t str,
    rest: &'t str,
    expected: &'static str,
) -> Result<(&'t str, &'t str), GrammarError> {
    match rest.rsplit_once(':') {
        Some((head, last)) if !head.is_empty() && !last.is_empty() => Ok((head, last)),
        _ => Err(shape(text, expected)),
    }
}

impl SkuAt {
    /// Parses `SKU@LOCATION`.
    pub fn parse(text: &str) -> Result<SkuAt, GrammarError> {
        let (sku, location) = sku_and_rest(text, "SKU@LOCATION")?;
        Ok(SkuAt {
            sku: sku.to_owned(),
            location: location.to_owned(),
        })
    }
}

/// `SKU@PLACE:QTY`: a reservation or order line (PLACE a location, a group or `all`), or a
/// fulfil / cancel line (PLACE a location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineText {
    /// The SKU id.
    pub sku: String,
    /// A location, a group or `all`.
    pub place: String,
    /// Display units.
    pub qty: Qty,
}

impl LineText {
    /// Parses `SKU@PLACE:QTY`: the SKU ends at the first `@`, the quantity follows the last `:`
    /// (PLACE may contain `:`).
    pub fn parse(text: &str) -> Result<LineText, GrammarError> {
        const EXPECTED: &str = "SKU@LOCATION:QTY";
        let (sku, rest) = sku_and_rest(text, EXPECTED)?;
        let (place, qty) = last_colon(text, rest, EXPECTED)?;
        Ok(LineText {
            sku: sku.to_owned(),
            place: place.to_owned(),
            qty: Qty::parse(qty)?,
        })
    }
}

/// `COMPONENT:QTY`: one component of a kit definition (QTY in the component's display units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartText {
    /// The component SKU id (may contain `:`).
    pub sku: String,
    /// Display units of the component per kit.
    pub qty: Qty,
}

impl PartText {
    /// Parses `COMPONENT:QTY`: the quantity follows the last `:`.
    pub fn parse(text: &str) -> Result<PartText, GrammarError> {
        let (sku, qty) = last_colon(text, text, "COMPONENT:QTY")?;
        Ok(PartText {
            sku: sku.to_owned(),
            qty: Qty::parse(qty)?,
        })
    }
}

/// Splits the words of an `exchange` line at `->`: the return's words before, the new order's
/// after; `None` without an arrow.
pub fn split_exchange<'a, 'w>(words: &'a [&'w str]) -> Option<(&'a [&'w str], &'a [&'w str])> {
    let arrow = words.iter().position(|w| *w == "->")?;
    Some((&words[..arrow], &words[arrow + 1..]))
}

/// `SKU@RECEIVED_AT:QTY:DISPOSITION`: a return line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnText {
    /// The SKU id.
    pub sku: String,
    /// Where the units arrived (a location id; may contain `:`).
    pub received_at: String,
    /// Display units.
    pub qty: Qty,
    /// `restock`, `damaged` or `scrap`.
    pub disposition: Disposition,
}

impl ReturnText {
    /// Parses `SKU@RECEIVED_AT:QTY:DISPOSITION` (the last two `:` end the location).
    pub fn parse(text: &str) -> Result<ReturnText, GrammarError> {
        const EXPECTED: &str = "SKU@LOCATION:QTY:restock|damaged|scrap";
        let (sku, rest) = sku_and_rest(text, EXPECTED)?;
        let (rest, disposition) = last_colon(text, rest, EXPECTED)?;
        let (received_at, qty) = last_colon(text, rest, EXPECTED)?;
        Ok(ReturnText {
            sku: sku.to_owned(),
            received_at: received_at.to_owned(),
            qty: Qty::parse(qty)?,
            disposition: Disposition::parse(disposition).ok_or_else(|| shape(text, EXPECTED))?,
        })
    }
}

/// `FROM->TO`: the two locations of a transfer or a reallocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromTo {
    /// The location the units leave.
    pub from: String,
    /// The location they go to.
    pub to: String,
}

impl FromTo {
    /// Parses `FROM->TO`; neither may be empty.
    pub fn parse(text: &str) -> Result<FromTo, GrammarError> {
        match text.split_once("->") {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok(FromTo {
                from: from.to_owned(),
                to: to.to_owned(),
            }),
            _ => Err(shape(text, "FROM->TO")),
        }
    }
}

/// Parses a duration into ms: digits then `ms`, `s`, `m`, `h` or `d` (`500ms`, `15m`, `2d`).
pub fn duration_ms(text: &str) -> Result<u64, GrammarError> {
    const EXPECTED: &str = "a duration: digits then ms, s, m, h or d (500ms, 15m, 2d)";
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| shape(text, EXPECTED))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(shape(text, EXPECTED)),
    };
    n.checked_mul(factor)
        .ok_or_else(|| GrammarError::DurationTooLong {
            text: text.to_owned(),
        })
}

/// Parses a latitude or longitude in decimal degrees (`48.8566`) into micro-degrees, at most
/// 180 degrees either way.
pub fn degrees_e6(text: &str) -> Result<i32, GrammarError> {
    parse_display(text, 6)
        .ok()
        .and_then(|v| i32::try_from(v).ok())
        .filter(|v| v.unsigned_abs() <= 180_000_000)
        .ok_or_else(|| shape(text, "decimal degrees, at most 6 decimals"))
}

/// Coordinates from a latitude and a longitude in micro-degrees (range checked by the ledger).
pub fn coordinates(lat_e6: i32, lon_e6: i32) -> Coordinates {
    Coordinates { lat_e6, lon_e6 }
}

/// Parses a location kind: `warehouse`, `store`, `marketplace` or `dropship`.
pub fn location_kind(text: &str) -> Result<LocationKind, GrammarError> {
    LocationKind::parse(text)
        .ok_or_else(|| shape(text, "warehouse, store, marketplace or dropship"))
}

/// Parses `linearizable`, `local` or `at-least=N` (also `at_least=N`).
pub fn consistency(text: &str) -> Result<Consistency, GrammarError> {
    match text {
        "linearizable" => Ok(Consistency::Linearizable),
        "local" => Ok(Consistency::Local),
        _ => text
            .strip_prefix("at-least=")
            .or_else(|| text.strip_prefix("at_least="))
            .and_then(|n| n.parse().ok())
            .map(Consistency::AtLeast)
            .ok_or_else(|| shape(text, "linearizable, local or at-least=INDEX")),
    }
}

/// Parses a request id: 1 to 32 hex digits (an optional `0x` before them), not zero.
pub fn request_id(text: &str) -> Result<RequestId, GrammarError> {
    const EXPECTED: &str = "1 to 32 hex digits";
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.is_empty() || digits.len() > 32 {
        return Err(shape(text, EXPECTED));
    }
    match u128::from_str_radix(digits, 16) {
        Ok(0) => Err(GrammarError::ZeroRequestId),
        Ok(n) => Ok(RequestId(n)),
        Err(_) => Err(shape(text, EXPECTED)),
    }
}

/// Parses a cluster member `ID=HOST:PORT`.
pub fn member(text: &str) -> Result<NodeAddr, GrammarError> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| shape(text, "ID=HOST:PORT"))?;
    Ok(NodeAddr {
        id: node_id(id)?,
        addr: host_port(addr)?,
    })
}

/// Parses a node id (a positive integer).
pub fn node_id(text: &str) -> Result<u64, GrammarError> {
    text.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| shape(text, "a node id, a positive integer"))
}

/// Checks `HOST:PORT` (the port after the last `:`, so IPv6 hosts work) and returns it.
pub fn host_port(text: &str) -> Result<String, GrammarError> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_owned())
        }
        _ => Err(shape(text, "HOST:PORT")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qty(text: &str) -> Qty {
        Qty::parse(text).expect("a quantity")
    }

    #[test]
    fn lines_split_at_the_first_at_and_the_last_colon() {
        assert_eq!(
            LineText::parse("SKU@eu:par:2"),
            Ok(LineText {
                sku: "SKU".into(),
                place: "eu:par".into(),
                qty: qty("2"),
            })
        );
        assert_eq!(
            LineText::parse("a:b/c@all:0.59").map(|l| (l.sku, l.place, l.qty)),
            Ok(("a:b/c".into(), "all".into(), qty("0.59")))
        );
        for bad in ["A", "A@wh1", "@wh1:1", "A@:1", "A@wh1:", "A@wh1:x:"] {
            let err = LineText::parse(bad).expect_err(bad);
            assert!(!err.is_quantity(), "{bad}: {err}");
            assert!(err.to_string().contains("SKU@LOCATION:QTY"), "{err}");
        }
        // A location with a ':' and a bad quantity: the quantity is what is wrong.
        let err = LineText::parse("A@eu:par:two").expect_err("bad quantity");
        assert!(err.is_quantity(), "{err}");
    }

    #[test]
    fn return_lines_take_the_last_two_colons() {
        assert_eq!(
            ReturnText::parse("SKU@eu:par:2:damaged"),
            Ok(ReturnText {
                sku: "SKU".into(),
                received_at: "eu:par".into(),
                qty: qty("2"),
                disposition: Disposition::Damaged,
            })
        );
        for bad in ["A@s1:1", "A@s1:1:lost", "A@:1:restock", "A@s1::restock"] {
            let err = ReturnText::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("restock|damaged|scrap"), "{err}");
        }
    }

    #[test]
    fn sku_at_and_from_to() {
        assert_eq!(
            SkuAt::parse("SKU@eu:par"),
            Ok(SkuAt {
                sku: "SKU".into(),
                location: "eu:par".into()
            })
        );
        assert!(SkuAt::parse("SKU").is_err());
        assert!(SkuAt::parse("SKU@").is_err());
        assert_eq!(
            FromTo::parse("eu:par->eu:lyon"),
            Ok(FromTo {
                from: "eu:par".into(),
                to: "eu:lyon".into()
            })
        );
        assert!(FromTo::parse("wh1-wh2").is_err());
        assert!(FromTo::parse("->wh2").is_err());
    }

    #[test]
    fn quantities_are_display_units_checked_at_the_scale() {
        assert_eq!(qty("+3").as_str(), "3");
        assert_eq!(qty("-2").to_base(0), Ok(-2));
        assert_eq!(qty("0.59").to_base(2), Ok(59));
        assert_eq!(qty("3").to_base(2), Ok(300));
        let err = qty("0.001").to_base(2).expect_err("too many decimals");
        assert!(err.is_quantity());
        assert_eq!(
            err.to_string(),
            "quantity 0.001: more than 2 decimal places"
        );
        for bad in ["1,5", "1e3", "", "x", "1.", ".5"] {
            assert_eq!(
                Qty::parse(bad),
                Err(GrammarError::Quantity { text: bad.into() }),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("10s"), Ok(10_000));
        assert_eq!(duration_ms("15m"), Ok(900_000));
        assert_eq!(duration_ms("2h"), Ok(7_200_000));
        assert_eq!(duration_ms("2d"), Ok(172_800_000));
        for bad in ["5", "m", "", "1.5s", "-1s", "2w"] {
            assert!(duration_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(
            duration_ms("18446744073709551615d"),
            Err(GrammarError::DurationTooLong {
                text: "18446744073709551615d".into()
            })
        );
    }

    #[test]
    fn stockctl_arguments() {
        assert_eq!(consistency("at-least=7"), Ok(Consistency::AtLeast(7)));
        assert_eq!(consistency("at_least=7"), Ok(Consistency::AtLeast(7)));
        assert!(consistency("eventual").is_err());
        assert_eq!(request_id("0xff"), Ok(RequestId(255)));
        assert_eq!(request_id("0"), Err(GrammarError::ZeroRequestId));
        assert!(request_id(&"f".repeat(33)).is_err());
        assert_eq!(
            member("2=[::1]:7401"),
            Ok(NodeAddr {
                id: 2,
                addr: "[::1]:7401".into()
            })
        );
        assert!(member("0=h:1").is_err());
        assert!(host_port("h").is_err());
        assert_eq!(degrees_e6("-2.35"), Ok(-2_350_000));
        assert!(degrees_e6("181").is_err());
        assert_eq!(location_kind("store"), Ok(LocationKind::Store));
        assert!(location_kind("shed").is_err());
    }
}

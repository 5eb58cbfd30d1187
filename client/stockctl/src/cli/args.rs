//! Parsers of `stockctl`'s arguments: pure functions, used as clap value parsers so that a
//! malformed argument is a usage error (exit status 2) before anything is sent.
//!
//! Quantities stay text ([`Qty`]) until the SKU's scale is known: they are DISPLAY units
//! (SPEC section 2), converted by [`to_base`] with [`engine::units`].

use engine::units::{parse_display, UnitError};
use engine::{Coordinates, Disposition, RequestId};
use protocol::{Consistency, NodeAddr};

/// A quantity in display units, as typed (`3`, `0.59`, `-2`): syntactically a decimal number;
/// its number of decimals is checked against the SKU's scale by [`to_base`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qty(pub String);

/// Parses a display quantity's syntax.
pub fn qty(text: &str) -> Result<Qty, String> {
    // `+3` reads as a receipt of 3 (`adjust A@wh1 +3`).
    let text = text.strip_prefix('+').unwrap_or(text);
    match parse_display(text, engine::limits::SCALE_MAX) {
        Err(UnitError::Malformed) => Err(format!(
            "{text:?} is not a decimal quantity ([-]digits[.digits])"
        )),
        _ => Ok(Qty(text.to_owned())),
    }
}

/// Converts a display quantity to base units at `scale` (the SKU's). More decimals than the
/// scale, or a value above `QTY_MAX`, is `invalid` (SPEC section 2), decided before sending:
/// the error is the explanation.
pub fn to_base(qty: &Qty, scale: u8) -> Result<i64, String> {
    parse_display(&qty.0, scale).map_err(|e| format!("quantity {}: {e}", qty.0))
}

/// `SKU@PLACE:QTY`: a reservation or order line (PLACE a location, a group or `all`), or a
/// fulfil / cancel line (PLACE a location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineArg {
    /// The SKU.
    pub sku: String,
    /// A location, a group or `all`.
    pub place: String,
    /// Display units.
    pub qty: Qty,
}

fn sku_at(text: &str) -> Result<(String, &str), String> {
    let (sku, rest) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?}: expected SKU@LOCATION..."))?;
    if sku.is_empty() || rest.is_empty() {
        return Err(format!("{text:?}: expected SKU@LOCATION..."));
    }
    Ok((sku.to_owned(), rest))
}

/// Parses `SKU@PLACE:QTY` (the quantity follows the LAST `:`; ids may contain `:`).
pub fn line(text: &str) -> Result<LineArg, String> {
    let (sku, rest) = sku_at(text)?;
    let (place, q) = rest
        .rsplit_once(':')
        .filter(|(p, q)| !p.is_empty() && !q.is_empty())
        .ok_or_else(|| format!("{text:?}: expected SKU@LOCATION:QTY"))?;
    Ok(LineArg {
        sku,
        place: place.to_owned(),
        qty: qty(q)?,
    })
}

/// `SKU@LOCATION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtArg {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
}

/// Parses `SKU@LOCATION`.
pub fn at(text: &str) -> Result<AtArg, String> {
    let (sku, location) = sku_at(text)?;
    Ok(AtArg {
        sku,
        location: location.to_owned(),
    })
}

/// `SKU@RECEIVED_AT:QTY:DISPOSITION`: a return line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnArg {
    /// The SKU.
    pub sku: String,
    /// Where the units arrived.
    pub received_at: String,
    /// Display units.
    pub qty: Qty,
    /// `restock`, `damaged` or `scrap`.
    pub disposition: Disposition,
}

/// Parses `SKU@RECEIVED_AT:QTY:DISPOSITION`.
pub fn return_line(text: &str) -> Result<ReturnArg, String> {
    let (sku, rest) = sku_at(text)?;
    let bad = || format!("{text:?}: expected SKU@LOCATION:QTY:restock|damaged|scrap");
    let (rest, disposition) = rest.rsplit_once(':').ok_or_else(bad)?;
    let (received_at, q) = rest.rsplit_once(':').ok_or_else(bad)?;
    if received_at.is_empty() {
        return Err(bad());
    }
    Ok(ReturnArg {
        sku,
        received_at: received_at.to_owned(),
        qty: qty(q)?,
        disposition: Disposition::parse(disposition).ok_or_else(bad)?,
    })
}

/// Parses `linearizable`, `local` or `at-least=N` (also `at_least=N`).
pub fn consistency(text: &str) -> Result<Consistency, String> {
    match text {
        "linearizable" => Ok(Consistency::Linearizable),
        "local" => Ok(Consistency::Local),
        _ => text
            .strip_prefix("at-least=")
            .or_else(|| text.strip_prefix("at_least="))
            .and_then(|n| n.parse().ok())
            .map(Consistency::AtLeast)
            .ok_or_else(|| format!("{text:?}: expected linearizable, local or at-least=INDEX")),
    }
}

/// Parses a request id: 1 to 32 hex digits, not zero.
pub fn request_id(text: &str) -> Result<RequestId, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.is_empty() || digits.len() > 32 {
        return Err(format!("{text:?}: expected 1 to 32 hex digits"));
    }
    match u128::from_str_radix(digits, 16) {
        Ok(0) => Err("the request id must not be zero".into()),
        Ok(n) => Ok(RequestId(n)),
        Err(_) => Err(format!("{text:?}: expected 1 to 32 hex digits")),
    }
}

/// Parses a duration: `500ms`, `10s`, `15m`, `2h`, `2d` (as in case files).
pub fn duration_ms(text: &str) -> Result<u64, String> {
    crate::case::parse_duration(text)
}

/// Parses a latitude or longitude in decimal degrees (`48.8566`) into micro-degrees.
pub fn degrees_e6(text: &str) -> Result<i32, String> {
    parse_display(text, 6)
        .ok()
        .and_then(|v| i32::try_from(v).ok())
        .filter(|v| v.unsigned_abs() <= 180_000_000)
        .ok_or_else(|| format!("{text:?}: expected decimal degrees, at most 6 decimals"))
}

/// Coordinates from a latitude and a longitude (range checked by the ledger).
pub fn coordinates(lat_e6: i32, lon_e6: i32) -> Coordinates {
    Coordinates { lat_e6, lon_e6 }
}

/// Parses a cluster member `ID=HOST:PORT`.
pub fn member(text: &str) -> Result<NodeAddr, String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ID=HOST:PORT"))?;
    Ok(NodeAddr {
        id: node_id(id)?,
        addr: host_port(addr)?,
    })
}

/// Parses a node id (a positive integer).
pub fn node_id(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| format!("{text:?}: a node id is a positive integer"))
}

/// Checks `HOST:PORT`.
pub fn host_port(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_owned())
        }
        _ => Err(format!("{text:?}: expected HOST:PORT")),
    }
}

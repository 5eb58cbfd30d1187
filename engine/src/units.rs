//! Display units <-> base units (SPEC section 2).
//!
//! The ledger stores integers in a SKU's base unit. A SKU sold in fractions declares a decimal
//! scale (0..=6): with scale 3, "2.75" metres is 2750 base units. Human-facing tools (stockctl,
//! case files) take display units with at most `scale` decimals; this module is the one place
//! that converts, with integer arithmetic only (no floating point anywhere).

use crate::limits::{QTY_MAX, SCALE_MAX};

/// Why a display quantity could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// Not a decimal number (`[-]digits[.digits]`).
    Malformed,
    /// More decimal places than the SKU's scale allows.
    TooManyDecimals {
        /// The SKU's scale.
        scale: u8,
    },
    /// The scale itself is above [`SCALE_MAX`].
    BadScale,
    /// The value in base units would exceed [`QTY_MAX`].
    TooLarge,
}

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitError::Malformed => f.write_str("not a decimal quantity"),
            UnitError::TooManyDecimals { scale } => {
                write!(f, "more than {scale} decimal places")
            }
            UnitError::BadScale => write!(f, "scale above {SCALE_MAX}"),
            UnitError::TooLarge => write!(f, "quantity above {QTY_MAX} base units"),
        }
    }
}

impl std::error::Error for UnitError {}

/// 10^scale, for scale 0..=6.
fn factor(scale: u8) -> Result<i64, UnitError> {
    if scale > SCALE_MAX {
        return Err(UnitError::BadScale);
    }
    Ok(10i64.pow(u32::from(scale)))
}

/// Parses a display quantity (`"3"`, `"0.59"`, `"-2.5"`) into base units at `scale`.
///
/// `"3"` at scale 2 is 300; `"0.591"` at scale 2 is `TooManyDecimals`. Trailing zeros count as
/// decimals only up to the scale (`"1.500"` at scale 1 is rejected: the tool must not guess).
pub fn parse_display(text: &str, scale: u8) -> Result<i64, UnitError> {
    let factor = factor(scale)?;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(UnitError::Malformed);
    }
    let frac = frac.unwrap_or("");
    if frac.len() > usize::from(scale) {
        return Err(UnitError::TooManyDecimals { scale });
    }
    // At most 18 significant digits fit an i64 for sure; anything longer is too large anyway.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 16 {
        return Err(UnitError::TooLarge);
    }
    let whole_value: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| UnitError::TooLarge)?
    };
    let mut frac_value: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let place = 10i64.pow(u32::from(scale) - 1 - i as u32);
        frac_value += i64::from(b - b'0') * place;
    }
    let value = whole_value
        .checked_mul(factor)
        .and_then(|v| v.checked_add(frac_value))
        .filter(|v| *v <= QTY_MAX)
        .ok_or(UnitError::TooLarge)?;
    Ok(if negative { -value } else { value })
}

/// Formats base units at `scale` as a display quantity with exactly `scale` decimals:
/// 3360 at scale 2 is `"33.60"`, 5 at scale 0 is `"5"`. Scales above the maximum are
/// formatted as scale 0.
pub fn format_display(base_units: i64, scale: u8) -> String {
    let Ok(factor) = factor(scale) else {
        return base_units.to_string();
    };
    if scale == 0 {
        return base_units.to_string();
    }
    let sign = if base_units < 0 { "-" } else { "" };
    let magnitude = base_units.unsigned_abs();
    let factor = factor as u64;
    format!(
        "{sign}{}.{:0width$}",
        magnitude / factor,
        magnitude % factor,
        width = usize::from(scale)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, scale: u8, expected: Result<i64, UnitError>) {
        assert_eq!(
            parse_display(text, scale),
            expected,
            "{text} at scale {scale}"
        );
    }

    #[test]
    fn parses_display_units() {
        check("3", 0, Ok(3));
        check("3", 2, Ok(300));
        check("0.59", 2, Ok(59));
        check("3106.40", 2, Ok(310_640));
        check("2.75", 3, Ok(2750));
        check("-2.5", 1, Ok(-25));
        check("007", 0, Ok(7));
        check("0.591", 2, Err(UnitError::TooManyDecimals { scale: 2 }));
        check("1.0", 0, Err(UnitError::TooManyDecimals { scale: 0 }));
        check("1.", 2, Err(UnitError::Malformed));
        check(".5", 2, Err(UnitError::Malformed));
        check("1e3", 0, Err(UnitError::Malformed));
        check("", 0, Err(UnitError::Malformed));
        check("+1", 0, Err(UnitError::Malformed));
        check("1", 7, Err(UnitError::BadScale));
        check("1000000000000000", 0, Ok(QTY_MAX));
        check("1000000000000001", 0, Err(UnitError::TooLarge));
        check("1000000000.000001", 6, Err(UnitError::TooLarge));
        check("99999999999999999999999", 0, Err(UnitError::TooLarge));
    }

    #[test]
    fn formats_display_units() {
        assert_eq!(format_display(3360, 2), "33.60");
        assert_eq!(format_display(5, 0), "5");
        assert_eq!(format_display(7, 3), "0.007");
        assert_eq!(format_display(-25, 1), "-2.5");
        assert_eq!(format_display(0, 2), "0.00");
    }
}

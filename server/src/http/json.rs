//! Pieces every JSON answer uses: quantities in base units AND as display strings with the
//! SKU's scale (SPEC section 2), and times as ms since the epoch AND RFC 3339.

use serde::Serialize;
use utoipa::ToSchema;

/// A quantity: integer base units and the same in display units (`2750` at scale 3 is
/// `"2.750"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Qty {
    /// Base units (the wire's and the ledger's integer).
    pub units: i64,
    /// Display units with exactly `scale` decimals.
    pub display: String,
}

/// `units` at `scale`.
pub fn qty(units: i64, scale: u8) -> Qty {
    Qty {
        units,
        display: engine::units::format_display(units, scale),
    }
}

/// A point in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Time {
    /// ms since the Unix epoch (UTC).
    pub ms: u64,
    /// The same as RFC 3339 (UTC, millisecond precision).
    pub rfc3339: String,
}

/// `ms` since the epoch as a [`Time`]; a time beyond what RFC 3339 can write (after the
/// year 9999, which the ledger's limits exclude) keeps an empty `rfc3339`.
pub fn time(ms: u64) -> Time {
    let nanos = i128::from(ms) * 1_000_000;
    let rfc3339 = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            let t = t.replace_nanosecond((ms % 1_000) as u32 * 1_000_000).ok()?;
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Time { ms, rfc3339 }
}

/// A balance of one (SKU, location), every field a [`Qty`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BalanceJson {
    /// Physical units there, including unavailable ones.
    pub on_hand: Qty,
    /// Held by live reservations.
    pub reserved: Qty,
    /// Promised to placed orders, not yet fulfilled.
    pub allocated: Qty,
    /// Damaged, quarantined: never sold.
    pub unavailable: Qty,
    /// Withheld from remote channels.
    pub safety_stock: Qty,
    /// In transit to this location.
    pub incoming: Qty,
}

/// `b` at `scale`.
pub fn balance(b: &engine::Balance, scale: u8) -> BalanceJson {
    BalanceJson {
        on_hand: qty(b.on_hand, scale),
        reserved: qty(b.reserved, scale),
        allocated: qty(b.allocated, scale),
        unavailable: qty(b.unavailable, scale),
        safety_stock: qty(b.safety_stock, scale),
        incoming: qty(b.incoming, scale),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_times_read_both_ways() {
        assert_eq!(qty(2_750, 3).display, "2.750");
        assert_eq!(qty(3, 0).display, "3");
        assert_eq!(time(0).rfc3339, "1970-01-01T00:00:00Z");
        assert_eq!(time(1_700_000_000_123).rfc3339, "2023-11-14T22:13:20.123Z");
    }
}

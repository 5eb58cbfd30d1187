//! The balance of one (SKU, location) and its ATS (SPEC section 1).

use serde::{Deserialize, Serialize};

use crate::limits::QTY_MAX;

/// Stock of one SKU at one location, in base units. Every field is in `0..=QTY_MAX` and
/// `unavailable <= on_hand` ([`Balance::check`]); `reserved + allocated` MAY exceed
/// `on_hand - unavailable` after a count (a shortage: physical reality wins, ATS floors at 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Balance {
    /// Physical units, including unavailable ones.
    pub on_hand: i64,
    /// Units held by live reservations.
    pub reserved: i64,
    /// Units promised to placed orders, not yet fulfilled.
    pub allocated: i64,
    /// Damaged / quarantined units: part of on_hand, never sold.
    pub unavailable: i64,
    /// Buffer withheld from remote channels.
    pub safety_stock: i64,
    /// Units in transit to this location (informational).
    pub incoming: i64,
}

impl Balance {
    /// ATS for remote channels:
    /// `max(0, on_hand - unavailable - reserved - allocated - safety_stock)`.
    pub fn ats_remote(&self) -> i64 {
        (self.ats_pos() - self.safety_stock).max(0)
    }

    /// ATS for `pos` at this location: `max(0, on_hand - unavailable - reserved - allocated)`.
    pub fn ats_pos(&self) -> i64 {
        (self.on_hand - self.unavailable - self.reserved - self.allocated).max(0)
    }

    /// ATS for a channel: POS ATS for `pos`, remote ATS otherwise.
    pub fn ats(&self, pos: bool) -> i64 {
        if pos {
            self.ats_pos()
        } else {
            self.ats_remote()
        }
    }

    /// Units that can physically leave: `on_hand - unavailable` (fulfilment checks this).
    pub fn sellable(&self) -> i64 {
        self.on_hand - self.unavailable
    }

    /// How far holds and allocations exceed sellable units (0 when covered).
    pub fn shortfall(&self) -> i64 {
        (self.reserved + self.allocated - self.sellable()).max(0)
    }

    /// Whether every field is within bounds (see the type's doc).
    pub fn is_consistent(&self) -> bool {
        let in_range = |v: i64| (0..=QTY_MAX).contains(&v);
        in_range(self.on_hand)
            && in_range(self.reserved)
            && in_range(self.allocated)
            && in_range(self.unavailable)
            && in_range(self.safety_stock)
            && in_range(self.incoming)
            && self.unavailable <= self.on_hand
    }

    /// Asserts [`Balance::is_consistent`]. A broken invariant is a bug in the engine: it stops
    /// the node rather than letting replicas diverge.
    #[track_caller]
    pub fn check(&self) {
        assert!(self.is_consistent(), "ledger invariant broken: {self:?}");
    }

    /// Whether the balance carries no information (all zero) and may be dropped.
    pub fn is_empty(&self) -> bool {
        *self == Balance::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ats_floors_at_zero_and_pos_ignores_safety_stock() {
        let b = Balance {
            on_hand: 10,
            safety_stock: 10,
            ..Balance::default()
        };
        assert_eq!((b.ats_remote(), b.ats_pos()), (0, 10));
        let b = Balance {
            on_hand: 5,
            reserved: 4,
            allocated: 3,
            ..Balance::default()
        };
        assert_eq!((b.ats_remote(), b.ats_pos(), b.shortfall()), (0, 0, 2));
        let b = Balance {
            on_hand: 15,
            unavailable: 1,
            reserved: 5,
            safety_stock: 2,
            ..b
        };
        assert_eq!((b.ats_remote(), b.ats_pos()), (4, 6));
    }
}

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
        self.fields().iter().all(|v| (0..=QTY_MAX).contains(v)) && self.unavailable <= self.on_hand
    }

    /// The six quantities, in declaration order (`on_hand` .. `incoming`).
    fn fields(&self) -> [i64; 6] {
        [
            self.on_hand,
            self.reserved,
            self.allocated,
            self.unavailable,
            self.safety_stock,
            self.incoming,
        ]
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

/// Bits of one field of a [`PackedBalance`]: every field is in `0..=QTY_MAX` < 2^50.
const FIELD_BITS: u32 = 50;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
/// Bits of `incoming` kept above each of the first four fields (4 x 14 >= 50).
const SPILL_BITS: u32 = 64 - FIELD_BITS;
const SPILL_MASK: u64 = (1 << SPILL_BITS) - 1;
const _: () = assert!(QTY_MAX as u64 <= FIELD_MASK && 4 * SPILL_BITS >= FIELD_BITS);

/// A [`Balance`] as the ledger stores it: 40 bytes instead of 48 (ARCHITECTURE.md, engine,
/// "Balances"). Word `i` holds field `i` (`on_hand`, `reserved`, `allocated`, `unavailable`,
/// `safety_stock`) in its low 50 bits; `incoming`, rarely set, is spread over the high 14 bits of
/// words 0-3. Lossless for every field in `0..2^50`, which holds every balance the ledger may
/// store (each field in `0..=QTY_MAX`, [`Balance::check`], which runs on every balance written);
/// packing a field outside 50 bits stops the node. In a snapshot it is written as the
/// [`Balance`] it holds, so the format does not depend on this layout; a restore reads the
/// plain balance and packs it with [`PackedBalance::try_pack`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PackedBalance([u64; 5]);

impl PackedBalance {
    /// Packs `b`, or `None` if a field does not fit in 50 bits (a negative one never does).
    /// Range `0..=QTY_MAX` itself is [`Balance::check`]'s job.
    #[inline]
    pub(crate) fn try_pack(b: Balance) -> Option<PackedBalance> {
        let f = b.fields();
        // A negative field has its top bit set: one test covers both ends.
        if (f[0] | f[1] | f[2] | f[3] | f[4] | f[5]) as u64 > FIELD_MASK {
            return None;
        }
        let inc = b.incoming as u64;
        let spill = |i: u32| ((inc >> (i * SPILL_BITS)) & SPILL_MASK) << FIELD_BITS;
        Some(PackedBalance([
            f[0] as u64 | spill(0),
            f[1] as u64 | spill(1),
            f[2] as u64 | spill(2),
            f[3] as u64 | spill(3),
            f[4] as u64,
        ]))
    }

    /// Packs `b`; a field outside 50 bits is a broken ledger invariant and stops the node (the
    /// range `0..=QTY_MAX` itself is [`Balance::check`]'s, which the writer runs next).
    #[inline]
    #[track_caller]
    pub(crate) fn pack(b: Balance) -> PackedBalance {
        match PackedBalance::try_pack(b) {
            Some(p) => p,
            None => panic!("ledger invariant broken: {b:?}"),
        }
    }

    /// Adds `reserved` and `allocated` in place (a hold or an allocation moving) and returns
    /// the balance after; a field leaving 50 bits is a broken ledger invariant and stops the
    /// node. Cheaper than `unpack`, change and `pack`: only two words change.
    #[inline]
    #[track_caller]
    pub(crate) fn add_held(&mut self, reserved: i64, allocated: i64) -> Balance {
        let field = |word: usize, delta: i64| (self.0[word] & FIELD_MASK) as i64 + delta;
        let (r, a) = (field(1, reserved), field(2, allocated));
        assert!(
            (r | a) as u64 <= FIELD_MASK,
            "ledger invariant broken: {self:?} reserved {reserved:+} allocated {allocated:+}"
        );
        for (word, v) in [(1, r), (2, a)] {
            self.0[word] = (self.0[word] & !FIELD_MASK) | v as u64;
        }
        self.unpack()
    }

    /// The balance held.
    #[inline]
    pub(crate) fn unpack(self) -> Balance {
        let w = self.0;
        let field = |i: usize| (w[i] & FIELD_MASK) as i64;
        let spill = |i: usize| (w[i] >> FIELD_BITS) << (i as u32 * SPILL_BITS);
        Balance {
            on_hand: field(0),
            reserved: field(1),
            allocated: field(2),
            unavailable: field(3),
            safety_stock: field(4),
            incoming: (spill(0) | spill(1) | spill(2) | spill(3)) as i64,
        }
    }
}

impl std::fmt::Debug for PackedBalance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unpack().fmt(f)
    }
}

impl Serialize for PackedBalance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.unpack().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(0),
            Just(1),
            Just(QTY_MAX),
            Just(QTY_MAX - 1),
            0..=QTY_MAX
        ]
    }

    proptest! {
        /// Every balance the ledger may hold comes back from its packed form unchanged.
        #[test]
        fn packing_keeps_every_in_range_balance(
            on_hand in field(), reserved in field(), allocated in field(),
            unavailable in field(), safety_stock in field(), incoming in field(),
        ) {
            let b = Balance { on_hand, reserved, allocated, unavailable, safety_stock, incoming };
            prop_assert_eq!(PackedBalance::pack(b).unpack(), b);
        }

        /// `add_held` is `unpack`, add, `pack`, whatever the other fields hold.
        #[test]
        fn adding_held_units_in_place_changes_only_them(
            on_hand in field(), reserved in field(), allocated in field(), incoming in field(),
            reserved_after in field(), allocated_after in field(),
        ) {
            let b = Balance { on_hand, reserved, allocated, incoming, ..Balance::default() };
            let after = Balance { reserved: reserved_after, allocated: allocated_after, ..b };
            let (r, a) = (reserved_after - reserved, allocated_after - allocated);
            let mut p = PackedBalance::pack(b);
            prop_assert_eq!(p.add_held(r, a), after);
            prop_assert_eq!(p, PackedBalance::pack(after));
        }
    }

    #[test]
    fn packing_refuses_a_field_out_of_range() {
        for v in [-1, FIELD_MASK as i64 + 1, i64::MIN, i64::MAX] {
            for i in 0..6 {
                let mut f = [0i64; 6];
                f[i] = v;
                let b = Balance {
                    on_hand: f[0],
                    reserved: f[1],
                    allocated: f[2],
                    unavailable: f[3],
                    safety_stock: f[4],
                    incoming: f[5],
                };
                assert_eq!(PackedBalance::try_pack(b), None, "{b:?}");
            }
        }
        assert_eq!(std::mem::size_of::<PackedBalance>(), 40);
    }

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

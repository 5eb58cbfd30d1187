//! `ProbeTable`: one shard of an [`crate::state::IdTable`], an open-addressing table of
//! (32-bit hash, u32 handle) pairs with linear probing.
//!
//! Why not `hashbrown`: the slot an id's probe starts at is known from its hash alone, so a batch
//! can prefetch the slots of the requests it will apply next ([`ProbeTable::prefetch`]) and
//! their cache misses overlap; `hashbrown` has no way to name that slot. Deletion shifts the
//! following entries back (no tombstones), so a probe stops at the first empty slot.

/// One slot: `tag` 0 means empty; a stored hash is kept as its [`tag`], never 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    tag: u32,
    handle: u32,
}

/// The tag stored for `hash`: never 0 (0 marks an empty slot). Two hashes share a tag only if
/// they differ in bit 0 alone; the caller's equality check tells them apart. Everything
/// (slot, comparison) derives from the tag, so an entry can be re-placed from its slot alone.
#[inline]
fn tag(hash: u32) -> u32 {
    hash | 1
}

/// The 64-bit spread of a tag, whose high bits pick its home slot.
#[inline]
fn spread(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The fullest a table gets, in eighths. Linear probing's miss (a new id: every dedup lookup of a
/// new request) scans about (1 + 1 / (1 - fill)^2) / 2 slots: 8.5 at 3/4, 32 at 7/8 (8 slots a
/// cache line).
pub(crate) const FILL_MAX_EIGHTHS: usize = 6;

/// Slots of the smallest table that holds anything.
const CAPACITY_MIN: usize = 16;

/// An open-addressing table of (hash, handle) pairs; see the module doc.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeTable {
    /// A power of two long (or empty).
    slots: Vec<Slot>,
    len: usize,
}

impl ProbeTable {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots (entries it can hold before it must grow: [`FILL_MAX_EIGHTHS`] eighths of them).
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The slot a probe for `tag` starts at (the table is not empty).
    #[inline]
    fn home(&self, tag: u32) -> usize {
        // The high bits: the low ones of a multiplicative spread are weak.
        (spread(tag) >> 32) as usize & (self.slots.len() - 1)
    }

    /// Starts loading the slot a probe for `hash` starts at (see [`crate::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u32) {
        if !self.slots.is_empty() {
            crate::prefetch::prefetch(&self.slots[self.home(tag(hash))]);
        }
    }

    /// The index of the entry of `hash` for which `is` holds.
    #[inline]
    fn position(&self, hash: u32, is: impl Fn(u32) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let (mask, tag) = (self.slots.len() - 1, tag(hash));
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot.tag == 0 {
                return None;
            }
            if slot.tag == tag && is(slot.handle) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The handle of the first entry whose tag is `hash`'s, without checking that it is the id
    /// sought (a guess for a prefetch: usually right, never trusted).
    #[inline]
    pub(crate) fn first_candidate(&self, hash: u32) -> Option<u32> {
        self.position(hash, |_| true).map(|i| self.slots[i].handle)
    }

    /// The handle of the entry of `hash` for which `is` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u32, is: impl Fn(u32) -> bool) -> Option<u32> {
        self.position(hash, is).map(|i| self.slots[i].handle)
    }

    /// Points the entry of `hash` for which `is` holds at `handle`; false if there is none.
    pub(crate) fn repoint(&mut self, hash: u32, handle: u32, is: impl Fn(u32) -> bool) -> bool {
        match self.position(hash, is) {
            Some(i) => {
                self.slots[i].handle = handle;
                true
            }
            None => false,
        }
    }

    /// Adds an entry (the caller knows there is none for this id), growing first if the table
    /// would be fuller than [`FILL_MAX_EIGHTHS`].
    pub(crate) fn insert_unique(&mut self, hash: u32, handle: u32) {
        if (self.len + 1) * 8 > self.slots.len() * FILL_MAX_EIGHTHS {
            self.grow();
        }
        self.place(Slot {
            tag: tag(hash),
            handle,
        });
        self.len += 1;
    }

    /// Writes `slot` at the first empty slot of its probe (there is one: the table is never full).
    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(slot.tag);
        while self.slots[i].tag != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    /// Doubles the table (or makes the first one); entries are re-placed from their tags.
    pub(crate) fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(CAPACITY_MIN);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
        for slot in old.into_iter().filter(|s| s.tag != 0) {
            self.place(slot);
        }
    }

    /// Removes the entry of `hash` for which `is` holds, if any, and shifts back the entries
    /// after it in its run that may move (so that every probe still finds its entry before an
    /// empty slot).
    pub(crate) fn remove(&mut self, hash: u32, is: impl Fn(u32) -> bool) {
        let Some(mut hole) = self.position(hash, is) else {
            return;
        };
        let mask = self.slots.len() - 1;
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let slot = self.slots[i];
            if slot.tag == 0 {
                break;
            }
            let home = self.home(slot.tag);
            // The entry at `i` may fill the hole if its home is not in (hole, i] (cyclically).
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.slots[hole] = slot;
                hole = i;
            }
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(usize),
        Repoint(usize),
    }

    /// Hashes from a small set, so that tags collide, runs form and wrap around the table end.
    fn arb_op() -> impl Strategy<Value = Op> {
        let hash = prop_oneof![0u32..64, any::<u32>()];
        prop_oneof![
            4 => hash.prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => any::<usize>().prop_map(Op::Repoint),
        ]
    }

    proptest! {
        /// Every (hash, handle) pair inserted and not removed is found, by its hash and handle,
        /// through growths and backward-shift removals; nothing removed is.
        #[test]
        fn behaves_like_a_list_of_pairs(ops in proptest::collection::vec(arb_op(), 1..600)) {
            let mut table = ProbeTable::default();
            let mut model: Vec<(u32, u32)> = Vec::new();
            let mut next_handle = 0u32;
            for op in ops {
                match op {
                    Op::Insert(hash) => {
                        table.insert_unique(hash, next_handle);
                        model.push((hash, next_handle));
                        next_handle += 1;
                    }
                    Op::Remove(i) if !model.is_empty() => {
                        let (hash, handle) = model.swap_remove(i % model.len());
                        table.remove(hash, |h| h == handle);
                    }
                    Op::Repoint(i) if !model.is_empty() => {
                        let at = i % model.len();
                        let (hash, handle) = model[at];
                        prop_assert!(table.repoint(hash, next_handle, |h| h == handle));
                        model[at].1 = next_handle;
                        next_handle += 1;
                    }
                    _ => {}
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for &(hash, handle) in &model {
                prop_assert_eq!(table.find(hash, |h| h == handle), Some(handle));
            }
            let gone = next_handle;
            prop_assert_eq!(table.find(7, |h| h == gone), None);
            prop_assert!(table.len() * 8 <= table.capacity() * FILL_MAX_EIGHTHS);
        }
    }
}

//! `Slab<T>`: objects (reservations, orders, RMAs, transfers) in reusable u32 slots of a
//! [`Pages`] arena.
//!
//! A dropped object's slot goes on a free list threaded through the free slots themselves (a
//! stack whose head is part of the state), so the slab stays dense, its handles fit in a `u32`
//! however many objects were ever created, and every replica — restored from a snapshot or not —
//! hands out the same slots in the same order.

use serde::{Deserialize, Serialize};

use crate::pages::Pages;

/// No slot: the end of the free list.
const NONE: u32 = u32::MAX;

/// One slot: an object, or a link of the free list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Slot<T> {
    /// Free; `next` is the next free slot (`u32::MAX` for none).
    Free { next: u32 },
    /// In use.
    Used(T),
}

/// Objects by slot (see the module doc). `Clone` is a freeze (see [`Pages`]).
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    slots: Pages<Slot<T>>,
    free_head: u32,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Pages::default(),
            free_head: NONE,
        }
    }
}

impl<T: Clone> Slab<T> {
    /// The object in `slot`, if the slot is in use.
    pub(crate) fn get(&self, slot: u32) -> Option<&T> {
        if u64::from(slot) >= self.slots.end() {
            return None;
        }
        match self.slots.get(u64::from(slot)) {
            Slot::Used(value) => Some(value),
            Slot::Free { .. } => None,
        }
    }

    /// Starts loading the cache line where `slot` begins, without reading it (see
    /// [`crate::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, slot: u32) {
        self.slots.prefetch(u64::from(slot));
    }

    /// The object in `slot` for writing (copy-on-write of its page if a freeze shares it).
    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        if u64::from(slot) >= self.slots.end() {
            return None;
        }
        match self.slots.get_mut(u64::from(slot)) {
            Slot::Used(value) => Some(value),
            Slot::Free { .. } => None,
        }
    }

    /// Stores `value` in the most recently freed slot, or a new one; returns the slot. The
    /// callers' limits (`RESERVATIONS_LIVE_MAX` and retention) keep slots far below `u32::MAX`.
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        if self.free_head == NONE {
            let slot = self.slots.push(Slot::Used(value));
            assert!(slot < u64::from(NONE), "slab full");
            return slot as u32;
        }
        let slot = self.free_head;
        let entry = self.slots.get_mut(u64::from(slot));
        let Slot::Free { next } = *entry else {
            unreachable!("the free list links free slots")
        };
        *entry = Slot::Used(value);
        self.free_head = next;
        slot
    }

    /// Frees `slot` (which must be in use) and returns its object.
    pub(crate) fn remove(&mut self, slot: u32) -> T {
        let entry = self.slots.get_mut(u64::from(slot));
        let old = std::mem::replace(
            entry,
            Slot::Free {
                next: self.free_head,
            },
        );
        self.free_head = slot;
        match old {
            Slot::Used(value) => value,
            Slot::Free { .. } => panic!("slab slot {slot} freed twice"),
        }
    }

    /// One past the highest slot ever used (free or not).
    pub(crate) fn end(&self) -> u32 {
        self.slots.end() as u32
    }

    /// Every object in use with its slot, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        self.slots
            .iter_from(0)
            .enumerate()
            .filter_map(|(i, slot)| match slot {
                Slot::Used(value) => Some((i as u32, value)),
                Slot::Free { .. } => None,
            })
    }

    /// Every slot, free or not, in order, and the free list's head: the slab's whole state.
    pub(crate) fn parts(&self) -> (u32, impl Iterator<Item = &Slot<T>> + '_) {
        (self.free_head, self.slots.iter_from(0))
    }

    /// Rebuilds a slab from [`Slab::parts`]; `None` if the free list is not a chain of free
    /// slots ending in `u32::MAX` that visits each at most once.
    /// The slots come as pages (a restore decodes them straight into pages).
    pub(crate) fn from_parts(free_head: u32, slots: Pages<Slot<T>>) -> Option<Self> {
        if slots.start() != 0 || slots.end() >= u64::from(NONE) {
            return None;
        }
        let free = slots
            .iter_from(0)
            .filter(|s| matches!(s, Slot::Free { .. }))
            .count();
        let (mut at, mut seen) = (free_head, 0usize);
        while at != NONE {
            if u64::from(at) >= slots.end() {
                return None;
            }
            match slots.get(u64::from(at)) {
                Slot::Free { next } if seen < free => {
                    seen += 1;
                    at = *next;
                }
                _ => return None,
            }
        }
        (seen == free).then_some(Slab { slots, free_head })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages_of<T>(slots: Vec<Slot<T>>) -> Pages<Slot<T>> {
        let mut pages = Pages::default();
        for slot in slots {
            pages.push(slot);
        }
        pages
    }

    #[test]
    fn freed_slots_are_reused_last_freed_first_and_parts_round_trip() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        let c = slab.insert("c");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(slab.remove(a), "a");
        assert_eq!(slab.remove(c), "c");
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.insert("d"), c);
        assert_eq!(slab.insert("e"), a);
        assert_eq!(slab.insert("f"), 3);
        slab.remove(b);
        let (head, slots) = slab.parts();
        let copy = Slab::from_parts(head, pages_of(slots.cloned().collect())).expect("valid parts");
        assert_eq!(
            copy.iter().collect::<Vec<_>>(),
            slab.iter().collect::<Vec<_>>()
        );
        assert_eq!(copy.free_head, b);
        // A free list that loops or points at a used slot is refused.
        let looped = vec![Slot::Free { next: 0 }, Slot::Used("x")];
        assert!(Slab::from_parts(0, pages_of(looped)).is_none());
        assert!(Slab::from_parts(1, pages_of(vec![Slot::Used("x"), Slot::Used("y")])).is_none());
        assert!(
            Slab::from_parts(7, pages_of(vec![Slot::Used("x")])).is_none(),
            "a head past the end"
        );
    }
}

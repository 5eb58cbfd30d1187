//! `Fifo<T>`: a sequence-ordered log (dedup entries, the change feed, the retirement queue) in a
//! [`Pages`] arena, with a logical head and a clean-up cursor.
//!
//! Positions `head..end` are live. Positions `clean..head` are gone for every read and write but
//! still stored: their derived index entries (if any) are removed by a bounded clean-up step
//! per batch, which then moves `clean` forward and drops the directories behind it. Moving the
//! head is O(1) (or O(log n) by binary search on time), so no batch pays for a whole burst.

use crate::pages::Pages;

/// A log with a logical head (see the module doc). `Clone` is a freeze (see [`Pages`]).
#[derive(Debug, Clone)]
pub(crate) struct Fifo<T> {
    pages: Pages<T>,
    /// First position not yet cleaned up.
    clean: u64,
    /// First live position.
    head: u64,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo::starting_at(0)
    }
}

impl<T> Fifo<T> {
    /// An empty log whose first entry gets position `pos`.
    pub(crate) fn starting_at(pos: u64) -> Self {
        Fifo {
            pages: Pages::starting_at(pos),
            clean: pos,
            head: pos,
        }
    }

    /// First position not yet cleaned up.
    pub(crate) fn clean(&self) -> u64 {
        self.clean
    }

    /// First live position.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Position of the next push.
    pub(crate) fn end(&self) -> u64 {
        self.pages.end()
    }

    /// Live entries.
    pub(crate) fn len(&self) -> u64 {
        self.end() - self.head
    }

    /// Appends `value`; returns its position.
    #[inline]
    pub(crate) fn push(&mut self, value: T) -> u64 {
        self.pages.push(value)
    }

    /// The entry at `pos` (live or awaiting clean-up).
    pub(crate) fn get(&self, pos: u64) -> &T {
        debug_assert!(pos >= self.clean, "position {pos} was cleaned up");
        self.pages.get(pos)
    }

    /// The stored position whose low 32 bits are `low` (every stored position lies within
    /// 2^32 of `clean`: the logs are bounded far below that).
    pub(crate) fn full_position(&self, low: u32) -> u64 {
        self.clean + u64::from(low.wrapping_sub(self.clean as u32))
    }

    /// Whether `pos` is live.
    pub(crate) fn is_live(&self, pos: u64) -> bool {
        pos >= self.head && pos < self.end()
    }

    /// Moves the head forward to `pos` (never backwards, never past the end).
    pub(crate) fn advance_head(&mut self, pos: u64) {
        self.head = self.head.max(pos.min(self.end()));
    }

    /// The first live position whose entry fails `pred` (which must hold for a prefix of the
    /// live entries): O(log n).
    pub(crate) fn live_partition_point(&self, pred: impl Fn(&T) -> bool) -> u64 {
        self.pages.partition_point(self.head, pred)
    }

    /// Marks `clean..pos` cleaned up (`pos <= head`) and drops the directories behind it.
    pub(crate) fn cleaned_to(&mut self, pos: u64) {
        assert!(
            pos >= self.clean && pos <= self.head,
            "clean-up past the head"
        );
        self.clean = pos;
        self.pages.drop_front(pos);
    }

    /// Entries from `from` (at least `clean`) to the end.
    pub(crate) fn iter_from(&self, from: u64) -> impl Iterator<Item = &T> + '_ {
        self.pages.iter_from(from.max(self.clean))
    }

    /// A log being rebuilt (a restore) whose entries `clean..` ([`Fifo::iter_from`]'s) were
    /// pushed, with its head put back at `head`; `None` if `head` is outside `clean..=end`.
    pub(crate) fn with_head(mut self, head: u64) -> Option<Self> {
        (head >= self.clean && head <= self.end()).then(|| {
            self.head = head;
            self
        })
    }
}

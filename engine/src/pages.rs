//! `Pages<T>`: the copy-on-write paged arena that every part of the ledger's state lives in.
//!
//! Entries are addressed by a `u64` position. They sit in pages of [`PAGE_ENTRIES`] entries,
//! grouped in directories of [`DIR_PAGES`] pages:
//! - sealed directories (`Arc<[Arc<[T]>]>`, always full) in a `VecDeque`, the first one starting
//!   at position `base`;
//! - then an owned tail directory of sealed pages (fewer than [`DIR_PAGES`]);
//! - then an owned tail page where appends land (fewer than [`PAGE_ENTRIES`] entries).
//!
//! Why two levels: a clone (a freeze of the ledger) must cost O(directories), not O(pages) nor
//! O(entries), so a clone only bumps one reference count per sealed directory and copies the two
//! small tails. Writing an entry of a sealed page goes through `Arc::make_mut` on its directory
//! and on its page: the first write after a clone copies that directory (64 pointers) and that
//! page (64 entries) and leaves the clone untouched; later writes find both unshared. Appends
//! never touch shared memory. A FIFO drops whole directories from the front
//! ([`Pages::drop_front`]).

use std::collections::VecDeque;
use std::sync::Arc;

/// log2 of [`PAGE_ENTRIES`].
const PAGE_BITS: u32 = 6;
/// Entries per page: the unit copied by the first write after a freeze. Small, so that a batch
/// writing to many random pages right after a freeze copies little (64 balances = 2.5 KiB).
pub(crate) const PAGE_ENTRIES: usize = 1 << PAGE_BITS;
/// log2 of [`DIR_PAGES`].
const DIR_BITS: u32 = 6;
/// Pages per directory: the unit a freeze shares (one reference count each).
pub(crate) const DIR_PAGES: usize = 1 << DIR_BITS;
/// Entries per directory.
pub(crate) const DIR_ENTRIES: usize = PAGE_ENTRIES * DIR_PAGES;

const PAGE_MASK: u64 = PAGE_ENTRIES as u64 - 1;
const DIR_MASK: u64 = DIR_PAGES as u64 - 1;

type Page<T> = Arc<[T]>;
type Dir<T> = Arc<[Page<T>]>;

/// A paged arena of `T`, positions `start()..end()` (see the module doc). `Clone` is the freeze:
/// O(directories) reference counts plus the tails.
#[derive(Clone)]
pub(crate) struct Pages<T> {
    /// Position of the first entry of `dirs[0]` (of the tail when there is no sealed directory).
    base: u64,
    /// Sealed directories, each [`DIR_PAGES`] full pages.
    dirs: VecDeque<Dir<T>>,
    /// Full pages after the sealed directories.
    tail_dir: Vec<Page<T>>,
    /// Entries after `tail_dir`; always fewer than [`PAGE_ENTRIES`].
    tail: Vec<T>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Pages<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pages[{}..{}]", self.start(), self.end())
    }
}

impl<T> Default for Pages<T> {
    fn default() -> Self {
        Pages::starting_at(0)
    }
}

/// Where a position lies.
enum Spot {
    Sealed {
        dir: usize,
        page: usize,
        slot: usize,
    },
    TailDir {
        page: usize,
        slot: usize,
    },
    Tail(usize),
}

impl<T> Pages<T> {
    /// An empty arena whose first entry will have position `base`.
    pub(crate) fn starting_at(base: u64) -> Self {
        Pages {
            base,
            dirs: VecDeque::new(),
            tail_dir: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// Position of the first entry still stored (directories before it were dropped).
    pub(crate) fn start(&self) -> u64 {
        self.base
    }

    /// Position the next [`Pages::push`] gets.
    pub(crate) fn end(&self) -> u64 {
        self.base
            + (self.dirs.len() * DIR_ENTRIES + self.tail_dir.len() * PAGE_ENTRIES + self.tail.len())
                as u64
    }

    /// Where `pos` lies. A position outside `start()..end()` gives a spot whose indexing
    /// panics (positions come from the ledger's own handles: a miss is a broken invariant).
    #[inline]
    fn spot(&self, pos: u64) -> Spot {
        let rel = pos.wrapping_sub(self.base);
        let dir = (rel >> (PAGE_BITS + DIR_BITS)) as usize;
        if dir < self.dirs.len() {
            return Spot::Sealed {
                dir,
                page: ((rel >> PAGE_BITS) & DIR_MASK) as usize,
                slot: (rel & PAGE_MASK) as usize,
            };
        }
        let rest = rel.wrapping_sub((self.dirs.len() * DIR_ENTRIES) as u64) as usize;
        let page = rest >> PAGE_BITS;
        if page < self.tail_dir.len() {
            Spot::TailDir {
                page,
                slot: rest & PAGE_MASK as usize,
            }
        } else {
            Spot::Tail(rest.wrapping_sub(self.tail_dir.len() * PAGE_ENTRIES))
        }
    }

    /// The entry at `pos`. Panics outside `start()..end()`: positions come from the ledger's own
    /// handles, so a miss is a broken invariant.
    #[inline]
    pub(crate) fn get(&self, pos: u64) -> &T {
        match self.spot(pos) {
            Spot::Sealed { dir, page, slot } => &self.dirs[dir][page][slot],
            Spot::TailDir { page, slot } => &self.tail_dir[page][slot],
            Spot::Tail(slot) => &self.tail[slot],
        }
    }

    /// Starts loading the cache line where the entry at `pos` begins, without reading it (see
    /// [`crate::prefetch`]); nothing outside `start()..end()`.
    #[inline]
    pub(crate) fn prefetch(&self, pos: u64) {
        if let Some(entry) = self.get_checked(pos) {
            crate::prefetch::prefetch(entry);
        }
    }

    /// The entry at `pos`, or `None` outside `start()..end()`.
    #[inline]
    pub(crate) fn get_checked(&self, pos: u64) -> Option<&T> {
        (self.start()..self.end())
            .contains(&pos)
            .then(|| self.get(pos))
    }

    /// Appends `value`; returns its position. Inlined, so the entry is written straight into
    /// the tail; sealing a full page is out of line.
    #[inline]
    pub(crate) fn push(&mut self, value: T) -> u64 {
        let pos = self.end();
        if self.tail.capacity() == 0 {
            // Every page is filled to exactly `PAGE_ENTRIES`: no growth (and its moves) while
            // it fills, and sealing it copies one exact buffer.
            self.tail.reserve_exact(PAGE_ENTRIES);
        }
        self.tail.push(value);
        if self.tail.len() == PAGE_ENTRIES {
            self.seal_tail();
        }
        pos
    }

    /// Moves the full tail page into the tail directory, and a full tail directory into the
    /// sealed ones.
    #[cold]
    #[inline(never)]
    fn seal_tail(&mut self) {
        // `Arc::from(Vec)` copies the full page with one `memcpy` (an element-by-element
        // collect costs a loop step per entry); the next page gets a fresh buffer.
        let full = std::mem::replace(&mut self.tail, Vec::with_capacity(PAGE_ENTRIES));
        self.tail_dir.push(Page::<T>::from(full));
        if self.tail_dir.len() == DIR_PAGES {
            let dir = Dir::<T>::from(std::mem::take(&mut self.tail_dir));
            self.dirs.push_back(dir);
        }
    }

    /// Drops every sealed directory that ends at or before `pos` (a FIFO whose entries before
    /// `pos` are dead); `start()` moves by whole directories.
    pub(crate) fn drop_front(&mut self, pos: u64) {
        while !self.dirs.is_empty() && self.base + DIR_ENTRIES as u64 <= pos {
            self.dirs.pop_front();
            self.base += DIR_ENTRIES as u64;
        }
    }

    /// The stored entries from `from` (clamped to `start()`) to the end, in position order.
    pub(crate) fn iter_from(&self, from: u64) -> impl Iterator<Item = &T> + '_ {
        let skip = from.saturating_sub(self.base).min(self.end() - self.base) as usize;
        let first_page = skip / PAGE_ENTRIES;
        let first_dir = (first_page / DIR_PAGES).min(self.dirs.len());
        self.dirs
            .range(first_dir..)
            .flat_map(|dir| dir.iter().map(|page| &page[..]))
            .chain(self.tail_dir.iter().map(|page| &page[..]))
            .chain(std::iter::once(&self.tail[..]))
            // At most one directory's pages and one page's entries are stepped over.
            .skip(first_page - first_dir * DIR_PAGES)
            .flatten()
            .skip(skip % PAGE_ENTRIES)
    }

    /// The first position in `from..end()` whose entry fails `pred`, given that `pred` holds
    /// for a prefix of that range and fails for the rest (a binary search: O(log n) reads).
    pub(crate) fn partition_point(&self, from: u64, pred: impl Fn(&T) -> bool) -> u64 {
        let (mut lo, mut hi) = (from.max(self.base), self.end());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl<T: Clone> Pages<T> {
    /// The entry at `pos`, for writing: copies its directory and page first if a freeze still
    /// shares them (see the module doc). Panics outside `start()..end()`.
    #[inline]
    pub(crate) fn get_mut(&mut self, pos: u64) -> &mut T {
        match self.spot(pos) {
            Spot::Sealed { dir, page, slot } => {
                let dir = Arc::make_mut(&mut self.dirs[dir]);
                &mut Arc::make_mut(&mut dir[page])[slot]
            }
            Spot::TailDir { page, slot } => &mut Arc::make_mut(&mut self.tail_dir[page])[slot],
            Spot::Tail(slot) => &mut self.tail[slot],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Set(usize, u32),
        Freeze,
        DropFront(usize),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => any::<u32>().prop_map(Op::Push),
            3 => (any::<usize>(), any::<u32>()).prop_map(|(i, v)| Op::Set(i, v)),
            1 => Just(Op::Freeze),
            1 => any::<usize>().prop_map(Op::DropFront),
        ]
    }

    fn check_same(pages: &Pages<u32>, model: &[(u64, u32)], what: &str) {
        let got: Vec<(u64, u32)> = (pages.start()..pages.end())
            .map(|p| (p, *pages.get(p)))
            .collect();
        let want: Vec<(u64, u32)> = model
            .iter()
            .copied()
            .filter(|(p, _)| *p >= pages.start())
            .collect();
        assert_eq!(got, want, "{what}");
        let iterated: Vec<u32> = pages.iter_from(0).copied().collect();
        assert_eq!(
            iterated,
            want.iter().map(|e| e.1).collect::<Vec<_>>(),
            "{what}: iter"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against a plain vector: every read after every operation, and every frozen copy keeps
        /// exactly the entries it had when it was taken whatever the original does afterwards.
        #[test]
        fn pages_behave_like_a_vector_and_freezes_never_change(
            base in 0u64..10_000,
            ops in prop::collection::vec(arb_op(), 1..400),
            bulk in 0usize..5000,
        ) {
            let mut pages = Pages::starting_at(base);
            let mut model: Vec<(u64, u32)> = Vec::new();
            for i in 0..bulk {
                model.push((pages.push(i as u32), i as u32));
            }
            type Copy = (Pages<u32>, Vec<(u64, u32)>);
            let mut frozen: Vec<Copy> = Vec::new();
            for op in &ops {
                match op {
                    Op::Push(v) => model.push((pages.push(*v), *v)),
                    Op::Set(i, v) if !model.is_empty() => {
                        let live: Vec<usize> = (0..model.len())
                            .filter(|&k| model[k].0 >= pages.start())
                            .collect();
                        if let Some(&k) = live.get(i % live.len().max(1)) {
                            *pages.get_mut(model[k].0) = *v;
                            model[k].1 = *v;
                        }
                    }
                    Op::Set(..) => {}
                    Op::Freeze => frozen.push((pages.clone(), model.clone())),
                    Op::DropFront(i) => {
                        let to = base + (*i % (model.len() + 1)) as u64;
                        let before = pages.start();
                        pages.drop_front(to);
                        prop_assert!(pages.start() <= to.max(before));
                        // Every whole directory before `to` went, and only those.
                        prop_assert!(pages.dirs.is_empty() || pages.start() + DIR_ENTRIES as u64 > to);
                    }
                }
                prop_assert_eq!(pages.end(), base + model.len() as u64);
                check_same(&pages, &model, "live");
            }
            for (copy, at_freeze) in &frozen {
                check_same(copy, at_freeze, "frozen");
            }
        }
    }

    #[test]
    fn iter_from_starts_at_any_position() {
        let mut pages = Pages::starting_at(7);
        for i in 0..(DIR_ENTRIES * 2 + PAGE_ENTRIES * 3 + 5) as u32 {
            pages.push(i);
        }
        for from in [
            0,
            7,
            8,
            70,
            7 + 4096,
            7 + 4095,
            7 + 8192 + 64 * 3,
            7 + 8192 + 64 * 3 + 4,
            99_999,
        ] {
            let want: Vec<u32> = (from.max(7)..pages.end()).map(|p| *pages.get(p)).collect();
            let got: Vec<u32> = pages.iter_from(from).copied().collect();
            assert_eq!(got, want, "from {from}");
        }
        assert_eq!(pages.partition_point(0, |v| *v < 5000), 7 + 5000);
        pages.drop_front(7 + 5000);
        assert_eq!(pages.start(), 7 + 4096);
        assert_eq!(*pages.get(7 + 4096), 4096);
    }
}

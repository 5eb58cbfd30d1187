//! The deadline index: every active hold's expiry and every open pickup's collection deadline,
//! in (deadline, creation) order.
//!
//! Writes add a deadline on almost every request, so this is on the hot path. Most deadlines of
//! one batch are equal (batch time + the same TTL), so the index groups them: an ordered set of
//! distinct deadlines, and per deadline a queue of object sequence numbers in creation order.
//! Removal (release, extend, placing an order) is lazy: it only drops the entry from the live
//! map; a queue keeps the stale number until its deadline is reached, where it is skipped. Costs:
//! insert O(1) plus O(log d) for a new distinct deadline; remove O(1); popping k due entries
//! O(k + stale); memory is bounded by the entries created within the longest deadline.
//!
//! The queue last used (by an insert or a pop) is kept at hand, outside the map of queues: a
//! batch's inserts almost all go to one deadline, and an expiry pops one deadline's entries in a
//! row, so most inserts and pops find their queue without hashing its deadline.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, VecDeque};

use std::hash::{BuildHasherDefault, Hasher};

use rustc_hash::FxHashMap;

use crate::state::Deadline;

/// Hashes a sequence number to itself (with its low bits copied to the top, where the hash
/// table takes its per-slot tag): consecutive numbers land in consecutive slots, so inserting
/// the deadlines of new objects walks memory in order instead of missing the cache once per
/// write.
#[derive(Default)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0 | (self.0 << 57)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by sequence numbers, laid out in sequence order.
type SeqMap<V> = std::collections::HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// Holds and pickups by deadline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadlines {
    /// Distinct deadlines (ms) that may still have live entries.
    order: BTreeSet<u64>,
    /// Per deadline, (object sequence number, insertion token) in insertion order, stale ones
    /// included. A queue is sorted by sequence number when its deadline comes due (no entry is
    /// added to a due deadline: deadlines are always in the future when set).
    queues: FxHashMap<u64, VecDeque<(u64, u64)>>,
    /// The deadline and queue last used, kept out of `queues` (each deadline's queue is in
    /// exactly one of the two; see the module doc).
    hot: Option<(u64, VecDeque<(u64, u64)>)>,
    /// The deadline whose queue was sorted for popping.
    sorted: Option<u64>,
    /// Live entries: sequence number -> (deadline, insertion token, what). A queue entry is live
    /// only if its token is the current one, so a re-inserted object appears once.
    live: SeqMap<(u64, u64, Deadline)>,
    /// The next insertion token.
    token: u64,
}

impl Deadlines {
    /// Adds (or moves) the deadline of object `seq`.
    pub(crate) fn insert(&mut self, at_ms: u64, seq: u64, what: Deadline) {
        let token = self.token;
        self.token += 1;
        self.live.insert(seq, (at_ms, token, what));
        self.queue_mut(at_ms).push_back((seq, token));
    }

    /// The queue of deadline `at_ms` (an empty one for a new deadline), made the hot one.
    #[inline]
    fn queue_mut(&mut self, at_ms: u64) -> &mut VecDeque<(u64, u64)> {
        if !matches!(&self.hot, Some((at, _)) if *at == at_ms) {
            self.make_hot(at_ms);
        }
        &mut self.hot.as_mut().expect("made hot").1
    }

    /// Puts the hot queue back into the map and takes out the queue of `at_ms` (a new one if
    /// the deadline has none yet).
    #[cold]
    #[inline(never)]
    fn make_hot(&mut self, at_ms: u64) {
        if let Some((at, queue)) = self.hot.take() {
            self.queues.insert(at, queue);
        }
        let queue = self.queues.remove(&at_ms).unwrap_or_else(|| {
            self.order.insert(at_ms);
            VecDeque::new()
        });
        self.hot = Some((at_ms, queue));
    }

    /// The queue of deadline `at_ms`, which has one.
    fn queue(&self, at_ms: u64) -> &VecDeque<(u64, u64)> {
        match &self.hot {
            Some((at, queue)) if *at == at_ms => queue,
            _ => &self.queues[&at_ms],
        }
    }

    /// Removes the deadline of object `seq` if it is `at_ms`; returns what it was.
    pub(crate) fn remove(&mut self, at_ms: u64, seq: u64) -> Option<Deadline> {
        match self.live.get(&seq) {
            Some((at, _, _)) if *at == at_ms => self.live.remove(&seq).map(|(_, _, what)| what),
            _ => None,
        }
    }

    /// The live entry of object `seq` at `at_ms`, if any.
    pub(crate) fn get(&self, at_ms: u64, seq: u64) -> Option<&Deadline> {
        self.live
            .get(&seq)
            .filter(|(at, _, _)| *at == at_ms)
            .map(|(_, _, what)| what)
    }

    /// Whether a queue entry is the live one.
    fn is_live(&self, at_ms: u64, (seq, token): (u64, u64)) -> bool {
        matches!(self.live.get(&seq), Some((at, t, _)) if *at == at_ms && *t == token)
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// The earliest deadline that may still have a live entry. It can be earlier than the
    /// earliest live one (its entries were all removed since): callers use it to decide when
    /// to look again, never to decide that something expired.
    pub(crate) fn first_time(&self) -> Option<u64> {
        self.order.first().copied()
    }

    /// Removes and returns the next live entry due at `now_ms` (deadline <= now), in
    /// (deadline, sequence number) order; drops stale entries on the way.
    pub(crate) fn pop_due(&mut self, now_ms: u64) -> Option<(u64, Deadline)> {
        loop {
            let at = *self.order.first()?;
            if at > now_ms {
                return None;
            }
            let sort = self.sorted != Some(at);
            self.sorted = Some(at);
            let queue = self.queue_mut(at);
            if sort {
                queue.make_contiguous().sort_unstable();
            }
            let Deadlines { hot, live, .. } = self;
            let queue = &mut hot.as_mut().expect("made hot").1;
            while let Some((seq, token)) = queue.pop_front() {
                if let Entry::Occupied(entry) = live.entry(seq) {
                    if entry.get().0 == at && entry.get().1 == token {
                        return Some((at, entry.remove().2));
                    }
                }
            }
            self.hot = None;
            self.order.remove(&at);
        }
    }

    /// The live entries due at `now_ms`, each once, without removing them (in no particular
    /// order within a deadline).
    pub(crate) fn due(&self, now_ms: u64) -> impl Iterator<Item = &Deadline> + '_ {
        self.order.range(..=now_ms).flat_map(move |at| {
            self.queue(*at)
                .iter()
                .filter(move |entry| self.is_live(*at, **entry))
                .filter_map(move |(seq, _)| self.get(*at, *seq))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn hold(name: &str) -> Deadline {
        Deadline::Hold(u32::from(name.as_bytes()[0]))
    }

    #[test]
    fn pops_in_deadline_then_creation_order_and_skips_removed() {
        let mut d = Deadlines::default();
        d.insert(20, 1, hold("a"));
        d.insert(10, 2, hold("b"));
        d.insert(20, 3, hold("c"));
        d.insert(10, 4, hold("d"));
        assert_eq!(d.remove(10, 4), Some(hold("d")));
        assert_eq!(d.remove(10, 4), None);
        assert_eq!(d.remove(99, 1), None, "wrong deadline removes nothing");
        // Moving a deadline: remove, then insert at the new time.
        assert_eq!(d.remove(20, 1), Some(hold("a")));
        d.insert(30, 1, hold("a"));
        assert_eq!(d.len(), 3);
        assert_eq!(d.first_time(), Some(10));
        assert_eq!(
            d.due(20).cloned().collect::<Vec<_>>(),
            vec![hold("b"), hold("c")]
        );
        assert_eq!(d.pop_due(5), None);
        assert_eq!(d.pop_due(25), Some((10, hold("b"))));
        assert_eq!(d.pop_due(25), Some((20, hold("c"))));
        assert_eq!(d.pop_due(25), None);
        assert_eq!(d.first_time(), Some(30));
        assert_eq!(d.pop_due(30), Some((30, hold("a"))));
        assert_eq!(d.len(), 0);
        // The emptied deadline is dropped at the next pop.
        assert_eq!(d.pop_due(30), None);
        assert_eq!(d.first_time(), None);
    }

    #[test]
    fn reinserting_at_the_same_deadline_yields_one_entry() {
        let mut d = Deadlines::default();
        d.insert(10, 1, hold("a"));
        assert_eq!(d.remove(10, 1), Some(hold("a")));
        d.insert(10, 1, hold("a"));
        assert_eq!(d.due(10).count(), 1);
        assert_eq!(d.pop_due(10), Some((10, hold("a"))));
        assert_eq!(d.pop_due(10), None);
    }
}

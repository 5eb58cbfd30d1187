//! The deadline index: every active hold's expiry and every open pickup's collection deadline,
//! in (deadline, creation) order.
//!
//! Writes add a deadline on almost every request, so this is on the hot path. Most deadlines of
//! one batch are equal (batch time + the same TTL), so the index groups them: an ordered set of
//! distinct deadlines, and per deadline a queue of object sequence numbers. Removal (release,
//! extend, placing an order) is lazy: it only clears the object's entry in the table of live
//! entries, which is indexed by the object's slot (an array, no hashing); a queue keeps the
//! stale number until its deadline is reached, where it is skipped. Costs: insert O(1) (O(log
//! n) for one out of sequence order, below) plus O(log d) for a new distinct deadline; remove
//! O(1); popping k due entries O(k + stale) and never more than the caller's step budget
//! ([`Deadlines::pop_due`]); memory is bounded by the entries created within the longest
//! deadline, plus 16 bytes per slot of the hold and order slabs.
//!
//! Pops come in (deadline, sequence number) order whatever the insertion history (a restored
//! ledger inserts in slot order, not in sequence order), without sorting a deadline's queue:
//! an object gets its sequence number and its first deadline in the same request, and sequence
//! numbers only grow, so entries almost always arrive in sequence order and are appended to a
//! plain queue. The few that do not (a moved deadline keeps its object's older number; a
//! restore) go to a per-deadline min-heap, and a pop takes the smaller head of the two. So no
//! pop pays for the size of its deadline's queue, even when a million holds share one
//! millisecond.
//!
//! The queue last used (by an insert or a pop) is kept at hand, outside the map of queues: a
//! batch's inserts almost all go to one deadline, and an expiry pops one deadline's entries in a
//! row, so most inserts and pops find their queue without hashing its deadline.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::ops::Bound;

use crate::shard_map::{SpreadKeys, U64Map};
use crate::state::Deadline;

/// One queue entry: (object sequence number, insertion token, the object). Entries compare by
/// number, then token: the order pops come in.
type Entry = (u64, u64, Deadline);

/// One deadline's entries, stale ones included.
#[derive(Debug, Clone, Default)]
struct Queue {
    /// Entries that came in sequence order (non-decreasing numbers): almost all of them.
    ordered: VecDeque<Entry>,
    /// Entries that came with a number below the last of `ordered` (see the module doc).
    late: BinaryHeap<Reverse<Entry>>,
}

impl Queue {
    /// Adds an entry: appended if it keeps `ordered` in order, else to `late`.
    #[inline]
    fn push(&mut self, entry: Entry) {
        match self.ordered.back() {
            Some(last) if last.0 > entry.0 => self.late.push(Reverse(entry)),
            _ => self.ordered.push_back(entry),
        }
    }

    /// Removes and returns the entry with the smallest (sequence number, token).
    #[inline]
    fn pop_first(&mut self) -> Option<Entry> {
        let late_first = match (self.ordered.front(), self.late.peek()) {
            (Some(first), Some(Reverse(late))) => late < first,
            (None, _) => true,
            (Some(_), None) => false,
        };
        if late_first {
            self.late.pop().map(|Reverse(entry)| entry)
        } else {
            self.ordered.pop_front()
        }
    }

    fn is_empty(&self) -> bool {
        self.ordered.is_empty() && self.late.is_empty()
    }

    /// Every entry, in no particular order.
    fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.ordered
            .iter()
            .chain(self.late.iter().map(|Reverse(entry)| entry))
    }
}

/// Holds and pickups by deadline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadlines {
    /// Distinct deadlines (ms) that may still have live entries.
    order: BTreeSet<u64>,
    /// Per deadline, its entries (see [`Queue`]).
    queues: U64Map<Queue, SpreadKeys>,
    /// The deadline and queue last used, kept out of `queues` (each deadline's queue is in
    /// exactly one of the two; see the module doc).
    hot: Option<(u64, Queue)>,
    /// Each object's live entry. A queue entry is live only if its token is the current one,
    /// so a re-inserted object appears once.
    live: LiveEntries,
    /// The last insertion token given (0: none; an empty slot entry has token 0).
    token: u64,
}

/// The live entry (deadline, insertion token) of each hold and each pickup order, by slot,
/// and how many there are.
#[derive(Debug, Clone, Default)]
struct LiveEntries {
    holds: SlotEntries,
    pickups: SlotEntries,
    count: usize,
}

impl LiveEntries {
    /// The table of `what`'s kind, and its slot.
    #[inline]
    fn table(&self, what: Deadline) -> (&SlotEntries, u32) {
        match what {
            Deadline::Hold(slot) => (&self.holds, slot),
            Deadline::Pickup(slot) => (&self.pickups, slot),
        }
    }

    /// The live entry of `what` ((0, 0): none).
    #[inline]
    fn get(&self, what: Deadline) -> (u64, u64) {
        let (table, slot) = self.table(what);
        table.get(slot)
    }

    /// The table of `what`'s kind, and its slot, for writing.
    #[inline]
    fn table_mut(&mut self, what: Deadline) -> (&mut SlotEntries, u32) {
        match what {
            Deadline::Hold(slot) => (&mut self.holds, slot),
            Deadline::Pickup(slot) => (&mut self.pickups, slot),
        }
    }

    /// Sets (or replaces) the live entry of `what`.
    #[inline]
    fn set(&mut self, what: Deadline, entry: (u64, u64)) {
        let (table, slot) = self.table_mut(what);
        let was_live = table.get(slot).1 != 0;
        table.set(slot, entry);
        self.count += usize::from(!was_live);
    }

    /// Clears the live entry of `what` if `is_it` says it is the one meant; whether it did.
    #[inline]
    fn clear_if(&mut self, what: Deadline, is_it: impl FnOnce((u64, u64)) -> bool) -> bool {
        let (table, slot) = self.table_mut(what);
        let entry = table.get(slot);
        if entry.1 == 0 || !is_it(entry) {
            return false;
        }
        table.set(slot, (0, 0));
        self.count -= 1;
        true
    }
}

/// Per object slot, its live entry (deadline, token), or (0, 0): a derived array in chunks of
/// [`SLOT_CHUNK`] slots, so that growing it never copies the entries (one chunk is added) and
/// a lookup is two dependent reads, not a hash of a key. Slabs keep their slots dense (freed
/// slots are reused), so it has about as many entries as the slab has slots.
#[derive(Debug, Clone, Default)]
struct SlotEntries {
    chunks: Vec<Box<[(u64, u64); SLOT_CHUNK]>>,
}

/// Slots per chunk of [`SlotEntries`] (64 KiB of entries).
const SLOT_CHUNK: usize = 4096;

impl SlotEntries {
    /// The entry of `slot` ((0, 0): none).
    #[inline]
    fn get(&self, slot: u32) -> (u64, u64) {
        self.entry(slot).copied().unwrap_or((0, 0))
    }

    /// Sets the entry of `slot`, adding chunks up to its own.
    #[inline]
    fn set(&mut self, slot: u32, entry: (u64, u64)) {
        let (chunk, at) = (slot as usize / SLOT_CHUNK, slot as usize % SLOT_CHUNK);
        if chunk >= self.chunks.len() {
            self.add_chunks(chunk);
        }
        self.chunks[chunk][at] = entry;
    }

    /// The entry of `slot`, if its chunk exists.
    #[inline]
    fn entry(&self, slot: u32) -> Option<&(u64, u64)> {
        let (chunk, at) = (slot as usize / SLOT_CHUNK, slot as usize % SLOT_CHUNK);
        self.chunks.get(chunk).map(|c| &c[at])
    }

    /// Adds empty chunks up to chunk `last`.
    #[cold]
    #[inline(never)]
    fn add_chunks(&mut self, last: usize) {
        while self.chunks.len() <= last {
            let chunk = vec![(0, 0); SLOT_CHUNK].into_boxed_slice();
            self.chunks
                .push(chunk.try_into().expect("a chunk has SLOT_CHUNK entries"));
        }
    }
}

impl Deadlines {
    /// Adds (or moves) the deadline of object `what`, whose sequence number is `seq`.
    pub(crate) fn insert(&mut self, at_ms: u64, seq: u64, what: Deadline) {
        self.token += 1;
        let token = self.token;
        self.live.set(what, (at_ms, token));
        self.queue_mut(at_ms).push((seq, token, what));
    }

    /// The queue of deadline `at_ms` (an empty one for a new deadline), made the hot one.
    #[inline]
    fn queue_mut(&mut self, at_ms: u64) -> &mut Queue {
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
        let queue = self.queues.remove(at_ms).unwrap_or_else(|| {
            self.order.insert(at_ms);
            Queue::default()
        });
        self.hot = Some((at_ms, queue));
    }

    /// The queue of deadline `at_ms`, which has one.
    fn queue(&self, at_ms: u64) -> &Queue {
        match &self.hot {
            Some((at, queue)) if *at == at_ms => queue,
            _ => self
                .queues
                .get(at_ms)
                .expect("every deadline in the order has a queue"),
        }
    }

    /// Removes the deadline of object `what` if it is `at_ms`; returns `what` if it had one.
    pub(crate) fn remove(&mut self, at_ms: u64, what: Deadline) -> Option<Deadline> {
        self.live
            .clear_if(what, |(at, _)| at == at_ms)
            .then_some(what)
    }

    /// Whether object `what` has its live entry at `at_ms`.
    pub(crate) fn is_live(&self, at_ms: u64, what: Deadline) -> bool {
        let (at, token) = self.live.get(what);
        token != 0 && at == at_ms
    }

    /// Whether a queue entry of deadline `at_ms` is its object's live entry (not stale).
    #[inline]
    fn live_entry(&self, at_ms: u64, (_, token, what): Entry) -> bool {
        self.live.get(what) == (at_ms, token)
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.live.count
    }

    /// The capacity of the largest hash table in the index: what its costliest growth moves.
    #[cfg(test)]
    fn largest_table_capacity(&self) -> usize {
        self.queues.largest_shard_capacity()
    }

    /// The earliest deadline that may still have a live entry. It can be earlier than the
    /// earliest live one (its entries were all removed since): callers use it to decide when
    /// to look again, never to decide that something expired.
    pub(crate) fn first_time(&self) -> Option<u64> {
        self.order.first().copied()
    }

    /// The objects of the entries `skip..skip + n` of the queue being popped, in pop order. A
    /// hint for loading ahead what the next pops will touch ([`crate::prefetch`]), nothing
    /// more: it may include stale entries and miss late ones, and it looks at no other deadline.
    pub(crate) fn upcoming(&self, skip: usize, n: usize) -> impl Iterator<Item = Deadline> + '_ {
        let ordered = self.hot.as_ref().map(|(_, queue)| &queue.ordered);
        let len = ordered.map_or(0, VecDeque::len);
        ordered
            .into_iter()
            .flat_map(move |o| o.range(skip.min(len)..skip.saturating_add(n).min(len)))
            .map(|&(_, _, what)| what)
    }

    /// Starts loading the live entry of `what`, so that popping it later finds it cached (see
    /// [`crate::prefetch`]).
    #[inline]
    pub(crate) fn prefetch_live(&self, what: Deadline) {
        let (table, slot) = self.live.table(what);
        if let Some(entry) = table.entry(slot) {
            crate::prefetch::prefetch(entry);
        }
    }

    /// Removes and returns the next live entry due at `now_ms` (deadline <= now), in
    /// (deadline, sequence number) order; drops stale entries on the way. Every entry looked
    /// at, live or stale, takes one of `steps`: `None` once they are used up (what is still
    /// due stays for the next call) or nothing is due.
    pub(crate) fn pop_due(&mut self, now_ms: u64, steps: &mut usize) -> Option<(u64, Deadline)> {
        while *steps > 0 {
            let at = *self.order.first()?;
            if at > now_ms {
                return None;
            }
            self.queue_mut(at);
            let Deadlines { hot, live, .. } = self;
            let queue = &mut hot.as_mut().expect("made hot").1;
            while *steps > 0 {
                let Some((_, token, what)) = queue.pop_first() else {
                    break;
                };
                *steps -= 1;
                if live.clear_if(what, |entry| entry == (at, token)) {
                    return Some((at, what));
                }
            }
            if queue.is_empty() {
                self.hot = None;
                self.order.remove(&at);
            }
        }
        None
    }

    /// Calls `f` with each live entry whose deadline is in `(after_ms, until_ms]` (nothing if
    /// `until_ms <= after_ms`), each once, in deadline order (within a deadline in no particular
    /// order), without removing it, until it has looked at `max_entries` index entries. Returns
    /// how many it looked at, stale ones too: O(log d) to find the range, then only the entries
    /// of the deadlines in it, whatever lies before `after_ms` (a backlog of due entries, say).
    pub(crate) fn visit_due_in(
        &self,
        after_ms: u64,
        until_ms: u64,
        max_entries: usize,
        mut f: impl FnMut(&Deadline),
    ) -> usize {
        if until_ms <= after_ms {
            return 0;
        }
        let mut looked_at = 0;
        for &at in self
            .order
            .range((Bound::Excluded(after_ms), Bound::Included(until_ms)))
        {
            for &entry in self.queue(at).iter() {
                if looked_at == max_entries {
                    return looked_at;
                }
                looked_at += 1;
                if self.live_entry(at, entry) {
                    f(&entry.2);
                }
            }
        }
        looked_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn hold(name: &str) -> Deadline {
        Deadline::Hold(u32::from(name.as_bytes()[0]))
    }

    /// The live entries due at `now_ms` (from the first deadline on), in no particular order.
    fn due(d: &Deadlines, now_ms: u64) -> Vec<Deadline> {
        let mut due = Vec::new();
        d.visit_due_in(0, now_ms, usize::MAX, |what| due.push(*what));
        due
    }

    /// `pop_due` with no step limit.
    fn pop(d: &mut Deadlines, now_ms: u64) -> Option<(u64, Deadline)> {
        let mut steps = usize::MAX;
        d.pop_due(now_ms, &mut steps)
    }

    /// A batch never pays for growing a table of every live hold (SPEC section 4): with a
    /// million holds over 100,000 deadlines, no table of the index holds more than a shard's
    /// share.
    #[test]
    fn no_table_of_the_index_grows_with_every_hold() {
        let mut d = Deadlines::default();
        let holds = 1_000_000u64;
        for seq in 1..=holds {
            d.insert(1_000 + seq / 10, seq, Deadline::Hold(seq as u32));
        }
        assert_eq!(d.len(), holds as usize);
        let share = 4 * holds as usize / crate::shard_map::MAP_SHARDS;
        assert!(
            d.largest_table_capacity() <= share,
            "a table of {} entries for {holds} holds",
            d.largest_table_capacity()
        );
        let mut steps = usize::MAX;
        let mut popped = 0u64;
        let mut last = (0, 0);
        while let Some((at, Deadline::Hold(slot))) = d.pop_due(u64::MAX, &mut steps) {
            assert!((at, slot) > last, "in (deadline, creation) order");
            last = (at, slot);
            popped += 1;
        }
        assert_eq!(popped, holds);
    }

    #[test]
    fn pops_in_deadline_then_creation_order_and_skips_removed() {
        let mut d = Deadlines::default();
        d.insert(20, 1, hold("a"));
        d.insert(10, 2, hold("b"));
        d.insert(20, 3, hold("c"));
        d.insert(10, 4, hold("d"));
        assert_eq!(d.remove(10, hold("d")), Some(hold("d")));
        assert_eq!(d.remove(10, hold("d")), None);
        assert_eq!(
            d.remove(99, hold("a")),
            None,
            "wrong deadline removes nothing"
        );
        assert_eq!(
            d.remove(10, Deadline::Pickup(97)),
            None,
            "a pickup is not a hold"
        );
        // Moving a deadline: remove, then insert at the new time.
        assert_eq!(d.remove(20, hold("a")), Some(hold("a")));
        d.insert(30, 1, hold("a"));
        assert_eq!(d.len(), 3);
        assert_eq!(d.first_time(), Some(10));
        assert_eq!(due(&d, 20), vec![hold("b"), hold("c")]);
        assert_eq!(pop(&mut d, 5), None);
        assert_eq!(pop(&mut d, 25), Some((10, hold("b"))));
        assert_eq!(pop(&mut d, 25), Some((20, hold("c"))));
        assert_eq!(pop(&mut d, 25), None);
        assert_eq!(d.first_time(), Some(30));
        assert_eq!(pop(&mut d, 30), Some((30, hold("a"))));
        assert_eq!(d.len(), 0);
        // The emptied deadline is dropped at the next pop.
        assert_eq!(pop(&mut d, 30), None);
        assert_eq!(d.first_time(), None);
    }

    #[test]
    fn reinserting_at_the_same_deadline_yields_one_entry() {
        let mut d = Deadlines::default();
        d.insert(10, 1, hold("a"));
        assert_eq!(d.remove(10, hold("a")), Some(hold("a")));
        d.insert(10, 1, hold("a"));
        assert_eq!(due(&d, 10).len(), 1);
        assert_eq!(pop(&mut d, 10), Some((10, hold("a"))));
        assert_eq!(pop(&mut d, 10), None);
    }

    /// A slot freed and given to a new object: the old object's queue entry is stale, whatever
    /// its deadline, and the new one's is live once.
    #[test]
    fn a_reused_slot_has_only_its_new_objects_entry() {
        let mut d = Deadlines::default();
        d.insert(10, 1, Deadline::Hold(5));
        d.insert(10, 2, Deadline::Pickup(5));
        assert_eq!(d.remove(10, Deadline::Hold(5)), Some(Deadline::Hold(5)));
        d.insert(10, 3, Deadline::Hold(5));
        assert_eq!(d.len(), 2);
        assert!(d.is_live(10, Deadline::Hold(5)) && d.is_live(10, Deadline::Pickup(5)));
        assert_eq!(due(&d, 10), [Deadline::Pickup(5), Deadline::Hold(5)]);
        assert_eq!(pop(&mut d, 10), Some((10, Deadline::Pickup(5))));
        assert_eq!(pop(&mut d, 10), Some((10, Deadline::Hold(5))));
        assert_eq!(pop(&mut d, 10), None);
        assert!(!d.is_live(10, Deadline::Hold(5)));
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn pops_in_sequence_order_whatever_the_insertion_order() {
        let mut d = Deadlines::default();
        // Appended in order, then a moved deadline (an older number) and a restore's
        // out-of-order inserts.
        for seq in [3, 5, 8] {
            d.insert(10, seq, Deadline::Hold(seq as u32));
        }
        d.insert(20, 1, Deadline::Hold(1));
        assert_eq!(d.remove(20, Deadline::Hold(1)), Some(Deadline::Hold(1)));
        d.insert(10, 1, Deadline::Hold(1));
        for seq in [7, 2, 9, 4] {
            d.insert(10, seq, Deadline::Hold(seq as u32));
        }
        let popped: Vec<u32> = std::iter::from_fn(|| pop(&mut d, 20))
            .map(|(at, what)| match what {
                Deadline::Hold(slot) | Deadline::Pickup(slot) if at == 10 => slot,
                other => panic!("{other:?} at {at}"),
            })
            .collect();
        assert_eq!(popped, [1, 2, 3, 4, 5, 7, 8, 9]);
        assert_eq!(d.len(), 0);
        // The deadline the hold moved away from only had a stale entry: dropped on the way.
        assert_eq!(d.first_time(), None);
    }

    #[test]
    fn a_pop_looks_at_no_more_entries_than_its_steps() {
        let mut d = Deadlines::default();
        for seq in 0..10 {
            d.insert(10, seq, Deadline::Hold(seq as u32));
        }
        // Four stale entries first: they take steps too.
        for seq in 0..4 {
            assert!(d.remove(10, Deadline::Hold(seq as u32)).is_some());
        }
        let mut steps = 3;
        assert_eq!(d.pop_due(10, &mut steps), None, "three stale entries");
        assert_eq!(steps, 0);
        let mut steps = 3;
        assert_eq!(d.pop_due(10, &mut steps), Some((10, Deadline::Hold(4))));
        assert_eq!(steps, 1, "one stale, then the live one");
        assert_eq!(d.pop_due(10, &mut steps), Some((10, Deadline::Hold(5))));
        assert_eq!(d.pop_due(10, &mut steps), None);
        // What was not reached is still due, in order.
        assert_eq!(d.first_time(), Some(10));
        assert_eq!(pop(&mut d, 10), Some((10, Deadline::Hold(6))));
        assert_eq!(due(&d, 10).len(), 3);
    }

    #[test]
    fn a_visit_looks_only_at_the_entries_of_its_range() {
        let mut d = Deadlines::default();
        // A backlog: many entries due at 10 (some stale), none looked at by a visit after 10.
        for seq in 0..2_000 {
            d.insert(10, seq, Deadline::Hold(seq as u32));
        }
        assert!(d.remove(10, Deadline::Hold(7)).is_some());
        let [a, b, c] = [3_000, 3_001, 3_002].map(Deadline::Hold);
        d.insert(20, 2_000, a);
        d.insert(20, 2_001, b);
        assert!(d.remove(20, b).is_some());
        d.insert(30, 2_002, c);
        let mut seen = Vec::new();
        assert_eq!(
            d.visit_due_in(10, 25, usize::MAX, |what| seen.push(*what)),
            2,
            "one stale"
        );
        assert_eq!(seen, [a]);
        assert_eq!(d.visit_due_in(10, 30, usize::MAX, |_| {}), 3);
        // A cap stops the visit: the stale entry first, then one live one of deadline 30.
        let mut capped = Vec::new();
        assert_eq!(d.visit_due_in(10, 30, 2, |what| capped.push(*what)), 2);
        assert_eq!(capped, [a]);
        assert_eq!(d.visit_due_in(10, 19, usize::MAX, |_| {}), 0);
        // An empty or reversed range looks at nothing (and does not panic).
        assert_eq!(d.visit_due_in(25, 25, usize::MAX, |_| {}), 0);
        assert_eq!(d.visit_due_in(30, 20, usize::MAX, |_| {}), 0);
        // From the start, the backlog's live entries are all there.
        assert_eq!(due(&d, 10).len(), 1_999);
    }
}

//! Maps keyed by `u64` (deadlines) split into [`MAP_SHARDS`] hash tables that grow one at a
//! time (SPEC section 4, "No stalls").
//!
//! One hash table doubles all at once, under the ledger's lock: a map of every live hold, one
//! table, took 24 ms of one batch when it doubled at ~920,000 holds (`reserve_loop 1000 1024 1
//! cold 10000`, docs/BENCHMARKS.md). Split in 64, each shard holds
//! 1/64 of the entries, and the shards double early, at staggered fills ([`grow_early`]), so
//! their doublings fall on different writes: a batch pays for at most one or two shards.

use std::marker::PhantomData;

use hashbrown::HashTable;

/// Bits of a key's shard index.
pub(crate) const MAP_SHARD_BITS: u32 = 6;
/// Shards of a sharded table (here and in `state::IdTable`).
pub(crate) const MAP_SHARDS: usize = 1 << MAP_SHARD_BITS;
/// A shard smaller than this grows when hashbrown decides (growing it costs microseconds).
pub(crate) const SHARD_EARLY_GROWTH_MIN: usize = 1 << 12;

/// Doubles shard `index` of a sharded table before hashbrown would (at 7/8 full), once it is
/// `3/4 + index / (8 * MAP_SHARDS)` full. Shards fill evenly, so without this they would all
/// double within a few writes of one another; with it their doublings spread over an eighth
/// of the table's growth.
pub(crate) fn grow_early<T>(shard: &mut HashTable<T>, index: usize, hasher: impl Fn(&T) -> u64) {
    let (len, capacity) = (shard.len(), shard.capacity());
    if early_growth_due(len, capacity, index, 6) {
        shard.reserve(capacity - len + 1, hasher);
    }
}

/// Whether shard `index` of a sharded table, `len` entries in `capacity`, should double now: once
/// it is `from_eighths / 8 + index / (8 * MAP_SHARDS)` full (small shards grow when they must).
fn early_growth_due(len: usize, capacity: usize, index: usize, from_eighths: usize) -> bool {
    capacity >= SHARD_EARLY_GROWTH_MIN
        && len >= capacity / 8 * from_eighths + capacity / 8 * index / MAP_SHARDS
}

/// [`grow_early`] for a shard of an `IdTable` ([`crate::probe::ProbeTable`], which itself grows
/// at 3/4 full): doubles shard `index` once it is `5/8 + index / (8 * MAP_SHARDS)` full.
pub(crate) fn grow_early_probe(shard: &mut crate::probe::ProbeTable, index: usize) {
    if early_growth_due(shard.len(), shard.capacity(), index, 5) {
        shard.grow();
    }
}

/// How a key picks its shard and its hash within the shard (for the hashbrown shards here; an
/// `IdTable` takes its shard from the top 6 bits, which is fine there: its home slot mixes the
/// whole hash). The shard must not come from a hash's top 7 bits: hashbrown keeps those as the
/// entry's tag, and a shard whose entries all shared them would compare every entry it probes.
pub(crate) trait KeyLayout {
    /// The key's shard, below [`MAP_SHARDS`].
    fn shard(key: u64) -> usize;
    /// The key's hash within its shard.
    fn hash(key: u64) -> u64;
}

/// Other keys (deadlines in ms): spread by a multiplication; bits 32-37 pick the shard.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpreadKeys;

impl KeyLayout for SpreadKeys {
    #[inline]
    fn shard(key: u64) -> usize {
        (Self::hash(key) >> 32) as usize & (MAP_SHARDS - 1)
    }

    #[inline]
    fn hash(key: u64) -> u64 {
        key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// A map from `u64` keys to `V` in [`MAP_SHARDS`] hash tables (module doc).
#[derive(Debug, Clone)]
pub(crate) struct U64Map<V, L> {
    /// Empty until the first insert (a small map costs nothing), then [`MAP_SHARDS`].
    shards: Vec<HashTable<(u64, V)>>,
    layout: PhantomData<L>,
}

impl<V, L> Default for U64Map<V, L> {
    fn default() -> Self {
        U64Map {
            shards: Vec::new(),
            layout: PhantomData,
        }
    }
}

impl<V, L: KeyLayout> U64Map<V, L> {
    /// The value of `key`.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&V> {
        self.shards
            .get(L::shard(key))?
            .find(L::hash(key), |e| e.0 == key)
            .map(|e| &e.1)
    }

    /// Sets the value of `key`; returns the one it replaces.
    #[inline]
    pub(crate) fn insert(&mut self, key: u64, value: V) -> Option<V> {
        if self.shards.is_empty() {
            self.shards = (0..MAP_SHARDS).map(|_| HashTable::new()).collect();
        }
        let index = L::shard(key);
        let shard = &mut self.shards[index];
        if let Some(entry) = shard.find_mut(L::hash(key), |e| e.0 == key) {
            return Some(std::mem::replace(&mut entry.1, value));
        }
        grow_early(shard, index, |e| L::hash(e.0));
        shard.insert_unique(L::hash(key), (key, value), |e| L::hash(e.0));
        None
    }

    /// Removes `key`; returns its value.
    #[inline]
    pub(crate) fn remove(&mut self, key: u64) -> Option<V> {
        let shard = self.shards.get_mut(L::shard(key))?;
        let entry = shard.find_entry(L::hash(key), |e| e.0 == key).ok()?;
        Some(entry.remove().0 .1)
    }

    /// Entries in the map (O(shards)).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum()
    }

    /// The capacity of the largest shard: what the costliest doubling moves.
    #[cfg(test)]
    pub(crate) fn largest_shard_capacity(&self) -> usize {
        self.shards
            .iter()
            .map(HashTable::capacity)
            .max()
            .unwrap_or(0)
    }

    /// Each shard's capacity.
    #[cfg(test)]
    fn capacities(&self) -> Vec<usize> {
        self.shards.iter().map(HashTable::capacity).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_key_is_found_replaced_and_removed<L: KeyLayout>(keys: impl Fn(u64) -> u64) {
        let mut map: U64Map<u64, L> = U64Map::default();
        assert_eq!(map.get(7), None);
        assert_eq!(map.remove(7), None, "an empty map has no shards");
        for i in 0..200_000 {
            assert_eq!(map.insert(keys(i), i), None);
        }
        assert_eq!(map.len(), 200_000);
        assert_eq!(map.insert(keys(5), 55), Some(5), "insert replaces");
        assert_eq!(map.len(), 200_000);
        assert_eq!(map.remove(keys(7)), Some(7));
        assert_eq!(map.insert(keys(7), 7), None);
        for i in (0..200_000).filter(|i| i % 2 == 0) {
            assert!(map.remove(keys(i)).is_some());
        }
        assert_eq!(map.len(), 100_000);
        for i in 0..200_000 {
            let expected = match i {
                5 => Some(55),
                i if i % 2 == 1 => Some(i),
                _ => None,
            };
            assert_eq!(map.get(keys(i)).copied(), expected, "key {}", keys(i));
        }
    }

    #[test]
    fn deadlines_are_found_replaced_and_removed() {
        every_key_is_found_replaced_and_removed::<SpreadKeys>(|i| 1_767_225_600_000 + i * 7);
        every_key_is_found_replaced_and_removed::<SpreadKeys>(|i| i * 3 + (1 << 40));
    }

    /// Counts, per window of `WINDOW` inserts, how many big shards doubled.
    fn most_doublings_in_a_window<L: KeyLayout>(keys: impl Fn(u64) -> u64) -> (usize, usize) {
        const WINDOW: u64 = 1_000;
        let mut map: U64Map<(), L> = U64Map::default();
        let mut seen = vec![0; MAP_SHARDS];
        let (mut in_window, mut most, mut big) = (0, 0, 0);
        for i in 0..3_000_000 {
            map.insert(keys(i), ());
            if i % WINDOW == 0 {
                most = most.max(in_window);
                in_window = 0;
            }
            for (seen, capacity) in seen.iter_mut().zip(map.capacities()) {
                if capacity != *seen {
                    if *seen >= SHARD_EARLY_GROWTH_MIN {
                        in_window += 1;
                        big += 1;
                    }
                    *seen = capacity;
                }
            }
        }
        assert!(
            map.largest_shard_capacity() <= 4 * 3_000_000 / MAP_SHARDS,
            "shards fill evenly"
        );
        (most, big)
    }

    #[test]
    fn shards_double_one_at_a_time_not_all_in_the_same_writes() {
        for (most, big) in [
            most_doublings_in_a_window::<SpreadKeys>(|i| 1_767_225_600_000 + i),
            most_doublings_in_a_window::<SpreadKeys>(|i| i * 5),
        ] {
            assert!(big >= MAP_SHARDS * 2, "{big} doublings of big shards");
            // Unstaggered, the 64 evenly filled shards would each double within a few
            // thousand inserts of one another.
            assert!(most <= 4, "{most} big shards doubled within 1,000 inserts");
        }
    }
}

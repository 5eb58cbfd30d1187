//! `SkuOrder`: every SKU handle in byte order of its id, for prefix search (`search.rs`).
//!
//! Why not a `BTreeMap<id, handle>`: that copies every id (24-64 bytes) into tree nodes about
//! half full, ~70 bytes per SKU, which at 10 locations per SKU is 7 of the 64 bytes a balance
//! may cost (SPEC section 5). Here the index holds only 4-byte handles, in sorted blocks of at
//! most [`BLOCK_HANDLES_MAX`]; ids are read from the SKU entries when comparing, through the
//! `id_of` function every method takes. SKUs are never removed, so the index only grows.
//!
//! Invariants (checked by `check` in tests): no block is empty; every handle appears once;
//! ids strictly increase across all blocks in order.
//!
//! Costs: an insert reads O(log n) ids (a binary search over the blocks' first ids, then in the
//! block), shifts at most one block, and when that block is full splits it (moving the
//! block list's pointers, n / 256 of them at worst). Appending after the last id (ids that come
//! in order, a catalogue load) fills blocks to the brim instead of splitting them.

use crate::state::SkuIdx;

/// Handles per block at most: the unit an insert shifts (2 KiB) and a split halves.
pub(crate) const BLOCK_HANDLES_MAX: usize = 512;

/// SKU handles in byte order of their ids (module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct SkuOrder {
    blocks: Vec<Vec<SkuIdx>>,
}

impl SkuOrder {
    /// Builds the index of `handles` at once (a restore): sorted by id, cut into full blocks.
    /// O(n) when the handles already come in id order, O(n log n) otherwise.
    pub(crate) fn build<'a>(mut handles: Vec<SkuIdx>, id_of: impl Fn(SkuIdx) -> &'a str) -> Self {
        handles.sort_unstable_by(|&a, &b| id_of(a).cmp(id_of(b)));
        SkuOrder {
            blocks: handles
                .chunks(BLOCK_HANDLES_MAX)
                .map(<[SkuIdx]>::to_vec)
                .collect(),
        }
    }

    /// Adds `handle`, whose id is `id` and not yet in the index.
    pub(crate) fn insert<'a>(
        &mut self,
        id: &str,
        handle: SkuIdx,
        id_of: impl Fn(SkuIdx) -> &'a str,
    ) {
        let Some(last) = self.blocks.len().checked_sub(1) else {
            self.blocks.push(vec![handle]);
            return;
        };
        // The last block whose first id is before `id` (or the first block).
        let b = self
            .blocks
            .partition_point(|block| id_of(block[0]) < id)
            .saturating_sub(1);
        let block = &mut self.blocks[b];
        let at = block.partition_point(|&h| id_of(h) < id);
        if block.len() < BLOCK_HANDLES_MAX {
            block.insert(at, handle);
        } else if b == last && at == block.len() {
            // In order after every id: a new block, leaving this one full.
            self.blocks.push(vec![handle]);
        } else {
            let mut upper = block.split_off(BLOCK_HANDLES_MAX / 2);
            if at <= block.len() {
                block.insert(at, handle);
            } else {
                upper.insert(at - block.len(), handle);
            }
            self.blocks.insert(b + 1, upper);
        }
    }

    /// The handles from the first id at or after `from`, in id order.
    pub(crate) fn from<'a, 's>(
        &'s self,
        from: &str,
        id_of: impl Fn(SkuIdx) -> &'a str,
    ) -> impl Iterator<Item = SkuIdx> + 's {
        let b = self
            .blocks
            .partition_point(|block| id_of(block[0]) < from)
            .saturating_sub(1);
        let at = self
            .blocks
            .get(b)
            .map_or(0, |block| block.partition_point(|&h| id_of(h) < from));
        self.blocks
            .iter()
            .skip(b)
            .enumerate()
            .flat_map(move |(i, block)| block[if i == 0 { at } else { 0 }..].iter().copied())
    }

    /// Handles in the index.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
    }

    /// Checks the invariants of the module doc; the first broken one, described.
    #[cfg(test)]
    pub(crate) fn check<'a>(&self, id_of: impl Fn(SkuIdx) -> &'a str) -> Result<(), String> {
        if self
            .blocks
            .iter()
            .any(|b| b.is_empty() || b.len() > BLOCK_HANDLES_MAX)
        {
            return Err("a block is empty or over its maximum".into());
        }
        let all: Vec<SkuIdx> = self.blocks.iter().flatten().copied().collect();
        match all.windows(2).find(|w| id_of(w[0]) >= id_of(w[1])) {
            Some(w) => Err(format!("{:?} before {:?}", id_of(w[0]), id_of(w[1]))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id_of<'a>(ids: &'a [String]) -> impl Fn(SkuIdx) -> &'a str {
        |h| ids[h as usize].as_str()
    }

    /// Inserts `ids` one by one (handle = position) and checks the index against a sorted copy
    /// after every insert, and `from` against it for each probe.
    fn check_inserts(ids: &[String], probes: &[String]) {
        let mut order = SkuOrder::default();
        for (h, id) in ids.iter().enumerate() {
            order.insert(id, h as SkuIdx, id_of(ids));
            order.check(id_of(ids)).expect("sorted after an insert");
        }
        assert_eq!(order.len(), ids.len());
        let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let built = SkuOrder::build((0..ids.len() as SkuIdx).collect(), id_of(ids));
        built.check(id_of(ids)).expect("sorted when built");
        for probe in probes {
            let want: Vec<&str> = sorted
                .iter()
                .copied()
                .filter(|s| *s >= probe.as_str())
                .collect();
            for index in [&order, &built] {
                let got: Vec<&str> = index
                    .from(probe, id_of(ids))
                    .map(|h| ids[h as usize].as_str())
                    .collect();
                assert_eq!(got, want, "from {probe:?}");
            }
        }
    }

    /// Distinct ids from a small alphabet, so prefixes are shared and probes hit and miss; up to
    /// a few blocks' worth, so that blocks split at every position.
    fn arb_ids(max: usize) -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[a-e]{1,6}", 0..max)
            .prop_flat_map(|set| Just(set.into_iter().collect::<Vec<_>>()).prop_shuffle())
    }

    proptest! {
        #[test]
        fn inserts_in_any_order_keep_ids_sorted(ids in arb_ids(4 * BLOCK_HANDLES_MAX), probes in prop::collection::vec("[a-e]{0,4}", 1..8)) {
            check_inserts(&ids, &probes);
        }
    }

    #[test]
    fn ids_in_order_fill_whole_blocks() {
        let ids: Vec<String> = (0..3 * BLOCK_HANDLES_MAX + 7)
            .map(|i| format!("SKU-{i:06}"))
            .collect();
        let mut order = SkuOrder::default();
        for (h, id) in ids.iter().enumerate() {
            order.insert(id, h as SkuIdx, id_of(&ids));
        }
        order.check(id_of(&ids)).expect("sorted");
        let lens: Vec<usize> = order.blocks.iter().map(Vec::len).collect();
        assert_eq!(
            lens,
            [BLOCK_HANDLES_MAX, BLOCK_HANDLES_MAX, BLOCK_HANDLES_MAX, 7]
        );
        check_inserts(
            &ids,
            &[
                "SKU-000511".into(),
                "SKU-0015".into(),
                "T".into(),
                "".into(),
            ],
        );
    }

    #[test]
    fn ids_in_reverse_order_split_the_first_block() {
        let ids: Vec<String> = (0..3 * BLOCK_HANDLES_MAX)
            .rev()
            .map(|i| format!("SKU-{i:06}"))
            .collect();
        check_inserts(
            &ids,
            &["SKU-000000".into(), "SKU-001000".into(), "A".into()],
        );
    }
}

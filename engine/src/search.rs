//! What a store page asks that the other queries do not answer (SPEC section 6): SKUs by id
//! prefix and the pickups due at a store, with the two derived indexes that make them cheap.
//!
//! - `Indexes::sku_sorted`: every SKU handle in byte order of its id (`sku_order.rs`). A prefix
//!   search is a scan from the prefix that stops after `max + 1` ids, O(log n + max), never a
//!   walk over all SKUs. It costs one sorted insert per new SKU and 4-8 bytes per SKU of memory.
//! - `Indexes::pickups`: (location, deadline, seq, slot) of every open pickup order, per
//!   location of its pickup lines. It is added to when a pickup order is placed or a pickup line
//!   reallocated, and taken from when the order closes or its deadline passes, so it holds only
//!   open pickups. An entry whose pickup line at that location was fulfilled or cancelled while
//!   the order stays open is skipped by the query and dropped with the order.
//!
//! Both are rebuilt on restore from the state, like every other index.

use crate::ids::{LocationId, SkuId};
use crate::ledger::{check_id, Ledger};
use crate::limits;
use crate::outcome::Rejection;
use crate::query::{PickupLineView, PickupView, PickupsDue, SkuMatch, SkuMatches};
use crate::state::{Indexes, ObjIdx, Order, SkuIdx, State};

impl Ledger {
    /// SKUs whose id starts with `prefix`, in byte order, at most `max`
    /// (1..=[`limits::SKU_SEARCH_RESULTS_MAX`], else `invalid` naming the limit); a malformed
    /// prefix is `invalid` (`bad sku id`).
    pub(crate) fn sku_search(&self, prefix: &SkuId, max: u32) -> Result<SkuMatches, Rejection> {
        if max == 0 || max > limits::SKU_SEARCH_RESULTS_MAX {
            return Err(Rejection::limit("SKU_SEARCH_RESULTS_MAX"));
        }
        check_id(prefix.as_str(), "sku")?;
        let id_of = |h: SkuIdx| self.sku(h).id.as_str();
        let mut skus = Vec::new();
        let mut more = false;
        for idx in self.ix.sku_sorted.from(prefix.as_str(), id_of) {
            let id = &self.sku(idx).id;
            if !id.as_str().starts_with(prefix.as_str()) {
                break;
            }
            if skus.len() == max as usize {
                more = true;
                break;
            }
            skus.push(SkuMatch {
                sku: SkuId::from(id.as_str()),
                scale: self.sku(idx).scale,
            });
        }
        Ok(SkuMatches { skus, more })
    }

    /// Pickup orders with units still to collect at `location` whose deadline is after `now`,
    /// by (deadline, creation), at most `max` (1..=[`limits::PICKUPS_PER_QUERY_MAX`]).
    /// Errors: `invalid` (bad id, the limit), `not_found` (location).
    pub(crate) fn pickups_due(
        &self,
        location: &LocationId,
        max: u32,
        now: u64,
    ) -> Result<PickupsDue, Rejection> {
        if max == 0 || max > limits::PICKUPS_PER_QUERY_MAX {
            return Err(Rejection::limit("PICKUPS_PER_QUERY_MAX"));
        }
        let loc = self.location(location)?;
        // Deadlines <= now have passed: those pickups are cancelled as of `now` (SPEC section
        // 3), even before the batch that cancels them is applied.
        let from = (loc, now.saturating_add(1), 0, 0);
        let to = (loc, u64::MAX, u64::MAX, ObjIdx::MAX);
        let mut out = PickupsDue {
            location: location.clone(),
            pickups: Vec::new(),
            more: false,
        };
        for &(_, deadline_ms, _, slot) in self.ix.pickups.range(from..=to) {
            let order = self.ord(slot);
            let lines = self.pickup_lines_at(order, loc);
            if lines.is_empty() {
                continue;
            }
            if out.pickups.len() == max as usize {
                out.more = true;
                break;
            }
            out.pickups.push(PickupView {
                order: crate::ids::OrderId::from(order.id.as_str()),
                channel: self.state.channels[order.channel as usize].clone(),
                deadline_ms,
                ready_for_pickup: order.ready,
                lines,
            });
        }
        Ok(out)
    }

    /// The pickup lines of `order` at `loc` with units still to hand over.
    fn pickup_lines_at(&self, order: &Order, loc: u32) -> Vec<PickupLineView> {
        order
            .lines
            .iter()
            .filter(|l| l.pickup && l.loc == loc && l.unfulfilled() > 0)
            .map(|l| PickupLineView {
                sku: self.sku(l.sku).sku_id(),
                qty: l.unfulfilled(),
            })
            .collect()
    }

    /// Indexes the pickup lines of order `slot` (placed, or a pickup line reallocated). An
    /// order without a live pickup deadline is not indexed.
    pub(crate) fn index_pickups(&mut self, slot: ObjIdx) {
        index_pickups(&self.state, &mut self.ix, slot);
    }

    /// Drops order `slot` from the pickup index (it closed, or its deadline passed).
    pub(crate) fn unindex_pickups(&mut self, slot: ObjIdx) {
        let (state, ix) = (&self.state, &mut self.ix);
        let order = state.orders.get(slot).expect("order slot in use");
        let Some(deadline) = order.pickup_deadline_ms else {
            return;
        };
        for line in order.lines.iter().filter(|l| l.pickup) {
            ix.pickups.remove(&(line.loc, deadline, order.seq, slot));
        }
    }
}

/// Adds the pickup lines of order `slot` to `ix.pickups` if the order is open with a live
/// pickup deadline (shared by writes and restore).
pub(crate) fn index_pickups(state: &State, ix: &mut Indexes, slot: ObjIdx) {
    let Some(order) = state.orders.get(slot) else {
        return;
    };
    let Some(deadline) = order.pickup_deadline_ms else {
        return;
    };
    if order.pickup_expired || order.unfulfilled() == 0 {
        return;
    }
    for line in order.lines.iter().filter(|l| l.pickup) {
        ix.pickups.insert((line.loc, deadline, order.seq, slot));
    }
}

#[cfg(test)]
mod tests;

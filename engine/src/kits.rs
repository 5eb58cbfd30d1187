//! Kits (bundles): `define_kit` and what the rest of the engine asks about kits (SPEC section
//! 3, "Kits, exchanges and purchase limits").
//!
//! A kit is a SKU with no stock of its own (never a balance), counted in whole kits, whose
//! current composition lives in its SKU entry ([`crate::state::SkuExtra`]). Holds and orders
//! keep the composition they were made with (a shared `Arc`), and hold a kit line as its
//! components' units at one location, so every balance invariant covers kits unchanged.
//! Derived counters (`Indexes::kit_uses`, `Indexes::component_of`) decide redefinition and
//! nesting without a scan.

use crate::balance::Balance;
use crate::command::KitComponent;
use crate::ids::SkuId;
use crate::ledger::{check_id, check_positive, invalid, Ledger, LocIdx, SkuIdx};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::state::{Composition, Part};

impl Ledger {
    /// `define_kit` (SPEC section 3): checks in the order malformed (`invalid`, nesting
    /// included), then state (`invalid_state`), then room; then (re)defines the kit, declaring
    /// unknown components at scale 0.
    pub(crate) fn define_kit(&mut self, kit: &SkuId, components: &[KitComponent]) -> Outcome {
        self.check_kit_form(kit, components)?;
        let known = self.lookup_sku(kit)?;
        let mut parts: Vec<Option<SkuIdx>> = Vec::with_capacity(components.len());
        for c in components {
            let sku = self.lookup_sku(&c.sku)?;
            if sku.is_some_and(|s| self.kit_of(s).is_some()) {
                return invalid(InvalidReason::KitNesting { sku: c.sku.clone() });
            }
            parts.push(sku);
        }
        if let Some(s) = known {
            if self.sku(s).scale != 0 {
                return invalid(InvalidReason::KitScale { sku: kit.clone() });
            }
            if self.ix.component_of.get(&s).is_some_and(|&n| n > 0) {
                return invalid(InvalidReason::KitNesting { sku: kit.clone() });
            }
            if !self.sku(s).balances.is_empty() {
                return Err(Rejection::InvalidState {
                    kind: ObjectKind::Sku,
                    state: "stocked (a stock write touched it)".to_owned(),
                });
            }
            if self.ix.kit_uses.get(&s).is_some_and(|&n| n > 0) {
                return Err(Rejection::InvalidState {
                    kind: ObjectKind::Kit,
                    state: "in use (live holds or unfulfilled order units)".to_owned(),
                });
            }
        }
        let new_skus = parts.iter().filter(|p| p.is_none()).count() + usize::from(known.is_none());
        if self.state.skus.end() + new_skus as u64 > limits::SKUS_MAX as u64 {
            return Err(Rejection::limit("SKUS_MAX"));
        }
        // Checks done: commit.
        let s = self.intern_sku(kit);
        let composition: Composition = components
            .iter()
            .map(|c| Part {
                sku: self.intern_sku(&c.sku),
                qty: c.qty,
            })
            .collect::<Vec<_>>()
            .into();
        self.name_components(s, Some(composition));
        Ok(Reply::Done)
    }

    /// The checks of a kit definition that need no state: ids, quantities, the number of
    /// components, duplicates, a kit naming itself.
    fn check_kit_form(&self, kit: &SkuId, components: &[KitComponent]) -> Result<(), Rejection> {
        check_id(kit.as_str(), "sku")?;
        if components.is_empty() {
            return invalid(InvalidReason::NoLines);
        }
        if components.len() > limits::KIT_COMPONENTS_MAX {
            return Err(Rejection::limit("KIT_COMPONENTS_MAX"));
        }
        for (i, c) in components.iter().enumerate() {
            check_id(c.sku.as_str(), "sku")?;
            check_positive(c.qty)?;
            if c.sku == *kit {
                return invalid(InvalidReason::KitNesting { sku: c.sku.clone() });
            }
            if components[..i].iter().any(|o| o.sku == c.sku) {
                return invalid(InvalidReason::DuplicateComponent { sku: c.sku.clone() });
            }
        }
        Ok(())
    }

    /// Replaces the composition of kit `s`, keeping the component counters true.
    fn name_components(&mut self, s: SkuIdx, composition: Option<Composition>) {
        let old = self.sku_extra(s).kit.take();
        for part in old.iter().flat_map(|c| c.iter()) {
            let n = self
                .ix
                .component_of
                .get_mut(&part.sku)
                .expect("counted component");
            *n -= 1;
            if *n == 0 {
                self.ix.component_of.remove(&part.sku);
            }
        }
        for part in composition.iter().flat_map(|c| c.iter()) {
            *self.ix.component_of.entry(part.sku).or_default() += 1;
        }
        self.sku_extra(s).kit = composition;
        self.tidy_sku_extra(s);
    }

    /// Counts a kit line that starts (`+1`: a hold's kit line, an order's kit line with units)
    /// or stops (`-1`) using kit `kit`: a kit in use cannot be redefined.
    pub(crate) fn kit_use(&mut self, kit: SkuIdx, delta: i32) {
        let uses = self.ix.kit_uses.entry(kit).or_default();
        *uses = uses
            .checked_add_signed(delta)
            .expect("kit uses never go below zero");
        if *uses == 0 {
            self.ix.kit_uses.remove(&kit);
        }
    }

    /// Whether `sku` is a kit, as the rejection of a write that needs stock of its own
    /// (stock writes, sales, transfers, reallocation).
    pub(crate) fn check_not_kit(&self, sku: Option<SkuIdx>, id: &SkuId) -> Result<(), Rejection> {
        if sku.is_some_and(|s| self.kit_of(s).is_some()) {
            return invalid(InvalidReason::KitHasNoStock { sku: id.clone() });
        }
        Ok(())
    }

    /// A kit's ATS at `loc` from its components' balances there (`balance` gives each one as
    /// of the query time): `min(floor(component ATS / qty))`, for a channel (`pos` or remote).
    pub(crate) fn kit_ats(
        &self,
        composition: &Composition,
        loc: LocIdx,
        pos: bool,
        balance: impl Fn(SkuIdx, LocIdx) -> Balance,
    ) -> i64 {
        composition
            .iter()
            .map(|part| balance(part.sku, loc).ats(pos) / part.qty)
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use crate::{BatchHeader, Command, Config, KitComponent, Ledger, Request, RequestId, SkuId};

    /// A snapshot whose kit has no parts (corrupt, or written by a buggy build) is refused on
    /// restore with a typed error, not a panic in the invariant check.
    #[test]
    fn a_snapshot_with_an_empty_composition_is_refused() {
        let mut ledger = Ledger::new(Config::default());
        let define = Command::DefineKit {
            kit: SkuId::from("K"),
            components: vec![KitComponent {
                sku: SkuId::from("A"),
                qty: 1,
            }],
        };
        let header = BatchHeader {
            log_index: 1,
            timestamp_ms: 1_000,
        };
        let request = Request {
            request_id: RequestId(1),
            command: define,
        };
        ledger.apply(header, &[request]).remove(0).expect("defined");
        let kit = ledger
            .lookup_sku(&SkuId::from("K"))
            .expect("ok")
            .expect("known");
        ledger.sku_extra(kit).kit = Some(Vec::new().into());
        let restored = Ledger::restore(&ledger.snapshot());
        assert!(
            matches!(restored, Err(crate::SnapshotError::Inconsistent(_))),
            "{:?}",
            restored.map(|_| ())
        );
    }
}

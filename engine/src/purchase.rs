//! Per-customer purchase limits (SPEC section 3, "Kits, exchanges and purchase limits").
//!
//! Counted for a customer and a limited SKU, from the limit's own write in log order: units in
//! their live holds, plus units of their orders placed less than `window` ago and not cancelled
//! (returned units stay counted). One [`CustomerCount`] record per (SKU, customer) in a slab;
//! a hold or an order remembers what it counted ([`Counted`], with the limit's generation) so
//! ending the hold or cancelling units gives exactly that back. A record with nothing counted
//! is forgotten: when it is touched, and by a sweep of
//! [`limits::LIMIT_SWEEP_PER_BATCH`] records per batch (bounded work, deterministic order).
//! Removing a limit voids its records at once (they carry an older generation) and the sweep
//! drops them.

use smallvec::SmallVec;

use crate::ids::{CustomerId, SkuId};
use crate::ledger::{check_id, check_non_negative, invalid, Held, Ledger, ObjIdx, SkuIdx};
use crate::limits;
use crate::outcome::{InvalidReason, Outcome, Rejection, Reply};
use crate::state::{
    Counted, CustomerCount, KitLine, OrderCount, OrderExtra, PurchaseLimit, SkuExtra,
};

/// Units a request asks of each limited SKU it touches (kit lines count for the kit and,
/// times their component quantities, for each component).
pub(crate) type Demand = SmallVec<[(SkuIdx, i64); 2]>;

fn add(demand: &mut Demand, sku: SkuIdx, units: i64) {
    match demand.iter_mut().find(|(s, _)| *s == sku) {
        Some((_, u)) => *u = u.saturating_add(units),
        None => demand.push((sku, units)),
    }
}

impl Ledger {
    /// The purchase limit of `sku`, if it has one.
    pub(crate) fn limit_of(&self, sku: SkuIdx) -> Option<&PurchaseLimit> {
        self.sku(sku).extra.as_ref().and_then(|e| e.limit.as_ref())
    }

    /// What held lines and kit lines ask of limited SKUs. Costs nothing when no SKU is
    /// limited (inlined: no call either), else one SKU entry read per line (already read by
    /// sourcing).
    #[inline]
    pub(crate) fn limited_demand(&self, held: &[Held], kits: &[KitLine]) -> Demand {
        if self.ix.limited_skus == 0 {
            // Nothing is limited (the usual case): no SKU entry to read again.
            return Demand::new();
        }
        self.limited_demand_of(held, kits)
    }

    /// [`Ledger::limited_demand`] when some SKU is limited.
    fn limited_demand_of(&self, held: &[Held], kits: &[KitLine]) -> Demand {
        let mut demand = Demand::new();
        for h in held {
            if self.limit_of(h.sku).is_some() {
                add(&mut demand, h.sku, h.qty);
            }
        }
        for k in kits {
            if self.limit_of(k.kit).is_some() {
                let first = k.composition[0];
                let kits: i64 = held
                    .iter()
                    .filter(|h| h.line == k.line && h.sku == first.sku)
                    .map(|h| h.qty / first.qty)
                    .sum();
                add(&mut demand, k.kit, kits);
            }
        }
        demand
    }

    /// Checks `demand` against the limits, after stock (SPEC section 3): a line without a
    /// customer passes unless the limit is strict (`invalid`); with one, the units counted
    /// now plus the demand net of `offset` (an exchange's returned units, floored at 0) must
    /// not pass `qty_max` (`limit_exceeded`, with the units still allowed); a net of 0 is not
    /// checked. Returns what the write will count. `order` says whether it adds an order entry
    /// (for the bound on counted entries).
    pub(crate) fn check_limits(
        &self,
        customer: Option<&CustomerId>,
        demand: &Demand,
        offset: &Demand,
        order: bool,
    ) -> Result<Vec<Counted>, Rejection> {
        let mut counted = Vec::new();
        for &(sku, units) in demand {
            let limit = self.limit_of(sku).expect("demand is on limited SKUs");
            let Some(customer) = customer else {
                if limit.strict {
                    return invalid(InvalidReason::CustomerRequired {
                        sku: self.sku(sku).sku_id(),
                    });
                }
                continue;
            };
            let returned = offset.iter().find(|(s, _)| *s == sku).map_or(0, |o| o.1);
            let net = (units - returned).max(0);
            if net == 0 {
                continue;
            }
            let already = self.counted_now(sku, customer, limit);
            if already.saturating_add(net) > limit.qty_max {
                return Err(Rejection::LimitExceeded {
                    sku: self.sku(sku).sku_id(),
                    allowed: (limit.qty_max - already).max(0),
                });
            }
            counted.push(Counted {
                sku,
                generation: limit.generation,
                units: net,
            });
        }
        if let Some(customer) = customer {
            self.count_room(customer, &counted, order)?;
        }
        Ok(counted)
    }

    /// Units `customer` has counted against `sku`'s `limit` now.
    fn counted_now(&self, sku: SkuIdx, customer: &CustomerId, limit: &PurchaseLimit) -> i64 {
        self.count_slot(sku, customer)
            .map_or(0, |slot| self.count(slot).counted(limit, self.state.now_ms))
    }

    /// Whether the records `counted` needs fit the bounds (SPEC: bounded state).
    fn count_room(
        &self,
        customer: &CustomerId,
        counted: &[Counted],
        order: bool,
    ) -> Result<(), Rejection> {
        let mut entries = 0;
        for c in counted {
            let live = self
                .count_slot(c.sku, customer)
                .is_some_and(|slot| self.count(slot).generation == c.generation);
            if !live {
                entries += 1;
                let customers = self.ix.customers.get(&c.sku).copied().unwrap_or(0);
                if customers >= limits::LIMIT_CUSTOMERS_PER_SKU_MAX {
                    return Err(Rejection::limit("LIMIT_CUSTOMERS_PER_SKU_MAX"));
                }
            }
            entries += usize::from(order);
        }
        if self.ix.counted_entries + entries > limits::LIMIT_COUNTED_ENTRIES_MAX {
            return Err(Rejection::limit("LIMIT_COUNTED_ENTRIES_MAX"));
        }
        Ok(())
    }

    /// What placing an order from a hold counts, without a check (SPEC section 3: "an order
    /// from a hold counts once, from place_order, without a new check"): the order's units of
    /// every SKU limited now, if the hold had a customer.
    pub(crate) fn counted_unchecked(
        &self,
        customer: Option<&CustomerId>,
        demand: &Demand,
    ) -> Vec<Counted> {
        if customer.is_none() {
            return Vec::new();
        }
        demand
            .iter()
            .map(|&(sku, units)| Counted {
                sku,
                generation: self.limit_of(sku).expect("limited").generation,
                units,
            })
            .collect()
    }

    /// The record of (sku, customer), if any.
    fn count_slot(&self, sku: SkuIdx, customer: &CustomerId) -> Option<ObjIdx> {
        // A tuple key needs an owned id; lookups are rare (limited SKUs with a customer).
        self.ix.count.get(&(sku, customer.clone())).copied()
    }

    fn count(&self, slot: ObjIdx) -> &CustomerCount {
        self.state.counts.get(slot).expect("count slot in use")
    }

    /// The live record of (sku, customer) under `generation`: created, or reset if it counts
    /// under a removed limit.
    fn live_count(&mut self, sku: SkuIdx, customer: &CustomerId, generation: u64) -> ObjIdx {
        if let Some(slot) = self.count_slot(sku, customer) {
            let record = self.state.counts.get_mut(slot).expect("count slot in use");
            if record.generation != generation {
                self.ix.counted_entries -= record.orders.len();
                record.generation = generation;
                record.held = 0;
                record.orders.clear();
            }
            return slot;
        }
        let slot = self.state.counts.insert(CustomerCount {
            sku,
            customer: customer.clone(),
            generation,
            held: 0,
            orders: SmallVec::new(),
        });
        self.ix.count.insert((sku, customer.clone()), slot);
        self.ix.counted_entries += 1;
        *self.ix.customers.entry(sku).or_default() += 1;
        slot
    }

    /// Counts a new hold's units.
    pub(crate) fn count_hold(&mut self, customer: &CustomerId, counted: &[Counted]) {
        for c in counted {
            let slot = self.live_count(c.sku, customer, c.generation);
            self.state.counts.get_mut(slot).expect("in use").held += c.units;
        }
    }

    /// Gives back what an ended hold counted (if its limit still counts it).
    pub(crate) fn uncount_hold(&mut self, customer: &CustomerId, counted: &[Counted]) {
        for c in counted {
            let Some(slot) = self.count_slot(c.sku, customer) else {
                continue;
            };
            let record = self.state.counts.get_mut(slot).expect("in use");
            if record.generation == c.generation {
                record.held -= c.units;
                assert!(record.held >= 0, "a hold gives back what it counted");
            }
            self.forget_if_empty(slot);
        }
    }

    /// Counts a placed order's units, at the batch time.
    pub(crate) fn count_order(
        &mut self,
        customer: &CustomerId,
        order_seq: u64,
        counted: &[Counted],
    ) {
        let now = self.state.now_ms;
        for c in counted {
            let slot = self.live_count(c.sku, customer, c.generation);
            self.state
                .counts
                .get_mut(slot)
                .expect("in use")
                .orders
                .push(OrderCount {
                    order_seq,
                    placed_at_ms: now,
                    units: c.units,
                });
            self.ix.counted_entries += 1;
        }
    }

    /// Gives back up to `units` cancelled units of `sku` that an order counted (SPEC section
    /// 3: "cancelled units come back").
    pub(crate) fn give_back(&mut self, extra: &mut OrderExtra, seq: u64, sku: SkuIdx, units: i64) {
        let Some(customer) = extra.customer.as_ref() else {
            return;
        };
        let Some(c) = extra.counted.iter_mut().find(|c| c.sku == sku) else {
            return;
        };
        let back = units.min(c.units);
        c.units -= back;
        let Some(slot) = self.count_slot(sku, customer) else {
            return;
        };
        let record = self.state.counts.get_mut(slot).expect("in use");
        if record.generation == c.generation {
            if let Some(at) = record.orders.iter().position(|o| o.order_seq == seq) {
                record.orders[at].units -= back;
                if record.orders[at].units <= 0 {
                    record.orders.remove(at);
                    self.ix.counted_entries -= 1;
                }
            }
        }
        self.forget_if_empty(slot);
    }

    /// Drops what no longer counts in a record (orders past the window), and the record
    /// itself once nothing in it counts (or its limit was removed).
    fn forget_if_empty(&mut self, slot: ObjIdx) {
        let now = self.state.now_ms;
        let record = self.count(slot);
        let limit = self
            .limit_of(record.sku)
            .filter(|l| l.generation == record.generation)
            .copied();
        let void = limit.is_none();
        if let Some(limit) = limit {
            let horizon = now.saturating_sub(limit.window_ms);
            let passed = |o: &OrderCount| now >= limit.window_ms && o.placed_at_ms <= horizon;
            // Written only when something is dropped: the sweep reads most records, and a
            // write would copy their page after a freeze.
            if record.orders.iter().any(passed) {
                let record = self.state.counts.get_mut(slot).expect("in use");
                let before = record.orders.len();
                record.orders.retain(|o| !passed(o));
                self.ix.counted_entries -= before - record.orders.len();
            }
        }
        let record = self.count(slot);
        if void || (record.held == 0 && record.orders.is_empty()) {
            let record = self.state.counts.remove(slot);
            self.ix.count.remove(&(record.sku, record.customer));
            self.ix.counted_entries -= 1 + record.orders.len();
            let customers = self.ix.customers.get_mut(&record.sku).expect("counted");
            *customers -= 1;
            if *customers == 0 {
                self.ix.customers.remove(&record.sku);
            }
        }
    }

    /// Visits up to `steps` record slots after the sweep's cursor, forgetting what no longer
    /// counts (once per batch: bounded work, every record visited in turn).
    pub(crate) fn sweep_counts(&mut self, steps: usize) {
        let end = self.state.counts.end();
        if end == 0 {
            return;
        }
        for _ in 0..steps.min(end as usize) {
            let slot = self.state.count_sweep % end;
            self.state.count_sweep = (slot + 1) % end;
            if self.state.counts.get(slot).is_some() {
                self.forget_if_empty(slot);
            }
        }
    }

    /// `set_purchase_limit` (SPEC section 3): sets or changes (keeping what was counted) the
    /// limit of `sku`, or removes it and what it counted (`qty_max = 0`). An unknown SKU is
    /// declared (scale 0), so a limit can be set before the first stock arrives.
    pub(crate) fn set_purchase_limit(
        &mut self,
        sku: &SkuId,
        qty_max: i64,
        window_ms: u64,
        strict: bool,
    ) -> Outcome {
        check_id(sku.as_str(), "sku")?;
        check_non_negative(qty_max)?;
        if qty_max > 0
            && !(limits::LIMIT_WINDOW_MS_MIN..=limits::LIMIT_WINDOW_MS_MAX).contains(&window_ms)
        {
            return invalid(InvalidReason::BadDuration);
        }
        let known = self.lookup_sku(sku)?;
        let existing = known.and_then(|s| self.limit_of(s)).copied();
        if qty_max == 0 {
            if let (Some(s), Some(_)) = (known, existing) {
                self.sku_extra(s).limit = None;
                self.tidy_sku_extra(s);
                self.ix.limited_skus -= 1;
            }
            return Ok(Reply::Done);
        }
        if existing.is_none() {
            self.sku_room(known)?;
            if self.ix.limited_skus >= limits::LIMITED_SKUS_MAX {
                return Err(Rejection::limit("LIMITED_SKUS_MAX"));
            }
        }
        // Checks done: commit.
        let s = self.intern_sku(sku);
        let generation = match existing {
            Some(limit) => limit.generation,
            None => {
                self.ix.limited_skus += 1;
                self.next_seq()
            }
        };
        self.sku_extra(s).limit = Some(PurchaseLimit {
            qty_max,
            window_ms,
            strict,
            generation,
        });
        Ok(Reply::Done)
    }

    /// The extra part of SKU `s`, created empty if need be; dropped again by
    /// [`Ledger::tidy_sku_extra`] once empty.
    pub(crate) fn sku_extra(&mut self, s: SkuIdx) -> &mut SkuExtra {
        self.state
            .skus
            .get_mut(u64::from(s))
            .extra
            .get_or_insert_with(Box::default)
    }

    /// Drops the extra part of SKU `s` once it holds nothing.
    pub(crate) fn tidy_sku_extra(&mut self, s: SkuIdx) {
        let entry = self.state.skus.get_mut(u64::from(s));
        if entry
            .extra
            .as_ref()
            .is_some_and(|e| e.kit.is_none() && e.limit.is_none())
        {
            entry.extra = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        BatchHeader, Command, Config, CustomerId, Fulfilment, Ledger, Line, LocationDef,
        LocationId, LocationKind, OrderId, OrderSource, Reason, Request, RequestId, SkuId, Target,
    };

    /// Applies one command per batch at `at_ms`.
    fn apply(ledger: &mut Ledger, at_ms: u64, command: Command) -> crate::Outcome {
        let index = ledger.applied_index() + 1;
        let header = BatchHeader {
            log_index: index,
            timestamp_ms: at_ms,
        };
        let request = Request {
            request_id: RequestId(u128::from(index)),
            command,
        };
        ledger.apply(header, &[request]).remove(0)
    }

    fn limited_ledger() -> Ledger {
        let mut ledger = Ledger::new(Config::default());
        let setup = [
            Command::DefineLocation(LocationDef {
                location: LocationId::from("wh"),
                kind: LocationKind::Warehouse,
                pickup: false,
                coordinates: None,
                channels: None,
            }),
            Command::SetOnHand {
                sku: SkuId::from("A"),
                location: LocationId::from("wh"),
                qty: 100,
                reason: Reason::from("count"),
                expected: None,
            },
            Command::SetPurchaseLimit {
                sku: SkuId::from("A"),
                qty_max: 5,
                window_ms: 60_000,
                strict: false,
            },
        ];
        for command in setup {
            apply(&mut ledger, 1_000, command).expect("setup");
        }
        ledger
    }

    fn order(customer: &str, id: &str) -> Command {
        Command::AsCustomer {
            customer: CustomerId::from(customer),
            command: Box::new(Command::PlaceOrder {
                order: OrderId::from(id),
                source: OrderSource::Lines {
                    channel: "web".into(),
                    lines: vec![Line {
                        sku: SkuId::from("A"),
                        target: Target::Location(LocationId::from("wh")),
                        qty: 1,
                    }],
                },
                fulfilment: Fulfilment::Ship,
            }),
        }
    }

    #[test]
    fn a_customer_with_nothing_counted_is_forgotten_by_the_sweep() {
        let mut ledger = limited_ledger();
        for c in 0..50 {
            apply(
                &mut ledger,
                2_000,
                order(&format!("c{c}"), &format!("o{c}")),
            )
            .expect("ok");
        }
        assert_eq!(ledger.ix.count.len(), 50);
        assert_eq!(ledger.ix.counted_entries, 100);
        // The window passes; any batch sweeps (bounded per batch) and forgets them all.
        apply(
            &mut ledger,
            62_001,
            Command::DefineSku {
                sku: SkuId::from("B"),
                scale: 0,
            },
        )
        .expect("ok");
        assert_eq!(ledger.ix.count.len(), 0);
        assert_eq!(ledger.ix.counted_entries, 0);
        assert_eq!(ledger.state.counts.iter().count(), 0);
        ledger.check_invariants().expect("invariants");
    }

    #[test]
    fn removing_a_limit_voids_its_counts_and_the_sweep_drops_them() {
        let mut ledger = limited_ledger();
        apply(&mut ledger, 2_000, order("ann", "o1")).expect("ok");
        let remove = Command::SetPurchaseLimit {
            sku: SkuId::from("A"),
            qty_max: 0,
            window_ms: 0,
            strict: false,
        };
        apply(&mut ledger, 3_000, remove).expect("ok");
        apply(&mut ledger, 4_000, order("bob", "o2")).expect("not limited now");
        assert_eq!(ledger.ix.count.len(), 0, "no limit: nothing counted");
        assert_eq!(ledger.ix.limited_skus, 0);
        ledger.check_invariants().expect("invariants");
    }

    #[test]
    fn a_full_table_is_a_typed_rejection_not_a_panic() {
        let mut ledger = limited_ledger();
        ledger.ix.counted_entries = crate::limits::LIMIT_COUNTED_ENTRIES_MAX - 1;
        let refused = apply(&mut ledger, 2_000, order("ann", "o1"));
        assert_eq!(
            refused,
            Err(crate::Rejection::limit("LIMIT_COUNTED_ENTRIES_MAX"))
        );
        ledger.ix.counted_entries = 0;
        *ledger.ix.customers.entry(0).or_default() = crate::limits::LIMIT_CUSTOMERS_PER_SKU_MAX;
        let sku = ledger
            .lookup_sku(&SkuId::from("A"))
            .expect("ok")
            .expect("known");
        ledger.ix.customers.clear();
        ledger
            .ix
            .customers
            .insert(sku, crate::limits::LIMIT_CUSTOMERS_PER_SKU_MAX);
        let refused = apply(&mut ledger, 2_000, order("bob", "o2"));
        assert_eq!(
            refused,
            Err(crate::Rejection::limit("LIMIT_CUSTOMERS_PER_SKU_MAX"))
        );
    }
}

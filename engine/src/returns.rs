//! Returns (RMAs) and transfers (SPEC section 3, Returns and Transfers).

use crate::command::{Disposition, ReturnLine};
use crate::holds::check_line_count;
use crate::ids::{LocationId, OrderId, RmaId, SkuId, TransferId};
use crate::ledger::{
    check_field, check_id, check_non_negative, check_positive, hash_str, index_record, invalid,
    Ledger, LocIdx, ObjIdx, Retired, SkuIdx,
};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::query::{Cause, TransferState};
use crate::state::{Order, Rma, RmaLine, Transfer, NO_KIT};

/// A return's lines after their checks, before anything changes.
struct ReturnPlan<'a> {
    /// The lines whose SKU exists, in request order (all of them once the over-return check
    /// passed: a SKU that exists nowhere was never fulfilled). A kit line stays one line.
    lines: Vec<RmaLine>,
    /// What reaches stock: plain lines as they are, a kit line as its components (with the
    /// composition the order was placed with: its components come back only this way).
    stock: Vec<RmaLine>,
    /// The units asked back per SKU, in first-seen order: the over-return check must see the
    /// sum of a SKU's lines, not each line alone.
    per_sku: Vec<SkuReturn<'a>>,
    /// Component units of returned kits (in `stock` too), per line of `stock` they came from.
    kit_parts: Vec<(SkuIdx, i64)>,
}

/// The units of one SKU a return asks back.
struct SkuReturn<'a> {
    id: &'a SkuId,
    /// Its index (none: the SKU exists nowhere, so nothing of it is returnable).
    sku: Option<SkuIdx>,
    asked: i64,
}

/// Units a return puts on hand at one (SKU, location), summed over its lines.
struct Incoming {
    sku: SkuIdx,
    loc: LocIdx,
    qty: i64,
}

/// A return that passed every check: what its commit does.
pub(crate) struct CheckedReturn {
    order_slot: ObjIdx,
    lines: Vec<RmaLine>,
    stock: Vec<RmaLine>,
    /// Units returned per SKU (kits in kit units).
    per_sku: Vec<(SkuIdx, i64)>,
    /// Component units of the returned kits, per component.
    kit_parts: Vec<(SkuIdx, i64)>,
}

impl CheckedReturn {
    /// Units the return puts back on hand as sellable, per balance key (an exchange's new
    /// order may use them).
    pub(crate) fn restocked(&self) -> Vec<(u64, i64)> {
        let mut out: Vec<(u64, i64)> = Vec::new();
        for l in self
            .stock
            .iter()
            .filter(|l| l.disposition == Disposition::Restock)
        {
            let k = crate::state::key(l.sku, l.loc);
            match out.iter_mut().find(|(o, _)| *o == k) {
                Some(entry) => entry.1 += l.qty,
                None => out.push((k, l.qty)),
            }
        }
        out
    }

    /// Units returned per SKU as purchase limits see them: a kit's units for the kit and,
    /// times their component quantities, for each component (an exchange's netting).
    pub(crate) fn returned_units(&self) -> crate::purchase::Demand {
        let mut out = crate::purchase::Demand::new();
        let mut add = |sku: SkuIdx, qty: i64| match out.iter_mut().find(|(s, _)| *s == sku) {
            Some(entry) => entry.1 += qty,
            None => out.push((sku, qty)),
        };
        for &(sku, qty) in self.per_sku.iter().chain(&self.kit_parts) {
            add(sku, qty);
        }
        out
    }
}

impl Ledger {
    /// Receives RMA `id` against a fulfilled order, all or nothing (SPEC section 3, Returns):
    /// checks, then restocks by disposition, counts the returned units on the order and keeps
    /// the RMA.
    pub(crate) fn receive_return(
        &mut self,
        id: &RmaId,
        order_id: &OrderId,
        lines: &[ReturnLine],
    ) -> Outcome {
        let checked = self.check_return(id, order_id, lines)?;
        self.commit_return(id, order_id, checked, None);
        Ok(Reply::Done)
    }

    /// Every check of a return, in order; changes nothing.
    pub(crate) fn check_return(
        &self,
        id: &RmaId,
        order_id: &OrderId,
        lines: &[ReturnLine],
    ) -> Result<CheckedReturn, Rejection> {
        check_id(id.as_str(), "rma")?;
        check_line_count(lines.len())?;
        if self.rma_slot(id.as_str()).is_some() {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Rma,
                id: id.0.to_string(),
            });
        }
        let order_slot = self.order(order_id)?;
        let order = self.ord(order_slot);
        let plan = self.plan_return(lines, order)?;
        check_returnable(order, &plan.per_sku)?;
        // Every SKU was fulfilled on the order, so every line resolved.
        assert_eq!(plan.lines.len(), lines.len());
        self.check_restock_room(&plan.stock)?;
        Ok(CheckedReturn {
            order_slot,
            lines: plan.lines,
            stock: plan.stock,
            per_sku: plan
                .per_sku
                .iter()
                .map(|r| (r.sku.expect("resolved"), r.asked))
                .collect(),
            kit_parts: plan.kit_parts,
        })
    }

    /// Commits a checked return: restock, returned units on the order, the RMA kept (naming
    /// the exchange's new order, if any).
    pub(crate) fn commit_return(
        &mut self,
        id: &RmaId,
        order_id: &OrderId,
        checked: CheckedReturn,
        exchange_of: Option<OrderId>,
    ) {
        self.restock(&checked.stock);
        let order = self.ord_mut(checked.order_slot);
        for &(sku, asked) in &checked.per_sku {
            match order.returned.iter_mut().find(|(s, _)| *s == sku) {
                Some(entry) => entry.1 += asked,
                None => order.returned.push((sku, asked)),
            }
        }
        self.keep_rma(id, order_id, checked.lines, exchange_of);
    }

    /// Checks every line of a return (quantity, SKU, location) and sums what it asks per SKU;
    /// a kit line (a kit the order has) comes back as its components.
    fn plan_return<'a>(
        &self,
        lines: &'a [ReturnLine],
        order: &Order,
    ) -> Result<ReturnPlan<'a>, Rejection> {
        let mut plan = ReturnPlan {
            lines: Vec::with_capacity(lines.len()),
            stock: Vec::with_capacity(lines.len()),
            per_sku: Vec::new(),
            kit_parts: Vec::new(),
        };
        for line in lines {
            check_positive(line.qty)?;
            let sku = self.lookup_sku(&line.sku)?;
            let loc = self.location(&line.received_at)?;
            match plan.per_sku.iter_mut().find(|r| *r.id == line.sku) {
                Some(entry) => entry.asked = entry.asked.saturating_add(line.qty),
                None => plan.per_sku.push(SkuReturn {
                    id: &line.sku,
                    sku,
                    asked: line.qty,
                }),
            }
            let Some(sku) = sku else { continue };
            let rma_line = RmaLine {
                sku,
                qty: line.qty,
                loc,
                disposition: line.disposition,
            };
            match order.kits().iter().find(|k| k.kit == sku) {
                None => plan.stock.push(rma_line.clone()),
                Some(kit) => {
                    for part in kit.composition.iter() {
                        let qty = line.qty.checked_mul(part.qty).unwrap_or(i64::MAX);
                        check_field(qty)?;
                        plan.stock.push(RmaLine {
                            sku: part.sku,
                            qty,
                            loc,
                            disposition: line.disposition,
                        });
                        plan.kit_parts.push((part.sku, qty));
                    }
                }
            }
            plan.lines.push(rma_line);
        }
        Ok(plan)
    }

    /// Room at the receiving locations for what the return puts on hand (scrapped units
    /// never reach stock), per (SKU, location) summed, so two lines cannot each fit alone but
    /// overflow together.
    fn check_restock_room(&self, lines: &[RmaLine]) -> Result<(), Rejection> {
        let mut incoming: Vec<Incoming> = Vec::new();
        for line in lines.iter().filter(|l| l.disposition != Disposition::Scrap) {
            match incoming
                .iter_mut()
                .find(|i| i.sku == line.sku && i.loc == line.loc)
            {
                Some(entry) => entry.qty += line.qty,
                None => incoming.push(Incoming {
                    sku: line.sku,
                    loc: line.loc,
                    qty: line.qty,
                }),
            }
        }
        for i in &incoming {
            self.balance_room(Some(i.sku), i.loc)?;
            check_field(self.balance(i.sku, i.loc).on_hand + i.qty)?;
        }
        Ok(())
    }

    /// Puts returned units back by disposition: restocked units are on hand and sellable,
    /// damaged ones on hand but unavailable, scrapped ones nowhere.
    fn restock(&mut self, lines: &[RmaLine]) {
        for line in lines {
            let mut b = self.balance(line.sku, line.loc);
            match line.disposition {
                Disposition::Restock => b.on_hand += line.qty,
                Disposition::Damaged => {
                    b.on_hand += line.qty;
                    b.unavailable += line.qty;
                }
                Disposition::Scrap => continue,
            }
            self.put_balance(line.sku, line.loc, b, Cause::Return);
        }
    }

    /// Stores a received RMA, indexed by id, and queues it for retirement (an RMA is done
    /// once received).
    fn keep_rma(
        &mut self,
        id: &RmaId,
        order_id: &OrderId,
        lines: Vec<RmaLine>,
        exchange_of: Option<OrderId>,
    ) {
        let slot = self.state.rmas.insert(Rma {
            id: id.clone(),
            order: order_id.clone(),
            lines,
            received_at_ms: self.state.now_ms,
            retired_pos: None,
            exchange_of,
        });
        index_record(
            &mut self.ix.rma,
            &self.state.rmas,
            slot,
            hash_str(id.as_str()),
        );
        let pos = self.retire(Retired::Rma(slot));
        if let Some(rma) = self.state.rmas.get_mut(slot) {
            rma.retired_pos = Some(pos);
        }
    }

    pub(crate) fn ship_transfer(
        &mut self,
        id: &TransferId,
        sku: &SkuId,
        from: &LocationId,
        to: &LocationId,
        qty: i64,
    ) -> Outcome {
        check_id(id.as_str(), "transfer")?;
        check_positive(qty)?;
        let sku_idx = self.lookup_sku(sku)?;
        self.check_not_kit(sku_idx, sku)?;
        let from_loc = self.location(from)?;
        let to_loc = self.location(to)?;
        if from_loc == to_loc {
            return invalid(InvalidReason::SameLocation);
        }
        if self.transfer_slot(id.as_str()).is_some() {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Transfer,
                id: id.0.to_string(),
            });
        }
        if self.ix.open_transfers >= limits::TRANSFERS_OPEN_MAX {
            return Err(Rejection::limit("TRANSFERS_OPEN_MAX"));
        }
        let source = sku_idx
            .map(|s| self.balance(s, from_loc))
            .unwrap_or_default();
        let (Some(sku_idx), true) = (sku_idx, qty <= source.ats_pos()) else {
            return Err(Rejection::InsufficientStock {
                sku: sku.clone(),
                at: from.0.to_string(),
                requested: qty,
                available: source.ats_pos(),
            });
        };
        self.balance_room(Some(sku_idx), to_loc)?;
        let mut target = self.balance(sku_idx, to_loc);
        check_field(target.incoming + qty)?;
        // Checks done: commit.
        let mut source = source;
        source.on_hand -= qty;
        self.put_balance(sku_idx, from_loc, source, Cause::TransferShip);
        target.incoming += qty;
        self.put_balance(sku_idx, to_loc, target, Cause::TransferShip);
        let slot = self.state.transfers.insert(Transfer {
            id: id.clone(),
            sku: sku_idx,
            from: from_loc,
            to: to_loc,
            qty,
            state: TransferState::Shipped,
            received: 0,
            damaged: 0,
            shipped_at_ms: self.state.now_ms,
            retired_pos: None,
        });
        let hash = hash_str(id.as_str());
        index_record(&mut self.ix.transfer, &self.state.transfers, slot, hash);
        self.ix.open_transfers += 1;
        Ok(Reply::Done)
    }

    pub(crate) fn receive_transfer(
        &mut self,
        id: &TransferId,
        received: i64,
        damaged: i64,
    ) -> Outcome {
        check_id(id.as_str(), "transfer")?;
        check_non_negative(received)?;
        check_non_negative(damaged)?;
        let slot = self
            .transfer_slot(id.as_str())
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Transfer,
                id: id.0.to_string(),
            })?;
        let t = self
            .state
            .transfers
            .get(slot)
            .expect("transfer slot in use");
        if t.state == TransferState::Received {
            return Err(Rejection::InvalidState {
                kind: ObjectKind::Transfer,
                state: "received".to_owned(),
            });
        }
        if received + damaged > t.qty {
            return invalid(InvalidReason::OverReceived { shipped: t.qty });
        }
        let (sku, to, shipped) = (t.sku, t.to, t.qty);
        let mut b = self.balance(sku, to);
        check_field(b.on_hand + received + damaged)?;
        // Checks done: commit.
        b.incoming -= shipped;
        b.on_hand += received + damaged;
        b.unavailable += damaged;
        self.put_balance(sku, to, b, Cause::TransferReceive);
        let t = self
            .state
            .transfers
            .get_mut(slot)
            .expect("transfer slot in use");
        t.state = TransferState::Received;
        t.received = received;
        t.damaged = damaged;
        self.ix.open_transfers -= 1;
        let pos = self.retire(Retired::Transfer(slot));
        if let Some(t) = self.state.transfers.get_mut(slot) {
            t.retired_pos = Some(pos);
        }
        Ok(Reply::TransferReceived {
            lost: shipped - received - damaged,
        })
    }
}

/// Whether the order can take back what the return asks: per SKU, at most what was fulfilled
/// minus what earlier returns took back.
fn check_returnable(order: &Order, per_sku: &[SkuReturn]) -> Result<(), Rejection> {
    for r in per_sku {
        let fulfilled: i64 = r.sku.map_or(0, |s| {
            // A kit's fulfilled kits, or a plain SKU's fulfilled units outside kits (a kit's
            // components come back only by returning the kit).
            let kits: i64 = (0..order.kits().len())
                .filter(|&k| order.kits()[k].kit == s)
                .map(|k| order.kit_units(k as u16).1)
                .sum();
            let plain: i64 = order
                .lines
                .iter()
                .filter(|l| l.sku == s && l.kit == NO_KIT)
                .map(|l| l.fulfilled)
                .sum();
            kits + plain
        });
        let returned = r.sku.map_or(0, |s| {
            order
                .returned
                .iter()
                .find(|(o, _)| *o == s)
                .map_or(0, |(_, q)| *q)
        });
        if r.asked > fulfilled - returned {
            return Err(Rejection::OverReturn {
                sku: r.id.clone(),
                returnable: fulfilled - returned,
            });
        }
    }
    Ok(())
}

//! Returns (RMAs) and transfers (SPEC section 3, Returns and Transfers).

use crate::command::{Disposition, ReturnLine};
use crate::holds::check_line_count;
use crate::ids::{LocationId, OrderId, RmaId, SkuId, TransferId};
use crate::ledger::{
    check_field, check_id, check_non_negative, check_positive, hash_str, index_record, invalid,
    Ledger, LocIdx, Retired, SkuIdx,
};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::query::{Cause, TransferState};
use crate::state::{Order, Rma, RmaLine, Transfer};

/// A return's lines after their checks, before anything changes.
struct ReturnPlan<'a> {
    /// The lines whose SKU exists, in request order (all of them once the over-return check
    /// passed: a SKU that exists nowhere was never fulfilled).
    lines: Vec<RmaLine>,
    /// The units asked back per SKU, in first-seen order: the over-return check must see the
    /// sum of a SKU's lines, not each line alone.
    per_sku: Vec<SkuReturn<'a>>,
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
        check_id(id.as_str(), "rma")?;
        check_line_count(lines.len())?;
        if self.rma_slot(id.as_str()).is_some() {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Rma,
                id: id.0.clone(),
            });
        }
        let order_slot = self.order(order_id)?;
        let plan = self.plan_return(lines)?;
        check_returnable(self.ord(order_slot), &plan.per_sku)?;
        // Every SKU was fulfilled on the order, so every line resolved.
        assert_eq!(plan.lines.len(), lines.len());
        self.check_restock_room(&plan.lines)?;
        // Checks done: commit.
        self.restock(&plan.lines);
        let order = self.ord_mut(order_slot);
        for r in &plan.per_sku {
            let sku = r.sku.expect("resolved");
            match order.returned.iter_mut().find(|(s, _)| *s == sku) {
                Some(entry) => entry.1 += r.asked,
                None => order.returned.push((sku, r.asked)),
            }
        }
        self.keep_rma(id, order_id, plan.lines);
        Ok(Reply::Done)
    }

    /// Checks every line of a return (quantity, SKU, location) and sums what it asks per SKU.
    fn plan_return<'a>(&self, lines: &'a [ReturnLine]) -> Result<ReturnPlan<'a>, Rejection> {
        let mut plan = ReturnPlan {
            lines: Vec::with_capacity(lines.len()),
            per_sku: Vec::new(),
        };
        for line in lines {
            check_positive(line.qty)?;
            let sku = self.lookup_sku(&line.sku)?;
            let loc = self.location(&line.received_at)?;
            match plan.per_sku.iter_mut().find(|r| *r.id == line.sku) {
                Some(entry) => entry.asked += line.qty,
                None => plan.per_sku.push(SkuReturn {
                    id: &line.sku,
                    sku,
                    asked: line.qty,
                }),
            }
            if let Some(sku) = sku {
                plan.lines.push(RmaLine {
                    sku,
                    qty: line.qty,
                    loc,
                    disposition: line.disposition,
                });
            }
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
    fn keep_rma(&mut self, id: &RmaId, order_id: &OrderId, lines: Vec<RmaLine>) {
        let slot = self.state.rmas.insert(Rma {
            id: id.clone(),
            order: order_id.clone(),
            lines,
            received_at_ms: self.state.now_ms,
            retired_pos: None,
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
        let from_loc = self.location(from)?;
        let to_loc = self.location(to)?;
        if from_loc == to_loc {
            return invalid(InvalidReason::SameLocation);
        }
        if self.transfer_slot(id.as_str()).is_some() {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Transfer,
                id: id.0.clone(),
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
                at: from.0.clone(),
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
                id: id.0.clone(),
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
            order
                .lines
                .iter()
                .filter(|l| l.sku == s)
                .map(|l| l.fulfilled)
                .sum()
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

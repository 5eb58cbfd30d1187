//! Orders: placement, fulfilment, cancellation, reallocation and pickup (SPEC section 3,
//! Orders).

use crate::command::{Fulfilment, LocatedLine, OrderSource};
use crate::holds::{check_duration, check_line_count, SourcingRules};
use crate::ids::{LocationId, OrderId, SkuId};
use crate::ledger::{
    check_id, check_positive, find_record, hash_str, index_record, invalid, rep_lines, ChanIdx,
    Deadline, Held, Ledger, LocIdx, ObjIdx, Remembered, Retired, SkuIdx,
};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::query::{Cause, ReservationState};
use crate::state::BalIdx;
use crate::state::{IdBuf, Order, OrderLine};

/// A fulfil or cancel request resolved and summed per (SKU, location).
struct Resolved<'a> {
    sku: &'a SkuId,
    location: &'a LocationId,
    sku_idx: Option<SkuIdx>,
    loc: LocIdx,
    qty: i64,
}

/// A checked reallocation: what moves where.
#[derive(Clone, Copy)]
struct Reallocation {
    /// The order's slot.
    slot: ObjIdx,
    sku: SkuIdx,
    /// The location and balance the units leave.
    from_loc: LocIdx,
    from_bal: BalIdx,
    /// The location and balance that take them.
    to_loc: LocIdx,
    to_bal: BalIdx,
    /// Whether the line is a pickup line (a new line at `to` stays one).
    pickup: bool,
    qty: i64,
}

impl Ledger {
    pub(crate) fn place_order(
        &mut self,
        id: &OrderId,
        source: &OrderSource,
        fulfilment: Fulfilment,
    ) -> Result<Remembered, Rejection> {
        check_id(id.as_str(), "order")?;
        let pickup = match fulfilment {
            Fulfilment::Ship => None,
            Fulfilment::Pickup { deadline_ms } => {
                check_duration(deadline_ms, limits::PICKUP_DEADLINE_MS_MAX)?;
                Some(self.deadline(deadline_ms))
            }
        };
        let hash = hash_str(id.as_str());
        let (state, ix) = (&self.state, &self.ix);
        if find_record(&ix.order, &state.orders, state, id.as_str(), hash).is_some() {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Order,
                id: id.0.clone(),
            });
        }
        if self.ix.open_orders >= limits::ORDERS_OPEN_MAX {
            return Err(Rejection::limit("ORDERS_OPEN_MAX"));
        }
        let (channel, held) = match source {
            OrderSource::Reservation(reservation) => {
                let slot = self.active_reservation(reservation)?;
                let r = self.res(slot);
                if pickup.is_some() {
                    for h in &r.held {
                        let def = &self.loc(h.loc).def;
                        if !def.pickup {
                            return invalid(InvalidReason::PickupNotOffered {
                                location: def.location.clone(),
                            });
                        }
                    }
                }
                let (channel, held) = (r.channel, r.held.clone());
                self.end_hold(slot, ReservationState::Placed, Cause::PlaceOrder, 1);
                (channel, held)
            }
            OrderSource::Lines { channel, lines } => {
                let chan = self.lookup_channel(channel)?;
                self.channel_room(chan)?;
                let rules = SourcingRules {
                    channel: chan,
                    pickup: pickup.is_some(),
                };
                let held = self.source(rules, lines)?;
                let chan = self.intern_resolved_channel(channel, chan);
                for h in &held {
                    self.shift(h, 0, h.qty, Cause::PlaceOrder);
                }
                (chan, held)
            }
        };
        self.insert_order(id, hash, channel, &held, pickup);
        Ok(Remembered::OrderPlaced {
            pickup_deadline_ms: pickup,
            lines: rep_lines(&held),
        })
    }

    fn insert_order(
        &mut self,
        id: &OrderId,
        hash: u32,
        channel: ChanIdx,
        held: &[Held],
        pickup: Option<u64>,
    ) {
        let mut lines: smallvec::SmallVec<[OrderLine; 2]> = smallvec::SmallVec::new();
        for h in held {
            match lines.iter_mut().find(|l| l.sku == h.sku && l.loc == h.loc) {
                Some(line) => line.ordered += h.qty,
                None => lines.push(OrderLine {
                    sku: h.sku,
                    loc: h.loc,
                    bal: h.bal,
                    pickup: pickup.is_some(),
                    ordered: h.qty,
                    fulfilled: 0,
                    cancelled: 0,
                }),
            }
        }
        let seq = self.next_seq();
        let slot = self.state.orders.insert(Order {
            id: IdBuf::new(id.as_str()),
            seq,
            channel,
            created_at_ms: self.state.now_ms,
            lines,
            returned: Vec::new(),
            pickup_deadline_ms: pickup,
            pickup_expired: false,
            ready: false,
            retired_pos: None,
        });
        index_record(&mut self.ix.order, &self.state.orders, slot, hash);
        if let Some(deadline) = pickup {
            self.ix
                .deadlines
                .insert(deadline, seq, Deadline::Pickup(slot));
            self.index_pickups(slot);
        }
        self.ix.open_orders += 1;
    }

    /// The slot of the retained order `id`.
    pub(crate) fn order(&self, id: &OrderId) -> Result<ObjIdx, Rejection> {
        check_id(id.as_str(), "order")?;
        self.order_slot(id.as_str())
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Order,
                id: id.0.clone(),
            })
    }

    /// Resolves located lines and sums them per (SKU, location), in first-seen order.
    fn resolve_lines<'a>(&self, lines: &'a [LocatedLine]) -> Result<Vec<Resolved<'a>>, Rejection> {
        check_line_count(lines.len())?;
        let mut out: Vec<Resolved> = Vec::with_capacity(lines.len());
        for line in lines {
            check_positive(line.qty)?;
            let sku_idx = self.lookup_sku(&line.sku)?;
            let loc = self.location(&line.location)?;
            match out.iter_mut().find(|r| *r.sku == line.sku && r.loc == loc) {
                Some(r) => r.qty += line.qty,
                None => out.push(Resolved {
                    sku: &line.sku,
                    location: &line.location,
                    sku_idx,
                    loc,
                    qty: line.qty,
                }),
            }
        }
        Ok(out)
    }

    /// After a change to an order: if nothing is left unfulfilled, it stops being open, its
    /// pickup deadline is dropped and it is retired.
    fn close_if_done(&mut self, slot: ObjIdx, was_open: bool) {
        let order = self.ord(slot);
        if !was_open || order.unfulfilled() > 0 {
            return;
        }
        if let Some(deadline) = order.pickup_deadline_ms {
            let seq = order.seq;
            self.ix.deadlines.remove(deadline, seq);
            self.unindex_pickups(slot);
        }
        self.ix.open_orders -= 1;
        let pos = self.retire(Retired::Order(slot));
        self.ord_mut(slot).retired_pos = Some(pos);
    }

    pub(crate) fn fulfil(&mut self, id: &OrderId, lines: &[LocatedLine]) -> Outcome {
        let slot = self.order(id)?;
        let order = self.ord(slot);
        let resolved = self.resolve_lines(lines)?;
        for r in &resolved {
            let unfulfilled = r
                .sku_idx
                .and_then(|s| order.line(s, r.loc))
                .map_or(0, OrderLine::unfulfilled);
            if r.qty > unfulfilled {
                return Err(Rejection::OverFulfil {
                    sku: r.sku.clone(),
                    location: r.location.clone(),
                    unfulfilled,
                });
            }
            let sellable = r.sku_idx.map_or(0, |s| self.balance(s, r.loc).sellable());
            if r.qty > sellable {
                return Err(Rejection::InsufficientStock {
                    sku: r.sku.clone(),
                    at: r.location.0.clone(),
                    requested: r.qty,
                    available: sellable,
                });
            }
        }
        let was_open = order.unfulfilled() > 0;
        for r in &resolved {
            let sku = r.sku_idx.expect("over_fulfil checked the line exists");
            self.fulfil_units(slot, sku, r.loc, r.qty, Cause::Fulfil);
        }
        self.close_if_done(slot, was_open);
        Ok(Reply::Done)
    }

    /// Moves `qty` of an order line from allocated to fulfilled, taking it out of on_hand.
    fn fulfil_units(&mut self, slot: ObjIdx, sku: SkuIdx, loc: LocIdx, qty: i64, cause: Cause) {
        let line = self.ord_mut(slot).line_mut(sku, loc).expect("line exists");
        assert!(qty <= line.unfulfilled());
        line.fulfilled += qty;
        let bal = line.bal;
        let mut b = self.bal(bal);
        b.on_hand -= qty;
        b.allocated -= qty;
        self.put_bal(sku, loc, bal, b, cause);
    }

    /// Moves `qty` of an order line from allocated to cancelled.
    fn cancel_units(&mut self, slot: ObjIdx, sku: SkuIdx, loc: LocIdx, qty: i64, cause: Cause) {
        let line = self.ord_mut(slot).line_mut(sku, loc).expect("line exists");
        assert!(qty <= line.unfulfilled());
        line.cancelled += qty;
        let bal = line.bal;
        let held = Held {
            line: 0,
            sku,
            loc,
            bal,
            qty,
        };
        self.shift(&held, 0, -qty, cause);
    }

    pub(crate) fn cancel(&mut self, id: &OrderId, lines: Option<&[LocatedLine]>) -> Outcome {
        let slot = self.order(id)?;
        let order = self.ord(slot);
        let was_open = order.unfulfilled() > 0;
        let plan: Vec<(SkuIdx, LocIdx, i64)> = match lines {
            None => {
                if !was_open {
                    return Err(Rejection::NothingToCancel { cancellable: 0 });
                }
                order
                    .lines
                    .iter()
                    .map(|l| (l.sku, l.loc, l.unfulfilled()))
                    .collect()
            }
            Some(lines) => {
                let resolved = self.resolve_lines(lines)?;
                let mut plan = Vec::with_capacity(resolved.len());
                for r in &resolved {
                    let line = r.sku_idx.and_then(|s| order.line(s, r.loc));
                    let cancellable = line.map_or(0, OrderLine::unfulfilled);
                    if r.qty > cancellable {
                        return Err(Rejection::NothingToCancel { cancellable });
                    }
                    plan.push((r.sku_idx.expect("line exists"), r.loc, r.qty));
                }
                plan
            }
        };
        for (sku, loc, qty) in plan.into_iter().filter(|p| p.2 > 0) {
            self.cancel_units(slot, sku, loc, qty, Cause::Cancel);
        }
        self.close_if_done(slot, was_open);
        Ok(Reply::Done)
    }

    /// Moves `qty` unfulfilled units of an order line from one location to another (SPEC
    /// section 3, reallocate): checks, then commits.
    pub(crate) fn reallocate(
        &mut self,
        id: &OrderId,
        sku: &SkuId,
        from: &LocationId,
        to: &LocationId,
        qty: i64,
    ) -> Outcome {
        let plan = self.plan_reallocation(id, sku, from, to, qty)?;
        self.move_allocation(&plan);
        Ok(Reply::Done)
    }

    /// Checks a reallocation, in the order the SPEC lists its rejections, and returns what to
    /// move. Changes nothing.
    fn plan_reallocation(
        &self,
        id: &OrderId,
        sku: &SkuId,
        from: &LocationId,
        to: &LocationId,
        qty: i64,
    ) -> Result<Reallocation, Rejection> {
        check_positive(qty)?;
        let slot = self.order(id)?;
        let order = self.ord(slot);
        let sku_idx = self.lookup_sku(sku)?;
        let from_loc = self.location(from)?;
        let to_loc = self.location(to)?;
        if from_loc == to_loc {
            return invalid(InvalidReason::SameLocation);
        }
        let line = sku_idx.and_then(|s| order.line(s, from_loc));
        let unfulfilled = line.map_or(0, OrderLine::unfulfilled);
        let (Some(sku_idx), Some(line), true) = (sku_idx, line, qty <= unfulfilled) else {
            return Err(Rejection::OverFulfil {
                sku: sku.clone(),
                location: from.clone(),
                unfulfilled,
            });
        };
        // The units keep the order's channel and fulfilment: the new location must sell to
        // that channel and, for a pickup line, offer pickup.
        if !self.channel_allowed(to_loc, Some(order.channel)) {
            return Err(Rejection::ChannelNotAllowed {
                location: to.clone(),
                channel: self.state.channels[order.channel as usize].clone(),
            });
        }
        if line.pickup && !self.loc(to_loc).def.pickup {
            return invalid(InvalidReason::PickupNotOffered {
                location: to.clone(),
            });
        }
        if order.line(sku_idx, to_loc).is_none() && order.lines.len() >= limits::ORDER_LINES_MAX {
            return Err(Rejection::limit("ORDER_LINES_MAX"));
        }
        let to_bal = self.bal_of(sku_idx, to_loc);
        let available = to_bal.map_or(0, |b| self.bal(b).ats(Ledger::is_pos(Some(order.channel))));
        let Some(to_bal) = to_bal.filter(|_| qty <= available) else {
            return Err(Rejection::InsufficientStock {
                sku: sku.clone(),
                at: to.0.clone(),
                requested: qty,
                available,
            });
        };
        Ok(Reallocation {
            slot,
            sku: sku_idx,
            from_loc,
            from_bal: line.bal,
            to_loc,
            to_bal,
            pickup: line.pickup,
            qty,
        })
    }

    /// Commits a checked reallocation: the order line at the new location (created if need
    /// be) takes the units, and the allocation moves between the two balances.
    fn move_allocation(&mut self, plan: &Reallocation) {
        let Reallocation {
            slot,
            sku,
            from_loc,
            from_bal,
            to_loc,
            to_bal,
            pickup,
            qty,
        } = *plan;
        let order = self.ord_mut(slot);
        order.line_mut(sku, from_loc).expect("line exists").ordered -= qty;
        match order.line_mut(sku, to_loc) {
            Some(line) => line.ordered += qty,
            None => order.lines.push(OrderLine {
                sku,
                loc: to_loc,
                bal: to_bal,
                pickup,
                ordered: qty,
                fulfilled: 0,
                cancelled: 0,
            }),
        }
        let moved = |loc, bal| Held {
            line: 0,
            sku,
            loc,
            bal,
            qty,
        };
        self.shift(&moved(from_loc, from_bal), 0, -qty, Cause::Reallocate);
        self.shift(&moved(to_loc, to_bal), 0, qty, Cause::Reallocate);
        if pickup {
            self.index_pickups(slot);
        }
    }

    /// The order `id` if it has pickup lines still to collect, or the rejection for its state.
    fn pickup_order(&self, id: &OrderId) -> Result<(ObjIdx, &Order), Rejection> {
        let slot = self.order(id)?;
        let order = self.ord(slot);
        if !order.lines.iter().any(|l| l.pickup) {
            return invalid(InvalidReason::NotAPickupOrder);
        }
        if order.pickup_expired {
            return Err(Rejection::Expired {
                kind: ObjectKind::Order,
            });
        }
        let remaining: i64 = order
            .lines
            .iter()
            .filter(|l| l.pickup)
            .map(OrderLine::unfulfilled)
            .sum();
        if remaining == 0 {
            return Err(Rejection::InvalidState {
                kind: ObjectKind::Order,
                state: crate::query::OrderState::from_totals(
                    order.lines.iter().map(|l| l.ordered).sum(),
                    order.lines.iter().map(|l| l.fulfilled).sum(),
                    order.lines.iter().map(|l| l.cancelled).sum(),
                )
                .as_str()
                .to_owned(),
            });
        }
        Ok((slot, order))
    }

    pub(crate) fn ready_for_pickup(&mut self, id: &OrderId) -> Outcome {
        let (slot, order) = self.pickup_order(id)?;
        if order.ready {
            return Err(Rejection::InvalidState {
                kind: ObjectKind::Order,
                state: "ready_for_pickup".to_owned(),
            });
        }
        self.ord_mut(slot).ready = true;
        Ok(Reply::Done)
    }

    pub(crate) fn picked_up(&mut self, id: &OrderId) -> Outcome {
        let (slot, order) = self.pickup_order(id)?;
        let plan: Vec<(SkuIdx, LocIdx, i64)> = order
            .lines
            .iter()
            .filter(|l| l.pickup && l.unfulfilled() > 0)
            .map(|l| (l.sku, l.loc, l.unfulfilled()))
            .collect();
        for &(sku, loc, qty) in &plan {
            let sellable = self.balance(sku, loc).sellable();
            if qty > sellable {
                return Err(Rejection::InsufficientStock {
                    sku: self.sku(sku).sku_id(),
                    at: self.loc(loc).def.location.0.clone(),
                    requested: qty,
                    available: sellable,
                });
            }
        }
        for (sku, loc, qty) in plan {
            self.fulfil_units(slot, sku, loc, qty, Cause::Fulfil);
        }
        self.close_if_done(slot, true);
        Ok(Reply::Done)
    }

    /// A pickup deadline passed: cancel every uncollected pickup line.
    pub(crate) fn expire_pickup(&mut self, slot: ObjIdx) {
        let order = self.ord(slot);
        let was_open = order.unfulfilled() > 0;
        assert!(was_open, "closed orders drop their deadline");
        let plan: Vec<(SkuIdx, LocIdx, i64)> = order
            .lines
            .iter()
            .filter(|l| l.pickup && l.unfulfilled() > 0)
            .map(|l| (l.sku, l.loc, l.unfulfilled()))
            .collect();
        for (sku, loc, qty) in plan {
            self.cancel_units(slot, sku, loc, qty, Cause::PickupExpired);
        }
        self.unindex_pickups(slot);
        self.ord_mut(slot).pickup_expired = true;
        self.close_if_done(slot, was_open);
    }
}

//! Orders: placement, fulfilment, cancellation, reallocation and pickup (SPEC section 3,
//! Orders).

use crate::command::{Fulfilment, LocatedLine, OrderSource};
use crate::holds::{check_duration, check_line_count, SourcingRules};
use crate::ids::{LocationId, OrderId, SkuId};
use crate::ledger::{
    check_id, check_positive, invalid, ChanIdx, Deadline, Held, Key, Ledger, LocIdx, Order,
    OrderLine, Remembered, Retired, SkuIdx,
};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::query::{Cause, ReservationState};

/// A fulfil or cancel request resolved and summed per (SKU, location).
struct Resolved<'a> {
    sku: &'a SkuId,
    location: &'a LocationId,
    sku_idx: Option<SkuIdx>,
    loc: LocIdx,
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
        if self.orders.contains_key(id.as_str()) {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Order,
                id: id.0.clone(),
            });
        }
        if self.open_orders >= limits::ORDERS_OPEN_MAX {
            return Err(Rejection::limit("ORDERS_OPEN_MAX"));
        }
        let (channel, held) = match source {
            OrderSource::Reservation(reservation) => {
                let r = self.active_reservation(reservation)?;
                if pickup.is_some() {
                    for h in &r.held {
                        let def = &self.locations[h.loc as usize].def;
                        if !def.pickup {
                            return invalid(InvalidReason::PickupNotOffered {
                                location: def.location.clone(),
                            });
                        }
                    }
                }
                let (channel, held) = (r.channel, r.held.clone());
                self.end_hold(
                    reservation.as_str(),
                    ReservationState::Placed,
                    Cause::PlaceOrder,
                    1,
                );
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
                    self.shift(h.sku, h.loc, 0, h.qty, Cause::PlaceOrder);
                }
                (chan, held)
            }
        };
        self.insert_order(id, channel, &held, pickup);
        Ok(Remembered::OrderPlaced {
            pickup_deadline_ms: pickup,
            held,
        })
    }

    fn insert_order(&mut self, id: &OrderId, channel: ChanIdx, held: &[Held], pickup: Option<u64>) {
        let mut lines: Vec<OrderLine> = Vec::with_capacity(held.len());
        for h in held {
            match lines.iter_mut().find(|l| l.sku == h.sku && l.loc == h.loc) {
                Some(line) => line.ordered += h.qty,
                None => lines.push(OrderLine {
                    sku: h.sku,
                    loc: h.loc,
                    pickup: pickup.is_some(),
                    ordered: h.qty,
                    fulfilled: 0,
                    cancelled: 0,
                }),
            }
        }
        let seq = self.next_seq();
        let key = Key::from(id.as_str());
        if let Some(deadline) = pickup {
            self.deadlines
                .insert(deadline, seq, Deadline::Pickup(key.clone()));
        }
        let order = Order {
            seq,
            channel,
            created_at_ms: self.now_ms,
            lines,
            returned: Vec::new(),
            pickup_deadline_ms: pickup,
            pickup_expired: false,
            ready: false,
        };
        self.orders.insert(key, order);
        self.open_orders += 1;
    }

    pub(crate) fn order(&self, id: &OrderId) -> Result<&Order, Rejection> {
        check_id(id.as_str(), "order")?;
        self.orders
            .get(id.as_str())
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
    fn close_if_done(&mut self, id: &str, was_open: bool) {
        let Some((key, order)) = self.orders.get_key_value(id) else {
            unreachable!("close_if_done on a missing order")
        };
        if !was_open || order.unfulfilled() > 0 {
            return;
        }
        let key = key.clone();
        if let Some(deadline) = order.pickup_deadline_ms {
            self.deadlines.remove(deadline, order.seq);
        }
        self.open_orders -= 1;
        self.retire(Retired::Order(key));
    }

    pub(crate) fn fulfil(&mut self, id: &OrderId, lines: &[LocatedLine]) -> Outcome {
        let order = self.order(id)?;
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
            self.fulfil_units(id.as_str(), sku, r.loc, r.qty, Cause::Fulfil);
        }
        self.close_if_done(id.as_str(), was_open);
        Ok(Reply::Done)
    }

    /// Moves `qty` of an order line from allocated to fulfilled, taking it out of on_hand.
    fn fulfil_units(&mut self, id: &str, sku: SkuIdx, loc: LocIdx, qty: i64, cause: Cause) {
        let order = self.orders.get_mut(id).expect("order exists");
        let line = order.line_mut(sku, loc).expect("line exists");
        assert!(qty <= line.unfulfilled());
        line.fulfilled += qty;
        let mut b = self.balance(sku, loc);
        b.on_hand -= qty;
        b.allocated -= qty;
        self.put_balance(sku, loc, b, cause);
    }

    /// Moves `qty` of an order line from allocated to cancelled.
    fn cancel_units(&mut self, id: &str, sku: SkuIdx, loc: LocIdx, qty: i64, cause: Cause) {
        let order = self.orders.get_mut(id).expect("order exists");
        let line = order.line_mut(sku, loc).expect("line exists");
        assert!(qty <= line.unfulfilled());
        line.cancelled += qty;
        self.shift(sku, loc, 0, -qty, cause);
    }

    pub(crate) fn cancel(&mut self, id: &OrderId, lines: Option<&[LocatedLine]>) -> Outcome {
        let order = self.order(id)?;
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
            self.cancel_units(id.as_str(), sku, loc, qty, Cause::Cancel);
        }
        self.close_if_done(id.as_str(), was_open);
        Ok(Reply::Done)
    }

    pub(crate) fn reallocate(
        &mut self,
        id: &OrderId,
        sku: &SkuId,
        from: &LocationId,
        to: &LocationId,
        qty: i64,
    ) -> Outcome {
        check_positive(qty)?;
        let order = self.order(id)?;
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
        let pickup = line.pickup;
        if !self.channel_allowed(to_loc, Some(order.channel)) {
            return Err(Rejection::ChannelNotAllowed {
                location: to.clone(),
                channel: self.channels[order.channel as usize].clone(),
            });
        }
        if pickup && !self.locations[to_loc as usize].def.pickup {
            return invalid(InvalidReason::PickupNotOffered {
                location: to.clone(),
            });
        }
        if order.line(sku_idx, to_loc).is_none() && order.lines.len() >= limits::ORDER_LINES_MAX {
            return Err(Rejection::limit("ORDER_LINES_MAX"));
        }
        let available = self
            .balance(sku_idx, to_loc)
            .ats(Ledger::is_pos(Some(order.channel)));
        if qty > available {
            return Err(Rejection::InsufficientStock {
                sku: sku.clone(),
                at: to.0.clone(),
                requested: qty,
                available,
            });
        }
        // Checks done: commit.
        let order = self.orders.get_mut(id.as_str()).expect("order exists");
        order
            .line_mut(sku_idx, from_loc)
            .expect("line exists")
            .ordered -= qty;
        match order.line_mut(sku_idx, to_loc) {
            Some(line) => line.ordered += qty,
            None => order.lines.push(OrderLine {
                sku: sku_idx,
                loc: to_loc,
                pickup,
                ordered: qty,
                fulfilled: 0,
                cancelled: 0,
            }),
        }
        self.shift(sku_idx, from_loc, 0, -qty, Cause::Reallocate);
        self.shift(sku_idx, to_loc, 0, qty, Cause::Reallocate);
        Ok(Reply::Done)
    }

    /// The order `id` if it has pickup lines still to collect, or the rejection for its state.
    fn pickup_order(&self, id: &OrderId) -> Result<&Order, Rejection> {
        let order = self.order(id)?;
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
        Ok(order)
    }

    pub(crate) fn ready_for_pickup(&mut self, id: &OrderId) -> Outcome {
        let order = self.pickup_order(id)?;
        if order.ready {
            return Err(Rejection::InvalidState {
                kind: ObjectKind::Order,
                state: "ready_for_pickup".to_owned(),
            });
        }
        self.orders
            .get_mut(id.as_str())
            .expect("order exists")
            .ready = true;
        Ok(Reply::Done)
    }

    pub(crate) fn picked_up(&mut self, id: &OrderId) -> Outcome {
        let order = self.pickup_order(id)?;
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
                    sku: self.skus[sku as usize].id.clone(),
                    at: self.locations[loc as usize].def.location.0.clone(),
                    requested: qty,
                    available: sellable,
                });
            }
        }
        for (sku, loc, qty) in plan {
            self.fulfil_units(id.as_str(), sku, loc, qty, Cause::Fulfil);
        }
        self.close_if_done(id.as_str(), true);
        Ok(Reply::Done)
    }

    /// A pickup deadline passed: cancel every uncollected pickup line.
    pub(crate) fn expire_pickup(&mut self, id: &str) {
        let order = self
            .orders
            .get(id)
            .expect("a pickup deadline belongs to a live order");
        let was_open = order.unfulfilled() > 0;
        assert!(was_open, "closed orders drop their deadline");
        let plan: Vec<(SkuIdx, LocIdx, i64)> = order
            .lines
            .iter()
            .filter(|l| l.pickup && l.unfulfilled() > 0)
            .map(|l| (l.sku, l.loc, l.unfulfilled()))
            .collect();
        for (sku, loc, qty) in plan {
            self.cancel_units(id, sku, loc, qty, Cause::PickupExpired);
        }
        self.orders
            .get_mut(id)
            .expect("order exists")
            .pickup_expired = true;
        self.close_if_done(id, was_open);
    }
}

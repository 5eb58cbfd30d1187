//! Orders: placement, fulfilment, cancellation, reallocation and pickup (SPEC section 3,
//! Orders).

use crate::command::{Fulfilment, Line, LocatedLine, OrderSource};
use crate::holds::{check_duration, check_line_count};
use crate::ids::{ChannelId, CustomerId, LocationId, OrderId, RmaId, SkuId};
use crate::ledger::{
    check_id, check_positive, find_record, hash_str, index_record, invalid, rep_lines, ChanIdx,
    Deadline, Held, HeldVec, Ledger, LocIdx, ObjIdx, Remembered, Retired, SkuIdx,
};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::purchase::Demand;
use crate::query::{Cause, ReservationState};
use crate::sourcing::{request_lines, Sourced, SourcingRules, NO_BAL};
use crate::state::BalIdx;
use crate::state::{Counted, KitLine, OrderExtra, OrderKit, NO_KIT};
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

/// The checks of a new order that come before its source: id, pickup deadline, room.
pub(crate) struct NewOrder {
    /// The hash of its id, for the id index.
    pub hash: u32,
    /// The pickup deadline, for a pickup order.
    pub pickup: Option<u64>,
}

/// What a placed order carries besides its lines.
#[derive(Default)]
pub(crate) struct Placement {
    pub kits: Vec<KitLine>,
    pub customer: Option<CustomerId>,
    pub counted: Vec<Counted>,
    pub exchange_of: Option<RmaId>,
}

impl Ledger {
    /// `place_order` (SPEC section 3): from an active hold (which gives its customer), or
    /// from lines, reserving and placing at once (for `customer`, if given).
    pub(crate) fn place_order(
        &mut self,
        id: &OrderId,
        source: &OrderSource,
        fulfilment: Fulfilment,
        customer: Option<&CustomerId>,
    ) -> Result<Remembered, Rejection> {
        let new = self.check_new_order(id, fulfilment)?;
        match source {
            OrderSource::Reservation(reservation) => self.place_from_hold(id, new, reservation),
            OrderSource::Lines { channel, lines } => {
                let (chan, sourced, counted) = self.check_direct_order(
                    new.pickup.is_some(),
                    channel,
                    lines,
                    customer,
                    &[],
                    &Demand::new(),
                )?;
                let placement = Placement {
                    kits: sourced.kits,
                    customer: customer.cloned(),
                    counted,
                    exchange_of: None,
                };
                Ok(self.commit_direct_order(id, new, channel, chan, sourced.held, placement))
            }
        }
    }

    /// The checks of a new order's id, fulfilment and room.
    pub(crate) fn check_new_order(
        &self,
        id: &OrderId,
        fulfilment: Fulfilment,
    ) -> Result<NewOrder, Rejection> {
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
                id: id.0.to_string(),
            });
        }
        if self.ix.open_orders >= limits::ORDERS_OPEN_MAX {
            return Err(Rejection::limit("ORDERS_OPEN_MAX"));
        }
        Ok(NewOrder { hash, pickup })
    }

    /// Places an order from an active hold: its held units become allocated; the order keeps
    /// the hold's kit lines and customer, and counts its units against the limits set now
    /// without a new check.
    fn place_from_hold(
        &mut self,
        id: &OrderId,
        new: NewOrder,
        reservation: &crate::ids::ReservationId,
    ) -> Result<Remembered, Rejection> {
        let slot = self.active_reservation(reservation)?;
        let r = self.res(slot);
        if new.pickup.is_some() {
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
        let (kits, customer) = r
            .extra
            .as_ref()
            .map_or((Vec::new(), None), |e| (e.kits.clone(), e.customer.clone()));
        self.end_hold(slot, ReservationState::Placed, Cause::PlaceOrder, 1);
        let demand = self.limited_demand(&held, &kits);
        let counted = self.counted_unchecked(customer.as_ref(), &demand);
        let lines = request_lines(&held, &kits);
        let placement = Placement {
            kits,
            customer,
            counted,
            exchange_of: None,
        };
        self.insert_order(id, new.hash, channel, &held, new.pickup, placement);
        Ok(Remembered::OrderPlaced {
            pickup_deadline_ms: new.pickup,
            lines,
        })
    }

    /// The checks of a direct order's lines: channel, sourcing (with units an exchange's
    /// return would restock), then purchase limits net of `offset`. Changes nothing.
    pub(crate) fn check_direct_order(
        &self,
        pickup: bool,
        channel: &ChannelId,
        lines: &[Line],
        customer: Option<&CustomerId>,
        restocked: &[(u64, i64)],
        offset: &Demand,
    ) -> Result<(Option<ChanIdx>, Sourced, Vec<Counted>), Rejection> {
        let chan = self.lookup_channel(channel)?;
        self.channel_room(chan)?;
        let rules = SourcingRules {
            channel: chan,
            pickup,
            restocked,
        };
        let sourced = self.source(rules, lines)?;
        let demand = self.limited_demand(&sourced.held, &sourced.kits);
        let counted = if demand.is_empty() {
            Vec::new()
        } else {
            self.check_limits(customer, &demand, offset, true)?
        };
        Ok((chan, sourced, counted))
    }

    /// Commits a checked direct order: allocates its units and stores it.
    pub(crate) fn commit_direct_order(
        &mut self,
        id: &OrderId,
        new: NewOrder,
        channel: &ChannelId,
        chan: Option<ChanIdx>,
        held: HeldVec,
        placement: Placement,
    ) -> Remembered {
        let chan = self.intern_resolved_channel(channel, chan);
        for h in &held {
            assert_ne!(h.bal, NO_BAL, "a committed order line has a balance");
            self.shift(h, 0, h.qty, Cause::PlaceOrder);
        }
        let lines = if placement.kits.is_empty() {
            rep_lines(&held)
        } else {
            request_lines(&held, &placement.kits)
        };
        self.insert_order(id, new.hash, chan, &held, new.pickup, placement);
        Remembered::OrderPlaced {
            pickup_deadline_ms: new.pickup,
            lines,
        }
    }

    /// Stores a placed order: plain held lines merged per (SKU, location), kit lines per
    /// (kit, location) with their component lines; counts its units for its customer.
    fn insert_order(
        &mut self,
        id: &OrderId,
        hash: u32,
        channel: ChanIdx,
        held: &[Held],
        pickup: Option<u64>,
        placement: Placement,
    ) -> ObjIdx {
        let mut extra = (placement.customer.is_some()
            || !placement.kits.is_empty()
            || placement.exchange_of.is_some())
        .then(|| {
            Box::new(OrderExtra {
                customer: placement.customer,
                kits: Vec::new(),
                counted: placement.counted,
                exchange_of: placement.exchange_of,
            })
        });
        let lines = order_lines(
            held,
            &placement.kits,
            pickup.is_some(),
            extra.as_deref_mut(),
        );
        let seq = self.next_seq();
        if let Some(extra) = &extra {
            for k in &extra.kits {
                self.kit_use(k.kit, 1);
            }
            if let Some(customer) = &extra.customer {
                self.count_order(customer, seq, &extra.counted);
            }
        }
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
            extra,
        });
        index_record(&mut self.ix.order, &self.state.orders, slot, hash);
        if let Some(deadline) = pickup {
            self.ix
                .deadlines
                .insert(deadline, seq, Deadline::Pickup(slot));
            self.index_pickups(slot);
        }
        self.ix.open_orders += 1;
        slot
    }

    /// The slot of the retained order `id`.
    pub(crate) fn order(&self, id: &OrderId) -> Result<ObjIdx, Rejection> {
        check_id(id.as_str(), "order")?;
        self.order_slot(id.as_str())
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Order,
                id: id.0.to_string(),
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
            self.ix.deadlines.remove(deadline, Deadline::Pickup(slot));
            self.unindex_pickups(slot);
        }
        self.ix.open_orders -= 1;
        let pos = self.retire(Retired::Order(slot));
        self.ord_mut(slot).retired_pos = Some(pos);
    }

    pub(crate) fn fulfil(&mut self, id: &OrderId, lines: &[LocatedLine]) -> Outcome {
        let slot = self.order_for_write(id)?;
        let order = self.ord(slot);
        let resolved = self.resolve_lines(lines)?;
        let mut plan = Plan::new();
        // Units leaving each balance, summed: a kit's component and a plain line may share one.
        let mut leaving: smallvec::SmallVec<[(SkuIdx, LocIdx, i64); 4]> = smallvec::SmallVec::new();
        for r in &resolved {
            let before = plan.len();
            let unfulfilled = order_units(order, r, &mut plan);
            if r.qty > unfulfilled {
                return Err(Rejection::OverFulfil {
                    sku: r.sku.clone(),
                    location: r.location.clone(),
                    unfulfilled,
                });
            }
            for &(i, qty) in &plan[before..] {
                let line = &order.lines[i];
                let sum = match leaving
                    .iter_mut()
                    .find(|(s, l, _)| *s == line.sku && *l == line.loc)
                {
                    Some(entry) => {
                        entry.2 += qty;
                        entry.2
                    }
                    None => {
                        leaving.push((line.sku, line.loc, qty));
                        qty
                    }
                };
                let sellable = self.balance(line.sku, line.loc).sellable();
                if sum > sellable {
                    return Err(Rejection::InsufficientStock {
                        sku: self.sku(line.sku).sku_id(),
                        at: r.location.0.to_string(),
                        requested: sum,
                        available: sellable,
                    });
                }
            }
        }
        let was_open = order.unfulfilled() > 0;
        for (i, qty) in plan {
            self.fulfil_units(slot, i, qty, Cause::Fulfil);
        }
        self.close_if_done(slot, was_open);
        Ok(Reply::Done)
    }

    /// Moves `qty` of order line `i` from allocated to fulfilled, taking it out of on_hand.
    fn fulfil_units(&mut self, slot: ObjIdx, i: usize, qty: i64, cause: Cause) {
        let line = &mut self.ord_mut(slot).lines[i];
        assert!(qty <= line.unfulfilled());
        line.fulfilled += qty;
        let (sku, loc, bal) = (line.sku, line.loc, line.bal);
        let mut b = self.bal(bal);
        b.on_hand -= qty;
        b.allocated -= qty;
        self.put_bal(sku, loc, bal, b, cause);
        self.kit_line_moved(slot, i);
    }

    /// Moves `qty` of order line `i` from allocated to cancelled; the customer's counted
    /// units of it come back.
    fn cancel_units(&mut self, slot: ObjIdx, i: usize, qty: i64, cause: Cause) {
        let line = &mut self.ord_mut(slot).lines[i];
        assert!(qty <= line.unfulfilled());
        line.cancelled += qty;
        let held = Held {
            line: 0,
            sku: line.sku,
            loc: line.loc,
            bal: line.bal,
            qty,
        };
        self.shift(&held, 0, -qty, cause);
        self.kit_line_moved(slot, i);
        let order = self.ord_mut(slot);
        let seq = order.seq;
        let Some(mut extra) = order.extra.take() else {
            return;
        };
        let line = &order.lines[i];
        let kit = (line.kit != NO_KIT).then(|| extra.kits[usize::from(line.kit)].clone());
        self.give_back(&mut extra, seq, held.sku, qty);
        if let Some(kit) = kit {
            if kit.composition[0].sku == held.sku {
                self.give_back(&mut extra, seq, kit.kit, qty / kit.composition[0].qty);
            }
        }
        self.ord_mut(slot).extra = Some(extra);
    }

    /// After units of order line `i` moved: a kit line with nothing left unfulfilled no
    /// longer keeps its kit in use (read from its first component: they move together).
    fn kit_line_moved(&mut self, slot: ObjIdx, i: usize) {
        let order = self.ord(slot);
        let line = &order.lines[i];
        if line.kit == NO_KIT || line.unfulfilled() > 0 {
            return;
        }
        let kit = &order.kits()[usize::from(line.kit)];
        if kit.composition[0].sku == line.sku {
            self.kit_use(kit.kit, -1);
        }
    }

    pub(crate) fn cancel(&mut self, id: &OrderId, lines: Option<&[LocatedLine]>) -> Outcome {
        let slot = self.order_for_write(id)?;
        let order = self.ord(slot);
        let was_open = order.unfulfilled() > 0;
        let plan: Plan = match lines {
            None => {
                if !was_open {
                    return Err(Rejection::NothingToCancel { cancellable: 0 });
                }
                (0..order.lines.len())
                    .map(|i| (i, order.lines[i].unfulfilled()))
                    .collect()
            }
            Some(lines) => {
                let resolved = self.resolve_lines(lines)?;
                let mut plan = Plan::new();
                for r in &resolved {
                    let cancellable = order_units(order, r, &mut plan);
                    if r.qty > cancellable {
                        return Err(Rejection::NothingToCancel { cancellable });
                    }
                }
                plan
            }
        };
        for (i, qty) in plan.into_iter().filter(|p| p.1 > 0) {
            self.cancel_units(slot, i, qty, Cause::Cancel);
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
        self.expire_overdue_pickup(id);
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
        self.check_not_kit(sku_idx, sku)?;
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
                at: to.0.to_string(),
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
                kit: NO_KIT,
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
        self.expire_overdue_pickup(id);
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
        self.expire_overdue_pickup(id);
        let (slot, order) = self.pickup_order(id)?;
        let plan = pickup_plan(order);
        let mut leaving: smallvec::SmallVec<[(SkuIdx, LocIdx, i64); 4]> = smallvec::SmallVec::new();
        for &(i, qty) in &plan {
            let line = &order.lines[i];
            match leaving
                .iter_mut()
                .find(|(s, l, _)| *s == line.sku && *l == line.loc)
            {
                Some(entry) => entry.2 += qty,
                None => leaving.push((line.sku, line.loc, qty)),
            }
        }
        for &(sku, loc, qty) in &leaving {
            let sellable = self.balance(sku, loc).sellable();
            if qty > sellable {
                return Err(Rejection::InsufficientStock {
                    sku: self.sku(sku).sku_id(),
                    at: self.loc(loc).def.location.0.to_string(),
                    requested: qty,
                    available: sellable,
                });
            }
        }
        for (i, qty) in plan {
            self.fulfil_units(slot, i, qty, Cause::Fulfil);
        }
        self.close_if_done(slot, true);
        Ok(Reply::Done)
    }

    /// A pickup deadline passed: cancel every uncollected pickup line.
    pub(crate) fn expire_pickup(&mut self, slot: ObjIdx) {
        let order = self.ord(slot);
        let was_open = order.unfulfilled() > 0;
        assert!(was_open, "closed orders drop their deadline");
        for (i, qty) in pickup_plan(order) {
            self.cancel_units(slot, i, qty, Cause::PickupExpired);
        }
        self.unindex_pickups(slot);
        self.ord_mut(slot).pickup_expired = true;
        self.close_if_done(slot, was_open);
    }

    /// The slot of order `id` for a write on it, after [`Ledger::expire_overdue_pickup`].
    fn order_for_write(&mut self, id: &OrderId) -> Result<ObjIdx, Rejection> {
        let slot = self.order(id)?;
        self.expire_if_overdue(slot);
        Ok(slot)
    }

    /// Before a write on order `id`: if its pickup deadline passed and the batch's expiry did
    /// not reach it yet (a backlog, [`limits::EXPIRY_STEPS_PER_BATCH`]), cancels its
    /// uncollected pickup units now, exactly as that expiry would have (its change-feed events
    /// name no request), so the write sees the expired pickup it answers for. Nothing for an
    /// unknown order (the write's own checks answer for it, in their order).
    fn expire_overdue_pickup(&mut self, id: &OrderId) {
        if let Ok(slot) = self.order(id) {
            self.expire_if_overdue(slot);
        }
    }

    /// [`Ledger::expire_overdue_pickup`] of order `slot`.
    fn expire_if_overdue(&mut self, slot: ObjIdx) {
        let order = self.ord(slot);
        let Some(deadline) = order.pickup_deadline_ms else {
            return;
        };
        if deadline > self.state.now_ms || order.pickup_expired {
            return;
        }
        // An open pickup not yet expired has its entry; a closed order dropped it.
        if self
            .ix
            .deadlines
            .remove(deadline, Deadline::Pickup(slot))
            .is_none()
        {
            return;
        }
        let (request, author) = (self.current_request, self.current_author);
        (self.current_request, self.current_author) = (0, 0);
        self.expire_pickup(slot);
        (self.current_request, self.current_author) = (request, author);
    }
}

/// Units to move per order line (index into `Order::lines`).
type Plan = smallvec::SmallVec<[(usize, i64); 4]>;

/// The unfulfilled pickup lines of an order and their units.
fn pickup_plan(order: &Order) -> Plan {
    order
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.pickup && l.unfulfilled() > 0)
        .map(|(i, l)| (i, l.unfulfilled()))
        .collect()
}

/// Plans `r.qty` units of a fulfil or cancel line on `order` — a kit line's components
/// together (kit units times component quantities), a plain line as it is — and returns the
/// units still unfulfilled there (in kit units for a kit), which the caller checks `r.qty`
/// against.
fn order_units(order: &Order, r: &Resolved, plan: &mut Plan) -> i64 {
    let Some(sku) = r.sku_idx else {
        return 0;
    };
    if let Some(k) = order
        .kits()
        .iter()
        .position(|k| k.kit == sku && k.loc == r.loc)
    {
        let (ordered, fulfilled, cancelled) = order.kit_units(k as u16);
        for part in order.kits()[k].composition.iter() {
            let i = order
                .lines
                .iter()
                .position(|l| l.kit == k as u16 && l.sku == part.sku)
                .expect("a kit line has every component line");
            plan.push((i, r.qty.saturating_mul(part.qty)));
        }
        return ordered - fulfilled - cancelled;
    }
    match order
        .lines
        .iter()
        .position(|l| l.sku == sku && l.loc == r.loc && l.kit == NO_KIT)
    {
        Some(i) => {
            plan.push((i, r.qty));
            order.lines[i].unfulfilled()
        }
        None => 0,
    }
}

/// An order's lines from its held lines: plain ones merged per (SKU, location), a kit line's
/// components per (kit line, SKU), the kit lines recorded in `extra`.
fn order_lines(
    held: &[Held],
    kits: &[KitLine],
    pickup: bool,
    mut extra: Option<&mut OrderExtra>,
) -> smallvec::SmallVec<[OrderLine; 2]> {
    let mut lines: smallvec::SmallVec<[OrderLine; 2]> = smallvec::SmallVec::new();
    for h in held {
        let kit = kits.iter().find(|k| k.line == h.line);
        let k = match (kit, extra.as_deref_mut()) {
            (Some(kit), Some(extra)) => order_kit(extra, kit, h.loc),
            _ => NO_KIT,
        };
        match lines
            .iter_mut()
            .find(|l| l.sku == h.sku && l.loc == h.loc && l.kit == k)
        {
            Some(line) => line.ordered += h.qty,
            None => lines.push(OrderLine {
                sku: h.sku,
                loc: h.loc,
                bal: h.bal,
                pickup,
                ordered: h.qty,
                fulfilled: 0,
                cancelled: 0,
                kit: k,
            }),
        }
    }
    lines
}

/// The index of the order's kit line of `kit` at `loc`, added if new.
fn order_kit(extra: &mut OrderExtra, kit: &KitLine, loc: LocIdx) -> u16 {
    if let Some(k) = extra
        .kits
        .iter()
        .position(|o| o.kit == kit.kit && o.loc == loc)
    {
        return k as u16;
    }
    extra.kits.push(OrderKit {
        kit: kit.kit,
        loc,
        composition: kit.composition.clone(),
    });
    (extra.kits.len() - 1) as u16
}

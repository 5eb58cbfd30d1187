//! Queries, evaluated as of a time (SPEC section 3, Queries).
//!
//! Between batches, holds and pickups whose deadline has passed are still in the state (the
//! next batch releases them). A query at time `now` first collects the deadlines in `(last
//! batch's time, now]` (O(log d + k) for k of them, nothing when none passed, k at most
//! [`limits::READ_LAPSED_STEPS_MAX`]; see [`Ledger::visit_lapsed`]) and subtracts them from
//! every balance and count it reports. Beyond that limit (a burst due in one millisecond), the
//! rest count as held until a batch sweeps them, like a backlog.
//!
//! What a read does NOT subtract is the backlog: holds and pickups due at or before the last
//! batch's time that the batches have not swept yet (a batch sweeps at most
//! [`limits::EXPIRY_STEPS_PER_BATCH`] steps). Writes count them as held until they are swept,
//! so reads do too: the balances, ATS and `nearby` rows, and the counts of `status`, are the
//! figures a write at the read's time sees (a `reserve` of more than the ATS a read showed is
//! refused with that ATS), and a read costs nothing per overdue hold, however long the
//! backlog. What names one object answers as the object does to every write: a hold past its
//! deadline is `expired`, a pickup past its deadline shows its units cancelled and is no longer
//! due, swept or not.

use rustc_hash::FxHashMap;

use crate::balance::Balance;
use crate::command::{Coordinates, Target};
use crate::ids::{ChannelId, ReservationId, RmaId, SkuId, TransferId};
use crate::ledger::{check_id, check_positive, invalid, key, ChanIdx, Deadline, Ledger, LocIdx};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Rejection};
use crate::query::{
    Answer, AvailabilityRow, AvailabilityRows, ChangeEvent, ChangesPage, LedgerStatus, NearbyRow,
    OrderLineView, OrderState, OrderView, Query, ReservationState, ReservationView, RmaLineView,
    RmaView, SkuAvailability, TransferView,
};
use crate::state::{BalIdx, Order, NO_KIT};
use crate::view_kits::KitScope;

/// Holds and pickups whose deadline passed after the last batch, as of the query time.
struct Pending {
    /// Balance key -> (reserved, allocated) that no longer count.
    released: FxHashMap<u64, (i64, i64)>,
}

impl Pending {
    fn adjust(&self, k: u64, mut b: Balance) -> Balance {
        if let Some((reserved, allocated)) = self.released.get(&k) {
            b.reserved -= reserved;
            b.allocated -= allocated;
        }
        b
    }
}

/// Where an availability query looks.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// One location.
    Location(LocIdx),
    /// A group's locations, in the group's order.
    Group(&'a [LocIdx]),
    /// Every location that has a balance of the SKU.
    All,
}

impl Ledger {
    /// Answers a query as of `now_ms` (the leader's clock for linearizable reads; a time
    /// before the last batch is raised to it). Errors are `not_found` and `invalid`.
    pub fn query(&self, query: &Query, now_ms: u64) -> Result<Answer, Rejection> {
        let now = now_ms.min(limits::TIMESTAMP_MS_MAX).max(self.state.now_ms);
        match query {
            Query::Availability {
                skus,
                target,
                channel,
            } => self
                .availability(skus, target, channel, now)
                .map(Answer::Availability),
            Query::Nearby {
                sku,
                center,
                radius_km,
                qty,
                channel,
            } => self
                .nearby(sku, *center, *radius_km, *qty, channel, now)
                .map(Answer::Nearby),
            Query::Reservation(id) => self.reservation_view(id, now).map(Answer::Reservation),
            Query::Order(id) => {
                let slot = self.order(id)?;
                Ok(Answer::Order(self.order_view(id, self.ord(slot), now)))
            }
            Query::Rma(id) => self.rma_view(id).map(Answer::Rma),
            Query::Transfer(id) => self.transfer_view(id).map(Answer::Transfer),
            Query::Changes { since, max } => self.changes(*since, *max).map(Answer::Changes),
            Query::ChangesAt {
                since,
                max,
                locations,
            } => self
                .changes_at(*since, *max, locations)
                .map(Answer::Changes),
            Query::Status => Ok(Answer::Status(self.status(now))),
            Query::Revoked => Ok(Answer::Revoked(self.revoked())),
            Query::Retention => Ok(Answer::Retention(self.config())),
            Query::SkuSearch { prefix, max } => {
                self.sku_search(prefix, *max).map(Answer::SkuSearch)
            }
            Query::Pickups { location, max } => {
                self.pickups_due(location, *max, now).map(Answer::Pickups)
            }
            Query::Location(id) => {
                let loc = self.location(id)?;
                Ok(Answer::Location(self.loc(loc).def.clone()))
            }
        }
    }

    /// Reservation `id` as of `now`: an active hold past its deadline shows as expired
    /// (the next batch releases it).
    fn reservation_view(&self, id: &ReservationId, now: u64) -> Result<ReservationView, Rejection> {
        check_id(id.as_str(), "reservation")?;
        let r = self
            .reservation_slot(id.as_str())
            .map(|slot| self.res(slot))
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Reservation,
                id: id.0.to_string(),
            })?;
        let state = match r.state {
            ReservationState::Active if r.expires_at_ms <= now => ReservationState::Expired,
            state => state,
        };
        Ok(ReservationView {
            id: id.clone(),
            state,
            channel: self.state.channels[r.channel as usize].clone(),
            lines: self.held_line_views(r),
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            customer: r.extra.as_ref().and_then(|e| e.customer.clone()),
        })
    }

    /// RMA `id`, with its lines' SKUs and locations by name.
    fn rma_view(&self, id: &RmaId) -> Result<RmaView, Rejection> {
        check_id(id.as_str(), "rma")?;
        let rma = self
            .rma_slot(id.as_str())
            .and_then(|slot| self.state.rmas.get(slot))
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Rma,
                id: id.0.to_string(),
            })?;
        Ok(RmaView {
            id: id.clone(),
            order: rma.order.clone(),
            lines: rma
                .lines
                .iter()
                .map(|l| RmaLineView {
                    sku: self.sku(l.sku).sku_id(),
                    qty: l.qty,
                    received_at: self.loc(l.loc).def.location.clone(),
                    disposition: l.disposition,
                })
                .collect(),
            received_at_ms: rma.received_at_ms,
            exchange_of: rma.exchange_of.clone(),
        })
    }

    /// Transfer `id`; units neither received nor damaged count as lost only once it is
    /// received (before that they are still on their way).
    fn transfer_view(&self, id: &TransferId) -> Result<TransferView, Rejection> {
        check_id(id.as_str(), "transfer")?;
        let t = self
            .transfer_slot(id.as_str())
            .and_then(|slot| self.state.transfers.get(slot))
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Transfer,
                id: id.0.to_string(),
            })?;
        Ok(TransferView {
            id: id.clone(),
            sku: self.sku(t.sku).sku_id(),
            from: self.loc(t.from).def.location.clone(),
            to: self.loc(t.to).def.location.clone(),
            qty: t.qty,
            state: t.state,
            received: t.received,
            damaged: t.damaged,
            lost: if t.state == crate::query::TransferState::Received {
                t.qty - t.received - t.damaged
            } else {
                0
            },
            shipped_at_ms: t.shipped_at_ms,
        })
    }

    /// Calls `f` with every hold and pickup that a read at `now` no longer counts: those whose
    /// deadline is after the last batch's time and at or before `now`, the first
    /// [`limits::READ_LAPSED_STEPS_MAX`] index entries of them in deadline order. The rest, and
    /// overdue ones that the batches have not swept yet (deadline at or before the last batch's
    /// time), still count, as they do for writes, and are never looked at (see the module
    /// doc). Returns the number of deadline index entries looked at: at most that limit.
    pub(crate) fn visit_lapsed(&self, now: u64, f: impl FnMut(&Deadline)) -> usize {
        self.ix
            .deadlines
            .visit_due_in(self.state.now_ms, now, limits::READ_LAPSED_STEPS_MAX, f)
    }

    /// Deadlines in `(last batch's time, now]`: their units no longer count (none: `None`).
    fn pending(&self, now: u64) -> Option<Pending> {
        let mut released: FxHashMap<u64, (i64, i64)> = FxHashMap::default();
        self.visit_lapsed(now, |deadline| match *deadline {
            Deadline::Hold(slot) => {
                for h in &self.res(slot).held {
                    released.entry(key(h.sku, h.loc)).or_default().0 += h.qty;
                }
            }
            Deadline::Pickup(slot) => {
                for l in self.ord(slot).lines.iter().filter(|l| l.pickup) {
                    released.entry(key(l.sku, l.loc)).or_default().1 += l.unfulfilled();
                }
            }
        });
        (!released.is_empty()).then_some(Pending { released })
    }

    /// The balance `bal` (of key `k`; none: zero) as of the query time.
    fn balance_at(&self, k: u64, bal: Option<BalIdx>, pending: Option<&Pending>) -> Balance {
        let b = bal.map(|b| self.bal(b)).unwrap_or_default();
        pending.map_or(b, |p| p.adjust(k, b))
    }

    /// Availability of each of `skus` over `target` as `channel` sees it, as of `now`.
    fn availability(
        &self,
        skus: &[SkuId],
        target: &Target,
        channel: &ChannelId,
        now: u64,
    ) -> Result<Vec<SkuAvailability>, Rejection> {
        if skus.is_empty() {
            return invalid(InvalidReason::NoLines);
        }
        if skus.len() > limits::QUERY_SKUS_MAX {
            return Err(Rejection::limit("QUERY_SKUS_MAX"));
        }
        let chan = self.lookup_channel(channel)?;
        let scope = self.scope(target)?;
        let pending = self.pending(now);
        let mut out = Vec::with_capacity(skus.len());
        for sku in skus {
            out.push(self.sku_availability(sku, scope, chan, pending.as_ref())?);
        }
        Ok(out)
    }

    /// The locations `target` names, checked once for the whole query.
    fn scope(&self, target: &Target) -> Result<Scope<'_>, Rejection> {
        match target {
            Target::Location(l) => Ok(Scope::Location(self.location(l)?)),
            Target::Group(g) => {
                check_id(g.as_str(), "group")?;
                let group = self
                    .state
                    .groups
                    .get(g)
                    .ok_or_else(|| Rejection::NotFound {
                        kind: ObjectKind::Group,
                        id: g.0.to_string(),
                    })?;
                Ok(Scope::Group(group))
            }
            Target::All => Ok(Scope::All),
        }
    }

    /// One SKU's rows over `scope` and their totals.
    fn sku_availability(
        &self,
        sku: &SkuId,
        scope: Scope<'_>,
        chan: Option<ChanIdx>,
        pending: Option<&Pending>,
    ) -> Result<SkuAvailability, Rejection> {
        let idx = self.lookup_sku(sku)?;
        let mut out = SkuAvailability {
            sku: sku.clone(),
            scale: idx.map_or(0, |s| self.sku(s).scale),
            rows: AvailabilityRows::new(),
            ats: 0,
            ats_pos: 0,
        };
        let Some(s) = idx else {
            // A SKU that exists nowhere has nothing anywhere; a query for one location still
            // answers with that location's (empty) row, as for a known SKU it does not stock.
            if let Scope::Location(loc) = scope {
                out.rows.push(AvailabilityRow {
                    location: self.loc(loc).def.location.clone(),
                    balance: Balance::default(),
                    ats: 0,
                    ats_pos: 0,
                });
            }
            return Ok(out);
        };
        if let Some(composition) = self.kit_of(s) {
            let scope = match scope {
                Scope::Location(loc) => KitScope::Location(loc),
                Scope::Group(group) => KitScope::Group(group),
                Scope::All => KitScope::All,
            };
            let balance = |part: u32, loc: LocIdx| {
                let k = Ledger::component_key(part, loc);
                self.balance_at(k, self.bal_of(part, loc), pending)
            };
            return Ok(self.kit_availability(sku, composition, scope, chan, balance));
        }
        let entry = self.sku(s);
        // A single location shows a row even without a balance; a group or `all` only the
        // locations that have one.
        let locs: smallvec::SmallVec<[(LocIdx, Option<BalIdx>); 16]> = match scope {
            Scope::Location(loc) => [(loc, entry.balance_at(loc))].into_iter().collect(),
            Scope::Group(group) => group
                .iter()
                .map(|&loc| (loc, entry.balance_at(loc)))
                .filter(|(_, bal)| bal.is_some())
                .collect(),
            Scope::All => entry.balances.iter().map(|&(l, b)| (l, Some(b))).collect(),
        };
        for (loc, bal) in locs {
            let row = self.availability_row(key(s, loc), loc, bal, chan, pending);
            // Saturating: sums over many locations near QTY_MAX could exceed i64.
            out.ats = out.ats.saturating_add(row.ats);
            out.ats_pos = out.ats_pos.saturating_add(row.ats_pos);
            out.rows.push(row);
        }
        Ok(out)
    }

    /// One location's row: its balance as of the query time, and what `chan` and POS may
    /// sell there (nothing where the location does not sell to them).
    fn availability_row(
        &self,
        k: u64,
        loc: LocIdx,
        bal: Option<BalIdx>,
        chan: Option<ChanIdx>,
        pending: Option<&Pending>,
    ) -> AvailabilityRow {
        let b = self.balance_at(k, bal, pending);
        let ats = if self.channel_allowed(loc, chan) {
            b.ats(Ledger::is_pos(chan))
        } else {
            0
        };
        let ats_pos = if self.channel_allowed(loc, Some(0)) {
            b.ats_pos()
        } else {
            0
        };
        AvailabilityRow {
            location: self.loc(loc).def.location.clone(),
            balance: b,
            ats,
            ats_pos,
        }
    }

    fn nearby(
        &self,
        sku: &SkuId,
        center: Coordinates,
        radius_km: u32,
        qty: i64,
        channel: &ChannelId,
        now: u64,
    ) -> Result<Vec<NearbyRow>, Rejection> {
        check_positive(qty)?;
        if radius_km == 0 || radius_km > limits::NEARBY_RADIUS_KM_MAX {
            return Err(Rejection::limit("NEARBY_RADIUS_KM_MAX"));
        }
        if !(-90_000_000..=90_000_000).contains(&center.lat_e6)
            || !(-180_000_000..=180_000_000).contains(&center.lon_e6)
        {
            return invalid(InvalidReason::BadCoordinates);
        }
        let chan = self.lookup_channel(channel)?;
        let Some(s) = self.lookup_sku(sku)? else {
            return Ok(Vec::new());
        };
        let pending = self.pending(now);
        if let Some(composition) = self.kit_of(s) {
            let balance = |part: u32, loc: LocIdx| {
                let k = Ledger::component_key(part, loc);
                self.balance_at(k, self.bal_of(part, loc), pending.as_ref())
            };
            let mut rows = self.kit_nearby(composition, center, radius_km, qty, chan, balance);
            sort_nearby(&mut rows);
            return Ok(rows);
        }
        let radius_m = u64::from(radius_km) * 1000;
        let mut rows = Vec::new();
        for &(loc, bal) in &self.sku(s).balances {
            let entry = self.loc(loc);
            let Some(coords) = entry.def.coordinates else {
                continue;
            };
            if !self.channel_allowed(loc, chan) {
                continue;
            }
            let distance_m = distance_m(center, coords);
            if distance_m > radius_m {
                continue;
            }
            let ats = self
                .balance_at(key(s, loc), Some(bal), pending.as_ref())
                .ats(Ledger::is_pos(chan));
            if ats >= qty {
                rows.push(NearbyRow {
                    location: entry.def.location.clone(),
                    kind: entry.def.kind,
                    pickup: entry.def.pickup,
                    distance_m,
                    ats,
                });
            }
        }
        sort_nearby(&mut rows);
        Ok(rows)
    }

    fn order_view(&self, id: &crate::ids::OrderId, order: &Order, now: u64) -> OrderView {
        // A pickup past its deadline shows its uncollected units as cancelled.
        let lapsed = !order.pickup_expired && order.pickup_deadline_ms.is_some_and(|d| d <= now);
        let mut lines: Vec<OrderLineView> = order
            .lines
            .iter()
            .filter(|l| l.kit == NO_KIT)
            .map(|l| {
                let lapsed_units = if lapsed && l.pickup {
                    l.unfulfilled()
                } else {
                    0
                };
                OrderLineView {
                    sku: self.sku(l.sku).sku_id(),
                    location: self.loc(l.loc).def.location.clone(),
                    pickup: l.pickup,
                    ordered: l.ordered,
                    fulfilled: l.fulfilled,
                    cancelled: l.cancelled + lapsed_units,
                }
            })
            .collect();
        lines.extend(self.kit_line_views(order, lapsed));
        let state = OrderState::from_totals(
            lines.iter().map(|l| l.ordered).sum(),
            lines.iter().map(|l| l.fulfilled).sum(),
            lines.iter().map(|l| l.cancelled).sum(),
        );
        OrderView {
            id: id.clone(),
            state,
            channel: self.state.channels[order.channel as usize].clone(),
            lines,
            returned: order
                .returned
                .iter()
                .map(|(s, q)| (self.sku(*s).sku_id(), *q))
                .collect(),
            pickup_deadline_ms: order.pickup_deadline_ms,
            ready_for_pickup: order.ready,
            created_at_ms: order.created_at_ms,
            customer: order.extra.as_ref().and_then(|e| e.customer.clone()),
            exchange_of: order.extra.as_ref().and_then(|e| e.exchange_of.clone()),
        }
    }

    fn changes(&self, since: u64, max: u32) -> Result<ChangesPage, Rejection> {
        if max == 0 || max > limits::CHANGES_PER_QUERY_MAX {
            return Err(Rejection::limit("CHANGES_PER_QUERY_MAX"));
        }
        let feed = &self.state.feed;
        // An event's sequence number is its position + 1.
        let oldest = feed.head() + 1;
        let start = since.max(oldest);
        let events: Vec<ChangeEvent> = feed
            .iter_from(start - 1)
            .take(max as usize)
            .enumerate()
            .map(|(i, e)| self.change_event(start + i as u64, e))
            .collect();
        let next = events
            .last()
            .map_or(start.min(feed.end() + 1), |e| e.seq + 1);
        Ok(ChangesPage {
            events,
            next,
            oldest,
            truncated: since != 0 && since < oldest,
        })
    }

    /// Counters as of `now`: holds whose deadline passed after the last batch are not live,
    /// and an order whose only unfulfilled units are such lapsed pickups is not open (SPEC
    /// section 3: "not in counts"). Overdue holds and pickups not yet swept still count, as
    /// for writes (see the module doc).
    fn status(&self, now: u64) -> LedgerStatus {
        let (mut lapsed_holds, mut lapsed_orders) = (0u64, 0u64);
        self.visit_lapsed(now, |deadline| match *deadline {
            Deadline::Hold(_) => lapsed_holds += 1,
            Deadline::Pickup(slot) => {
                let order = self.ord(slot);
                if order.lines.iter().all(|l| l.pickup || l.unfulfilled() == 0) {
                    lapsed_orders += 1;
                }
            }
        });
        LedgerStatus {
            applied_index: self.state.applied_index,
            now_ms: self.state.now_ms,
            skus: self.state.skus.end(),
            locations: self.state.locations.end(),
            balances: self.state.balances.end(),
            live_reservations: self.ix.live_reservations as u64 - lapsed_holds,
            open_orders: self.ix.open_orders as u64 - lapsed_orders,
            dedup_entries: self.state.dedup.len(),
            feed_next_seq: self.state.feed.end() + 1,
        }
    }
}

/// Nearest first (ties by location id), at most `NEARBY_RESULTS_MAX`.
fn sort_nearby(rows: &mut Vec<NearbyRow>) {
    rows.sort_by(|a, b| {
        a.distance_m
            .cmp(&b.distance_m)
            .then_with(|| a.location.cmp(&b.location))
    });
    rows.truncate(limits::NEARBY_RESULTS_MAX);
}

/// Great-circle distance in metres (haversine). A read-only computation for `nearby`: floating
/// point here never reaches the ledger's state.
pub(crate) fn distance_m(a: Coordinates, b: Coordinates) -> u64 {
    const EARTH_RADIUS_M: f64 = 6_371_000.0;
    let rad = |e6: i32| f64::from(e6) / 1e6 * std::f64::consts::PI / 180.0;
    let (lat1, lat2) = (rad(a.lat_e6), rad(b.lat_e6));
    let dlat = lat2 - lat1;
    let dlon = rad(b.lon_e6) - rad(a.lon_e6);
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    (2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()).round() as u64
}

#[cfg(test)]
mod tests;

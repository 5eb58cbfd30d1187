//! Reads added with kits and store alerts (SPEC section 3): a kit's availability from its
//! components, kit lines in order and hold views, and the change feed filtered by location.

use smallvec::SmallVec;

use crate::balance::Balance;
use crate::command::Coordinates;
use crate::ids::{LocationId, RequestId, SkuId};
use crate::ledger::{key, ChanIdx, Ledger, LocIdx, SkuIdx};
use crate::limits;
use crate::outcome::{InvalidReason, Rejection};
use crate::query::{
    AvailabilityRow, AvailabilityRows, ChangeEvent, ChangesPage, HeldLineView, NearbyRow,
    OrderLineView, SkuAvailability,
};
use crate::state::{unkey, Composition, EventRecord, Order, Reservation};

/// Where an availability query looks, for a kit.
pub(crate) enum KitScope<'a> {
    /// One location.
    Location(LocIdx),
    /// A group's locations, in the group's order.
    Group(&'a [LocIdx]),
    /// Every location.
    All,
}

impl Ledger {
    /// A kit's availability over `scope`: per location, the minimum over its components of
    /// `floor(component ATS / qty)` (`balance` gives a component's balance as of the query
    /// time); at a group or `all`, the sum over locations (each kit unit from ONE location).
    /// Rows carry no balance of their own (a kit has no stock).
    pub(crate) fn kit_availability(
        &self,
        sku: &SkuId,
        composition: &Composition,
        scope: KitScope<'_>,
        chan: Option<ChanIdx>,
        balance: impl Fn(SkuIdx, LocIdx) -> Balance,
    ) -> SkuAvailability {
        let first = self.sku(composition[0].sku);
        let locs: SmallVec<[LocIdx; 16]> = match scope {
            KitScope::Location(loc) => [loc].into_iter().collect(),
            KitScope::Group(group) => group
                .iter()
                .copied()
                .filter(|&loc| first.balance_at(loc).is_some())
                .collect(),
            KitScope::All => first.balances.iter().map(|&(loc, _)| loc).collect(),
        };
        let mut out = SkuAvailability {
            sku: sku.clone(),
            scale: 0,
            rows: AvailabilityRows::with_capacity(locs.len()),
            ats: 0,
            ats_pos: 0,
        };
        for loc in locs {
            let ats_for = |c: Option<ChanIdx>| {
                if self.channel_allowed(loc, c) {
                    self.kit_ats(composition, loc, Ledger::is_pos(c), &balance)
                } else {
                    0
                }
            };
            let row = AvailabilityRow {
                location: self.loc(loc).def.location.clone(),
                balance: Balance::default(),
                ats: ats_for(chan),
                ats_pos: ats_for(Some(0)),
            };
            out.ats = out.ats.saturating_add(row.ats);
            out.ats_pos = out.ats_pos.saturating_add(row.ats_pos);
            out.rows.push(row);
        }
        out
    }

    /// The wire form of feed event `e`, number `seq`.
    pub(crate) fn change_event(&self, seq: u64, e: &EventRecord) -> ChangeEvent {
        let (sku, loc) = unkey(e.key);
        ChangeEvent {
            seq,
            log_index: e.log_index,
            timestamp_ms: e.timestamp_ms,
            request_id: (e.request_id != 0).then_some(RequestId(e.request_id)),
            cause: e.cause,
            sku: self.sku(sku).sku_id(),
            location: self.loc(loc).def.location.clone(),
            balance: e.balance,
            shortfall: e.shortfall,
            author: self.author(e.author),
        }
    }

    /// The change feed from `since`, only events at `locations` (a store's alerts), scanning
    /// at most [`limits::CHANGES_SCANNED_PER_QUERY_MAX`] events.
    pub(crate) fn changes_at(
        &self,
        since: u64,
        max: u32,
        locations: &[LocationId],
    ) -> Result<ChangesPage, Rejection> {
        if max == 0 || max > limits::CHANGES_PER_QUERY_MAX {
            return Err(Rejection::limit("CHANGES_PER_QUERY_MAX"));
        }
        if locations.is_empty() {
            return Err(Rejection::invalid(InvalidReason::NoLines));
        }
        if locations.len() > limits::CHANGES_LOCATIONS_MAX {
            return Err(Rejection::limit("CHANGES_LOCATIONS_MAX"));
        }
        let mut wanted: SmallVec<[LocIdx; 8]> = SmallVec::new();
        for l in locations {
            wanted.push(self.location(l)?);
        }
        let feed = &self.state.feed;
        // An event's sequence number is its position + 1.
        let oldest = feed.head() + 1;
        let start = since.max(oldest);
        let mut events = Vec::new();
        let mut next = start.min(feed.end() + 1);
        for (i, e) in feed
            .iter_from(start - 1)
            .take(limits::CHANGES_SCANNED_PER_QUERY_MAX as usize)
            .enumerate()
        {
            let seq = start + i as u64;
            next = seq + 1;
            if wanted.contains(&unkey(e.key).1) {
                events.push(self.change_event(seq, e));
                if events.len() == max as usize {
                    break;
                }
            }
        }
        Ok(ChangesPage {
            events,
            next,
            oldest,
            truncated: since != 0 && since < oldest,
        })
    }

    /// Key of a component balance, for reads that adjust balances to the query time.
    pub(crate) fn component_key(sku: SkuIdx, loc: LocIdx) -> u64 {
        key(sku, loc)
    }

    /// A hold's lines as the client asked them: a kit line as kits per location.
    pub(crate) fn held_line_views(&self, r: &Reservation) -> Vec<HeldLineView> {
        let kits = r.extra.as_ref().map_or(&[][..], |e| &e.kits);
        crate::sourcing::request_lines(&r.held, kits)
            .iter()
            .map(|l| {
                let sku = kits.iter().find(|k| k.line == l.line).map_or_else(
                    || {
                        let h = r.held.iter().find(|h| h.line == l.line).expect("held");
                        h.sku
                    },
                    |k| k.kit,
                );
                HeldLineView {
                    line: l.line,
                    sku: self.sku(sku).sku_id(),
                    location: self.loc(l.loc).def.location.clone(),
                    qty: l.qty,
                }
            })
            .collect()
    }

    /// An order's kit lines in kit units (their component lines are not shown: they move
    /// together); `lapsed`: a passed pickup deadline shows uncollected kits as cancelled.
    pub(crate) fn kit_line_views(&self, order: &Order, lapsed: bool) -> Vec<OrderLineView> {
        (0..order.kits().len())
            .map(|k| {
                let kit = &order.kits()[k];
                let (ordered, fulfilled, cancelled) = order.kit_units(k as u16);
                let pickup = order
                    .component_line(k as u16, kit.composition[0].sku)
                    .is_some_and(|l| l.pickup);
                let lapsed_units = if lapsed && pickup {
                    ordered - fulfilled - cancelled
                } else {
                    0
                };
                OrderLineView {
                    sku: self.sku(kit.kit).sku_id(),
                    location: self.loc(kit.loc).def.location.clone(),
                    pickup,
                    ordered,
                    fulfilled,
                    cancelled: cancelled + lapsed_units,
                }
            })
            .collect()
    }

    /// Locations within `radius_km` of `center` with at least `qty` kits for `chan` (a kit's
    /// ATS there from its components, `balance` as of the query time); unsorted.
    pub(crate) fn kit_nearby(
        &self,
        composition: &Composition,
        center: Coordinates,
        radius_km: u32,
        qty: i64,
        chan: Option<ChanIdx>,
        balance: impl Fn(SkuIdx, LocIdx) -> Balance,
    ) -> Vec<NearbyRow> {
        let radius_m = u64::from(radius_km) * 1000;
        let first = self.sku(composition[0].sku);
        let mut rows = Vec::new();
        for &(loc, _) in &first.balances {
            let entry = self.loc(loc);
            let Some(coords) = entry.def.coordinates else {
                continue;
            };
            let distance_m = crate::view::distance_m(center, coords);
            if !self.channel_allowed(loc, chan) || distance_m > radius_m {
                continue;
            }
            let ats = self.kit_ats(composition, loc, Ledger::is_pos(chan), &balance);
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
        rows
    }
}

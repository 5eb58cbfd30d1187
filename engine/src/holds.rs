//! Reservations: sourcing, holds, extension, release and exact expiry (SPEC section 3,
//! Reservations).

use crate::command::{Line, Target};
use crate::ids::{ChannelId, ReservationId};
use crate::ledger::{
    check_id, check_positive, find_record, hash_str, index_record, invalid, key, rep_lines, BalIdx,
    ChanIdx, Deadline, Held, HeldVec, Ledger, LocIdx, ObjIdx, Remembered, RepLine, Retired, SkuIdx,
};
use crate::limits;
use crate::outcome::{Allocation, InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::query::{Cause, ReservationState};
use crate::state::Reservation;

/// Checks a duration in 1..=max ms.
pub(crate) fn check_duration(ms: u64, max: u64) -> Result<(), Rejection> {
    if ms == 0 || ms > max {
        invalid(InvalidReason::BadDuration)
    } else {
        Ok(())
    }
}

/// Checks the number of lines of a request.
pub(crate) fn check_line_count(n: usize) -> Result<(), Rejection> {
    if n == 0 {
        invalid(InvalidReason::NoLines)
    } else if n > limits::LINES_PER_REQUEST_MAX {
        Err(Rejection::limit("LINES_PER_REQUEST_MAX"))
    } else {
        Ok(())
    }
}

/// Units already taken by earlier lines of the same request, per balance key.
#[derive(Default)]
struct Taken(smallvec::SmallVec<[(u64, i64); 4]>);

impl Taken {
    fn get(&self, k: u64) -> i64 {
        self.0
            .iter()
            .find(|(key, _)| *key == k)
            .map_or(0, |(_, q)| *q)
    }

    fn add(&mut self, k: u64, qty: i64) -> i64 {
        match self.0.iter_mut().find(|(key, _)| *key == k) {
            Some((_, q)) => {
                *q += qty;
                *q
            }
            None => {
                self.0.push((k, qty));
                qty
            }
        }
    }
}

/// A line after pass 1 of sourcing: its SKU (if known) and, for a direct location line, the
/// location and balance that serve it.
type Resolved = (Option<SkuIdx>, Option<(LocIdx, BalIdx)>);

/// What the sourcing of a request must respect.
#[derive(Clone, Copy)]
pub(crate) struct SourcingRules {
    /// The channel (its index if known; unknown channels sell only where all may sell).
    pub channel: Option<ChanIdx>,
    /// Only locations that offer pickup (pickup orders).
    pub pickup: bool,
}

impl Ledger {
    /// Chooses the location(s) and quantity of every line, all or nothing, without changing
    /// anything (SPEC section 3, reserve). Demand for the same (SKU, location) inside the
    /// request is summed before checking; group and `all` lines take, in the group's order,
    /// the first location that can serve the whole line, else split greedily in that order.
    pub(crate) fn source(
        &self,
        rules: SourcingRules,
        lines: &[Line],
    ) -> Result<HeldVec, Rejection> {
        check_line_count(lines.len())?;
        let pos = Ledger::is_pos(rules.channel);
        let mut taken = Taken::default();
        // Pass 1: direct location lines, summed per key, checked against ATS.
        let mut resolved: smallvec::SmallVec<[Resolved; 4]> =
            smallvec::SmallVec::with_capacity(lines.len());
        for line in lines {
            check_positive(line.qty)?;
            let sku = self.lookup_sku(&line.sku)?;
            let loc = match &line.target {
                Target::Location(l) => {
                    let loc = self.location(l)?;
                    self.check_sellable_here(loc, rules, l)?;
                    Some(loc)
                }
                Target::Group(g) => {
                    check_id(g.as_str(), "group")?;
                    if !self.state.groups.contains_key(g) {
                        return Err(Rejection::NotFound {
                            kind: ObjectKind::Group,
                            id: g.0.clone(),
                        });
                    }
                    None
                }
                Target::All => None,
            };
            let mut direct = None;
            if let (Some(loc), Target::Location(l)) = (loc, &line.target) {
                let bal = sku.and_then(|s| self.bal_of(s, loc));
                let available = bal.map_or(0, |b| self.bal(b).ats(pos));
                let k = sku.map_or(u64::MAX, |s| key(s, loc));
                let demand = taken.add(k, line.qty);
                let Some(bal) = bal.filter(|_| demand <= available) else {
                    return Err(Rejection::InsufficientStock {
                        sku: line.sku.clone(),
                        at: l.0.clone(),
                        requested: demand,
                        available,
                    });
                };
                direct = Some((loc, bal));
            }
            resolved.push((sku, direct));
        }
        // Pass 2: every line in order; group lines take what direct lines left.
        let mut held = HeldVec::with_capacity(lines.len());
        for (i, (line, (sku, direct))) in lines.iter().zip(resolved).enumerate() {
            let line_no = i as u16;
            match (sku, direct) {
                (Some(sku), Some((loc, bal))) => held.push(Held {
                    line: line_no,
                    sku,
                    loc,
                    bal,
                    qty: line.qty,
                }),
                (Some(sku), None) => {
                    self.source_line(rules, line, line_no, sku, &mut taken, &mut held)?
                }
                (None, _) => {
                    return Err(Rejection::InsufficientStock {
                        sku: line.sku.clone(),
                        at: target_name(&line.target),
                        requested: line.qty,
                        available: 0,
                    })
                }
            }
        }
        Ok(held)
    }

    /// Whether `rules` allow taking stock at `loc`, as a typed rejection.
    fn check_sellable_here(
        &self,
        loc: LocIdx,
        rules: SourcingRules,
        id: &crate::ids::LocationId,
    ) -> Result<(), Rejection> {
        if !self.channel_allowed(loc, rules.channel) {
            let channel = rules.channel.map_or_else(
                || ChannelId::from("?"),
                |c| self.state.channels[c as usize].clone(),
            );
            return Err(Rejection::ChannelNotAllowed {
                location: id.clone(),
                channel,
            });
        }
        if rules.pickup && !self.loc(loc).def.pickup {
            return invalid(InvalidReason::PickupNotOffered {
                location: id.clone(),
            });
        }
        Ok(())
    }

    /// Sources one group or `all` line.
    fn source_line(
        &self,
        rules: SourcingRules,
        line: &Line,
        line_no: u16,
        sku: SkuIdx,
        taken: &mut Taken,
        held: &mut HeldVec,
    ) -> Result<(), Rejection> {
        let pos = Ledger::is_pos(rules.channel);
        // Candidates in sourcing order, with their balance (none: nothing there).
        let entry = self.sku(sku);
        let candidates: smallvec::SmallVec<[(LocIdx, Option<BalIdx>); 16]> = match &line.target {
            Target::Group(g) => self.state.groups[g]
                .iter()
                .map(|&loc| (loc, entry.balance_at(loc)))
                .collect(),
            _ => entry.balances.iter().map(|&(l, b)| (l, Some(b))).collect(),
        };
        let eligible = |loc: LocIdx| {
            self.channel_allowed(loc, rules.channel) && (!rules.pickup || self.loc(loc).def.pickup)
        };
        let remaining = |(loc, bal): (LocIdx, Option<BalIdx>), taken: &Taken| {
            bal.map_or(0, |b| {
                (self.bal(b).ats(pos) - taken.get(key(sku, loc))).max(0)
            })
        };
        // One location that can serve the whole line, first in order.
        if let Some(&(loc, bal)) = candidates
            .iter()
            .find(|&&c| eligible(c.0) && remaining(c, taken) >= line.qty)
        {
            taken.add(key(sku, loc), line.qty);
            held.push(Held {
                line: line_no,
                sku,
                loc,
                bal: bal.expect("a balance serves the line"),
                qty: line.qty,
            });
            return Ok(());
        }
        // Otherwise split, in order.
        // Saturating: thousands of locations near QTY_MAX could exceed i64; any total above
        // the line's quantity means the same.
        let total: i64 = candidates
            .iter()
            .filter(|c| eligible(c.0))
            .fold(0i64, |sum, &c| sum.saturating_add(remaining(c, taken)));
        if total < line.qty {
            return Err(Rejection::InsufficientStock {
                sku: line.sku.clone(),
                at: target_name(&line.target),
                requested: line.qty,
                available: total,
            });
        }
        let mut left = line.qty;
        for &(loc, bal) in candidates.iter().filter(|c| eligible(c.0)) {
            let take = remaining((loc, bal), taken).min(left);
            if take > 0 {
                taken.add(key(sku, loc), take);
                held.push(Held {
                    line: line_no,
                    sku,
                    loc,
                    bal: bal.expect("a balance serves the line"),
                    qty: take,
                });
                left -= take;
            }
            if left == 0 {
                break;
            }
        }
        assert_eq!(left, 0, "split sourcing covers the line");
        Ok(())
    }

    /// The reply's view of remembered lines.
    pub(crate) fn allocations(&self, lines: &[RepLine]) -> Vec<Allocation> {
        lines
            .iter()
            .map(|l| Allocation {
                line: l.line,
                location: self.loc(l.loc).def.location.clone(),
                qty: l.qty,
            })
            .collect()
    }

    pub(crate) fn reserve(
        &mut self,
        id: &ReservationId,
        channel: &ChannelId,
        lines: &[Line],
        ttl_ms: u64,
    ) -> Result<Remembered, Rejection> {
        check_id(id.as_str(), "reservation")?;
        check_duration(ttl_ms, limits::TTL_MS_MAX)?;
        let hash = hash_str(id.as_str());
        let (state, ix) = (&self.state, &self.ix);
        if find_record(
            &ix.reservation,
            &state.reservations,
            state,
            id.as_str(),
            hash,
        )
        .is_some()
        {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Reservation,
                id: id.0.clone(),
            });
        }
        if self.ix.live_reservations >= limits::RESERVATIONS_LIVE_MAX {
            return Err(Rejection::limit("RESERVATIONS_LIVE_MAX"));
        }
        let chan = self.lookup_channel(channel)?;
        self.channel_room(chan)?;
        let held = self.source(
            SourcingRules {
                channel: chan,
                pickup: false,
            },
            lines,
        )?;
        // Checks done: commit.
        let chan = self.intern_resolved_channel(channel, chan);
        for h in &held {
            self.shift(h, h.qty, 0, Cause::Reserve);
        }
        let seq = self.next_seq();
        let expires_at_ms = self.deadline(ttl_ms);
        let lines = rep_lines(&held);
        let slot = self.state.reservations.insert(Reservation {
            id: crate::state::IdBuf::new(id.as_str()),
            seq,
            channel: chan,
            created_at_ms: self.state.now_ms,
            expires_at_ms,
            state: ReservationState::Active,
            held,
            retired_pos: None,
        });
        index_record(
            &mut self.ix.reservation,
            &self.state.reservations,
            slot,
            hash,
        );
        self.ix
            .deadlines
            .insert(expires_at_ms, seq, Deadline::Hold(slot));
        self.ix.live_reservations += 1;
        Ok(Remembered::Reserved {
            expires_at_ms,
            lines,
        })
    }

    /// The slot of reservation `id` if it is active, or the rejection its state calls for.
    pub(crate) fn active_reservation(&self, id: &ReservationId) -> Result<ObjIdx, Rejection> {
        check_id(id.as_str(), "reservation")?;
        let slot = self
            .reservation_slot(id.as_str())
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Reservation,
                id: id.0.clone(),
            })?;
        let r = self.res(slot);
        match r.state {
            ReservationState::Active => {
                debug_assert!(
                    r.expires_at_ms > self.state.now_ms,
                    "expired holds are swept first"
                );
                Ok(slot)
            }
            ReservationState::Expired => Err(Rejection::Expired {
                kind: ObjectKind::Reservation,
            }),
            state => Err(Rejection::InvalidState {
                kind: ObjectKind::Reservation,
                state: state.as_str().to_owned(),
            }),
        }
    }

    pub(crate) fn extend(&mut self, id: &ReservationId, ttl_ms: u64) -> Outcome {
        check_duration(ttl_ms, limits::TTL_MS_MAX)?;
        let slot = self.active_reservation(id)?;
        let r = self.res(slot);
        let (old, seq) = (r.expires_at_ms, r.seq);
        let expires_at_ms = self.deadline(ttl_ms);
        let entry = self.ix.deadlines.remove(old, seq);
        assert_eq!(
            entry,
            Some(Deadline::Hold(slot)),
            "an active hold has a deadline"
        );
        self.ix
            .deadlines
            .insert(expires_at_ms, seq, Deadline::Hold(slot));
        if let Some(r) = self.state.reservations.get_mut(slot) {
            r.expires_at_ms = expires_at_ms;
        }
        Ok(Reply::Extended { expires_at_ms })
    }

    pub(crate) fn release(&mut self, id: &ReservationId) -> Outcome {
        let slot = self.active_reservation(id)?;
        self.end_hold(slot, ReservationState::Released, Cause::Release, 0);
        Ok(Reply::Done)
    }

    /// Ends the active hold in `slot`: gives back its reserved units (moving them to
    /// `allocated` if the hold becomes an order: then `allocated_share` is 1) and retires it.
    pub(crate) fn end_hold(
        &mut self,
        slot: ObjIdx,
        state: ReservationState,
        cause: Cause,
        allocated_share: i64,
    ) {
        let r = self
            .state
            .reservations
            .get_mut(slot)
            .expect("end_hold on a missing reservation");
        assert_eq!(r.state, ReservationState::Active);
        r.state = state;
        let (expires_at, seq) = (r.expires_at_ms, r.seq);
        let held = r.held.clone();
        for h in &held {
            self.shift(h, -h.qty, h.qty * allocated_share, cause);
        }
        // An expired hold's deadline was popped already: looking it up again would probe the
        // deadline table for a missing key once per expired hold.
        if cause != Cause::Expire {
            self.ix.deadlines.remove(expires_at, seq);
        }
        self.ix.live_reservations -= 1;
        let pos = self.retire(Retired::Reservation(slot));
        if let Some(r) = self.state.reservations.get_mut(slot) {
            r.retired_pos = Some(pos);
        }
    }

    /// Releases every hold and cancels every pickup whose deadline is <= now, in (deadline,
    /// creation) order. Costs O(k) for k deadlines passed.
    pub(crate) fn expire_deadlines(&mut self) {
        while let Some((_, what)) = self.ix.deadlines.pop_due(self.state.now_ms) {
            match what {
                Deadline::Hold(slot) => {
                    self.end_hold(slot, ReservationState::Expired, Cause::Expire, 0);
                }
                Deadline::Pickup(slot) => self.expire_pickup(slot),
            }
        }
    }
}

/// The name of a target in rejections: the location or group id, or `all`.
pub(crate) fn target_name(target: &Target) -> String {
    match target {
        Target::Location(l) => l.0.clone(),
        Target::Group(g) => g.0.clone(),
        Target::All => "all".to_owned(),
    }
}

//! Reservations: sourcing, holds, extension, release and exact expiry (SPEC section 3,
//! Reservations).

use crate::command::{Line, Target};
use crate::ids::{ChannelId, ReservationId};
use crate::ledger::{
    check_id, check_positive, invalid, key, ChanIdx, Deadline, Held, HeldVec, Key, Ledger, LocIdx,
    Remembered, Reservation, Retired, SkuIdx,
};
use crate::limits;
use crate::outcome::{Allocation, InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::query::{Cause, ReservationState};

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
        let mut resolved: smallvec::SmallVec<[(Option<SkuIdx>, Option<LocIdx>); 4]> =
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
                    if !self.groups.contains_key(g) {
                        return Err(Rejection::NotFound {
                            kind: ObjectKind::Group,
                            id: g.0.clone(),
                        });
                    }
                    None
                }
                Target::All => None,
            };
            resolved.push((sku, loc));
            if let (Some(loc), Target::Location(l)) = (loc, &line.target) {
                let available = sku.map_or(0, |s| self.balance(s, loc).ats(pos));
                let k = sku.map_or(u64::MAX, |s| key(s, loc));
                let demand = taken.add(k, line.qty);
                if sku.is_none() || demand > available {
                    return Err(Rejection::InsufficientStock {
                        sku: line.sku.clone(),
                        at: l.0.clone(),
                        requested: demand,
                        available,
                    });
                }
            }
        }
        // Pass 2: every line in order; group lines take what direct lines left.
        let mut held = HeldVec::with_capacity(lines.len());
        for (i, (line, (sku, loc))) in lines.iter().zip(resolved).enumerate() {
            let line_no = i as u16;
            match (sku, loc) {
                (Some(sku), Some(loc)) => held.push(Held {
                    line: line_no,
                    sku,
                    loc,
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
                |c| self.channels[c as usize].clone(),
            );
            return Err(Rejection::ChannelNotAllowed {
                location: id.clone(),
                channel,
            });
        }
        if rules.pickup && !self.locations[loc as usize].def.pickup {
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
        let candidates: &[LocIdx] = match &line.target {
            Target::Group(g) => &self.groups[g],
            _ => &self.skus[sku as usize].locations,
        };
        let eligible = |loc: LocIdx| {
            self.channel_allowed(loc, rules.channel)
                && (!rules.pickup || self.locations[loc as usize].def.pickup)
        };
        let remaining = |loc: LocIdx, taken: &Taken| {
            let k = key(sku, loc);
            (self.balance(sku, loc).ats(pos) - taken.get(k)).max(0)
        };
        // One location that can serve the whole line, first in order.
        if let Some(&loc) = candidates
            .iter()
            .find(|&&loc| eligible(loc) && remaining(loc, taken) >= line.qty)
        {
            taken.add(key(sku, loc), line.qty);
            held.push(Held {
                line: line_no,
                sku,
                loc,
                qty: line.qty,
            });
            return Ok(());
        }
        // Otherwise split, in order.
        // Saturating: thousands of locations near QTY_MAX could exceed i64; any total above
        // the line's quantity means the same.
        let total: i64 = candidates
            .iter()
            .filter(|&&l| eligible(l))
            .fold(0i64, |sum, &l| sum.saturating_add(remaining(l, taken)));
        if total < line.qty {
            return Err(Rejection::InsufficientStock {
                sku: line.sku.clone(),
                at: target_name(&line.target),
                requested: line.qty,
                available: total,
            });
        }
        let mut left = line.qty;
        for &loc in candidates.iter().filter(|&&l| eligible(l)) {
            let take = remaining(loc, taken).min(left);
            if take > 0 {
                taken.add(key(sku, loc), take);
                held.push(Held {
                    line: line_no,
                    sku,
                    loc,
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

    /// The reply's view of held lines.
    pub(crate) fn allocations(&self, held: &[Held]) -> Vec<Allocation> {
        held.iter()
            .map(|h| Allocation {
                line: h.line,
                location: self.locations[h.loc as usize].def.location.clone(),
                qty: h.qty,
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
        if self.reservations.contains_key(id.as_str()) {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Reservation,
                id: id.0.clone(),
            });
        }
        if self.live_reservations >= limits::RESERVATIONS_LIVE_MAX {
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
            self.shift(h.sku, h.loc, h.qty, 0, Cause::Reserve);
        }
        let seq = self.next_seq();
        let expires_at_ms = self.deadline(ttl_ms);
        let key: Key = Key::from(id.as_str());
        self.deadlines
            .insert(expires_at_ms, seq, Deadline::Hold(key.clone()));
        self.reservations.insert(
            key,
            Reservation {
                seq,
                channel: chan,
                created_at_ms: self.now_ms,
                expires_at_ms,
                state: ReservationState::Active,
                held: held.clone(),
            },
        );
        self.live_reservations += 1;
        Ok(Remembered::Reserved {
            expires_at_ms,
            held,
        })
    }

    /// The reservation `id` if it is active, or the rejection its state calls for.
    pub(crate) fn active_reservation(&self, id: &ReservationId) -> Result<&Reservation, Rejection> {
        check_id(id.as_str(), "reservation")?;
        let r = self
            .reservations
            .get(id.as_str())
            .ok_or_else(|| Rejection::NotFound {
                kind: ObjectKind::Reservation,
                id: id.0.clone(),
            })?;
        match r.state {
            ReservationState::Active => {
                debug_assert!(
                    r.expires_at_ms > self.now_ms,
                    "expired holds are swept first"
                );
                Ok(r)
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
        let r = self.active_reservation(id)?;
        let (old, seq) = (r.expires_at_ms, r.seq);
        let expires_at_ms = self.deadline(ttl_ms);
        let entry = self.deadlines.remove(old, seq);
        let Some(Deadline::Hold(key)) = entry else {
            unreachable!("an active hold has a deadline")
        };
        self.deadlines
            .insert(expires_at_ms, seq, Deadline::Hold(key));
        if let Some(r) = self.reservations.get_mut(id.as_str()) {
            r.expires_at_ms = expires_at_ms;
        }
        Ok(Reply::Extended { expires_at_ms })
    }

    pub(crate) fn release(&mut self, id: &ReservationId) -> Outcome {
        self.active_reservation(id)?;
        self.end_hold(id.as_str(), ReservationState::Released, Cause::Release, 0);
        Ok(Reply::Done)
    }

    /// Ends an active hold: gives back its reserved units (moving them to `allocate` if the
    /// hold becomes an order: then `allocated_share` is 1) and retires it.
    pub(crate) fn end_hold(
        &mut self,
        id: &str,
        state: ReservationState,
        cause: Cause,
        allocated_share: i64,
    ) {
        let Some(key) = self.reservations.get_key_value(id).map(|(k, _)| k.clone()) else {
            unreachable!("end_hold on a missing reservation")
        };
        let Some(r) = self.reservations.get_mut(id) else {
            unreachable!("end_hold on a missing reservation")
        };
        assert_eq!(r.state, ReservationState::Active);
        r.state = state;
        let (expires_at, seq) = (r.expires_at_ms, r.seq);
        let held = std::mem::take(&mut r.held);
        for h in &held {
            self.shift(h.sku, h.loc, -h.qty, h.qty * allocated_share, cause);
        }
        if let Some(r) = self.reservations.get_mut(id) {
            r.held = held;
        }
        // Already gone when the deadline itself fired.
        self.deadlines.remove(expires_at, seq);
        self.live_reservations -= 1;
        self.retire(Retired::Reservation(key));
    }

    /// Releases every hold and cancels every pickup whose deadline is <= now, in (deadline,
    /// creation) order. Costs O(k log n) for k deadlines passed.
    pub(crate) fn expire_deadlines(&mut self) {
        while let Some((_, what)) = self.deadlines.pop_due(self.now_ms) {
            match what {
                Deadline::Hold(id) => {
                    self.end_hold(&id, ReservationState::Expired, Cause::Expire, 0);
                }
                Deadline::Pickup(order) => self.expire_pickup(&order),
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

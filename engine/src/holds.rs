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

/// A line after pass 1 of sourcing.
#[derive(Clone, Copy)]
struct Resolved {
    /// Its SKU (none: the SKU exists nowhere, so the line cannot be served).
    sku: Option<SkuIdx>,
    /// For a direct location line, the location and balance that serve it (its units are
    /// already counted in [`Taken`]); none for group and `all` lines.
    direct: Option<Direct>,
}

/// The location and balance that serve a direct location line.
#[derive(Clone, Copy)]
struct Direct {
    loc: LocIdx,
    bal: BalIdx,
}

/// A location a group or `all` line may take from, in sourcing order, with its balance
/// (none: the SKU has nothing there).
#[derive(Clone, Copy)]
struct Candidate {
    loc: LocIdx,
    bal: Option<BalIdx>,
}

/// The candidates of one line: up to 16 stay on the stack (no allocation per line for small
/// groups), more spill to the heap.
type Candidates = smallvec::SmallVec<[Candidate; 16]>;

/// What the sourcing of a request must respect.
#[derive(Clone, Copy)]
pub(crate) struct SourcingRules {
    /// The channel (its index if known; unknown channels sell only where all may sell).
    pub channel: Option<ChanIdx>,
    /// Only locations that offer pickup (pickup orders).
    pub pickup: bool,
}

/// The rules of one group or `all` line, applied to its candidates.
struct LineSourcing<'a> {
    ledger: &'a Ledger,
    rules: SourcingRules,
    /// Whether the channel is POS (which sees the units held back for POS).
    pos: bool,
    sku: SkuIdx,
}

impl LineSourcing<'_> {
    /// Whether the rules allow taking from the candidate at all.
    fn eligible(&self, c: Candidate) -> bool {
        let ledger = self.ledger;
        ledger.channel_allowed(c.loc, self.rules.channel)
            && (!self.rules.pickup || ledger.loc(c.loc).def.pickup)
    }

    /// The units still available at the candidate after earlier lines of the request.
    fn remaining(&self, c: Candidate, taken: &Taken) -> i64 {
        c.bal.map_or(0, |b| {
            (self.ledger.bal(b).ats(self.pos) - taken.get(key(self.sku, c.loc))).max(0)
        })
    }

    /// The units available at all eligible candidates. Saturating: thousands of locations
    /// near QTY_MAX could exceed i64; any total above the line's quantity means the same.
    fn total(&self, candidates: &[Candidate], taken: &Taken) -> i64 {
        candidates
            .iter()
            .filter(|&&c| self.eligible(c))
            .fold(0i64, |sum, &c| sum.saturating_add(self.remaining(c, taken)))
    }
}

/// The checks of a new reservation that the commit reuses, so it does not look them up again.
struct NewReservation {
    /// The hash of its id, for the id index.
    hash: u32,
    /// Its channel's index if the channel is known (an unknown one is interned at commit).
    chan: Option<ChanIdx>,
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
        // Pass 1: direct location lines first, so that group lines (pass 2) only take what
        // the direct lines of the same request leave.
        let mut resolved: smallvec::SmallVec<[Resolved; 4]> =
            smallvec::SmallVec::with_capacity(lines.len());
        for line in lines {
            resolved.push(self.resolve_line(rules, pos, line, &mut taken)?);
        }
        // Pass 2: every line in order; group lines take what direct lines left.
        let mut held = HeldVec::with_capacity(lines.len());
        for (i, (line, r)) in lines.iter().zip(resolved).enumerate() {
            let line_no = i as u16;
            match (r.sku, r.direct) {
                (Some(sku), Some(Direct { loc, bal })) => held.push(Held {
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

    /// Pass 1 of sourcing for one line: checks it and its target, and serves a direct
    /// location line (counting its units in `taken`). Inlined: it runs once per line of
    /// every reservation, and the call would sit on the reserve hot path.
    #[inline]
    fn resolve_line(
        &self,
        rules: SourcingRules,
        pos: bool,
        line: &Line,
        taken: &mut Taken,
    ) -> Result<Resolved, Rejection> {
        check_positive(line.qty)?;
        let sku = self.lookup_sku(&line.sku)?;
        let direct = match &line.target {
            Target::Location(l) => {
                let loc = self.location(l)?;
                self.check_sellable_here(loc, rules, l)?;
                Some(self.serve_direct(sku, loc, line, l, pos, taken)?)
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
        Ok(Resolved { sku, direct })
    }

    /// The balance that serves `line` (of `sku`) at `loc` (location `id`), given what
    /// earlier lines of the request took there: demand is summed per (SKU, location) so two
    /// lines cannot both count the same units. An unknown SKU has nothing anywhere; its key
    /// (`u64::MAX`) still sums its demand for the rejection.
    #[inline]
    fn serve_direct(
        &self,
        sku: Option<SkuIdx>,
        loc: LocIdx,
        line: &Line,
        id: &crate::ids::LocationId,
        pos: bool,
        taken: &mut Taken,
    ) -> Result<Direct, Rejection> {
        let bal = sku.and_then(|s| self.bal_of(s, loc));
        let available = bal.map_or(0, |b| self.bal(b).ats(pos));
        let k = sku.map_or(u64::MAX, |s| key(s, loc));
        let demand = taken.add(k, line.qty);
        let Some(bal) = bal.filter(|_| demand <= available) else {
            return Err(Rejection::InsufficientStock {
                sku: line.sku.clone(),
                at: id.0.clone(),
                requested: demand,
                available,
            });
        };
        Ok(Direct { loc, bal })
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

    /// Sources one group or `all` line: the first eligible location that can serve the whole
    /// line (one shipment is cheaper than several), else a greedy split in sourcing order.
    fn source_line(
        &self,
        rules: SourcingRules,
        line: &Line,
        line_no: u16,
        sku: SkuIdx,
        taken: &mut Taken,
        held: &mut HeldVec,
    ) -> Result<(), Rejection> {
        let candidates = self.candidates(&line.target, sku);
        let sourcing = LineSourcing {
            ledger: self,
            rules,
            pos: Ledger::is_pos(rules.channel),
            sku,
        };
        let mut take = |loc: LocIdx, bal: Option<BalIdx>, qty: i64, taken: &mut Taken| {
            taken.add(key(sku, loc), qty);
            held.push(Held {
                line: line_no,
                sku,
                loc,
                bal: bal.expect("a balance serves the line"),
                qty,
            });
        };
        // One location that can serve the whole line, first in order.
        if let Some(&c) = candidates
            .iter()
            .find(|&&c| sourcing.eligible(c) && sourcing.remaining(c, taken) >= line.qty)
        {
            take(c.loc, c.bal, line.qty, taken);
            return Ok(());
        }
        // Otherwise split, in order, but only if the eligible locations can cover it all.
        let total = sourcing.total(&candidates, taken);
        if total < line.qty {
            return Err(Rejection::InsufficientStock {
                sku: line.sku.clone(),
                at: target_name(&line.target),
                requested: line.qty,
                available: total,
            });
        }
        let mut left = line.qty;
        for &c in candidates.iter().filter(|&&c| sourcing.eligible(c)) {
            let qty = sourcing.remaining(c, taken).min(left);
            if qty > 0 {
                take(c.loc, c.bal, qty, taken);
                left -= qty;
            }
            if left == 0 {
                break;
            }
        }
        assert_eq!(left, 0, "split sourcing covers the line");
        Ok(())
    }

    /// The locations a group or `all` line may take `sku` from, in sourcing order: a group's
    /// own order, or, for `all`, every location that has a balance of the SKU.
    fn candidates(&self, target: &Target, sku: SkuIdx) -> Candidates {
        let entry = self.sku(sku);
        match target {
            Target::Group(g) => self.state.groups[g]
                .iter()
                .map(|&loc| Candidate {
                    loc,
                    bal: entry.balance_at(loc),
                })
                .collect(),
            _ => entry
                .balances
                .iter()
                .map(|&(loc, bal)| Candidate {
                    loc,
                    bal: Some(bal),
                })
                .collect(),
        }
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

    /// Places a hold on every line of the request, all or nothing (SPEC section 3, reserve):
    /// checks, then sources without changing anything, then commits.
    pub(crate) fn reserve(
        &mut self,
        id: &ReservationId,
        channel: &ChannelId,
        lines: &[Line],
        ttl_ms: u64,
    ) -> Result<Remembered, Rejection> {
        let new = self.check_new_reservation(id, channel, ttl_ms)?;
        let held = self.source(
            SourcingRules {
                channel: new.chan,
                pickup: false,
            },
            lines,
        )?;
        Ok(self.commit_reservation(id, channel, new, held, ttl_ms))
    }

    /// The checks of `reserve` that come before sourcing: the id is new, the duration and the
    /// live-hold and channel limits allow one more hold. Cheap checks first, so a rejected
    /// request costs no sourcing.
    #[inline]
    fn check_new_reservation(
        &self,
        id: &ReservationId,
        channel: &ChannelId,
        ttl_ms: u64,
    ) -> Result<NewReservation, Rejection> {
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
        Ok(NewReservation { hash, chan })
    }

    /// Commits a checked and sourced reservation: moves the held units to `reserved`, stores
    /// the hold, indexes it by id and schedules its expiry. Cannot fail: every check is done.
    #[inline]
    fn commit_reservation(
        &mut self,
        id: &ReservationId,
        channel: &ChannelId,
        new: NewReservation,
        held: HeldVec,
        ttl_ms: u64,
    ) -> Remembered {
        let chan = self.intern_resolved_channel(channel, new.chan);
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
            new.hash,
        );
        self.ix
            .deadlines
            .insert(expires_at_ms, seq, Deadline::Hold(slot));
        self.ix.live_reservations += 1;
        Remembered::Reserved {
            expires_at_ms,
            lines,
        }
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

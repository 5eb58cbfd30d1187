//! Reservations: sourcing, holds, extension, release and exact expiry (SPEC section 3,
//! Reservations).

use crate::command::Line;
use crate::ids::{ChannelId, CustomerId, ReservationId};
use crate::ledger::{
    check_id, hash_str, index_record, invalid, rep_lines, ChanIdx, Deadline, HeldVec, Ledger,
    ObjIdx, Remembered, RepLine, Retired,
};
use crate::limits;
use crate::outcome::{
    Allocation, Allocations, InvalidReason, ObjectKind, Outcome, Rejection, Reply,
};
use crate::purchase::Demand;
use crate::query::{Cause, ReservationState};
use crate::sourcing::{request_lines, SourcingRules};
use crate::state::HoldExtra;

/// Holds whose memory [`Ledger::expire_deadlines`] starts loading ahead of releasing them: far
/// enough for a miss (~100 ns) to complete while the holds before it are released, near enough
/// that what was loaded is still cached.
const EXPIRY_PREFETCH_AHEAD: usize = 8;
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

/// The checks of a new reservation that the commit reuses, so it does not look them up again.
struct NewReservation {
    /// The hash of its id, for the id index.
    hash: u32,
    /// Its channel's index if the channel is known (an unknown one is interned at commit).
    chan: Option<ChanIdx>,
    /// Whether the id index still has an entry for a dropped hold of the same id.
    stale: bool,
}

impl Ledger {
    /// The reply's view of remembered lines.
    #[inline]
    pub(crate) fn allocations(&self, lines: &[RepLine]) -> Allocations {
        let mut out = Allocations::with_capacity(lines.len());
        for l in lines {
            out.push(Allocation {
                line: l.line,
                location: self.ix.location_names[l.loc as usize].clone(),
                qty: l.qty,
            });
        }
        out
    }

    /// Places a hold on every line of the request, all or nothing (SPEC section 3, reserve):
    /// checks, then sources without changing anything, then checks purchase limits (after
    /// stock), then commits.
    pub(crate) fn reserve(
        &mut self,
        id: &ReservationId,
        channel: &ChannelId,
        lines: &[Line],
        ttl_ms: u64,
        customer: Option<&CustomerId>,
    ) -> Result<Remembered, Rejection> {
        let new = self.check_new_reservation(id, channel, ttl_ms)?;
        let sourced = self.source(SourcingRules::plain(new.chan, false), lines)?;
        let demand = self.limited_demand(&sourced.held, &sourced.kits);
        let counted = if demand.is_empty() {
            Vec::new()
        } else {
            self.check_limits(customer, &demand, &Demand::new(), false)?
        };
        let extra = (customer.is_some() || !sourced.kits.is_empty()).then(|| {
            Box::new(HoldExtra {
                customer: customer.cloned(),
                kits: sourced.kits,
                counted,
            })
        });
        Ok(self.commit_reservation(id, channel, new, sourced.held, extra, ttl_ms))
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
        // The index entry of this id, if any: a retained hold, or a dropped one whose entry
        // awaits clean-up (then the commit repoints it; without one, it only inserts).
        let found = ix.reservation.find(hash, |slot| {
            state
                .reservations
                .get(slot)
                .is_some_and(|r| r.id.is(id.as_str()))
        });
        let retained = found
            .and_then(|slot| state.reservations.get(slot))
            .is_some_and(|r| state.retained(r));
        if retained {
            return Err(Rejection::AlreadyExists {
                kind: ObjectKind::Reservation,
                id: id.0.to_string(),
            });
        }
        if self.ix.live_reservations >= limits::RESERVATIONS_LIVE_MAX {
            return Err(Rejection::limit("RESERVATIONS_LIVE_MAX"));
        }
        let chan = self.lookup_channel(channel)?;
        self.channel_room(chan)?;
        Ok(NewReservation {
            hash,
            chan,
            stale: found.is_some(),
        })
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
        extra: Option<Box<HoldExtra>>,
        ttl_ms: u64,
    ) -> Remembered {
        let chan = self.intern_resolved_channel(channel, new.chan);
        for h in &held {
            self.shift(h, h.qty, 0, Cause::Reserve);
        }
        let seq = self.next_seq();
        let expires_at_ms = self.deadline(ttl_ms);
        let lines = match &extra {
            None => rep_lines(&held),
            Some(extra) => {
                for k in &extra.kits {
                    self.kit_use(k.kit, 1);
                }
                if let Some(customer) = &extra.customer {
                    self.count_hold(customer, &extra.counted);
                }
                request_lines(&held, &extra.kits)
            }
        };
        let slot = self.state.reservations.insert(Reservation {
            id: crate::state::IdBuf::new(id.as_str()),
            seq,
            channel: chan,
            created_at_ms: self.state.now_ms,
            expires_at_ms,
            state: ReservationState::Active,
            held,
            retired_pos: None,
            extra,
        });
        if new.stale {
            index_record(
                &mut self.ix.reservation,
                &self.state.reservations,
                slot,
                new.hash,
            );
        } else {
            self.ix.reservation.insert_new(new.hash, slot);
        }
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
                id: id.0.to_string(),
            })?;
        let r = self.res(slot);
        match r.state {
            // Past its deadline but not yet swept (a backlog of expiries, see
            // `limits::EXPIRY_STEPS_PER_BATCH`): it answers as the expired hold it is.
            ReservationState::Active if r.expires_at_ms > self.state.now_ms => Ok(slot),
            ReservationState::Active | ReservationState::Expired => Err(Rejection::Expired {
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
        let entry = self.ix.deadlines.remove(old, Deadline::Hold(slot));
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
        // Queued for retirement first, so that one access to the slot both ends it and records
        // its position (nothing below reads the retirement queue).
        let pos = self.retire(Retired::Reservation(slot));
        let r = self
            .state
            .reservations
            .get_mut(slot)
            .expect("end_hold on a missing reservation");
        assert_eq!(r.state, ReservationState::Active);
        r.state = state;
        r.retired_pos = Some(pos);
        let expires_at = r.expires_at_ms;
        // Copied (the lines are `Copy`): a clone would extend element by element.
        let held = HeldVec::from_slice(&r.held);
        let extra = r.extra.clone();
        for h in &held {
            self.shift(h, -h.qty, h.qty * allocated_share, cause);
        }
        if let Some(extra) = extra {
            for k in &extra.kits {
                self.kit_use(k.kit, -1);
            }
            if let Some(customer) = &extra.customer {
                self.uncount_hold(customer, &extra.counted);
            }
        }
        // An expired hold's deadline was popped already: looking it up again would probe the
        // deadline table for a missing key once per expired hold.
        if cause != Cause::Expire {
            self.ix.deadlines.remove(expires_at, Deadline::Hold(slot));
        }
        self.ix.live_reservations -= 1;
    }

    /// Releases holds and cancels pickups whose deadline is <= now, in (deadline, creation)
    /// order, until `steps` are used (see [`limits::EXPIRY_STEPS_PER_BATCH`] for what a step
    /// is); the rest stay due for the next batch. Costs O(steps).
    pub(crate) fn expire_deadlines(&mut self, mut steps: usize) {
        let mut popped = 0usize;
        while let Some((_, what)) = self.ix.deadlines.pop_due(self.state.now_ms, &mut steps) {
            if popped.is_multiple_of(EXPIRY_PREFETCH_AHEAD) {
                self.prefetch_expiring(steps);
            }
            popped += 1;
            let lines = match what {
                Deadline::Hold(slot) => {
                    let lines = self.res(slot).held.len();
                    self.end_hold(slot, ReservationState::Expired, Cause::Expire, 0);
                    lines
                }
                Deadline::Pickup(slot) => {
                    let lines = self.ord(slot).lines.len();
                    self.expire_pickup(slot);
                    lines
                }
            };
            // The index entry took one step already.
            steps = steps.saturating_sub(lines.saturating_sub(1));
        }
    }

    /// Prefetches (see [`crate::prefetch`]) what the holds to expire next touch, in two stages
    /// of [`EXPIRY_PREFETCH_AHEAD`] entries of the current deadline's queue (stale entries and
    /// pickups included): 16-23 entries ahead, their live deadline entries and reservations;
    /// 8-15 ahead (whose reservations the previous call prefetched, so reading their lines
    /// rarely waits), their balances. Each expired hold touches three random places, about 100
    /// ns each at 1 M balances when they come one after another; prefetched, those of
    /// different holds overlap. At most `steps` objects and `steps` balances, so it costs no
    /// more than the expiry it serves (O(steps)).
    fn prefetch_expiring(&self, steps: usize) {
        let deadlines = &self.ix.deadlines;
        let reservations = &self.state.reservations;
        let ahead = EXPIRY_PREFETCH_AHEAD.min(steps);
        for what in deadlines.upcoming(2 * EXPIRY_PREFETCH_AHEAD, ahead) {
            deadlines.prefetch_live(what);
            if let Deadline::Hold(slot) = what {
                reservations.prefetch(slot);
            }
        }
        let mut balances = steps;
        for what in deadlines.upcoming(EXPIRY_PREFETCH_AHEAD, ahead) {
            let Deadline::Hold(slot) = what else { continue };
            for h in reservations.get(slot).map_or(&[][..], |r| &r.held[..]) {
                if balances == 0 {
                    return;
                }
                balances -= 1;
                self.state.balances.prefetch(u64::from(h.bal));
            }
        }
    }
}

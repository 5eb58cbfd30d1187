//! Sourcing: which location(s) serve each line of a reservation or direct order (SPEC section 1,
//! Location group; section 3, reserve), plain lines and kit lines alike.
//!
//! A kit line takes `qty x component qty` of every component at ONE location per kit unit
//! (SPEC section 3, Kits): a kit's ATS at a location is the minimum over its components of
//! `floor(component ATS / qty)`, and a group or `all` kit line is sourced on that, like a plain
//! line on its ATS. Component demand is summed with the request's other demand for the same
//! (SKU, location).

use smallvec::SmallVec;

use crate::command::{Line, Target};
use crate::holds::check_line_count;
use crate::ledger::{
    check_id, check_positive, invalid, key, BalIdx, ChanIdx, Held, HeldVec, Ledger, LocIdx,
    RepLine, RepLines, SkuIdx,
};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Rejection};
use crate::state::{Composition, KitLine};

/// The balance handle of a line served from units that only an exchange's return would put on
/// hand (no balance yet): such a sourcing is a check only, redone after the return commits.
pub(crate) const NO_BAL: BalIdx = BalIdx::MAX;

/// Units already taken by earlier lines of the same request, per balance key.
#[derive(Default)]
pub(crate) struct Taken(SmallVec<[(u64, i64); 4]>);

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
struct Resolved {
    /// Its SKU (none: the SKU exists nowhere, so the line cannot be served).
    sku: Option<SkuIdx>,
    /// For a direct location line, the location and balance that serve it (its units are
    /// already counted in [`Taken`]); none for group and `all` lines.
    direct: Option<Direct>,
    /// The composition, if the SKU is a kit.
    kit: Option<Composition>,
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
type Candidates = SmallVec<[Candidate; 16]>;

/// What the sourcing of a request must respect.
#[derive(Clone, Copy)]
pub(crate) struct SourcingRules<'a> {
    /// The channel (its index if known; unknown channels sell only where all may sell).
    pub channel: Option<ChanIdx>,
    /// Only locations that offer pickup (pickup orders).
    pub pickup: bool,
    /// Units an exchange's return puts on hand before its new order is placed, per balance key
    /// (SPEC section 3: "units restocked by the return can serve the new lines"); empty
    /// otherwise.
    pub restocked: &'a [(u64, i64)],
}

impl SourcingRules<'_> {
    /// Rules without restocked units.
    pub(crate) fn plain(channel: Option<ChanIdx>, pickup: bool) -> SourcingRules<'static> {
        SourcingRules {
            channel,
            pickup,
            restocked: &[],
        }
    }
}

/// The result of sourcing: the held lines (kit lines as their components, numbered by the
/// request line) and the kit lines.
#[derive(Debug, Default)]
pub(crate) struct Sourced {
    pub held: HeldVec,
    pub kits: Vec<KitLine>,
}

/// The rules of one group or `all` line, applied to its candidates.
struct LineSourcing<'a> {
    ledger: &'a Ledger,
    rules: SourcingRules<'a>,
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
        let k = key(self.sku, c.loc);
        (self.ledger.sourcing_ats(self.rules, k, c.bal) - taken.get(k)).max(0)
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

impl Ledger {
    /// The composition of `sku` if it is a kit.
    pub(crate) fn kit_of(&self, sku: SkuIdx) -> Option<&Composition> {
        self.sku(sku).extra.as_ref().and_then(|e| e.kit.as_ref())
    }

    /// The ATS of balance `bal` (key `k`; none: no balance) for the rules' channel, with the
    /// units an exchange's return would restock there.
    #[inline(always)]
    fn sourcing_ats(&self, rules: SourcingRules, k: u64, bal: Option<BalIdx>) -> i64 {
        let mut b = bal.map(|b| self.bal(b)).unwrap_or_default();
        if !rules.restocked.is_empty() {
            if let Some((_, qty)) = rules.restocked.iter().find(|(r, _)| *r == k) {
                b.on_hand += qty;
            }
        }
        b.ats(Ledger::is_pos(rules.channel))
    }

    /// Chooses the location(s) and quantity of every line, all or nothing, without changing
    /// anything (SPEC section 3, reserve). Demand for the same (SKU, location) inside the
    /// request is summed before checking; group and `all` lines take, in the group's order,
    /// the first location that can serve the whole line, else split greedily in that order.
    pub(crate) fn source(
        &self,
        rules: SourcingRules,
        lines: &[Line],
    ) -> Result<Sourced, Rejection> {
        if let Some(sourced) = self.source_direct_line(rules, lines)? {
            return Ok(sourced);
        }
        check_line_count(lines.len())?;
        let mut taken = Taken::default();
        // Pass 1: direct location lines first, so that group lines (pass 2) only take what
        // the direct lines of the same request leave.
        let mut resolved: SmallVec<[Resolved; 4]> = SmallVec::with_capacity(lines.len());
        for line in lines {
            resolved.push(self.resolve_line(rules, line, &mut taken)?);
        }
        // Pass 2: every line in order; group lines take what direct lines left.
        let mut out = Sourced {
            held: HeldVec::with_capacity(lines.len()),
            kits: Vec::new(),
        };
        for (i, (line, r)) in lines.iter().zip(resolved).enumerate() {
            let line_no = i as u16;
            let Some(sku) = r.sku else {
                return Err(Rejection::InsufficientStock {
                    sku: line.sku.clone(),
                    at: target_name(&line.target),
                    requested: line.qty,
                    available: 0,
                });
            };
            match (r.kit, r.direct) {
                (None, Some(Direct { loc, bal })) => out.held.push(Held {
                    line: line_no,
                    sku,
                    loc,
                    bal,
                    qty: line.qty,
                }),
                (None, None) => {
                    self.source_line(rules, line, line_no, sku, &mut taken, &mut out.held)?
                }
                (Some(composition), direct) => {
                    match direct {
                        Some(d) => {
                            self.take_kit(line_no, &composition, d.loc, line.qty, &mut out.held)
                        }
                        None => self.source_kit_line(
                            rules,
                            line,
                            line_no,
                            &composition,
                            &mut taken,
                            &mut out.held,
                        )?,
                    }
                    out.kits.push(KitLine {
                        line: line_no,
                        kit: sku,
                        composition,
                    });
                }
            }
        }
        if out.held.len() > limits::HELD_LINES_MAX {
            return Err(Rejection::limit("HELD_LINES_MAX"));
        }
        Ok(out)
    }

    /// [`Ledger::source`] of a request of one plain (not kit) line at a location of a known
    /// SKU, the common checkout: the checks of pass 1 of the general path in the same order
    /// with the same rejections, reading the SKU entry once and without the per-request
    /// tables (one line has no earlier demand to sum). `None` for any other request (more
    /// lines, a kit, a group, `all`, an unknown SKU): the general path sources it (checking the
    /// line again, which changes nothing).
    #[inline]
    fn source_direct_line(
        &self,
        rules: SourcingRules,
        lines: &[Line],
    ) -> Result<Option<Sourced>, Rejection> {
        let [line] = lines else {
            return Ok(None);
        };
        let Target::Location(l) = &line.target else {
            return Ok(None);
        };
        check_positive(line.qty)?;
        let Some(sku) = self.lookup_sku(&line.sku)? else {
            return Ok(None);
        };
        let entry = self.sku(sku);
        if entry.extra.as_ref().is_some_and(|e| e.kit.is_some()) {
            return Ok(None);
        }
        let loc = self.location(l)?;
        self.check_sellable_here(loc, rules, l)?;
        let bal = entry.balance_at(loc);
        let available = self.sourcing_ats(rules, key(sku, loc), bal);
        if line.qty > available {
            return Err(Rejection::InsufficientStock {
                sku: line.sku.clone(),
                at: l.0.to_string(),
                requested: line.qty,
                available,
            });
        }
        let mut held = HeldVec::new();
        held.push(Held {
            line: 0,
            sku,
            loc,
            bal: bal.unwrap_or(NO_BAL),
            qty: line.qty,
        });
        Ok(Some(Sourced {
            held,
            kits: Vec::new(),
        }))
    }

    /// Pass 1 of sourcing for one line: checks it and its target, and serves a direct
    /// location line (counting its units in `taken`). Inlined: it runs once per line of
    /// every reservation, and the call would sit on the reserve hot path.
    #[inline]
    fn resolve_line(
        &self,
        rules: SourcingRules,
        line: &Line,
        taken: &mut Taken,
    ) -> Result<Resolved, Rejection> {
        check_positive(line.qty)?;
        let sku = self.lookup_sku(&line.sku)?;
        let kit = sku.and_then(|s| self.kit_of(s)).cloned();
        if let Some(composition) = &kit {
            for part in composition.iter() {
                check_positive(line.qty.checked_mul(part.qty).unwrap_or(i64::MAX))?;
            }
        }
        let direct = match &line.target {
            Target::Location(l) => {
                let loc = self.location(l)?;
                self.check_sellable_here(loc, rules, l)?;
                Some(match &kit {
                    None => self.serve_direct(sku, loc, line, l, rules, taken)?,
                    Some(composition) => {
                        self.serve_kit_direct(composition, loc, line, rules, taken)?
                    }
                })
            }
            Target::Group(g) => {
                check_id(g.as_str(), "group")?;
                if !self.state.groups.contains_key(g) {
                    return Err(Rejection::NotFound {
                        kind: ObjectKind::Group,
                        id: g.0.to_string(),
                    });
                }
                None
            }
            Target::All => None,
        };
        Ok(Resolved { sku, direct, kit })
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
        rules: SourcingRules,
        taken: &mut Taken,
    ) -> Result<Direct, Rejection> {
        let bal = sku.and_then(|s| self.bal_of(s, loc));
        let k = sku.map_or(u64::MAX, |s| key(s, loc));
        let available = if sku.is_some() {
            self.sourcing_ats(rules, k, bal)
        } else {
            0
        };
        let demand = taken.add(k, line.qty);
        if demand > available {
            return Err(Rejection::InsufficientStock {
                sku: line.sku.clone(),
                at: id.0.to_string(),
                requested: demand,
                available,
            });
        }
        Ok(Direct {
            loc,
            bal: bal.unwrap_or(NO_BAL),
        })
    }

    /// Whole kits still available at `loc` after earlier lines of the request: the minimum
    /// over the components of `floor(remaining component units / qty)`.
    fn kit_remaining(
        &self,
        rules: SourcingRules,
        composition: &Composition,
        loc: LocIdx,
        taken: &Taken,
    ) -> i64 {
        composition
            .iter()
            .map(|part| {
                let k = key(part.sku, loc);
                let ats = self.sourcing_ats(rules, k, self.bal_of(part.sku, loc));
                (ats - taken.get(k)).max(0) / part.qty
            })
            .min()
            .unwrap_or(0)
    }

    /// A direct kit line at `loc`: every component's units there, all or nothing.
    fn serve_kit_direct(
        &self,
        composition: &Composition,
        loc: LocIdx,
        line: &Line,
        rules: SourcingRules,
        taken: &mut Taken,
    ) -> Result<Direct, Rejection> {
        let available = self.kit_remaining(rules, composition, loc, taken);
        if line.qty > available {
            return Err(Rejection::InsufficientStock {
                sku: line.sku.clone(),
                at: self.loc(loc).def.location.0.to_string(),
                requested: line.qty,
                available,
            });
        }
        for part in composition.iter() {
            taken.add(key(part.sku, loc), line.qty * part.qty);
        }
        Ok(Direct { loc, bal: NO_BAL })
    }

    /// Holds `kits` kits of a kit line at `loc`: one held line per component.
    fn take_kit(
        &self,
        line_no: u16,
        composition: &Composition,
        loc: LocIdx,
        kits: i64,
        held: &mut HeldVec,
    ) {
        for part in composition.iter() {
            held.push(Held {
                line: line_no,
                sku: part.sku,
                loc,
                bal: self.bal_of(part.sku, loc).unwrap_or(NO_BAL),
                qty: kits * part.qty,
            });
        }
    }

    /// Whether `rules` allow taking stock at `loc`, as a typed rejection.
    #[inline]
    fn check_sellable_here(
        &self,
        loc: LocIdx,
        rules: SourcingRules,
        id: &crate::ids::LocationId,
    ) -> Result<(), Rejection> {
        if !self.channel_allowed(loc, rules.channel) {
            let channel = rules.channel.map_or_else(
                || crate::ids::ChannelId::from("?"),
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
        let candidates = self.candidates(rules, &line.target, sku);
        let sourcing = LineSourcing {
            ledger: self,
            rules,
            sku,
        };
        let mut take = |c: Candidate, qty: i64, taken: &mut Taken| {
            taken.add(key(sku, c.loc), qty);
            held.push(Held {
                line: line_no,
                sku,
                loc: c.loc,
                bal: c.bal.unwrap_or(NO_BAL),
                qty,
            });
        };
        // One location that can serve the whole line, first in order.
        if let Some(&c) = candidates
            .iter()
            .find(|&&c| sourcing.eligible(c) && sourcing.remaining(c, taken) >= line.qty)
        {
            take(c, line.qty, taken);
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
                take(c, qty, taken);
                left -= qty;
            }
            if left == 0 {
                break;
            }
        }
        assert_eq!(left, 0, "split sourcing covers the line");
        Ok(())
    }

    /// Sources one group or `all` kit line like [`Ledger::source_line`], on whole kits per
    /// location (each kit unit comes from ONE location).
    fn source_kit_line(
        &self,
        rules: SourcingRules,
        line: &Line,
        line_no: u16,
        composition: &Composition,
        taken: &mut Taken,
        held: &mut HeldVec,
    ) -> Result<(), Rejection> {
        // Every component has a balance wherever the kit has stock: the first one's
        // locations are the candidates.
        let candidates = self.candidates(rules, &line.target, composition[0].sku);
        let sourcing = LineSourcing {
            ledger: self,
            rules,
            sku: composition[0].sku,
        };
        let remaining = |c: Candidate, taken: &Taken| {
            if sourcing.eligible(c) {
                self.kit_remaining(rules, composition, c.loc, taken)
            } else {
                0
            }
        };
        let mut take = |loc: LocIdx, kits: i64, taken: &mut Taken| {
            for part in composition.iter() {
                taken.add(key(part.sku, loc), kits * part.qty);
            }
            self.take_kit(line_no, composition, loc, kits, held);
        };
        if let Some(&c) = candidates
            .iter()
            .find(|&&c| remaining(c, taken) >= line.qty)
        {
            take(c.loc, line.qty, taken);
            return Ok(());
        }
        let total = candidates
            .iter()
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
        for &c in &candidates {
            let kits = remaining(c, taken).min(left);
            if kits > 0 {
                take(c.loc, kits, taken);
                left -= kits;
            }
            if left == 0 {
                break;
            }
        }
        assert_eq!(left, 0, "split sourcing covers the kit line");
        Ok(())
    }

    /// The locations a group or `all` line may take `sku` from, in sourcing order: a group's
    /// own order, or, for `all`, every location that has a balance of the SKU (or would have
    /// one after an exchange's restock), in definition order.
    fn candidates(&self, rules: SourcingRules, target: &Target, sku: SkuIdx) -> Candidates {
        let entry = self.sku(sku);
        match target {
            Target::Group(g) => self.state.groups[g]
                .iter()
                .map(|&loc| Candidate {
                    loc,
                    bal: entry.balance_at(loc),
                })
                .collect(),
            _ => {
                let mut all: Candidates = entry
                    .balances
                    .iter()
                    .map(|&(loc, bal)| Candidate {
                        loc,
                        bal: Some(bal),
                    })
                    .collect();
                for &(k, _) in rules.restocked {
                    let (s, loc) = crate::state::unkey(k);
                    if s == sku && entry.balance_at(loc).is_none() {
                        let at = all.partition_point(|c| c.loc < loc);
                        all.insert(at, Candidate { loc, bal: None });
                    }
                }
                all
            }
        }
    }
}

/// The reply's lines of a sourcing: a plain line's held units as they are, a kit line as kits
/// per location (read from its first component).
pub(crate) fn request_lines(held: &[Held], kits: &[KitLine]) -> RepLines {
    held.iter()
        .filter_map(|h| match kits.iter().find(|k| k.line == h.line) {
            None => Some(RepLine {
                line: h.line,
                loc: h.loc,
                qty: h.qty,
            }),
            Some(k) => (k.composition[0].sku == h.sku).then(|| RepLine {
                line: h.line,
                loc: h.loc,
                qty: h.qty / k.composition[0].qty,
            }),
        })
        .collect()
}

/// The name of a target in rejections: the location or group id, or `all`.
pub(crate) fn target_name(target: &Target) -> String {
    match target {
        Target::Location(l) => l.0.to_string(),
        Target::Group(g) => g.0.to_string(),
        Target::All => "all".to_owned(),
    }
}

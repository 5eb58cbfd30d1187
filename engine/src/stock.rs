//! Catalog and stock writes: locations, groups, SKUs, counts, adjustments, safety stock,
//! unavailable units and counter sales (SPEC section 3, Stock).

use crate::balance::Balance;
use crate::command::LocationDef;
use crate::ids::{GroupId, LocationId, LocationName, Reason, SkuId};
use crate::ledger::{
    check_field, check_id, check_non_negative, check_positive, invalid, ChanIdx, Ledger, LocIdx,
    LocationEntry, SkuIdx,
};
use crate::limits;
use crate::outcome::{InvalidReason, ObjectKind, Outcome, Rejection, Reply};
use crate::query::Cause;

impl Ledger {
    pub(crate) fn define_location(&mut self, def: &LocationDef) -> Outcome {
        check_id(def.location.as_str(), "location")?;
        if def.location.as_str() == "all" || self.state.groups.contains_key(def.location.as_str()) {
            return invalid(InvalidReason::NameTaken);
        }
        if let Some(c) = def.coordinates {
            let lat_ok = (-90_000_000..=90_000_000).contains(&c.lat_e6);
            let lon_ok = (-180_000_000..=180_000_000).contains(&c.lon_e6);
            if !lat_ok || !lon_ok {
                return invalid(InvalidReason::BadCoordinates);
            }
        }
        let existing = self.ix.location.get(&def.location).copied();
        if existing.is_none() && self.state.locations.end() >= limits::LOCATIONS_MAX as u64 {
            return Err(Rejection::limit("LOCATIONS_MAX"));
        }
        if let Some(channels) = &def.channels {
            if channels.len() > limits::LOCATION_CHANNELS_MAX {
                return Err(Rejection::limit("LOCATION_CHANNELS_MAX"));
            }
            let mut unknown = 0;
            for c in channels {
                check_id(c.as_str(), "channel")?;
                if !self.ix.channel.contains_key(c) {
                    unknown += 1;
                }
            }
            if self.state.channels.len() + unknown > limits::CHANNELS_MAX {
                return Err(Rejection::limit("CHANNELS_MAX"));
            }
        }
        // Checks done: commit.
        let channels = def.channels.as_ref().map(|list| {
            let mut idx: Vec<ChanIdx> = list
                .iter()
                .map(|c| self.intern_checked_channel(c))
                .collect();
            idx.sort_unstable();
            idx.dedup();
            idx
        });
        let entry = LocationEntry {
            def: def.clone(),
            channels,
        };
        match existing {
            Some(idx) => *self.state.locations.get_mut(u64::from(idx)) = entry,
            None => {
                let idx = self.state.locations.push(entry) as LocIdx;
                self.ix.location.insert(def.location.clone(), idx);
                self.ix
                    .location_names
                    .push(LocationName::from(&def.location));
            }
        }
        Ok(Reply::Done)
    }

    pub(crate) fn define_group(&mut self, group: &GroupId, locations: &[LocationId]) -> Outcome {
        check_id(group.as_str(), "group")?;
        if group.as_str() == "all" || self.ix.location.contains_key(group.as_str()) {
            return invalid(InvalidReason::NameTaken);
        }
        if locations.is_empty() {
            return invalid(InvalidReason::NoLines);
        }
        if locations.len() > limits::GROUP_LOCATIONS_MAX {
            return Err(Rejection::limit("GROUP_LOCATIONS_MAX"));
        }
        if !self.state.groups.contains_key(group) && self.state.groups.len() >= limits::GROUPS_MAX {
            return Err(Rejection::limit("GROUPS_MAX"));
        }
        let mut resolved = Vec::with_capacity(locations.len());
        for l in locations {
            let idx = self.location(l)?;
            if resolved.contains(&idx) {
                return invalid(InvalidReason::DuplicateLocation);
            }
            resolved.push(idx);
        }
        std::sync::Arc::make_mut(&mut self.state.groups).insert(group.clone(), resolved.into());
        Ok(Reply::Done)
    }

    pub(crate) fn define_sku(&mut self, sku: &SkuId, scale: u8) -> Outcome {
        check_id(sku.as_str(), "sku")?;
        if scale > limits::SCALE_MAX {
            return invalid(InvalidReason::BadScale);
        }
        match self.lookup_sku(sku)? {
            Some(idx) => {
                if scale != 0 && self.kit_of(idx).is_some() {
                    return invalid(InvalidReason::KitScale { sku: sku.clone() });
                }
                let entry = self.sku(idx);
                if entry.scale != scale && !entry.balances.is_empty() {
                    return Err(Rejection::InvalidState {
                        kind: ObjectKind::Sku,
                        state: format!("in use at scale {} (it has balances)", entry.scale),
                    });
                }
                if entry.scale != scale {
                    self.state.skus.get_mut(u64::from(idx)).scale = scale;
                }
            }
            None => {
                self.sku_room(None)?;
                self.push_sku(sku, scale);
            }
        }
        Ok(Reply::Done)
    }

    /// Resolves (sku, location) for a stock write that may create the SKU and the balance.
    /// Returns the known SKU index (if any), the location and the current balance.
    fn stock_target(
        &self,
        sku: &SkuId,
        location: &LocationId,
    ) -> Result<(Option<SkuIdx>, LocIdx, Balance), Rejection> {
        let sku_idx = self.lookup_sku(sku)?;
        self.check_not_kit(sku_idx, sku)?;
        let loc = self.location(location)?;
        self.sku_room(sku_idx)?;
        self.balance_room(sku_idx, loc)?;
        let balance = sku_idx.map(|s| self.balance(s, loc)).unwrap_or_default();
        Ok((sku_idx, loc, balance))
    }

    /// Commits a stock write checked by [`Ledger::stock_target`].
    fn commit_stock(
        &mut self,
        sku: &SkuId,
        loc: LocIdx,
        balance: Balance,
        cause: Cause,
    ) -> Outcome {
        let sku_idx = self.intern_sku(sku);
        self.put_balance(sku_idx, loc, balance, cause);
        Ok(Reply::Balance(balance))
    }

    pub(crate) fn set_on_hand(
        &mut self,
        sku: &SkuId,
        location: &LocationId,
        qty: i64,
        reason: &Reason,
        expected: Option<i64>,
    ) -> Outcome {
        check_non_negative(qty)?;
        check_id(reason.as_str(), "reason")?;
        let (_, loc, mut b) = self.stock_target(sku, location)?;
        if let Some(expected) = expected {
            if expected != b.on_hand {
                return Err(Rejection::Conflict { actual: b.on_hand });
            }
        }
        b.on_hand = qty;
        // Physical reality wins: a count below the unavailable units means some of them are
        // gone too.
        b.unavailable = b.unavailable.min(qty);
        self.commit_stock(sku, loc, b, Cause::SetOnHand)
    }

    pub(crate) fn adjust(
        &mut self,
        sku: &SkuId,
        location: &LocationId,
        delta: i64,
        reason: &Reason,
    ) -> Outcome {
        if delta == 0 {
            return invalid(InvalidReason::QtyNotPositive);
        }
        check_positive(delta.checked_abs().unwrap_or(i64::MAX))?;
        check_id(reason.as_str(), "reason")?;
        let (_, loc, mut b) = self.stock_target(sku, location)?;
        let on_hand = b.on_hand + delta;
        if on_hand < 0 {
            return Err(Rejection::InsufficientStock {
                sku: sku.clone(),
                at: location.0.to_string(),
                requested: -delta,
                available: b.on_hand,
            });
        }
        check_field(on_hand)?;
        b.on_hand = on_hand;
        b.unavailable = b.unavailable.min(on_hand);
        self.commit_stock(sku, loc, b, Cause::Adjust)
    }

    pub(crate) fn set_safety_stock(
        &mut self,
        sku: &SkuId,
        location: &LocationId,
        qty: i64,
    ) -> Outcome {
        check_non_negative(qty)?;
        let (_, loc, mut b) = self.stock_target(sku, location)?;
        b.safety_stock = qty;
        self.commit_stock(sku, loc, b, Cause::SafetyStock)
    }

    pub(crate) fn mark_unavailable(
        &mut self,
        sku: &SkuId,
        location: &LocationId,
        qty: i64,
        reason: &Reason,
    ) -> Outcome {
        check_positive(qty)?;
        check_id(reason.as_str(), "reason")?;
        let (_, loc, mut b) = self.stock_target(sku, location)?;
        if b.unavailable + qty > b.on_hand {
            return Err(Rejection::InsufficientStock {
                sku: sku.clone(),
                at: location.0.to_string(),
                requested: qty,
                available: b.on_hand - b.unavailable,
            });
        }
        b.unavailable += qty;
        self.commit_stock(sku, loc, b, Cause::MarkUnavailable)
    }

    pub(crate) fn restore_unavailable(
        &mut self,
        sku: &SkuId,
        location: &LocationId,
        qty: i64,
        reason: &Reason,
    ) -> Outcome {
        check_positive(qty)?;
        check_id(reason.as_str(), "reason")?;
        let (_, loc, mut b) = self.stock_target(sku, location)?;
        if qty > b.unavailable {
            return Err(Rejection::InsufficientStock {
                sku: sku.clone(),
                at: location.0.to_string(),
                requested: qty,
                available: b.unavailable,
            });
        }
        b.unavailable -= qty;
        self.commit_stock(sku, loc, b, Cause::RestoreUnavailable)
    }

    pub(crate) fn sell(&mut self, sku: &SkuId, location: &LocationId, qty: i64) -> Outcome {
        check_positive(qty)?;
        let sku_idx = self.lookup_sku(sku)?;
        self.check_not_kit(sku_idx, sku)?;
        let loc = self.location(location)?;
        if !self.channel_allowed(loc, Some(0)) {
            return Err(Rejection::ChannelNotAllowed {
                location: location.clone(),
                channel: crate::ids::ChannelId::from(crate::ids::ChannelId::POS),
            });
        }
        let b = sku_idx.map(|s| self.balance(s, loc)).unwrap_or_default();
        let (Some(sku_idx), true) = (sku_idx, b.ats_pos() >= qty) else {
            return Err(Rejection::InsufficientStock {
                sku: sku.clone(),
                at: location.0.to_string(),
                requested: qty,
                available: b.ats_pos(),
            });
        };
        let mut b = b;
        b.on_hand -= qty;
        self.put_balance(sku_idx, loc, b, Cause::Sell);
        Ok(Reply::Balance(b))
    }
}

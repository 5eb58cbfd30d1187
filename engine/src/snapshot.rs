//! Snapshot and restore of the whole ledger (for Raft snapshots), and the invariant check.
//!
//! Format: 8 bytes of magic `b"STOCKD\x00S"`, a little-endian `u32` format version, then the
//! postcard encoding of the state with every collection in a canonical order (by key, or in
//! the order that matters: interning, retention queues, the feed). Two ledgers that applied the
//! same batches produce byte-identical snapshots (SPEC section 4, Determinism); indexes that
//! can be derived (deadlines, counters, lookup maps) are rebuilt on restore, not stored.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::balance::Balance;
use crate::ids::{ChannelId, GroupId, RmaId, TransferId};
use crate::ledger::{
    key, unkey, Config, Deadline, EventRecord, Key, Ledger, LocIdx, LocationEntry, Order,
    Remembered, Reservation, Retired, Rma, SkuEntry, Transfer,
};
use crate::query::{ReservationState, TransferState};

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"STOCKD\x00S";
/// Version of the snapshot layout; bumped on any change to it.
pub const SNAPSHOT_VERSION: u32 = 2;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a stockd snapshot (bad magic or too short).
    NotASnapshot,
    /// A layout version this build cannot read.
    UnsupportedVersion(u32),
    /// The body did not decode.
    Corrupt(String),
    /// The body decoded but breaks a ledger invariant.
    Inconsistent(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::NotASnapshot => f.write_str("not a stockd snapshot"),
            SnapshotError::UnsupportedVersion(v) => write!(f, "unsupported snapshot version {v}"),
            SnapshotError::Corrupt(e) => write!(f, "corrupt snapshot: {e}"),
            SnapshotError::Inconsistent(e) => write!(f, "inconsistent snapshot: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The snapshot body, borrowed for writing. Field order and types must match [`BodyOwned`].
#[derive(Serialize)]
struct BodyRef<'a> {
    config: &'a Config,
    now_ms: u64,
    applied_index: u64,
    next_seq: u64,
    feed_next_seq: u64,
    channels: &'a [ChannelId],
    skus: &'a [SkuEntry],
    locations: &'a [LocationEntry],
    groups: Vec<(&'a GroupId, &'a Vec<LocIdx>)>,
    balances: Vec<(u64, &'a Balance)>,
    reservations: Vec<(&'a Key, &'a Reservation)>,
    orders: Vec<(&'a Key, &'a Order)>,
    rmas: Vec<(&'a RmaId, &'a Rma)>,
    transfers: Vec<(&'a TransferId, &'a Transfer)>,
    retired: &'a VecDeque<(u64, Retired)>,
    dedup: Vec<(u64, u128, &'a Remembered)>,
    feed: &'a VecDeque<EventRecord>,
}

/// The snapshot body, owned for reading.
#[derive(Deserialize)]
struct BodyOwned {
    config: Config,
    now_ms: u64,
    applied_index: u64,
    next_seq: u64,
    feed_next_seq: u64,
    channels: Vec<ChannelId>,
    skus: Vec<SkuEntry>,
    locations: Vec<LocationEntry>,
    groups: Vec<(GroupId, Vec<LocIdx>)>,
    balances: Vec<(u64, Balance)>,
    reservations: Vec<(Key, Reservation)>,
    orders: Vec<(Key, Order)>,
    rmas: Vec<(RmaId, Rma)>,
    transfers: Vec<(TransferId, Transfer)>,
    retired: VecDeque<(u64, Retired)>,
    dedup: Vec<(u64, u128, Remembered)>,
    feed: VecDeque<EventRecord>,
}

fn sorted<'a, K: Ord + 'a, V: 'a>(
    map: impl Iterator<Item = (&'a K, &'a V)>,
) -> Vec<(&'a K, &'a V)> {
    let mut v: Vec<_> = map.collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

impl Ledger {
    /// Encodes the whole state: header + postcard body (see the module doc). Deterministic:
    /// equal ledgers give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut balances: Vec<(u64, &Balance)> =
            self.balances.iter().map(|(k, b)| (*k, b)).collect();
        balances.sort_unstable_by_key(|(k, _)| *k);
        let dedup = self
            .dedup_order
            .iter()
            .map(|(at, id)| (*at, *id, &self.dedup[id]))
            .collect();
        let body = BodyRef {
            config: &self.config,
            now_ms: self.now_ms,
            applied_index: self.applied_index,
            next_seq: self.next_seq,
            feed_next_seq: self.feed_next_seq,
            channels: &self.channels,
            skus: &self.skus,
            locations: &self.locations,
            groups: self.groups.iter().collect(),
            balances,
            reservations: sorted(self.reservations.iter()),
            orders: sorted(self.orders.iter()),
            rmas: sorted(self.rmas.iter()),
            transfers: sorted(self.transfers.iter()),
            retired: &self.retired,
            dedup,
            feed: &self.feed,
        };
        let mut out = Vec::with_capacity(64 + self.balances.len() * 16);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        postcard::to_io(&body, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// BLAKE3 digest of [`Ledger::snapshot`], hex: equal on every replica that applied the same
    /// log.
    pub fn digest(&self) -> String {
        blake3::hash(&self.snapshot()).to_hex().to_string()
    }

    /// Rebuilds a ledger from [`Ledger::snapshot`] bytes, checking every invariant.
    pub fn restore(bytes: &[u8]) -> Result<Ledger, SnapshotError> {
        if bytes.len() < 12 || bytes[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let (body, rest): (BodyOwned, &[u8]) = postcard::take_from_bytes(&bytes[12..])
            .map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Corrupt(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        let ledger = Ledger::from_body(body)?;
        ledger
            .check_invariants()
            .map_err(SnapshotError::Inconsistent)?;
        Ok(ledger)
    }

    fn from_body(body: BodyOwned) -> Result<Ledger, SnapshotError> {
        let bad = |what: &str| SnapshotError::Inconsistent(what.to_owned());
        let mut ledger = Ledger::new(body.config);
        if ledger.config != body.config {
            return Err(bad("config above the maxima"));
        }
        ledger.now_ms = body.now_ms;
        ledger.applied_index = body.applied_index;
        ledger.next_seq = body.next_seq;
        ledger.feed_next_seq = body.feed_next_seq;
        if body.channels.first().map(ChannelId::as_str) != Some(ChannelId::POS) {
            return Err(bad("channel 0 is not pos"));
        }
        ledger.channel_index = body
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u16))
            .collect();
        ledger.channels = body.channels;
        ledger.sku_index = body
            .skus
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i as u32))
            .collect();
        ledger.skus = body.skus;
        ledger.location_index = body
            .locations
            .iter()
            .enumerate()
            .map(|(i, l)| (l.def.location.clone(), i as u32))
            .collect();
        ledger.locations = body.locations;
        if ledger.sku_index.len() != ledger.skus.len()
            || ledger.location_index.len() != ledger.locations.len()
            || ledger.channel_index.len() != ledger.channels.len()
        {
            return Err(bad("duplicate ids"));
        }
        ledger.groups = body.groups.into_iter().collect();
        ledger.balances = body.balances.into_iter().collect();
        for (id, r) in body.reservations {
            if r.state == ReservationState::Active {
                ledger.live_reservations += 1;
                ledger
                    .deadlines
                    .insert(r.expires_at_ms, r.seq, Deadline::Hold(id.clone()));
            }
            ledger.reservations.insert(id, r);
        }
        for (id, o) in body.orders {
            if o.unfulfilled() > 0 {
                ledger.open_orders += 1;
                if let (Some(deadline), false) = (o.pickup_deadline_ms, o.pickup_expired) {
                    ledger
                        .deadlines
                        .insert(deadline, o.seq, Deadline::Pickup(id.clone()));
                }
            }
            ledger.orders.insert(id, o);
        }
        ledger.rmas = body.rmas.into_iter().collect();
        for (id, t) in body.transfers {
            if t.state == TransferState::Shipped {
                ledger.open_transfers += 1;
            }
            ledger.transfers.insert(id, t);
        }
        ledger.retired = body.retired;
        for (at, id, outcome) in body.dedup {
            ledger.dedup_order.push_back((at, id));
            ledger.dedup.insert(id, outcome);
        }
        ledger.feed = body.feed;
        Ok(ledger)
    }

    /// Checks every invariant between the ledger's parts, in O(state). Used after restore and
    /// by tests after every step:
    /// - every balance is consistent and belongs to a known SKU and location;
    /// - reserved = sum of active holds, allocated = sum of unfulfilled order lines, incoming =
    ///   sum of shipped transfers, per balance;
    /// - counters, deadlines and lookup maps agree with the objects.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected: rustc_hash::FxHashMap<u64, (i64, i64, i64)> = Default::default();
        let mut live = 0;
        let mut deadlines = 0;
        for (id, r) in &self.reservations {
            if r.state != ReservationState::Active {
                continue;
            }
            live += 1;
            deadlines += 1;
            if !matches!(self.deadlines.get(r.expires_at_ms, r.seq), Some(Deadline::Hold(d)) if d == id)
            {
                return Err(format!("reservation {id} has no deadline"));
            }
            for h in &r.held {
                if h.qty <= 0 {
                    return Err(format!("reservation {id} holds {}", h.qty));
                }
                expected.entry(key(h.sku, h.loc)).or_default().0 += h.qty;
            }
        }
        let mut open = 0;
        for (id, o) in &self.orders {
            for l in &o.lines {
                if l.unfulfilled() < 0 || l.fulfilled < 0 || l.cancelled < 0 {
                    return Err(format!("order {id} line below zero"));
                }
                expected.entry(key(l.sku, l.loc)).or_default().1 += l.unfulfilled();
            }
            if o.unfulfilled() > 0 {
                open += 1;
                if let (Some(d), false) = (o.pickup_deadline_ms, o.pickup_expired) {
                    deadlines += 1;
                    if !matches!(self.deadlines.get(d, o.seq), Some(Deadline::Pickup(p)) if p == id)
                    {
                        return Err(format!("order {id} has no pickup deadline"));
                    }
                }
            }
        }
        let mut open_transfers = 0;
        for t in self
            .transfers
            .values()
            .filter(|t| t.state == TransferState::Shipped)
        {
            open_transfers += 1;
            expected.entry(key(t.sku, t.to)).or_default().2 += t.qty;
        }
        for (&k, b) in &self.balances {
            let (sku, loc) = unkey(k);
            if !b.is_consistent() {
                return Err(format!("balance {sku}/{loc} out of range: {b:?}"));
            }
            let Some(entry) = self.skus.get(sku as usize) else {
                return Err(format!("balance of unknown SKU {sku}"));
            };
            if loc as usize >= self.locations.len() || entry.locations.binary_search(&loc).is_err()
            {
                return Err(format!("balance {sku}/{loc} not indexed"));
            }
            let (reserved, allocated, incoming) = expected.remove(&k).unwrap_or_default();
            if (b.reserved, b.allocated, b.incoming) != (reserved, allocated, incoming) {
                return Err(format!(
                    "balance {}@{}: reserved/allocated/incoming {}/{}/{} but objects say {reserved}/{allocated}/{incoming}",
                    entry.id, self.locations[loc as usize].def.location, b.reserved, b.allocated, b.incoming
                ));
            }
        }
        if let Some((k, v)) = expected.into_iter().find(|(_, v)| *v != (0, 0, 0)) {
            return Err(format!("objects hold {v:?} on missing balance {k:x}"));
        }
        let indexed: usize = self.skus.iter().map(|s| s.locations.len()).sum();
        if indexed != self.balances.len() {
            return Err("SKU location index disagrees with balances".to_owned());
        }
        if live != self.live_reservations
            || open != self.open_orders
            || open_transfers != self.open_transfers
        {
            return Err("object counters disagree".to_owned());
        }
        if deadlines != self.deadlines.len() {
            return Err(format!(
                "{} deadlines for {deadlines} live objects",
                self.deadlines.len()
            ));
        }
        if self.dedup.len() != self.dedup_order.len() {
            return Err("dedup table and queue disagree".to_owned());
        }
        for group in self.groups.values() {
            if group.iter().any(|&l| l as usize >= self.locations.len()) {
                return Err("group names an unknown location".to_owned());
            }
        }
        for loc in &self.locations {
            if let Some(channels) = &loc.channels {
                if channels.iter().any(|&c| c as usize >= self.channels.len()) {
                    return Err("location allows an unknown channel".to_owned());
                }
            }
        }
        for h in self.reservations.values().flat_map(|r| &r.held) {
            if h.sku as usize >= self.skus.len() || h.loc as usize >= self.locations.len() {
                return Err("hold on unknown SKU or location".to_owned());
            }
        }
        Ok(())
    }
}

//! # stockd benchmarks: shared fixtures
//!
//! Everything the engine benchmarks (`benches/benches/*.rs`, criterion) and the state-size
//! binary (`src/bin/state_size.rs`) share: a deterministic random source, the shape of the
//! stock loaded into a ledger, a [`Driver`] that stamps batches like the server does (strictly
//! increasing log index, a leader clock that moves a little per batch), and a [`Workload`]
//! that produces checkout traffic (carts of SKUs with a skewed popularity).
//!
//! Nothing here measures anything by itself: the benchmarks decide what is timed. Every
//! fixture goes through the engine's public API only (`apply`, `query`, `snapshot`,
//! `restore`), exactly like the server.

use engine::limits::{
    BATCH_REQUESTS_MAX, CLEANUP_STEPS_PER_BATCH, DEDUP_WINDOW_MS_DEFAULT, RETIRED_MS_DEFAULT,
};
use engine::query::LedgerStatus;
use engine::{
    Answer, BatchHeader, ChannelId, Command, Config, Fulfilment, Ledger, Line, LocatedLine,
    LocationDef, LocationId, LocationKind, OrderId, OrderSource, Outcome, Query, Reason, Request,
    RequestId, ReservationId, SkuId, Target,
};

/// Batch timestamp of the first batch applied by a fixture: 2026-01-01T00:00:00Z, in ms.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// How far the leader clock moves between two batches of a [`Driver`], ms.
pub const BATCH_STEP_MS: u64 = 2;

/// Time to live of every benchmark hold: 15 minutes, a usual checkout hold. Long enough that
/// no hold expires while a throughput benchmark runs (those run for seconds of batch time).
pub const HOLD_TTL_MS: u64 = 15 * 60 * 1000;

/// Units counted on every balance: large enough that no benchmark ever runs out of stock.
pub const ON_HAND: i64 = 1_000_000_000_000;

/// Requests per batch used to load stock.
pub const LOAD_BATCH: usize = 8192;

/// A small, fast, deterministic random source (SplitMix64). Benchmarks must be repeatable, so
/// every fixture draws from a fixed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..n` (`n` > 0), by multiply-shift (bias is negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// 128 random bits, never zero (zero is not a valid request id).
    pub fn nonzero_u128(&mut self) -> u128 {
        loop {
            let v = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if v != 0 {
                return v;
            }
        }
    }
}

/// The stock loaded into a benchmark ledger: every SKU has a balance at every location, so
/// there are `skus * locations` balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Distinct SKUs.
    pub skus: usize,
    /// Locations (all allow every channel).
    pub locations: usize,
}

impl Shape {
    /// 100,000 SKUs at 10 locations: 1,000,000 balances (the throughput benchmarks' ledger).
    pub const ONE_MILLION: Shape = Shape {
        skus: 100_000,
        locations: 10,
    };

    /// 1,000,000 SKUs at 10 locations: 10,000,000 balances (SPEC section 5).
    pub const TEN_MILLION: Shape = Shape {
        skus: 1_000_000,
        locations: 10,
    };

    /// A shape of `balances` balances at 10 locations (`balances` must be a multiple of 10).
    pub fn with_balances(balances: usize) -> Shape {
        let skus = balances / 10;
        assert!(
            skus > 0 && skus * 10 == balances,
            "balances must be a positive multiple of 10"
        );
        Shape {
            skus,
            locations: 10,
        }
    }

    /// Number of balances.
    pub fn balances(&self) -> usize {
        self.skus * self.locations
    }
}

/// The id of SKU number `i`: `SKU-00000042` (12 bytes, like a retailer's article number).
pub fn sku_id(i: usize) -> SkuId {
    SkuId::from(format!("SKU-{i:08}"))
}

/// The id of location number `i`: `LOC-007`.
pub fn location_id(i: usize) -> LocationId {
    LocationId::from(format!("LOC-{i:03}"))
}

/// A UUID-shaped id (36 bytes) from 128 random bits, as a checkout gateway would send.
pub fn uuid_like(bits: u128) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (bits >> 96) as u32,
        (bits >> 80) as u16,
        (bits >> 64) as u16,
        (bits >> 48) as u16,
        bits & 0xFFFF_FFFF_FFFF
    )
}

/// Applies batches to a ledger the way the server does: each batch gets the next log index
/// and a leader timestamp [`BATCH_STEP_MS`] after the previous one.
#[derive(Debug, Clone)]
pub struct Driver {
    /// The ledger being driven.
    pub ledger: Ledger,
}

impl Driver {
    /// Drives `ledger` from its current log index and time.
    pub fn new(ledger: Ledger) -> Self {
        Driver { ledger }
    }

    /// The header of the next batch, `advance_ms` after the last one.
    pub fn next_header(&self, advance_ms: u64) -> BatchHeader {
        BatchHeader {
            log_index: self.ledger.applied_index() + 1,
            timestamp_ms: self.ledger.now_ms().max(EPOCH_MS) + advance_ms,
        }
    }

    /// Applies one batch, [`BATCH_STEP_MS`] after the previous one.
    pub fn apply(&mut self, requests: &[Request]) -> Vec<Outcome> {
        let header = self.next_header(BATCH_STEP_MS);
        self.ledger.apply(header, requests)
    }

    /// Applies an empty batch `ms` after the previous one (time passes; deadlines fire,
    /// retention is pruned).
    pub fn advance(&mut self, ms: u64) {
        let header = self.next_header(ms);
        let out = self.ledger.apply(header, &[]);
        debug_assert!(out.is_empty());
    }

    /// Applies empty batches, [`BATCH_STEP_MS`] apart, until no deadline that has passed is
    /// left: a batch expires at most [`engine::limits::EXPIRY_STEPS_PER_BATCH`] holds, so a burst of them is
    /// worked off over several. Returns how many batches it applied.
    pub fn expire_due(&mut self) -> usize {
        let mut batches = 0;
        while self.expiry_backlog() {
            self.advance(BATCH_STEP_MS);
            batches += 1;
        }
        batches
    }

    /// Whether a deadline has passed that the ledger has not yet worked off.
    pub fn expiry_backlog(&self) -> bool {
        self.ledger
            .next_deadline_ms()
            .is_some_and(|at| at <= self.ledger.now_ms())
    }

    /// The ledger's counters ([`Query::Status`]).
    pub fn status(&self) -> LedgerStatus {
        match self.ledger.query(&Query::Status, self.ledger.now_ms()) {
            Ok(Answer::Status(status)) => status,
            other => panic!("status query answered {other:?}"),
        }
    }
}

/// Panics unless every outcome is a success (a benchmark that measures rejections by mistake
/// measures the wrong thing).
#[track_caller]
pub fn assert_all_ok(outcomes: &[Outcome]) {
    if let Some((i, bad)) = outcomes.iter().enumerate().find(|(_, o)| o.is_err()) {
        panic!("request {i} of the batch was rejected: {bad:?}");
    }
}

/// Builds a ledger with `shape`'s locations and balances (each counted at [`ON_HAND`] with
/// `set_on_hand`, in batches of [`LOAD_BATCH`]), then lets the dedup window pass so that the
/// loading requests are forgotten. With the default [`Config`], the change feed is left full
/// of the loading events, as on a server that has been running for a while.
pub fn load_stock(shape: Shape, config: Config) -> Ledger {
    let mut driver = Driver::new(Ledger::new(config));
    let mut rng = Rng::new(0x5eed_0001);
    let defs: Vec<Request> = (0..shape.locations)
        .map(|l| Request {
            request_id: RequestId(rng.nonzero_u128()),
            command: Command::DefineLocation(LocationDef {
                location: location_id(l),
                kind: if l == 0 {
                    LocationKind::Warehouse
                } else {
                    LocationKind::Store
                },
                pickup: l != 0,
                coordinates: None,
                channels: None,
            }),
        })
        .collect();
    for chunk in defs.chunks(BATCH_REQUESTS_MAX) {
        assert_all_ok(&driver.apply(chunk));
    }
    let reason = Reason::from("initial-count");
    let locations: Vec<LocationId> = (0..shape.locations).map(location_id).collect();
    let mut batch = Vec::with_capacity(LOAD_BATCH);
    for s in 0..shape.skus {
        let sku = sku_id(s);
        for location in &locations {
            batch.push(Request {
                request_id: RequestId(rng.nonzero_u128()),
                command: Command::SetOnHand {
                    sku: sku.clone(),
                    location: location.clone(),
                    qty: ON_HAND,
                    reason: reason.clone(),
                    expected: None,
                },
            });
            if batch.len() == LOAD_BATCH {
                assert_all_ok(&driver.apply(&batch));
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        assert_all_ok(&driver.apply(&batch));
    }
    drop(batch);
    driver.advance(DEDUP_WINDOW_MS_DEFAULT + 60_000);
    // Let the engine's bounded clean-up of the forgotten loading requests finish (untimed).
    for _ in 0..=shape.balances() / CLEANUP_STEPS_PER_BATCH {
        driver.advance(BATCH_STEP_MS);
    }
    let status = driver.status();
    assert_eq!(status.balances, shape.balances() as u64);
    assert_eq!(status.dedup_entries, 0);
    driver.ledger
}

/// One checkout cart: distinct SKUs at one location, with their quantities, and the ids of
/// the hold and order it becomes.
#[derive(Debug, Clone)]
pub struct Cart {
    /// The hold's id.
    pub reservation: ReservationId,
    /// The order's id, once placed.
    pub order: OrderId,
    /// Where the cart is served from.
    pub location: LocationId,
    /// (SKU, units) per line; SKUs are distinct.
    pub items: Vec<(SkuId, i64)>,
}

/// Checkout traffic over a [`Shape`]: SKU popularity is skewed 80/20 (80% of the lines are
/// for the most popular 20% of the SKUs, uniform within each part), locations are uniform,
/// 1-3 units per line, ids are random (UUID-shaped) as a gateway would send them.
#[derive(Debug, Clone)]
pub struct Workload {
    rng: Rng,
    shape: Shape,
    channel: ChannelId,
    locations: Vec<LocationId>,
}

impl Workload {
    /// Traffic over `shape`, repeatable from `seed`.
    pub fn new(shape: Shape, seed: u64) -> Self {
        Workload {
            rng: Rng::new(seed),
            shape,
            channel: ChannelId::from("web"),
            locations: (0..shape.locations).map(location_id).collect(),
        }
    }

    /// A SKU index, 80/20 skewed.
    pub fn sku(&mut self) -> usize {
        let hot = (self.shape.skus / 5).max(1) as u64;
        let all = self.shape.skus as u64;
        let i = if self.rng.below(10) < 8 || hot == all {
            self.rng.below(hot)
        } else {
            hot + self.rng.below(all - hot)
        };
        i as usize
    }

    /// A new cart of `lines` distinct SKUs at a uniformly chosen location.
    pub fn cart(&mut self, lines: usize) -> Cart {
        assert!(lines <= self.shape.skus);
        let mut skus: Vec<usize> = Vec::with_capacity(lines);
        while skus.len() < lines {
            let s = self.sku();
            if !skus.contains(&s) {
                skus.push(s);
            }
        }
        let location = self.locations[self.rng.below(self.locations.len() as u64) as usize].clone();
        let items = skus
            .into_iter()
            .map(|s| (sku_id(s), 1 + self.rng.below(3) as i64))
            .collect();
        Cart {
            reservation: ReservationId::from(uuid_like(self.rng.nonzero_u128())),
            order: OrderId::from(uuid_like(self.rng.nonzero_u128())),
            location,
            items,
        }
    }

    /// Wraps a command with a fresh random request id.
    pub fn request(&mut self, command: Command) -> Request {
        Request {
            request_id: RequestId(self.rng.nonzero_u128()),
            command,
        }
    }

    /// `reserve` of the cart's lines at its location, for [`HOLD_TTL_MS`].
    pub fn reserve(&mut self, cart: &Cart) -> Request {
        let lines = cart
            .items
            .iter()
            .map(|(sku, qty)| Line {
                sku: sku.clone(),
                target: Target::Location(cart.location.clone()),
                qty: *qty,
            })
            .collect();
        self.request(Command::Reserve {
            reservation: cart.reservation.clone(),
            channel: self.channel.clone(),
            lines,
            ttl_ms: HOLD_TTL_MS,
        })
    }

    /// `place_order` from the cart's hold, shipped.
    pub fn place_order(&mut self, cart: &Cart) -> Request {
        self.request(Command::PlaceOrder {
            order: cart.order.clone(),
            source: OrderSource::Reservation(cart.reservation.clone()),
            fulfilment: Fulfilment::Ship,
        })
    }

    /// `fulfil` of every line of the cart's order.
    pub fn fulfil(&mut self, cart: &Cart) -> Request {
        let lines = cart
            .items
            .iter()
            .map(|(sku, qty)| LocatedLine {
                sku: sku.clone(),
                location: cart.location.clone(),
                qty: *qty,
            })
            .collect();
        self.request(Command::Fulfil {
            order: cart.order.clone(),
            lines,
        })
    }

    /// A batch of `n` reservations of fresh `lines`-line carts.
    pub fn reserve_batch(&mut self, n: usize, lines: usize) -> Vec<Request> {
        (0..n)
            .map(|_| {
                let cart = self.cart(lines);
                self.reserve(&cart)
            })
            .collect()
    }
}

/// How a [`Session`] puts its ledger back once enough requests were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Replace the working ledger with a fresh clone of the base: the next window starts
    /// "cold", with empty reservation, order and dedup tables that grow (rehash, fresh pages)
    /// while it runs.
    Clone,
    /// Let time pass on the same ledger (past every hold's deadline, the dedup window and the
    /// retention of finished objects, [`RETIRED_MS_DEFAULT`]): everything is expired and
    /// pruned, but the tables keep their capacity and their memory stays mapped, as on a
    /// server that has been taking this traffic for a while ("warm").
    Expire,
}

/// A driver over a copy of a base ledger that is put back (untimed, by the caller) once
/// enough requests were applied, so that a throughput benchmark's state stays bounded: holds,
/// orders and dedup entries accumulate while it runs.
#[derive(Debug)]
pub struct Session {
    base: Option<Ledger>,
    /// The driver of the working copy.
    pub driver: Driver,
    applied: usize,
    reset_after: usize,
}

impl Session {
    /// A working copy of `base`, put back as `mode` says after `reset_after` applied requests.
    pub fn new(base: Ledger, reset_after: usize, mode: Reset) -> Self {
        let (driver, base) = match mode {
            Reset::Clone => (Driver::new(base.clone()), Some(base)),
            Reset::Expire => (Driver::new(base), None),
        };
        Session {
            base,
            driver,
            applied: 0,
            reset_after,
        }
    }

    /// Whether the next batch of `n` requests would pass the reset threshold.
    pub fn due(&self, n: usize) -> bool {
        self.applied + n > self.reset_after
    }

    /// Puts the working ledger back (call outside the timed region).
    pub fn reset(&mut self) {
        match &self.base {
            Some(base) => self.driver = Driver::new(base.clone()),
            None => {
                // First every hold expires (and is retired), over as many batches as that
                // takes, then its retention passes.
                self.driver.advance(HOLD_TTL_MS + 1000);
                self.driver.expire_due();
                self.driver.advance(RETIRED_MS_DEFAULT + 1000);
                // The engine cleans up what retention dropped (index entries, slots) a bounded
                // number of entries per batch: let that backlog drain here, untimed, so that a
                // window starts from clean tables as before (the old engine dropped everything
                // inside the second `advance`).
                let backlog = 2 * self.reset_after + self.reset_after / 2;
                for _ in 0..=backlog / CLEANUP_STEPS_PER_BATCH {
                    self.driver.advance(BATCH_STEP_MS);
                }
                let status = self.driver.status();
                assert_eq!(
                    (
                        status.live_reservations,
                        status.open_orders,
                        status.dedup_entries
                    ),
                    (0, 0, 0),
                    "everything expired and was pruned"
                );
            }
        }
        self.applied = 0;
    }

    /// Counts `n` applied requests towards the reset threshold.
    pub fn count(&mut self, n: usize) {
        self.applied += n;
    }
}

/// A size field of `/proc/self/status` (`VmRSS`, `VmHWM`...), bytes; `None` where that file
/// or field does not exist.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    let kib: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resident set size of this process (`VmRSS`), bytes.
pub fn vm_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// Peak resident set size of this process (`VmHWM`), bytes.
pub fn vm_hwm_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_reserves_succeed_on_a_small_ledger() {
        let shape = Shape {
            skus: 50,
            locations: 3,
        };
        let mut driver = Driver::new(load_stock(shape, Config::default()));
        let mut work = Workload::new(shape, 7);
        let carts: Vec<Cart> = (0..20).map(|_| work.cart(5)).collect();
        let reserves: Vec<Request> = carts.iter().map(|c| work.reserve(c)).collect();
        assert_all_ok(&driver.apply(&reserves));
        let places: Vec<Request> = carts.iter().map(|c| work.place_order(c)).collect();
        assert_all_ok(&driver.apply(&places));
        let fulfils: Vec<Request> = carts.iter().map(|c| work.fulfil(c)).collect();
        assert_all_ok(&driver.apply(&fulfils));
        let status = driver.status();
        assert_eq!((status.live_reservations, status.open_orders), (0, 0));
        assert_eq!(status.balances, 150);
    }

    #[test]
    fn skew_is_80_20() {
        let shape = Shape {
            skus: 1000,
            locations: 1,
        };
        let mut work = Workload::new(shape, 1);
        let hot = (0..100_000).filter(|_| work.sku() < 200).count();
        assert!((78_000..82_000).contains(&hot), "{hot}");
    }

    #[test]
    fn uuid_like_ids_are_valid() {
        let id = uuid_like(u128::MAX - 5);
        assert_eq!(id.len(), 36);
        assert!(engine::ids::is_valid_id(&id));
        assert!(engine::ids::is_valid_id(sku_id(3).as_str()));
        let rss = vm_rss_bytes();
        assert!(rss.is_some_and(|b| b > 0));
        // The peak is read after the resident size: other test threads may grow the process
        // between the two reads, and only this order makes the peak an upper bound.
        assert!(vm_hwm_bytes() >= rss);
    }
}

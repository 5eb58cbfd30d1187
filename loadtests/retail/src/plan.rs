//! The planner: turns [`Event`]s into timestamped batches of engine requests, reading the
//! ledger's answers the way an order-management system does (see the module doc of
//! [`crate`] for every mapping choice).
//!
//! It is a deterministic state machine with two calls: [`Planner::next_batch`] gives the next
//! batch; [`Planner::observe`] takes that batch's outcomes, in order. The same events and the
//! same outcomes always give the same batches, so a backend that answers like the engine (the
//! engine itself, or a cluster of them) gets the same request sequence.

use std::collections::{BTreeMap, HashMap, VecDeque};

use engine::limits::{BATCH_REQUESTS_MAX, LINES_PER_REQUEST_MAX};
use engine::{
    ChannelId, Command, Disposition, Fulfilment, GroupId, Line, LocatedLine, OrderId, OrderSource,
    Outcome, Reason, Rejection, Reply, Request, RequestId, ReservationId, ReturnLine, RmaId, SkuId,
    Target,
};
use serde::Serialize;

use super::events::{Event, EventKind};
use super::network::{
    self, location_id, location_index, region_of, Loc, Region, CHANNEL_B2B, CHANNEL_WEB,
    EU_WAREHOUSE, FIRST_STORE, LOCATION_COUNT, UK_WAREHOUSE,
};

/// One hour, ms.
pub const HOUR_MS: u64 = 3_600_000;
/// One day, ms.
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// One week, ms.
pub const WEEK_MS: u64 = 7 * DAY_MS;

/// The knobs of the mapping. [`PlanConfig::default`] is what the replay uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanConfig {
    /// Weekly replenishment brings a warehouse's free stock (on hand - reserved - allocated)
    /// up to this many days of its average daily demand over the last (up to) 4 weeks.
    pub cover_days: i64,
    /// A SKU's opening stock at a warehouse: this many days of its average daily demand over
    /// its first 28 days on sale.
    pub opening_cover_days: i64,
    /// Review time: ms after a Monday 00:00 UTC (05:00, before the dispatch run).
    pub review_offset_ms: u64,
    /// Safety stock of every SKU a store carries.
    pub store_safety_stock: i64,
    /// A store's stock above safety: this percentage of a week of UK demand.
    pub store_share_percent: i64,
    /// Sale lines of at least this many units are bulk trade orders, bought for the order:
    /// the home warehouse receives the line's units (reason `bulk-receipt`) just before the
    /// checkout, and they do not count as demand for stock planning.
    pub bulk_line_min_units: i64,
    /// Invoices of a known customer worth at least this (millionths of a pound) are trade
    /// orders: channel `b2b`.
    pub b2b_min_value_micros: i64,
    /// Pickup candidates: UK customers' web invoices of at most this many lines...
    pub pickup_max_lines: usize,
    /// ...and at most this many units...
    pub pickup_max_units: i64,
    /// ...whose invoice number is a multiple of this.
    pub pickup_one_in: u64,
    /// Collection window of pickup orders, ms.
    pub pickup_deadline_ms: u64,
    /// Checkout holds' TTL, ms (the order is placed right after the hold is granted).
    pub reservation_ttl_ms: u64,
    /// Hour (UTC) of the daily dispatch run: orders placed before it ship then, pickup orders
    /// are made ready then.
    pub dispatch_hour: u64,
    /// Hour (UTC) at which pickup orders made ready that morning are collected.
    pub collect_hour: u64,
    /// Returns are received only for orders placed within this many days.
    pub return_window_days: u64,
    /// High 64 bits of every request id (the low 64 bits count requests from 1).
    pub request_id_namespace: u64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            cover_days: 28,
            opening_cover_days: 14,
            review_offset_ms: 5 * HOUR_MS,
            store_safety_stock: 2,
            store_share_percent: 25,
            bulk_line_min_units: 1_000,
            b2b_min_value_micros: 1_000 * 1_000_000,
            pickup_max_lines: 10,
            pickup_max_units: 50,
            pickup_one_in: 4,
            pickup_deadline_ms: 7 * DAY_MS,
            reservation_ttl_ms: 15 * 60_000,
            dispatch_hour: 6,
            collect_hour: 12,
            return_window_days: 60,
            // "retail" in ASCII: tells replay requests apart from any other client's.
            request_id_namespace: 0x7265_7461_696c_0001,
        }
    }
}

/// A batch of requests, all stamped with the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The batch's time, ms since the epoch (a CSV invoice time, or a scheduled task's time).
    pub timestamp_ms: u64,
    /// At most [`BATCH_REQUESTS_MAX`] requests.
    pub requests: Vec<Request>,
}

/// What the planner did and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanStats {
    /// Requests sent.
    pub requests: u64,
    /// Batches sent.
    pub batches: u64,
    /// Outcomes by code (`ok` included).
    pub outcomes: BTreeMap<String, u64>,
    /// Checkouts started (one per sale invoice, more for invoices above
    /// `LINES_PER_REQUEST_MAX` SKUs).
    pub checkouts: u64,
    /// Of which on channel `b2b`.
    pub checkouts_b2b: u64,
    /// Extra checkouts for invoices split at `LINES_PER_REQUEST_MAX` SKUs.
    pub checkouts_split: u64,
    /// SKU lines over all checkouts (as asked, before any trimming).
    pub checkout_lines: u64,
    /// `reserve` requests, retries included.
    pub reserve_attempts: u64,
    /// Checkouts given up: every line sold out.
    pub checkouts_abandoned: u64,
    /// Lines reduced to the units available.
    pub lines_trimmed: u64,
    /// Lines removed: nothing available.
    pub lines_sold_out: u64,
    /// Checkouts tried as store pickups.
    pub pickups_attempted: u64,
    /// Of which the store could not serve: shipped from the group instead.
    pub pickups_fell_back: u64,
    /// Orders placed.
    pub orders_placed: u64,
    /// Of which pickup orders.
    pub pickup_orders: u64,
    /// Pickup orders collected.
    pub pickups_collected: u64,
    /// Units asked for by sale invoices.
    pub units_requested: u64,
    /// Units granted by reservations (all placed as orders).
    pub units_reserved: u64,
    /// Units shipped or handed over.
    pub units_fulfilled: u64,
    /// Units cancelled at dispatch because the location had lost them (write-offs).
    pub units_short_shipped: u64,
    /// Units on cancellation invoices.
    pub cancellation_units: u64,
    /// Units cancelled before dispatch (`cancel`).
    pub units_cancelled: u64,
    /// `cancel` requests.
    pub cancels: u64,
    /// Units received back (`return`, restock).
    pub units_returned: u64,
    /// `return` requests (RMAs).
    pub returns: u64,
    /// Cancelled units of guest invoices: nothing to match.
    pub units_unmatched_no_customer: u64,
    /// Cancelled units with no open or returnable order of that customer and SKU (orders from
    /// before the data, quantities above what was bought or kept...).
    pub units_unmatched_no_order: u64,
    /// Of which returnable on orders placed before the return window.
    pub units_unmatched_outside_window: u64,
    /// Units of opening stock (launch receipts).
    pub units_opening: u64,
    /// Units of weekly replenishment receipts.
    pub units_replenished: u64,
    /// Replenishment receipts (`adjust` requests).
    pub receipts: u64,
    /// Bulk lines (see `PlanConfig::bulk_line_min_units`).
    pub bulk_lines: u64,
    /// Units received for bulk lines.
    pub units_bulk_received: u64,
    /// Units of stock found (positive zero-price lines).
    pub units_found: u64,
    /// Units on write-off lines.
    pub write_off_units_requested: u64,
    /// Units written off (at most what was on hand).
    pub units_written_off: u64,
    /// Outcomes the planner did not expect (should be 0).
    pub unexpected: u64,
    /// The first few unexpected outcomes, described.
    pub unexpected_samples: Vec<String>,
}

/// The planner's view of one balance, kept from the ledger's answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MirrorBalance {
    /// Units on hand.
    pub on_hand: i64,
    /// Units held by reservations.
    pub reserved: i64,
    /// Units allocated to unfulfilled order lines.
    pub allocated: i64,
    /// Safety stock.
    pub safety_stock: i64,
}

/// A balance the planner expects (see [`Planner::expected_balances`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedBalance {
    /// The SKU.
    pub sku: SkuId,
    /// The location.
    pub location: engine::LocationId,
    /// What the planner's answers say it holds.
    pub balance: MirrorBalance,
}

impl MirrorBalance {
    fn free(&self) -> i64 {
        self.on_hand - self.reserved - self.allocated
    }
}

type SkuIdx = u32;

/// Units of a SKU at a location.
type Located = (SkuIdx, Loc, i64);

/// Lines per order (by order index), in order of first use.
type PerOrder = Vec<(u32, Vec<Located>)>;

struct SkuState {
    id: SkuId,
    launched: bool,
    listed_in_stores: bool,
    launch_week: u64,
    /// Demand (units asked) in the SKU's first 28 days on sale, per [`Slot`].
    first28: [i64; SLOTS],
    /// Demand per review week, per [`Slot`], ascending weeks.
    weekly: Vec<(u64, [i64; SLOTS])>,
    bal: [MirrorBalance; LOCATION_COUNT],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StockKind {
    Opening,
    Receipt,
    Bulk,
    Found,
    WriteOff,
}

struct Checkout {
    key: String,
    customer: Option<u32>,
    channel: &'static str,
    region: Region,
    pickup_store: Option<Loc>,
    lines: Vec<(SkuIdx, i64)>,
}

struct OrderLineRec {
    sku: SkuIdx,
    loc: Loc,
    ordered: i64,
    fulfilled: i64,
    cancelled: i64,
}

impl OrderLineRec {
    fn unfulfilled(&self) -> i64 {
        self.ordered - self.fulfilled - self.cancelled
    }
}

struct OrderRec {
    id: OrderId,
    placed_ms: u64,
    lines: Vec<OrderLineRec>,
    returned: Vec<(SkuIdx, i64)>,
}

impl OrderRec {
    fn unfulfilled(&self) -> i64 {
        self.lines.iter().map(OrderLineRec::unfulfilled).sum()
    }

    fn line_mut(&mut self, sku: SkuIdx, loc: Loc) -> Option<&mut OrderLineRec> {
        self.lines.iter_mut().find(|l| l.sku == sku && l.loc == loc)
    }

    fn returned(&self, sku: SkuIdx) -> i64 {
        self.returned
            .iter()
            .find(|(s, _)| *s == sku)
            .map_or(0, |(_, q)| *q)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Review,
    Dispatch(u32),
    Ready(u32),
    Collect(u32),
}

/// Why a request was sent: how to read its outcome.
enum Purpose {
    Setup,
    Stock {
        sku: SkuIdx,
        loc: Loc,
        kind: StockKind,
        delta: i64,
    },
    Safety,
    Reserve(u32),
    Place(u32),
    Fulfil {
        order: u32,
        lines: Vec<Located>,
    },
    ShortShip {
        order: u32,
        sku: SkuIdx,
        loc: Loc,
        qty: i64,
    },
    Ready,
    PickedUp(u32),
    Cancel {
        order: u32,
        lines: Vec<Located>,
    },
    Return {
        order: u32,
        lines: Vec<Located>,
    },
}

/// The replay's order-management system: see the module doc.
pub struct Planner {
    cfg: PlanConfig,
    events: VecDeque<Event>,
    skus: Vec<SkuState>,
    sku_index: HashMap<String, SkuIdx>,
    checkouts: Vec<Checkout>,
    orders: Vec<OrderRec>,
    by_customer: HashMap<u32, Vec<u32>>,
    schedule: BTreeMap<(u64, u64), Task>,
    task_seq: u64,
    started: bool,
    now_ms: u64,
    /// Requests of the current round not sent yet.
    round: VecDeque<(Request, Purpose)>,
    /// Purposes of the batch awaiting its outcomes.
    sent: Vec<Purpose>,
    /// Requests of the next round at the same time, decided from outcomes.
    follow_ups: Vec<(Command, Purpose)>,
    /// Cancellation invoices of the current time, planned once nothing else is in flight.
    deferred: VecDeque<Event>,
    next_request: u64,
    stats: PlanStats,
}

fn ceil_div(a: i64, b: i64) -> i64 {
    debug_assert!(a >= 0 && b > 0);
    (a + b - 1) / b
}

/// Demand is kept apart by who can be served from where: stores serve UK web orders only;
/// `uk-wh` serves UK (web and trade) and international orders; `eu-wh` EU orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    UkWeb = 0,
    UkB2b = 1,
    Eu = 2,
    Intl = 3,
}

const SLOTS: usize = 4;

fn slot(region: Region, b2b: bool) -> Slot {
    match (region, b2b) {
        (Region::Uk, false) => Slot::UkWeb,
        (Region::Uk, true) => Slot::UkB2b,
        (Region::Eu, _) => Slot::Eu,
        (Region::Intl, _) => Slot::Intl,
    }
}

/// Whether a sale invoice is a trade order (channel `b2b`).
fn is_b2b(cfg: &PlanConfig, event: &Event) -> bool {
    event.customer.is_some() && event.value_micros >= cfg.b2b_min_value_micros
}

/// The first time at `hour` (UTC) strictly after `t`.
fn next_at_hour(t: u64, hour: u64) -> u64 {
    let at = t - t % DAY_MS + hour * HOUR_MS;
    if at > t {
        at
    } else {
        at + DAY_MS
    }
}

impl Planner {
    /// A planner for these events (in time order, as [`super::events::build`] gives them).
    pub fn new(events: Vec<Event>, cfg: PlanConfig) -> Planner {
        assert!(
            cfg.collect_hour > cfg.dispatch_hour
                && cfg.collect_hour < 24
                && (cfg.collect_hour - cfg.dispatch_hour) * HOUR_MS + DAY_MS
                    < cfg.pickup_deadline_ms,
            "pickups are collected well before their deadline"
        );
        assert!(
            cfg.return_window_days * DAY_MS < engine::limits::RETIRED_MS_DEFAULT,
            "returned orders are still retained by the ledger"
        );
        let mut planner = Planner {
            cfg,
            events: VecDeque::new(),
            skus: Vec::new(),
            sku_index: HashMap::new(),
            checkouts: Vec::new(),
            orders: Vec::new(),
            by_customer: HashMap::new(),
            schedule: BTreeMap::new(),
            task_seq: 0,
            started: false,
            now_ms: 0,
            round: VecDeque::new(),
            sent: Vec::new(),
            follow_ups: Vec::new(),
            deferred: VecDeque::new(),
            next_request: 1,
            stats: PlanStats::default(),
        };
        // Pre-pass: intern every SKU; a SKU's demand in its first 28 days sets its opening
        // stock (there is no stock history before the data starts).
        let mut first_sale: Vec<Option<u64>> = Vec::new();
        for event in &events {
            for line in &event.lines {
                let sku = planner.intern(&line.sku);
                if first_sale.len() <= sku as usize {
                    first_sale.resize(sku as usize + 1, None);
                }
                if event.kind != EventKind::Sale || line.qty >= planner.cfg.bulk_line_min_units {
                    continue;
                }
                let first = *first_sale[sku as usize].get_or_insert(event.time_ms);
                if event.time_ms < first + 28 * DAY_MS {
                    let slot = slot(region_of(&event.country), is_b2b(&planner.cfg, event));
                    planner.skus[sku as usize].first28[slot as usize] += line.qty;
                }
            }
        }
        planner.events = events.into();
        planner
    }

    fn intern(&mut self, sku: &str) -> SkuIdx {
        if let Some(&idx) = self.sku_index.get(sku) {
            return idx;
        }
        let idx = self.skus.len() as SkuIdx;
        self.skus.push(SkuState {
            id: SkuId::from(sku),
            launched: false,
            listed_in_stores: false,
            launch_week: 0,
            first28: [0; SLOTS],
            weekly: Vec::new(),
            bal: [MirrorBalance::default(); LOCATION_COUNT],
        });
        self.sku_index.insert(sku.to_owned(), idx);
        idx
    }

    /// What the planner did so far.
    pub fn stats(&self) -> &PlanStats {
        &self.stats
    }

    /// Every SKU of the events, in first-appearance order.
    pub fn skus(&self) -> Vec<SkuId> {
        self.skus.iter().map(|s| s.id.clone()).collect()
    }

    /// The balances the planner expects from the answers it saw, for every SKU and location
    /// it touched (a cross-check against the ledger: they must be equal).
    pub fn expected_balances(&self) -> Vec<ExpectedBalance> {
        let mut out = Vec::new();
        for s in &self.skus {
            for (loc, b) in s.bal.iter().enumerate() {
                if *b != MirrorBalance::default() {
                    out.push(ExpectedBalance {
                        sku: s.id.clone(),
                        location: location_id(loc as Loc),
                        balance: *b,
                    });
                }
            }
        }
        out
    }

    /// The time of the last batch given, ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Whether every event and task was planned and answered.
    pub fn is_finished(&self) -> bool {
        self.events.is_empty()
            && self.schedule.is_empty()
            && self.round.is_empty()
            && self.sent.is_empty()
            && self.follow_ups.is_empty()
            && self.deferred.is_empty()
    }

    /// The next batch, or `None` when everything is done. Panics if the previous batch's
    /// outcomes were not given to [`Planner::observe`].
    pub fn next_batch(&mut self) -> Option<Batch> {
        assert!(
            self.sent.is_empty(),
            "observe the previous batch's outcomes first"
        );
        loop {
            if !self.round.is_empty() {
                let n = self.round.len().min(BATCH_REQUESTS_MAX);
                let mut requests = Vec::with_capacity(n);
                for (request, purpose) in self.round.drain(..n) {
                    requests.push(request);
                    self.sent.push(purpose);
                }
                self.stats.batches += 1;
                self.stats.requests += n as u64;
                return Some(Batch {
                    timestamp_ms: self.now_ms,
                    requests,
                });
            }
            if !self.follow_ups.is_empty() {
                for (command, purpose) in std::mem::take(&mut self.follow_ups) {
                    self.push(command, purpose);
                }
                continue;
            }
            if let Some(event) = self.deferred.pop_front() {
                // One cancellation invoice per round: the next one sees this one's effect.
                self.plan_cancellation(&event);
                continue;
            }
            if !self.advance() {
                return None;
            }
        }
    }

    /// Takes the outcomes of the batch last given by [`Planner::next_batch`], in order.
    pub fn observe(&mut self, outcomes: &[Outcome]) {
        assert_eq!(
            outcomes.len(),
            self.sent.len(),
            "one outcome per request of the last batch"
        );
        let sent = std::mem::take(&mut self.sent);
        for (purpose, outcome) in sent.into_iter().zip(outcomes) {
            *self
                .stats
                .outcomes
                .entry(engine::code_of(outcome).as_str().to_owned())
                .or_default() += 1;
            self.read(purpose, outcome);
        }
    }

    fn request_id(&mut self) -> RequestId {
        let id = (u128::from(self.cfg.request_id_namespace) << 64) | u128::from(self.next_request);
        self.next_request += 1;
        RequestId(id)
    }

    fn push(&mut self, command: Command, purpose: Purpose) {
        let request_id = self.request_id();
        self.round.push_back((
            Request {
                request_id,
                command,
            },
            purpose,
        ));
    }

    fn schedule(&mut self, at: u64, task: Task) {
        self.task_seq += 1;
        self.schedule.insert((at, self.task_seq), task);
    }

    fn week_of(&self, t: u64) -> u64 {
        // Weeks run from one review to the next; 1970-01-05 was a Monday.
        let anchor = 4 * DAY_MS + self.cfg.review_offset_ms;
        t.saturating_sub(anchor) / WEEK_MS
    }

    /// Moves time to the next event or task and plans everything due then.
    fn advance(&mut self) -> bool {
        let next_event = self.events.front().map(|e| e.time_ms);
        let next_task = self.schedule.keys().next().map(|k| k.0);
        let t = match (next_event, next_task) {
            (None, None) => return false,
            (Some(a), None) | (None, Some(a)) => a,
            (Some(a), Some(b)) => a.min(b),
        };
        self.now_ms = self.now_ms.max(t);
        if !self.started {
            self.started = true;
            for command in network::setup_commands() {
                self.push(command, Purpose::Setup);
            }
            let anchor = 4 * DAY_MS + self.cfg.review_offset_ms;
            let first_review = anchor + (self.week_of(t) + 1) * WEEK_MS;
            self.schedule(first_review, Task::Review);
        }
        while let Some(entry) = self.schedule.first_entry() {
            if entry.key().0 > self.now_ms {
                break;
            }
            let task = entry.remove();
            self.run_task(task);
        }
        while self
            .events
            .front()
            .is_some_and(|e| e.time_ms <= self.now_ms)
        {
            if let Some(event) = self.events.pop_front() {
                self.start_event(event);
            }
        }
        true
    }

    fn run_task(&mut self, task: Task) {
        match task {
            Task::Review => {
                // Replenishment stops with the data.
                if !self.events.is_empty() {
                    self.review();
                    self.schedule(self.now_ms + WEEK_MS, Task::Review);
                }
            }
            Task::Dispatch(order) => {
                let lines: Vec<Located> = self.orders[order as usize]
                    .lines
                    .iter()
                    .filter(|l| l.unfulfilled() > 0)
                    .map(|l| (l.sku, l.loc, l.unfulfilled()))
                    .collect();
                for chunk in lines.chunks(LINES_PER_REQUEST_MAX) {
                    self.push_fulfil(order, chunk.to_vec(), true);
                }
            }
            Task::Ready(order) => {
                let o = &self.orders[order as usize];
                if o.unfulfilled() > 0 {
                    let command = Command::ReadyForPickup {
                        order: o.id.clone(),
                    };
                    self.push(command, Purpose::Ready);
                }
            }
            Task::Collect(order) => {
                let o = &self.orders[order as usize];
                if o.unfulfilled() > 0 {
                    let command = Command::PickedUp {
                        order: o.id.clone(),
                    };
                    self.push(command, Purpose::PickedUp(order));
                }
            }
        }
    }

    fn fulfil_command(&self, order: u32, lines: &[Located]) -> Command {
        Command::Fulfil {
            order: self.orders[order as usize].id.clone(),
            lines: lines
                .iter()
                .map(|&(sku, loc, qty)| LocatedLine {
                    sku: self.skus[sku as usize].id.clone(),
                    location: location_id(loc),
                    qty,
                })
                .collect(),
        }
    }

    /// A fulfil now (`now`) or in the next round.
    fn push_fulfil(&mut self, order: u32, lines: Vec<Located>, now: bool) {
        let command = self.fulfil_command(order, &lines);
        let purpose = Purpose::Fulfil { order, lines };
        if now {
            self.push(command, purpose);
        } else {
            self.follow_ups.push((command, purpose));
        }
    }

    fn start_event(&mut self, event: Event) {
        match event.kind {
            EventKind::Sale => self.start_sale(&event),
            EventKind::Cancellation => {
                self.stats.cancellation_units += event.units() as u64;
                self.deferred.push_back(event);
            }
            EventKind::WriteOff => {
                for line in &event.lines {
                    let sku = self.sku_index[&line.sku];
                    self.stats.write_off_units_requested += line.qty as u64;
                    self.push_adjust(sku, UK_WAREHOUSE, -line.qty, StockKind::WriteOff, true);
                }
            }
            EventKind::StockFound => {
                for line in &event.lines {
                    let sku = self.sku_index[&line.sku];
                    self.push_adjust(sku, UK_WAREHOUSE, line.qty, StockKind::Found, true);
                }
            }
        }
    }

    fn push_adjust(&mut self, sku: SkuIdx, loc: Loc, delta: i64, kind: StockKind, now: bool) {
        let reason = match kind {
            StockKind::Opening => "opening-stock",
            StockKind::Receipt => "receipt",
            StockKind::Bulk => "bulk-receipt",
            StockKind::Found => "stock-found",
            StockKind::WriteOff => "write-off",
        };
        let command = Command::Adjust {
            sku: self.skus[sku as usize].id.clone(),
            location: location_id(loc),
            delta,
            reason: Reason::from(reason),
        };
        let purpose = Purpose::Stock {
            sku,
            loc,
            kind,
            delta,
        };
        if now {
            self.push(command, purpose);
        } else {
            self.follow_ups.push((command, purpose));
        }
    }

    fn list_in_stores(&mut self, sku: SkuIdx) {
        self.skus[sku as usize].listed_in_stores = true;
        for store in FIRST_STORE..LOCATION_COUNT as Loc {
            let command = Command::SetSafetyStock {
                sku: self.skus[sku as usize].id.clone(),
                location: location_id(store),
                qty: self.cfg.store_safety_stock,
            };
            self.push(command, Purpose::Safety);
        }
    }

    /// Opening stock of a SKU at its first sale.
    fn launch(&mut self, sku: SkuIdx) {
        let week = self.week_of(self.now_ms);
        let s = &mut self.skus[sku as usize];
        s.launched = true;
        s.launch_week = week;
        let [uk_web, uk_b2b, eu, intl] = s.first28;
        let days = self.cfg.opening_cover_days;
        let uk_wh = uk_web + uk_b2b + intl;
        if uk_wh > 0 {
            let qty = ceil_div(uk_wh * days, 28);
            self.push_adjust(sku, UK_WAREHOUSE, qty, StockKind::Opening, true);
        }
        if eu > 0 {
            let qty = ceil_div(eu * days, 28);
            self.push_adjust(sku, EU_WAREHOUSE, qty, StockKind::Opening, true);
        }
        if uk_web > 0 {
            self.list_in_stores(sku);
            let qty = self.cfg.store_safety_stock
                + ceil_div(uk_web * self.cfg.store_share_percent, 4 * 100);
            for store in FIRST_STORE..LOCATION_COUNT as Loc {
                self.push_adjust(sku, store, qty, StockKind::Opening, true);
            }
        }
    }

    /// Weekly replenishment: order-up-to targets from the last (up to) 4 weeks of demand.
    fn review(&mut self) {
        let week = self.week_of(self.now_ms);
        for sku in 0..self.skus.len() as SkuIdx {
            let s = &self.skus[sku as usize];
            if !s.launched {
                continue;
            }
            let weeks = (week.saturating_sub(s.launch_week)).clamp(1, 4);
            let mut demand = [0i64; SLOTS];
            for (w, d) in s.weekly.iter().rev() {
                if *w + weeks < week {
                    break;
                }
                if *w < week {
                    for (total, x) in demand.iter_mut().zip(d) {
                        *total += x;
                    }
                }
            }
            let days = weeks as i64 * 7;
            let [uk_web, uk_b2b, eu, intl] = demand;
            let targets = [
                (
                    UK_WAREHOUSE,
                    ceil_div((uk_web + uk_b2b + intl) * self.cfg.cover_days, days),
                ),
                (EU_WAREHOUSE, ceil_div(eu * self.cfg.cover_days, days)),
            ];
            for (loc, target) in targets {
                let receipt = target - self.skus[sku as usize].bal[loc as usize].free();
                if receipt > 0 {
                    self.push_adjust(sku, loc, receipt, StockKind::Receipt, true);
                }
            }
            if uk_web > 0 && !self.skus[sku as usize].listed_in_stores {
                self.list_in_stores(sku);
            }
            if self.skus[sku as usize].listed_in_stores {
                let target = self.cfg.store_safety_stock
                    + ceil_div(uk_web * self.cfg.store_share_percent, weeks as i64 * 100);
                for store in FIRST_STORE..LOCATION_COUNT as Loc {
                    let receipt = target - self.skus[sku as usize].bal[store as usize].free();
                    if receipt > 0 {
                        self.push_adjust(sku, store, receipt, StockKind::Receipt, true);
                    }
                }
            }
        }
    }

    fn record_demand(&mut self, sku: SkuIdx, slot: Slot, qty: i64) {
        let week = self.week_of(self.now_ms);
        let weekly = &mut self.skus[sku as usize].weekly;
        match weekly.last_mut() {
            Some((w, d)) if *w == week => d[slot as usize] += qty,
            _ => {
                let mut d = [0; SLOTS];
                d[slot as usize] = qty;
                weekly.push((week, d));
            }
        }
    }

    fn start_sale(&mut self, event: &Event) {
        let region = region_of(&event.country);
        let b2b = is_b2b(&self.cfg, event);
        let mut lines = Vec::with_capacity(event.lines.len());
        for line in &event.lines {
            let sku = self.sku_index[&line.sku];
            if !self.skus[sku as usize].launched {
                self.launch(sku);
            }
            if line.qty >= self.cfg.bulk_line_min_units {
                self.stats.bulk_lines += 1;
                let home = region.home_warehouse();
                self.push_adjust(sku, home, line.qty, StockKind::Bulk, true);
            } else {
                self.record_demand(sku, slot(region, b2b), line.qty);
            }
            lines.push((sku, line.qty));
        }
        self.stats.units_requested += event.units() as u64;
        self.stats.checkout_lines += event.lines.len() as u64;
        let pickup_store = match (event.customer, event.invoice.parse::<u64>()) {
            (Some(customer), Ok(number))
                if !b2b
                    && event.country == "United Kingdom"
                    && event.lines.len() <= self.cfg.pickup_max_lines
                    && event.units() <= self.cfg.pickup_max_units
                    && number % self.cfg.pickup_one_in == 0 =>
            {
                let stores = (LOCATION_COUNT - FIRST_STORE as usize) as u32;
                Some(FIRST_STORE + (customer % stores) as Loc)
            }
            _ => None,
        };
        for (i, chunk) in lines.chunks(LINES_PER_REQUEST_MAX).enumerate() {
            let key = if i == 0 {
                event.invoice.clone()
            } else {
                self.stats.checkouts_split += 1;
                format!("{}-{}", event.invoice, i + 1)
            };
            self.stats.checkouts += 1;
            if b2b {
                self.stats.checkouts_b2b += 1;
            }
            if pickup_store.is_some() {
                self.stats.pickups_attempted += 1;
            }
            let checkout = self.checkouts.len() as u32;
            self.checkouts.push(Checkout {
                key,
                customer: event.customer,
                channel: if b2b { CHANNEL_B2B } else { CHANNEL_WEB },
                region,
                pickup_store,
                lines: chunk.to_vec(),
            });
            let command = self.reserve_command(checkout);
            self.stats.reserve_attempts += 1;
            self.push(command, Purpose::Reserve(checkout));
        }
    }

    fn reserve_command(&self, checkout: u32) -> Command {
        let c = &self.checkouts[checkout as usize];
        let target = match c.pickup_store {
            Some(store) => Target::Location(location_id(store)),
            None => Target::Group(GroupId::from(c.region.group())),
        };
        Command::Reserve {
            reservation: ReservationId::from(format!("rsv-{}", c.key)),
            channel: ChannelId::from(c.channel),
            lines: c
                .lines
                .iter()
                .map(|&(sku, qty)| Line {
                    sku: self.skus[sku as usize].id.clone(),
                    target: target.clone(),
                    qty,
                })
                .collect(),
            ttl_ms: self.cfg.reservation_ttl_ms,
        }
    }

    fn unexpected(&mut self, what: &str, outcome: &Outcome) {
        self.stats.unexpected += 1;
        if self.stats.unexpected_samples.len() < 20 {
            let text = match outcome {
                Ok(reply) => format!("{reply:?}"),
                Err(rejection) => rejection.to_string(),
            };
            self.stats
                .unexpected_samples
                .push(format!("{what} at {}: {text}", self.now_ms));
        }
    }

    fn sku_of(&self, id: &SkuId) -> Option<SkuIdx> {
        self.sku_index.get(id.as_str()).copied()
    }

    /// Reads one outcome.
    fn read(&mut self, purpose: Purpose, outcome: &Outcome) {
        match purpose {
            Purpose::Setup | Purpose::Ready => {
                if outcome.is_err() {
                    self.unexpected("setup/ready", outcome);
                }
            }
            Purpose::Safety => match outcome {
                Ok(Reply::Balance(_)) => {}
                _ => self.unexpected("set_safety_stock", outcome),
            },
            Purpose::Stock {
                sku,
                loc,
                kind,
                delta,
            } => self.read_stock(sku, loc, kind, delta, outcome),
            Purpose::Reserve(checkout) => self.read_reserve(checkout, outcome),
            Purpose::Place(checkout) => self.read_place(checkout, outcome),
            Purpose::Fulfil { order, lines } => self.read_fulfil(order, lines, outcome),
            Purpose::ShortShip {
                order,
                sku,
                loc,
                qty,
            } => {
                if outcome.is_ok() {
                    self.cancel_units(order, sku, loc, qty);
                    self.stats.units_short_shipped += qty as u64;
                } else {
                    self.unexpected("short-ship cancel", outcome);
                }
            }
            Purpose::PickedUp(order) => self.read_picked_up(order, outcome),
            Purpose::Cancel { order, lines } => {
                if outcome.is_ok() {
                    for (sku, loc, qty) in lines {
                        self.cancel_units(order, sku, loc, qty);
                        self.stats.units_cancelled += qty as u64;
                    }
                } else {
                    self.unexpected("cancel", outcome);
                }
            }
            Purpose::Return { order, lines } => {
                if outcome.is_ok() {
                    for (sku, loc, qty) in lines {
                        let o = &mut self.orders[order as usize];
                        match o.returned.iter_mut().find(|(s, _)| *s == sku) {
                            Some(entry) => entry.1 += qty,
                            None => o.returned.push((sku, qty)),
                        }
                        self.skus[sku as usize].bal[loc as usize].on_hand += qty;
                        self.stats.units_returned += qty as u64;
                    }
                } else {
                    self.unexpected("return", outcome);
                }
            }
        }
    }

    fn read_stock(
        &mut self,
        sku: SkuIdx,
        loc: Loc,
        kind: StockKind,
        delta: i64,
        outcome: &Outcome,
    ) {
        match outcome {
            Ok(Reply::Balance(b)) => {
                self.skus[sku as usize].bal[loc as usize] = MirrorBalance {
                    on_hand: b.on_hand,
                    reserved: b.reserved,
                    allocated: b.allocated,
                    safety_stock: b.safety_stock,
                };
                let units = delta.unsigned_abs();
                match kind {
                    StockKind::Opening => self.stats.units_opening += units,
                    StockKind::Receipt => {
                        self.stats.units_replenished += units;
                        self.stats.receipts += 1;
                    }
                    StockKind::Bulk => self.stats.units_bulk_received += units,
                    StockKind::Found => self.stats.units_found += units,
                    StockKind::WriteOff => self.stats.units_written_off += units,
                }
            }
            Err(Rejection::InsufficientStock { available, .. }) if kind == StockKind::WriteOff => {
                // Less on hand than the write-off: write off what is there.
                if *available > 0 {
                    self.push_adjust(sku, loc, -available, StockKind::WriteOff, false);
                }
            }
            _ => self.unexpected("adjust", outcome),
        }
    }

    fn read_reserve(&mut self, checkout: u32, outcome: &Outcome) {
        match outcome {
            Ok(Reply::Reserved { allocations, .. }) => {
                let c = &self.checkouts[checkout as usize];
                let mut units = 0;
                for a in allocations {
                    let Some(loc) = location_index(a.location.as_str()) else {
                        continue;
                    };
                    let sku = c.lines[a.line as usize].0;
                    self.skus[sku as usize].bal[loc as usize].reserved += a.qty;
                    units += a.qty;
                }
                self.stats.units_reserved += units as u64;
                let fulfilment = match c.pickup_store {
                    Some(_) => Fulfilment::Pickup {
                        deadline_ms: self.cfg.pickup_deadline_ms,
                    },
                    None => Fulfilment::Ship,
                };
                let command = Command::PlaceOrder {
                    order: OrderId::from(format!("ord-{}", c.key)),
                    source: OrderSource::Reservation(ReservationId::from(format!("rsv-{}", c.key))),
                    fulfilment,
                };
                self.follow_ups.push((command, Purpose::Place(checkout)));
            }
            Err(Rejection::InsufficientStock { sku, available, .. }) => {
                let sku = self.sku_of(sku);
                let c = &mut self.checkouts[checkout as usize];
                if c.pickup_store.is_some() {
                    // Not at the customer's store: ship it from the group instead.
                    c.pickup_store = None;
                    self.stats.pickups_fell_back += 1;
                } else {
                    let Some(pos) = c.lines.iter().position(|(s, _)| Some(*s) == sku) else {
                        self.unexpected("reserve", outcome);
                        return;
                    };
                    if *available > 0 && *available < c.lines[pos].1 {
                        c.lines[pos].1 = *available;
                        self.stats.lines_trimmed += 1;
                    } else {
                        c.lines.remove(pos);
                        self.stats.lines_sold_out += 1;
                    }
                    if c.lines.is_empty() {
                        self.stats.checkouts_abandoned += 1;
                        return;
                    }
                }
                let command = self.reserve_command(checkout);
                self.stats.reserve_attempts += 1;
                self.follow_ups.push((command, Purpose::Reserve(checkout)));
            }
            _ => self.unexpected("reserve", outcome),
        }
    }

    fn read_place(&mut self, checkout: u32, outcome: &Outcome) {
        let Ok(Reply::OrderPlaced { allocations, .. }) = outcome else {
            self.unexpected("place_order", outcome);
            return;
        };
        let c = &self.checkouts[checkout as usize];
        let mut lines: Vec<OrderLineRec> = Vec::new();
        for a in allocations {
            let Some(loc) = location_index(a.location.as_str()) else {
                continue;
            };
            let sku = c.lines[a.line as usize].0;
            let b = &mut self.skus[sku as usize].bal[loc as usize];
            b.reserved -= a.qty;
            b.allocated += a.qty;
            match lines.iter_mut().find(|l| l.sku == sku && l.loc == loc) {
                Some(l) => l.ordered += a.qty,
                None => lines.push(OrderLineRec {
                    sku,
                    loc,
                    ordered: a.qty,
                    fulfilled: 0,
                    cancelled: 0,
                }),
            }
        }
        let order = self.orders.len() as u32;
        let pickup = c.pickup_store.is_some();
        if let Some(customer) = c.customer {
            self.by_customer.entry(customer).or_default().push(order);
        }
        self.orders.push(OrderRec {
            id: OrderId::from(format!("ord-{}", c.key)),
            placed_ms: self.now_ms,
            lines,
            returned: Vec::new(),
        });
        self.stats.orders_placed += 1;
        let dispatch = next_at_hour(self.now_ms, self.cfg.dispatch_hour);
        if pickup {
            self.stats.pickup_orders += 1;
            self.schedule(dispatch, Task::Ready(order));
            let collect = dispatch + (self.cfg.collect_hour - self.cfg.dispatch_hour) * HOUR_MS;
            self.schedule(collect, Task::Collect(order));
        } else {
            self.schedule(dispatch, Task::Dispatch(order));
        }
    }

    fn fulfil_units(&mut self, order: u32, sku: SkuIdx, loc: Loc, qty: i64) {
        if let Some(line) = self.orders[order as usize].line_mut(sku, loc) {
            line.fulfilled += qty;
        }
        let b = &mut self.skus[sku as usize].bal[loc as usize];
        b.on_hand -= qty;
        b.allocated -= qty;
        self.stats.units_fulfilled += qty as u64;
    }

    fn cancel_units(&mut self, order: u32, sku: SkuIdx, loc: Loc, qty: i64) {
        if let Some(line) = self.orders[order as usize].line_mut(sku, loc) {
            line.cancelled += qty;
        }
        self.skus[sku as usize].bal[loc as usize].allocated -= qty;
    }

    /// The (SKU, location) a stock rejection names, as indices.
    fn rejected_at(&self, outcome: &Outcome) -> Option<Located> {
        match outcome {
            Err(Rejection::InsufficientStock {
                sku, at, available, ..
            }) => Some((self.sku_of(sku)?, location_index(at)?, *available)),
            _ => None,
        }
    }

    fn read_fulfil(&mut self, order: u32, mut lines: Vec<Located>, outcome: &Outcome) {
        if outcome.is_ok() {
            for (sku, loc, qty) in lines {
                self.fulfil_units(order, sku, loc, qty);
            }
            return;
        }
        // The location lost units since the order was placed (a write-off): ship what is
        // there, cancel the rest of that line, then fulfil again.
        let Some((sku, loc, available)) = self.rejected_at(outcome) else {
            self.unexpected("fulfil", outcome);
            return;
        };
        let Some(pos) = lines.iter().position(|l| l.0 == sku && l.1 == loc) else {
            self.unexpected("fulfil", outcome);
            return;
        };
        let short = lines[pos].2 - available.max(0);
        self.follow_ups.push((
            Command::Cancel {
                order: self.orders[order as usize].id.clone(),
                lines: Some(vec![LocatedLine {
                    sku: self.skus[sku as usize].id.clone(),
                    location: location_id(loc),
                    qty: short,
                }]),
            },
            Purpose::ShortShip {
                order,
                sku,
                loc,
                qty: short,
            },
        ));
        if available > 0 {
            lines[pos].2 = available;
        } else {
            lines.remove(pos);
        }
        if !lines.is_empty() {
            self.push_fulfil(order, lines, false);
        }
    }

    fn read_picked_up(&mut self, order: u32, outcome: &Outcome) {
        if outcome.is_ok() {
            let remaining: Vec<Located> = self.orders[order as usize]
                .lines
                .iter()
                .filter(|l| l.unfulfilled() > 0)
                .map(|l| (l.sku, l.loc, l.unfulfilled()))
                .collect();
            for (sku, loc, qty) in remaining {
                self.fulfil_units(order, sku, loc, qty);
            }
            self.stats.pickups_collected += 1;
            return;
        }
        let Some((sku, loc, available)) = self.rejected_at(outcome) else {
            self.unexpected("picked_up", outcome);
            return;
        };
        let o = &self.orders[order as usize];
        let Some(line) = o.lines.iter().find(|l| l.sku == sku && l.loc == loc) else {
            self.unexpected("picked_up", outcome);
            return;
        };
        let short = line.unfulfilled() - available.max(0);
        let left = o.unfulfilled() - short;
        self.follow_ups.push((
            Command::Cancel {
                order: o.id.clone(),
                lines: Some(vec![LocatedLine {
                    sku: self.skus[sku as usize].id.clone(),
                    location: location_id(loc),
                    qty: short,
                }]),
            },
            Purpose::ShortShip {
                order,
                sku,
                loc,
                qty: short,
            },
        ));
        if left > 0 {
            let command = Command::PickedUp {
                order: o.id.clone(),
            };
            self.follow_ups.push((command, Purpose::PickedUp(order)));
        }
    }

    /// A cancellation invoice: cancel what is still unfulfilled on the customer's orders of
    /// those SKUs (newest first), else receive a return of fulfilled units (newest order
    /// first, within the return window), else count the units as unmatched.
    fn plan_cancellation(&mut self, event: &Event) {
        let Some(customer) = event.customer else {
            self.stats.units_unmatched_no_customer += event.units() as u64;
            return;
        };
        let orders: Vec<u32> = self
            .by_customer
            .get(&customer)
            .map(|v| v.iter().rev().copied().collect())
            .unwrap_or_default();
        // order -> lines, in order of first use.
        let mut cancels: PerOrder = Vec::new();
        let mut returns: PerOrder = Vec::new();
        for line in &event.lines {
            let sku = self.sku_index[&line.sku];
            let left = self.take_unfulfilled(sku, line.qty, &orders, &mut cancels);
            let unmatched = self.take_returnable(sku, left, &orders, &mut returns);
            self.stats.units_unmatched_no_order += unmatched.units as u64;
            self.stats.units_unmatched_outside_window +=
                unmatched.units.min(unmatched.outside_window) as u64;
        }
        self.push_cancels(cancels);
        self.push_returns(event, returns);
    }

    /// Up to `qty` units of `sku` still unfulfilled on `orders` (in that order), added to
    /// `cancels`; returns the units left.
    fn take_unfulfilled(
        &self,
        sku: SkuIdx,
        qty: i64,
        orders: &[u32],
        cancels: &mut PerOrder,
    ) -> i64 {
        let mut left = qty;
        for &order in orders {
            for l in &self.orders[order as usize].lines {
                if left == 0 {
                    break;
                }
                if l.sku == sku && l.unfulfilled() > 0 {
                    let take = left.min(l.unfulfilled());
                    add_to_order(cancels, order, (sku, l.loc, take));
                    left -= take;
                }
            }
        }
        left
    }

    /// Up to `qty` units of `sku` fulfilled and not yet returned on `orders` placed within
    /// the return window, added to `returns`; returns what is left unmatched.
    fn take_returnable(
        &self,
        sku: SkuIdx,
        qty: i64,
        orders: &[u32],
        returns: &mut PerOrder,
    ) -> Unmatched {
        let window = self.cfg.return_window_days * DAY_MS;
        let mut left = qty;
        let mut outside_window = 0;
        for &order in orders {
            if left == 0 {
                break;
            }
            let o = &self.orders[order as usize];
            let fulfilled: i64 = o
                .lines
                .iter()
                .filter(|l| l.sku == sku)
                .map(|l| l.fulfilled)
                .sum();
            let returnable = fulfilled - o.returned(sku);
            if returnable <= 0 {
                continue;
            }
            if o.placed_ms + window < self.now_ms {
                outside_window += returnable;
                continue;
            }
            // Received where it was shipped from (a pickup comes back to its store).
            let Some(from) = o.lines.iter().find(|l| l.sku == sku && l.fulfilled > 0) else {
                continue;
            };
            let take = left.min(returnable);
            add_to_order(returns, order, (sku, from.loc, take));
            left -= take;
        }
        Unmatched {
            units: left,
            outside_window,
        }
    }

    /// One `cancel` per order (per 256 lines).
    fn push_cancels(&mut self, cancels: PerOrder) {
        for (order, lines) in cancels {
            for chunk in lines.chunks(LINES_PER_REQUEST_MAX) {
                let command = Command::Cancel {
                    order: self.orders[order as usize].id.clone(),
                    lines: Some(
                        chunk
                            .iter()
                            .map(|&(sku, loc, qty)| LocatedLine {
                                sku: self.skus[sku as usize].id.clone(),
                                location: location_id(loc),
                                qty,
                            })
                            .collect(),
                    ),
                };
                self.stats.cancels += 1;
                self.push(
                    command,
                    Purpose::Cancel {
                        order,
                        lines: chunk.to_vec(),
                    },
                );
            }
        }
    }

    /// One `return` (RMA `rma-<invoice>-<n>`) per order (per 256 lines).
    fn push_returns(&mut self, event: &Event, returns: PerOrder) {
        let mut rma = 0;
        for (order, lines) in returns {
            for chunk in lines.chunks(LINES_PER_REQUEST_MAX) {
                rma += 1;
                let command = Command::Return {
                    rma: RmaId::from(format!("rma-{}-{rma}", event.invoice)),
                    order: self.orders[order as usize].id.clone(),
                    lines: chunk
                        .iter()
                        .map(|&(sku, loc, qty)| ReturnLine {
                            sku: self.skus[sku as usize].id.clone(),
                            qty,
                            received_at: location_id(loc),
                            disposition: Disposition::Restock,
                        })
                        .collect(),
                };
                self.stats.returns += 1;
                self.push(
                    command,
                    Purpose::Return {
                        order,
                        lines: chunk.to_vec(),
                    },
                );
            }
        }
    }
}

/// Units of a cancellation line that matched no order.
struct Unmatched {
    /// Units neither cancelled nor returned.
    units: i64,
    /// Returnable units on orders placed before the return window.
    outside_window: i64,
}

/// Adds `line` to `order`'s lines in `plan` (orders in order of first use).
fn add_to_order(plan: &mut PerOrder, order: u32, line: Located) {
    match plan.iter_mut().find(|(o, _)| *o == order) {
        Some((_, lines)) => lines.push(line),
        None => plan.push((order, vec![line])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_weeks() {
        // 2009-12-01 07:45 UTC -> next 06:00 is 2009-12-02 06:00.
        let t = 1_259_653_500_000;
        assert_eq!(next_at_hour(t, 6), 1_259_733_600_000);
        // Exactly at 06:00: the next day.
        assert_eq!(
            next_at_hour(1_259_733_600_000, 6),
            1_259_733_600_000 + DAY_MS
        );
        let p = Planner::new(Vec::new(), PlanConfig::default());
        // Monday 2009-12-07 05:00 UTC starts a week; the minute before is the week before.
        let monday = 1_260_162_000_000;
        assert_eq!(p.week_of(monday), p.week_of(monday - 60_000) + 1);
        assert_eq!(p.week_of(monday), p.week_of(monday + WEEK_MS - 1));
        assert_eq!(ceil_div(0, 28), 0);
        assert_eq!(ceil_div(1, 28), 1);
        assert_eq!(ceil_div(28, 28), 1);
        assert_eq!(ceil_div(29, 28), 2);
    }

    #[test]
    fn an_empty_planner_has_nothing_to_do() {
        let mut p = Planner::new(Vec::new(), PlanConfig::default());
        assert_eq!(p.next_batch(), None);
        assert!(p.is_finished());
    }
}

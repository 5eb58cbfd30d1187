//! Applying a [`Planner`]'s batches to a backend, and the replay's [`Summary`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use engine::limits::QUERY_SKUS_MAX;
use engine::query::LedgerStatus;
use engine::{Answer, Balance, BatchHeader, ChannelId, Ledger, Outcome, Query, SkuId, Target};
use serde::Serialize;

use super::events::{self, InputStats};
use super::input::{self, InputError};
use super::network::{CHANNEL_WEB, LOCATIONS};
use super::plan::{Batch, MirrorBalance, PlanConfig, PlanStats, Planner};

/// Something that applies batches synchronously and answers one outcome per request, in
/// order: the in-process engine. A ledger in another process is a [`crate::sink::LedgerSink`].
pub trait Backend {
    /// Applies one batch (time-stamped by the planner) and returns its outcomes.
    fn apply(&mut self, batch: &Batch) -> Vec<Outcome>;
}

/// The in-process engine as a [`Backend`]: log index 1, 2, 3...; the batch's timestamp as the
/// leader's clock.
pub struct EngineBackend {
    ledger: Ledger,
    log_index: u64,
    apply_time: Duration,
}

impl Default for EngineBackend {
    fn default() -> Self {
        EngineBackend::new(Ledger::default())
    }
}

impl EngineBackend {
    /// Wraps a ledger.
    pub fn new(ledger: Ledger) -> Self {
        EngineBackend {
            log_index: ledger.applied_index(),
            ledger,
            apply_time: Duration::ZERO,
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger, by value.
    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    /// Time spent inside `Ledger::apply`.
    pub fn apply_time(&self) -> Duration {
        self.apply_time
    }
}

impl Backend for EngineBackend {
    fn apply(&mut self, batch: &Batch) -> Vec<Outcome> {
        self.log_index += 1;
        let header = BatchHeader {
            log_index: self.log_index,
            timestamp_ms: batch.timestamp_ms,
        };
        let start = Instant::now();
        let outcomes = self.ledger.apply(header, &batch.requests);
        self.apply_time += start.elapsed();
        outcomes
    }
}

/// Runs a planner to the end against a backend; `trace` sees every batch with its outcomes.
pub fn drive<B: Backend>(
    planner: &mut Planner,
    backend: &mut B,
    mut trace: impl FnMut(&Batch, &[Outcome]),
) {
    while let Some(batch) = planner.next_batch() {
        let outcomes = backend.apply(&batch);
        trace(&batch, &outcomes);
        planner.observe(&outcomes);
    }
    assert!(planner.is_finished());
}

/// Sums of every balance of a ledger, read through availability queries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StockTotals {
    /// SKUs asked about.
    pub skus: u64,
    /// Balances (rows) found.
    pub balances: u64,
    /// Sum of on_hand.
    pub on_hand: i64,
    /// Sum of reserved.
    pub reserved: i64,
    /// Sum of allocated.
    pub allocated: i64,
    /// Sum of unavailable.
    pub unavailable: i64,
    /// Sum of safety stock.
    pub safety_stock: i64,
    /// Sum of incoming.
    pub incoming: i64,
    /// on_hand per location.
    pub on_hand_by_location: BTreeMap<String, i64>,
}

/// One balance read back: a SKU at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    /// The SKU.
    pub sku: SkuId,
    /// The location's id.
    pub location: String,
    /// Its balance.
    pub balance: Balance,
}

/// The availability queries that read every balance of `skus` (all locations), in chunks of
/// `QUERY_SKUS_MAX`.
pub fn availability_queries(skus: &[SkuId]) -> Vec<Query> {
    skus.chunks(QUERY_SKUS_MAX)
        .map(|chunk| Query::Availability {
            skus: chunk.to_vec(),
            target: Target::All,
            channel: ChannelId::from(CHANNEL_WEB),
        })
        .collect()
}

/// The balances in the answers to [`availability_queries`] (other answers carry none).
pub fn balances_from_answers(answers: impl IntoIterator<Item = Answer>) -> Vec<BalanceRow> {
    let mut out = Vec::new();
    for answer in answers {
        if let Answer::Availability(rows) = answer {
            for sku in rows {
                for row in sku.rows {
                    out.push(BalanceRow {
                        sku: sku.sku.clone(),
                        location: row.location.0.into_string(),
                        balance: row.balance,
                    });
                }
            }
        }
    }
    out
}

/// Reads every balance of `skus` (all locations) through [`availability_queries`]. `read`
/// answers a query (the in-process ledger; a remote one goes through
/// [`crate::sink::LedgerSink`]).
pub fn read_balances<E>(
    skus: &[SkuId],
    mut read: impl FnMut(&Query) -> Result<Answer, E>,
) -> Result<Vec<BalanceRow>, E> {
    let mut answers = Vec::new();
    for query in availability_queries(skus) {
        answers.push(read(&query)?);
    }
    Ok(balances_from_answers(answers))
}

/// Rejections by code: the non-`ok` part of the planner's outcomes.
pub fn rejections(plan: &PlanStats) -> BTreeMap<String, u64> {
    plan.outcomes
        .iter()
        .filter(|(code, _)| code.as_str() != "ok")
        .map(|(code, n)| (code.clone(), *n))
        .collect()
}

/// Sums balances (from [`read_balances`]).
pub fn stock_totals(skus: u64, balances: &[BalanceRow]) -> StockTotals {
    let mut totals = StockTotals {
        skus,
        ..StockTotals::default()
    };
    for site in LOCATIONS {
        totals.on_hand_by_location.insert(site.id.to_owned(), 0);
    }
    for BalanceRow {
        location,
        balance: b,
        ..
    } in balances
    {
        totals.balances += 1;
        totals.on_hand += b.on_hand;
        totals.reserved += b.reserved;
        totals.allocated += b.allocated;
        totals.unavailable += b.unavailable;
        totals.safety_stock += b.safety_stock;
        totals.incoming += b.incoming;
        *totals
            .on_hand_by_location
            .entry(location.clone())
            .or_default() += b.on_hand;
    }
    totals
}

/// Balances where the planner's view differs from `balances` (from [`read_balances`] over
/// [`Planner::skus`]); should be none.
pub fn mirror_mismatches(planner: &Planner, balances: &[BalanceRow]) -> Vec<String> {
    let mut out = Vec::new();
    let mut expected: BTreeMap<(String, String), MirrorBalance> = BTreeMap::new();
    for e in planner.expected_balances() {
        expected.insert(
            (e.sku.0.into_string(), e.location.0.into_string()),
            e.balance,
        );
    }
    for BalanceRow {
        sku,
        location,
        balance: b,
    } in balances
    {
        let seen = MirrorBalance {
            on_hand: b.on_hand,
            reserved: b.reserved,
            allocated: b.allocated,
            safety_stock: b.safety_stock,
        };
        let want = expected
            .remove(&(sku.0.to_string(), location.clone()))
            .unwrap_or_default();
        if want != seen {
            out.push(format!(
                "{sku}@{location}: planner {want:?}, ledger {seen:?}"
            ));
        }
    }
    for ((sku, loc), b) in expected {
        out.push(format!("{sku}@{loc}: planner {b:?}, ledger has no balance"));
    }
    out
}

/// Everything a replay reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The data file.
    pub input_file: String,
    /// What was read and filtered.
    pub input: InputStats,
    /// The mapping's settings.
    pub config: PlanConfig,
    /// What the planner did and saw (requests, outcomes by code, units...).
    pub plan: PlanStats,
    /// Rejections by code (the non-`ok` part of `plan.outcomes`).
    pub rejections: BTreeMap<String, u64>,
    /// Final balances, summed from availability queries.
    pub final_stock: StockTotals,
    /// The ledger's counters at the end.
    pub status: LedgerStatus,
    /// Balances where the planner's view and the ledger differ (must be 0).
    pub mirror_mismatches: u64,
    /// `ok` or the broken invariant (`Ledger::check_invariants`).
    pub invariants: String,
    /// BLAKE3 of the final snapshot: equal runs give equal digests.
    pub ledger_digest: String,
    /// Seconds to read and decompress the CSV and build the events.
    pub load_seconds: f64,
    /// Seconds from the first batch to the last, planning included.
    pub replay_seconds: f64,
    /// Seconds inside `Ledger::apply`.
    pub engine_seconds: f64,
    /// Seconds for everything: load, replay, final reads and checks.
    pub wall_seconds: f64,
    /// Requests per second over `replay_seconds`.
    pub requests_per_second: f64,
    /// Requests per second inside the engine.
    pub engine_requests_per_second: f64,
}

impl Summary {
    /// Whether the replay ended consistent: invariants hold, the planner's view matches the
    /// ledger, and no outcome surprised the planner.
    pub fn is_clean(&self) -> bool {
        self.invariants == "ok" && self.mirror_mismatches == 0 && self.plan.unexpected == 0
    }
}

/// The result of a replay: its summary and the final ledger.
pub struct Replay {
    /// What happened.
    pub summary: Summary,
    /// The final state.
    pub ledger: Ledger,
    /// The first few mirror mismatches, described.
    pub mismatch_samples: Vec<String>,
}

/// Replays events through an in-process engine; `trace` sees every batch and its outcomes.
pub fn replay_events(
    input_file: &str,
    dataset: events::Dataset,
    config: PlanConfig,
    load_seconds: f64,
    trace: impl FnMut(&Batch, &[Outcome]),
) -> Replay {
    let input = dataset.stats.clone();
    let mut planner = Planner::new(dataset.events, config.clone());
    let mut backend = EngineBackend::default();
    let start = Instant::now();
    drive(&mut planner, &mut backend, trace);
    let replay_seconds = start.elapsed().as_secs_f64();
    let engine_seconds = backend.apply_time().as_secs_f64();
    let ledger = backend.into_ledger();
    let now = planner.now_ms();
    let skus = planner.skus();
    let balances = match read_balances(&skus, |q| ledger.query(q, now)) {
        Ok(b) => b,
        Err(e) => panic!("availability query: {e}"),
    };
    let final_stock = stock_totals(skus.len() as u64, &balances);
    let mismatches = mirror_mismatches(&planner, &balances);
    let status = match ledger.query(&Query::Status, now) {
        Ok(Answer::Status(s)) => s,
        other => panic!("status query: {other:?}"),
    };
    let plan = planner.stats().clone();
    let rejections = rejections(&plan);
    let requests = plan.requests as f64;
    let summary = Summary {
        input_file: input_file.to_owned(),
        input,
        config,
        rejections,
        final_stock,
        status,
        mirror_mismatches: mismatches.len() as u64,
        invariants: match ledger.check_invariants() {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.0,
        },
        ledger_digest: ledger.digest(),
        load_seconds,
        replay_seconds,
        engine_seconds,
        wall_seconds: load_seconds + start.elapsed().as_secs_f64(),
        requests_per_second: requests / replay_seconds.max(1e-9),
        engine_requests_per_second: requests / engine_seconds.max(1e-9),
        plan,
    };
    Replay {
        summary,
        ledger,
        mismatch_samples: mismatches.into_iter().take(10).collect(),
    }
}

/// Reads a CSV (gzipped or not) and replays it through an in-process engine.
pub fn replay_file(
    path: &Path,
    config: PlanConfig,
    trace: impl FnMut(&Batch, &[Outcome]),
) -> Result<Replay, InputError> {
    let start = Instant::now();
    let lines = input::read_lines(input::open(path)?)?;
    let dataset = events::build(lines);
    let load_seconds = start.elapsed().as_secs_f64();
    Ok(replay_events(
        &path.display().to_string(),
        dataset,
        config,
        load_seconds,
        trace,
    ))
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The summary as text, one fact per line.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    render_input(&mut o, s);
    render_plan(&mut o, &s.plan);
    render_end(&mut o, s);
    o
}

/// The input: period, lines used and dropped, invoices.
fn render_input(o: &mut String, s: &Summary) {
    let i = &s.input;
    let _ = writeln!(o, "input        {}", s.input_file);
    let _ = writeln!(
        o,
        "period       {} .. {} (UTC)",
        i.first_event, i.last_event
    );
    let dropped: u64 = i.lines_dropped.values().sum();
    let _ = writeln!(
        o,
        "lines        read {}  used {}  dropped {}  (merged into an earlier line of the same invoice and SKU: {})",
        i.lines_read, i.lines_used, dropped, i.lines_merged
    );
    for (reason, n) in &i.lines_dropped {
        let _ = writeln!(o, "  dropped    {reason:<22} {n}");
    }
    let _ = writeln!(
        o,
        "invoices     read {}  sales {}  cancellations {}  write-off events {}  stock-found events {}  SKUs {}",
        i.invoices_read,
        i.sale_invoices,
        i.cancellation_invoices,
        i.write_off_events,
        i.stock_found_events,
        i.skus
    );
}

/// What the planner did: checkouts, pickups, orders, units, stock in and out, requests.
fn render_plan(o: &mut String, p: &PlanStats) {
    let _ = writeln!(
        o,
        "checkouts    {} (b2b {}, extra for >256 SKUs {})  lines {}  reserve attempts {}  abandoned {}  lines trimmed {} + sold out {} ({} of lines)",
        p.checkouts,
        p.checkouts_b2b,
        p.checkouts_split,
        p.checkout_lines,
        p.reserve_attempts,
        p.checkouts_abandoned,
        p.lines_trimmed,
        p.lines_sold_out,
        pct(p.lines_trimmed + p.lines_sold_out, p.checkout_lines)
    );
    let _ = writeln!(
        o,
        "pickups      tried {}  fell back to shipping {}  placed {}  collected {}",
        p.pickups_attempted, p.pickups_fell_back, p.pickup_orders, p.pickups_collected
    );
    let _ = writeln!(o, "orders       placed {}", p.orders_placed);
    let _ = writeln!(
        o,
        "units        requested {}  reserved {} ({} fill rate)  fulfilled {}  short-shipped {}",
        p.units_requested,
        p.units_reserved,
        pct(p.units_reserved, p.units_requested),
        p.units_fulfilled,
        p.units_short_shipped
    );
    let _ = writeln!(
        o,
        "cancellation units {}: cancelled {} ({} cancels)  returned {} ({} RMAs)  unmatched: guest {}  no open/returnable order {} (of which outside the return window {})",
        p.cancellation_units,
        p.units_cancelled,
        p.cancels,
        p.units_returned,
        p.returns,
        p.units_unmatched_no_customer,
        p.units_unmatched_no_order,
        p.units_unmatched_outside_window
    );
    let _ = writeln!(
        o,
        "stock in     opening {}  replenished {} ({} receipts)  bulk lines {} ({} units received for them)  found {}",
        p.units_opening, p.units_replenished, p.receipts, p.bulk_lines, p.units_bulk_received, p.units_found
    );
    let _ = writeln!(
        o,
        "write-offs   requested {}  written off {} (the rest was not on hand)",
        p.write_off_units_requested, p.units_written_off
    );
    let _ = writeln!(o, "requests     {}  batches {}", p.requests, p.batches);
    let _ = writeln!(o, "outcomes     {}", join_counts(&p.outcomes));
}

/// How it ended: rejections, final stock, the ledger, the checks, the timings.
fn render_end(o: &mut String, s: &Summary) {
    let p = &s.plan;
    let f = &s.final_stock;
    let _ = writeln!(o, "rejections   {}", join_counts(&s.rejections));
    let _ = writeln!(
        o,
        "final stock  SKUs asked {}  balances {}  on_hand {}  reserved {}  allocated {}  unavailable {}  safety_stock {}  incoming {}",
        f.skus, f.balances, f.on_hand, f.reserved, f.allocated, f.unavailable, f.safety_stock, f.incoming
    );
    let _ = writeln!(
        o,
        "  on_hand by location  {}",
        join_counts(&f.on_hand_by_location)
    );
    let _ = writeln!(
        o,
        "ledger       applied index {}  skus {}  balances {}  live reservations {}  open orders {}  digest {}",
        s.status.applied_index,
        s.status.skus,
        s.status.balances,
        s.status.live_reservations,
        s.status.open_orders,
        s.ledger_digest
    );
    let _ = writeln!(
        o,
        "checks       check_invariants: {}  planner/ledger mismatches: {}  unexpected outcomes: {}",
        s.invariants, s.mirror_mismatches, p.unexpected
    );
    for sample in &p.unexpected_samples {
        let _ = writeln!(o, "  unexpected {sample}");
    }
    let _ = writeln!(
        o,
        "time         wall {:.2} s  load {:.2} s  replay {:.2} s ({:.0} requests/s)  engine apply {:.2} s ({:.0} requests/s)",
        s.wall_seconds,
        s.load_seconds,
        s.replay_seconds,
        s.requests_per_second,
        s.engine_seconds,
        s.engine_requests_per_second
    );
}

fn join_counts<V: std::fmt::Display>(m: &BTreeMap<String, V>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

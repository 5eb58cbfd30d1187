//! The replay through a ledger in another process (a live cluster): the [`LedgerSink`] trait
//! and [`replay_through`], which drives the [`Planner`] against a sink and then checks the
//! sink's final stock against the in-process engine replay of the same input.
//!
//! Why this is a trait here rather than code that calls the client: the check (same requests,
//! same outcomes, same balances) is retail logic, and keeping the transport out means this
//! crate depends on the engine only. The load generator implements the trait for a cluster
//! (client library, frames, pacing, progress bar, latency); tests implement it in memory.
//!
//! The methods return futures because a remote ledger answers asynchronously; nothing here
//! needs a particular runtime: [`replay_through`] awaits each call in place and spawns nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Instant;

use engine::{Answer, Outcome, Query, Rejection, SkuId};
use serde::Serialize;

use crate::events::Dataset;
use crate::plan::{Batch, PlanConfig, PlanStats, Planner};
use crate::replay::{
    availability_queries, balances_from_answers, mirror_mismatches, read_balances, rejections,
    replay_events, stock_totals, BalanceRow, StockTotals,
};

/// A ledger that applies the planner's batches somewhere else and answers one outcome per
/// request, in order (a batch's requests must apply in the order given, as the engine would).
pub trait LedgerSink {
    /// Why the sink could not answer (the cluster stopped answering, a read failed...).
    type Error;

    /// Applies one batch (stamped with the data's time by the planner); one outcome per
    /// request, in order.
    fn apply(&mut self, batch: &Batch) -> impl Future<Output = Result<Vec<Outcome>, Self::Error>>;

    /// Answers a read-only query on the current state; used once the planner is done, to read
    /// the final balances. The reads must see every write applied before them.
    fn query(&mut self, query: Query) -> impl Future<Output = Result<Answer, Self::Error>>;

    /// Called after the planner has seen a batch's outcomes (e.g. to show progress).
    fn observed(&mut self, _batch: &Batch, _stats: &PlanStats) {}

    /// Called once, after the last batch and before the final reads.
    fn finished(&mut self) {}
}

/// Why [`replay_through`] stopped.
#[derive(Debug)]
pub enum SinkReplayError<E> {
    /// The sink failed to apply a batch or to answer a final read.
    Sink(E),
    /// The reference engine replay rejected a final availability query (a bug in the planner
    /// or the engine: the queries are built within the engine's limits).
    EngineRead(Rejection),
}

impl<E: fmt::Display> fmt::Display for SinkReplayError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkReplayError::Sink(e) => write!(f, "{e}"),
            SinkReplayError::EngineRead(e) => write!(f, "engine read: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for SinkReplayError<E> {}

/// Balances that differ between two reads of the same SKUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BalanceDiff {
    /// How many (SKU, location) pairs differ or exist on one side only.
    pub count: u64,
    /// The first few of them, described.
    pub samples: Vec<String>,
}

/// What [`replay_through`] saw, and how the sink compares with the engine replay.
#[derive(Debug, Clone)]
pub struct SinkReplay {
    /// What the planner did and saw against the sink.
    pub plan: PlanStats,
    /// Rejections by code (the non-`ok` part of `plan.outcomes`).
    pub rejections: BTreeMap<String, u64>,
    /// Seconds from the first batch to the last answer.
    pub seconds: f64,
    /// The SKUs the planner touched (the final reads cover them).
    pub skus: Vec<SkuId>,
    /// Final stock on the sink.
    pub sink_stock: StockTotals,
    /// Final stock of the engine replay of the same input.
    pub engine_stock: StockTotals,
    /// Balances that differ between the sink and the engine replay (must be none).
    pub stock_mismatches: BalanceDiff,
    /// Whether the planner saw the same outcomes by code, and sent as many requests, as in
    /// the engine replay.
    pub same_outcomes: bool,
    /// Balances where the planner's own view differs from the sink's (must be 0).
    pub mirror_mismatches: u64,
    /// The engine replay's duration, s (the reference).
    pub engine_seconds: f64,
}

impl SinkReplay {
    /// Whether the sink ended exactly like the engine replay and nothing surprised the
    /// planner.
    pub fn is_consistent(&self) -> bool {
        self.stock_mismatches.count == 0
            && self.same_outcomes
            && self.mirror_mismatches == 0
            && self.plan.unexpected == 0
    }
}

/// Runs the planner over `dataset` against `sink` (each batch's outcomes feed the next), reads
/// the sink's final balances, then replays the same input through the in-process engine and
/// compares. Errors only when the sink fails.
pub async fn replay_through<S: LedgerSink>(
    sink: &mut S,
    input_file: &str,
    dataset: Dataset,
    config: PlanConfig,
) -> Result<SinkReplay, SinkReplayError<S::Error>> {
    let mut planner = Planner::new(dataset.events.clone(), config.clone());
    let last_ts = dataset.events.last().map_or(0, |e| e.time_ms);
    let start = Instant::now();
    while let Some(batch) = planner.next_batch() {
        let outcomes = sink.apply(&batch).await.map_err(SinkReplayError::Sink)?;
        planner.observe(&outcomes);
        sink.observed(&batch, planner.stats());
    }
    sink.finished();
    let seconds = start.elapsed().as_secs_f64();
    let skus = planner.skus();
    let sink_balances = sink_balances(sink, &skus).await?;
    let mirror = mirror_mismatches(&planner, &sink_balances);

    // The reference: the engine replay of the same input (a few seconds).
    let engine_start = Instant::now();
    let engine = replay_events(input_file, dataset, config, 0.0, |_, _| {});
    let engine_seconds = engine_start.elapsed().as_secs_f64();
    // Nothing is held or awaiting pickup at the end, so any time after the data reads the
    // same balances.
    let engine_now = last_ts + 30 * 24 * 3_600_000;
    let engine_balances = read_balances(&skus, |q| engine.ledger.query(q, engine_now))
        .map_err(SinkReplayError::EngineRead)?;

    let plan = planner.stats().clone();
    let same_outcomes = plan.outcomes == engine.summary.plan.outcomes
        && plan.requests == engine.summary.plan.requests;
    Ok(SinkReplay {
        rejections: rejections(&plan),
        seconds,
        sink_stock: stock_totals(skus.len() as u64, &sink_balances),
        engine_stock: stock_totals(skus.len() as u64, &engine_balances),
        stock_mismatches: compare_balances(&sink_balances, &engine_balances),
        same_outcomes,
        mirror_mismatches: mirror.len() as u64,
        engine_seconds,
        skus,
        plan,
    })
}

/// Every balance of `skus` on the sink, read with the same availability queries as the
/// engine replay's final read.
async fn sink_balances<S: LedgerSink>(
    sink: &mut S,
    skus: &[SkuId],
) -> Result<Vec<BalanceRow>, SinkReplayError<S::Error>> {
    let mut answers = Vec::new();
    for query in availability_queries(skus) {
        answers.push(sink.query(query).await.map_err(SinkReplayError::Sink)?);
    }
    Ok(balances_from_answers(answers))
}

/// Balances that differ between two reads, matched by SKU and location (`a` is the sink's
/// read, `b` the engine's), with up to ten descriptions. The descriptions call the sink "the
/// cluster", as the demo always has (its only sink outside tests).
pub fn compare_balances(a: &[BalanceRow], b: &[BalanceRow]) -> BalanceDiff {
    let key = |v: &[BalanceRow]| -> BTreeMap<(String, String), engine::Balance> {
        v.iter()
            .map(|r| ((r.sku.0.to_string(), r.location.clone()), r.balance))
            .collect()
    };
    let (ka, kb) = (key(a), key(b));
    let mut diff = BalanceDiff::default();
    let mut note = |s: String| {
        diff.count += 1;
        if diff.samples.len() < 10 {
            diff.samples.push(s);
        }
    };
    for (k, va) in &ka {
        match kb.get(k) {
            Some(vb) if vb == va => {}
            Some(vb) => note(format!("{}@{}: cluster {va:?}, engine {vb:?}", k.0, k.1)),
            None => note(format!("{}@{}: only on the cluster", k.0, k.1)),
        }
    }
    for k in kb.keys().filter(|k| !ka.contains_key(*k)) {
        note(format!("{}@{}: only in the engine", k.0, k.1));
    }
    diff
}

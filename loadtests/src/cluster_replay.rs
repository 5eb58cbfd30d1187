//! The real orders through a live cluster: [`ClusterSink`] implements the `retail` crate's
//! [`LedgerSink`] with the client library, and [`replay`] runs [`retail::replay_through`]
//! with it (the planner's batches sent to the cluster, then checked against the engine replay
//! of the same input), adding what only a cluster has: latency, pacing, replica digests.
//!
//! Each batch is one round of the retailer's order system: its requests go out in frames of
//! at most [`protocol::OPS_PER_FRAME_MAX`] writes, one frame after the other (a frame's writes
//! are queued on the leader in order, so the batch applies in order even when it spans
//! several Raft entries), and the planner sees the outcomes before it plans the next round,
//! exactly as in the engine replay. Time can be compressed: with a speed `x`, a batch stamped
//! `t` in the data is sent `(t - t0) / x` after the start (or as soon as the previous round
//! is answered, if that is later); without one, as fast as the cluster answers.
//!
//! The check: the planner is deterministic given the outcomes, and the mapping never depends
//! on wall-clock time (the `retail` crate's doc), so a cluster that answers like the engine gets
//! exactly the engine replay's requests. At the end, the cluster's balances (linearizable
//! reads of every SKU at every location) must equal the in-process engine replay's, the
//! outcomes by code must be the same, and every replica must have the same ledger digest.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use client::{Client, ClientError};
use engine::{Answer, Outcome, Query, Rejection};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::Consistency;
use retail::events::{Dataset, InputStats};
use retail::input::format_datetime_ms;
use retail::plan::{Batch, PlanConfig, PlanStats};
use retail::replay::StockTotals;
use retail::sink::{LedgerSink, SinkReplay, SinkReplayError};
use serde::{Serialize, Serializer};

use crate::stats::{LatencySummary, Recorder};
use crate::stockd::client_error;
use crate::target::OpError;

/// Frames of at most this many writes count as small (the typical checkout traffic).
pub const SMALL_FRAME_WRITES: usize = 16;

/// The slowest rounds kept for the report.
const SLOWEST_ROUNDS: usize = 5;

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Data seconds per wall second (`None`: as fast as possible).
    pub speed: Option<f64>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Why the replay through the cluster stopped.
#[derive(Debug)]
pub enum ClusterReplayError {
    /// A write got no final answer (after the client's retries).
    NoFinalAnswer(OpError),
    /// A final read failed.
    FinalRead(ClientError),
    /// The cluster rejected a final read.
    FinalReadRejected(Rejection),
    /// The reference engine replay rejected a final read.
    EngineRead(Rejection),
}

impl fmt::Display for ClusterReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterReplayError::NoFinalAnswer(e) => write!(f, "a write got no final answer: {e}"),
            ClusterReplayError::FinalRead(e) => write!(f, "final read: {e}"),
            ClusterReplayError::FinalReadRejected(e) => write!(f, "final read: {e:?}"),
            ClusterReplayError::EngineRead(e) => write!(f, "engine read: {e}"),
        }
    }
}

impl std::error::Error for ClusterReplayError {}

impl From<SinkReplayError<ClusterReplayError>> for ClusterReplayError {
    fn from(e: SinkReplayError<ClusterReplayError>) -> Self {
        match e {
            SinkReplayError::Sink(e) => e,
            SinkReplayError::EngineRead(r) => ClusterReplayError::EngineRead(r),
        }
    }
}

/// One of the slowest rounds. Serialised as `[time, writes, log_index, ms]`, the report's
/// JSON format since before it had names.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowRound {
    /// The round's data time.
    pub time: String,
    /// Writes in the round.
    pub writes: usize,
    /// Log index of its last write.
    pub log_index: u64,
    /// Its round trip, ms.
    pub ms: f64,
}

impl Serialize for SlowRound {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.time, self.writes, self.log_index, self.ms).serialize(s)
    }
}

/// A node's state after the replay. Serialised as `[node, applied_index, digest]` (the
/// report's JSON format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The node's address.
    pub node: String,
    /// Its applied log index.
    pub applied_index: u64,
    /// Its ledger digest at that index.
    pub digest: String,
}

impl Serialize for Replica {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.node, self.applied_index, &self.digest).serialize(s)
    }
}

/// What the replay through the cluster showed.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReplayReport {
    /// The data file.
    pub input_file: String,
    /// What was read and filtered.
    pub input: InputStats,
    /// What the planner did and saw against the cluster.
    pub plan: PlanStats,
    /// Rejections by code.
    pub rejections: BTreeMap<String, u64>,
    /// Speed (data seconds per second), if paced.
    pub speed: Option<f64>,
    /// Seconds from the first batch to the last answer.
    pub seconds: f64,
    /// Requests (writes) per second.
    pub requests_per_second: f64,
    /// Latency of a request: the round trip of the frame that carried it, µs.
    pub request_latency: LatencySummary,
    /// Latency of a whole round (a batch, possibly several frames), µs.
    pub round_latency: LatencySummary,
    /// The slowest rounds.
    pub slowest_rounds: Vec<SlowRound>,
    /// Latency of frames of at most [`SMALL_FRAME_WRITES`] writes (checkouts, orders,
    /// dispatches of a few invoices), µs.
    pub small_frame_latency: LatencySummary,
    /// Paced replays: how far behind schedule the last batch was sent, s.
    pub behind_schedule_seconds: f64,
    /// Final stock on the cluster.
    pub cluster_stock: StockTotals,
    /// Final stock of the engine replay of the same input.
    pub engine_stock: StockTotals,
    /// Balances that differ between the cluster and the engine replay (must be 0).
    pub stock_mismatches: u64,
    /// A few of them, described.
    pub stock_mismatch_samples: Vec<String>,
    /// Whether the cluster's planner saw the same outcomes by code and sent as many requests
    /// as the engine replay's.
    pub same_outcomes: bool,
    /// Balances where the planner's own view differs from the cluster's (must be 0).
    pub mirror_mismatches: u64,
    /// Every node's applied index and ledger digest, after convergence.
    pub replicas: Vec<Replica>,
    /// Whether every replica has the same digest at the same index.
    pub replicas_equal: bool,
    /// The engine replay's duration, s (the reference).
    pub engine_seconds: f64,
}

impl ClusterReplayReport {
    /// Whether every check passed.
    pub fn is_consistent(&self) -> bool {
        self.stock_mismatches == 0
            && self.same_outcomes
            && self.mirror_mismatches == 0
            && self.replicas_equal
            && self.plan.unexpected == 0
    }
}

fn bar(progress: bool, span_ms: u64) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(span_ms.max(1));
    let style =
        ProgressStyle::with_template("{prefix} [{bar:32}] {percent:>3}% {elapsed:>4} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix("replay");
    bar
}

fn time_of(ms: u64) -> String {
    format_datetime_ms(ms).chars().take(10).collect()
}

/// A live cluster as the retail replay's [`LedgerSink`]: each batch goes out in frames through
/// the client, paced to the data's time if asked, with its latency recorded.
pub struct ClusterSink<'a> {
    client: &'a Client,
    speed: Option<f64>,
    start: Instant,
    first_ts: u64,
    recorder: Recorder,
    behind: Duration,
    slowest: Vec<SlowRound>,
    progress: ProgressBar,
    last_tick: Instant,
}

impl<'a> ClusterSink<'a> {
    /// A sink for the batches of data spanning `first_ts..=last_ts` (ms); timing starts now.
    pub fn new(client: &'a Client, options: &ReplayOptions, first_ts: u64, last_ts: u64) -> Self {
        let start = Instant::now();
        ClusterSink {
            client,
            speed: options.speed.filter(|s| *s > 0.0),
            start,
            first_ts,
            recorder: Recorder::new(start, "request"),
            behind: Duration::ZERO,
            slowest: Vec::new(),
            progress: bar(options.progress, last_ts.saturating_sub(first_ts)),
            last_tick: start,
        }
    }

    /// Paced replays: waits until the batch stamped `timestamp_ms` is due, or notes how late
    /// it is.
    async fn wait_until_due(&mut self, timestamp_ms: u64) {
        let Some(speed) = self.speed else {
            return;
        };
        let offset = timestamp_ms.saturating_sub(self.first_ts) as f64 / 1_000.0 / speed;
        let due = self.start + Duration::from_secs_f64(offset.min(1e9));
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            self.behind = now - due;
        }
    }

    /// Sends one batch in frames, in order; one outcome per request, and the highest log index.
    async fn send_batch(
        &self,
        requests: &[engine::Request],
    ) -> Result<(Vec<Outcome>, u64), ClusterReplayError> {
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut index = 0;
        for chunk in requests.chunks(protocol::OPS_PER_FRAME_MAX) {
            let sent = Instant::now();
            let results = self.client.write_batch(chunk.to_vec()).await;
            let done = Instant::now();
            if chunk.len() <= SMALL_FRAME_WRITES {
                self.recorder.record("small-frame", done - sent, "ok", done);
            }
            for r in results {
                let w = r.map_err(|e| ClusterReplayError::NoFinalAnswer(client_error(e)))?;
                index = index.max(w.log_index);
                outcomes.push(w.outcome);
            }
        }
        Ok((outcomes, index))
    }

    /// Keeps the [`SLOWEST_ROUNDS`] slowest rounds.
    fn note_round(&mut self, round: SlowRound) {
        if self.slowest.len() < SLOWEST_ROUNDS
            || self.slowest.last().is_some_and(|s| round.ms > s.ms)
        {
            self.slowest.push(round);
            self.slowest.sort_by(|a, b| b.ms.total_cmp(&a.ms));
            self.slowest.truncate(SLOWEST_ROUNDS);
        }
    }
}

impl LedgerSink for ClusterSink<'_> {
    type Error = ClusterReplayError;

    async fn apply(&mut self, batch: &Batch) -> Result<Vec<Outcome>, ClusterReplayError> {
        self.wait_until_due(batch.timestamp_ms).await;
        let sent = Instant::now();
        let (outcomes, index) = self.send_batch(&batch.requests).await?;
        let done = Instant::now();
        self.note_round(SlowRound {
            time: format_datetime_ms(batch.timestamp_ms),
            writes: batch.requests.len(),
            log_index: index,
            ms: (done - sent).as_secs_f64() * 1_000.0,
        });
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        for o in &outcomes {
            *codes
                .entry(engine::code_of(o).as_str().to_owned())
                .or_default() += 1;
        }
        self.recorder
            .record_many("request", done - sent, &codes, done);
        self.recorder.record("round", done - sent, "ok", done);
        Ok(outcomes)
    }

    /// Linearizable, so the final reads see every acknowledged write.
    async fn query(&mut self, query: Query) -> Result<Answer, ClusterReplayError> {
        let r = self
            .client
            .read(query, Consistency::Linearizable)
            .await
            .map_err(ClusterReplayError::FinalRead)?;
        r.answer.map_err(ClusterReplayError::FinalReadRejected)
    }

    fn observed(&mut self, batch: &Batch, s: &PlanStats) {
        // At most ten redraws a second: a redraw per round would slow the replay down.
        if self.last_tick.elapsed() <= Duration::from_millis(100) {
            return;
        }
        self.last_tick = Instant::now();
        self.progress
            .set_position(batch.timestamp_ms.saturating_sub(self.first_ts));
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        self.progress.set_message(format!(
            "{}  orders {}  units reserved {}  {:.0} writes/s",
            time_of(batch.timestamp_ms),
            s.orders_placed,
            s.units_reserved,
            s.requests as f64 / secs
        ));
    }

    fn finished(&mut self) {
        self.progress.finish_and_clear();
    }
}

/// Replays `dataset` through the cluster behind `client`, then runs the engine replay of the
/// same input and compares. Errors only when the cluster stops answering.
pub async fn replay(
    client: &Client,
    input_file: &str,
    dataset: Dataset,
    config: PlanConfig,
    options: &ReplayOptions,
) -> Result<ClusterReplayReport, ClusterReplayError> {
    let first_ts = dataset.events.first().map_or(0, |e| e.time_ms);
    let last_ts = dataset.events.last().map_or(first_ts, |e| e.time_ms);
    let input = dataset.stats.clone();
    let mut sink = ClusterSink::new(client, options, first_ts, last_ts);
    let checked = retail::replay_through(&mut sink, input_file, dataset, config).await?;
    let replicas = converge(client, Duration::from_secs(10)).await;
    Ok(report(input_file, input, options, &sink, checked, replicas))
}

/// The report of a replay: the retail check's result, the sink's timings, the replicas.
fn report(
    input_file: &str,
    input: InputStats,
    options: &ReplayOptions,
    sink: &ClusterSink<'_>,
    checked: SinkReplay,
    replicas: Vec<Replica>,
) -> ClusterReplayReport {
    let stats = sink
        .recorder
        .finish(Duration::from_secs_f64(checked.seconds));
    let latency = |op: &str| stats.op(op).map(|o| o.latency.clone()).unwrap_or_default();
    let replicas_equal = !replicas.is_empty()
        && replicas
            .windows(2)
            .all(|w| (w[0].applied_index, &w[0].digest) == (w[1].applied_index, &w[1].digest));
    ClusterReplayReport {
        input_file: input_file.to_owned(),
        input,
        rejections: checked.rejections,
        speed: options.speed,
        seconds: checked.seconds,
        requests_per_second: checked.plan.requests as f64 / checked.seconds.max(1e-9),
        request_latency: latency("request"),
        round_latency: latency("round"),
        behind_schedule_seconds: sink.behind.as_secs_f64(),
        slowest_rounds: sink.slowest.clone(),
        small_frame_latency: latency("small-frame"),
        cluster_stock: checked.sink_stock,
        engine_stock: checked.engine_stock,
        stock_mismatches: checked.stock_mismatches.count,
        stock_mismatch_samples: checked.stock_mismatches.samples,
        same_outcomes: checked.same_outcomes,
        mirror_mismatches: checked.mirror_mismatches,
        replicas,
        replicas_equal,
        engine_seconds: checked.engine_seconds,
        plan: checked.plan,
    }
}

/// Every known node's applied index and digest, once they agree (or after `timeout`).
pub async fn converge(client: &Client, timeout: Duration) -> Vec<Replica> {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for node in client.nodes() {
            if let Ok(d) = client.digest_of(&node).await {
                seen.push(Replica {
                    node,
                    applied_index: d.applied_index,
                    digest: d.digest,
                });
            }
        }
        let agree = seen
            .windows(2)
            .all(|w| (w[0].applied_index, &w[0].digest) == (w[1].applied_index, &w[1].digest));
        if (agree && !seen.is_empty()) || start.elapsed() > timeout {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn join_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// The demo's summary, one fact per line.
pub fn render(r: &ClusterReplayReport) -> String {
    let mut o = String::new();
    render_work(&mut o, r);
    render_latency(&mut o, r);
    render_checks(&mut o, r);
    o
}

/// What was replayed: input, orders, units, rejections, writes.
fn render_work(o: &mut String, r: &ClusterReplayReport) {
    use std::fmt::Write as _;
    let p = &r.plan;
    let _ = writeln!(o, "input        {}", r.input_file);
    let _ = writeln!(
        o,
        "period       {} .. {} (UTC), {} order lines, {} invoices",
        r.input.first_event, r.input.last_event, r.input.lines_used, r.input.invoices_read
    );
    let _ = writeln!(
        o,
        "orders       {} placed from {} checkouts ({} pickups collected), {} cancels, {} returns",
        p.orders_placed, p.checkouts, p.pickups_collected, p.cancels, p.returns
    );
    let _ = writeln!(
        o,
        "units        requested {}  reserved {}  fulfilled {}  returned {}  written off {}",
        p.units_requested,
        p.units_reserved,
        p.units_fulfilled,
        p.units_returned,
        p.units_written_off
    );
    let _ = writeln!(o, "rejections   {}", join_counts(&r.rejections));
    let _ = writeln!(
        o,
        "writes       {} in {} rounds, {:.1} s: {:.0} writes/s{}",
        p.requests,
        p.batches,
        r.seconds,
        r.requests_per_second,
        match r.speed {
            Some(x) => format!(
                " (speed x{x}, {:.1} s behind schedule at the end)",
                r.behind_schedule_seconds
            ),
            None => " (as fast as the cluster answers, one round at a time)".to_owned(),
        }
    );
}

/// Latency of writes, rounds and small frames; the slowest rounds.
fn render_latency(o: &mut String, r: &ClusterReplayReport) {
    use std::fmt::Write as _;
    let ms = |us: f64| us / 1_000.0;
    let _ = writeln!(
        o,
        "latency      write (its frame's round trip): p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        ms(r.request_latency.p50_us),
        ms(r.request_latency.p99_us),
        ms(r.request_latency.p999_us),
        ms(r.request_latency.max_us)
    );
    let _ = writeln!(
        o,
        "             round (one batch of the order system): p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms",
        ms(r.round_latency.p50_us),
        ms(r.round_latency.p99_us),
        ms(r.round_latency.p999_us)
    );
    let _ = writeln!(
        o,
        "             frames of 1-{SMALL_FRAME_WRITES} writes ({}): p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms",
        r.small_frame_latency.count,
        ms(r.small_frame_latency.p50_us),
        ms(r.small_frame_latency.p99_us),
        ms(r.small_frame_latency.p999_us)
    );
    let slow: Vec<String> = r
        .slowest_rounds
        .iter()
        .map(|s| {
            format!(
                "{} ({} writes, log index {}) {:.0} ms",
                s.time, s.writes, s.log_index, s.ms
            )
        })
        .collect();
    let _ = writeln!(o, "             slowest rounds: {}", slow.join(", "));
}

/// Final stock and every check, then the verdict.
fn render_checks(o: &mut String, r: &ClusterReplayReport) {
    use std::fmt::Write as _;
    let c = &r.cluster_stock;
    let _ = writeln!(
        o,
        "final stock  balances {}  on_hand {}  reserved {}  allocated {}  safety_stock {}",
        c.balances, c.on_hand, c.reserved, c.allocated, c.safety_stock
    );
    let ok = |b: bool| if b { "ok" } else { "FAILED" };
    let _ = writeln!(
        o,
        "check        cluster stock == engine replay: {} ({} of {} balances differ; engine replay {:.1} s)",
        ok(r.stock_mismatches == 0),
        r.stock_mismatches,
        r.engine_stock.balances,
        r.engine_seconds
    );
    for s in &r.stock_mismatch_samples {
        let _ = writeln!(o, "  mismatch   {s}");
    }
    let _ = writeln!(
        o,
        "             same outcomes as the engine replay: {}  planner view == cluster: {} ({} differ)",
        ok(r.same_outcomes),
        ok(r.mirror_mismatches == 0),
        r.mirror_mismatches
    );
    let first = r.replicas.first();
    let digest = first.map(|x| x.digest.clone()).unwrap_or_default();
    let _ = writeln!(
        o,
        "             replicas identical: {} ({} nodes at index {}, digest {}…)",
        ok(r.replicas_equal),
        r.replicas.len(),
        first.map_or(0, |x| x.applied_index),
        digest.chars().take(16).collect::<String>()
    );
    let verdict = if r.is_consistent() {
        "CONSISTENT"
    } else {
        "INCONSISTENT"
    };
    let _ = writeln!(o, "result       {verdict}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_and_replicas_serialise_as_the_report_always_did() {
        let round = SlowRound {
            time: "2010-01-04 06:00:00".to_owned(),
            writes: 812,
            log_index: 4_242,
            ms: 12.5,
        };
        let replica = Replica {
            node: "127.0.0.1:7001".to_owned(),
            applied_index: 9,
            digest: "ab12".to_owned(),
        };
        assert_eq!(
            serde_json::to_string(&round).expect("json"),
            r#"["2010-01-04 06:00:00",812,4242,12.5]"#
        );
        assert_eq!(
            serde_json::to_string(&replica).expect("json"),
            r#"["127.0.0.1:7001",9,"ab12"]"#
        );
    }
}

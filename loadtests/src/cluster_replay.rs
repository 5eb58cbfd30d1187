//! The real orders through a live cluster: the retail [`Planner`]'s batches sent with the
//! client library, then checked against the engine replay of the same input.
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
//! on wall-clock time (`retail` module doc), so a cluster that answers like the engine gets
//! exactly the engine replay's requests. At the end, the cluster's balances (linearizable
//! reads of every SKU at every location) must equal the in-process engine replay's, the
//! outcomes by code must be the same, and every replica must have the same ledger digest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::Client;
use engine::{Answer, Balance, Outcome, Query, SkuId};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::Consistency;
use serde::Serialize;

use crate::retail::events::{Dataset, InputStats};
use crate::retail::input::format_datetime_ms;
use crate::retail::plan::{PlanConfig, PlanStats, Planner};
use crate::retail::replay::{read_balances, replay_events, stock_totals, StockTotals};
use crate::stats::{LatencySummary, Recorder};
use crate::stockd::client_error;

/// Frames of at most this many writes count as small (the typical checkout traffic).
pub const SMALL_FRAME_WRITES: usize = 16;

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Data seconds per wall second (`None`: as fast as possible).
    pub speed: Option<f64>,
    /// Show a progress bar on stderr.
    pub progress: bool,
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
    /// The slowest rounds: (data time, writes, log index of the last write, ms).
    pub slowest_rounds: Vec<(String, usize, u64, f64)>,
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
    pub replicas: Vec<(String, u64, String)>,
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

/// Sends one batch in frames, in order; one outcome per request.
async fn send_batch(
    client: &Client,
    requests: &[engine::Request],
    rec: &Recorder,
) -> Result<(Vec<Outcome>, u64), String> {
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut index = 0;
    for chunk in requests.chunks(protocol::OPS_PER_FRAME_MAX) {
        let sent = Instant::now();
        let results = client.write_batch(chunk.to_vec()).await;
        let done = Instant::now();
        if chunk.len() <= SMALL_FRAME_WRITES {
            rec.record("small-frame", done - sent, "ok", done);
        }
        for r in results {
            match r {
                Ok(w) => {
                    index = index.max(w.log_index);
                    outcomes.push(w.outcome);
                }
                Err(e) => return Err(format!("a write got no final answer: {}", client_error(e))),
            }
        }
    }
    Ok((outcomes, index))
}

/// Reads every balance of `skus` from the cluster (linearizable).
pub async fn cluster_balances(
    client: &Client,
    skus: &[SkuId],
) -> Result<Vec<(SkuId, String, Balance)>, String> {
    let mut answers = Vec::new();
    for chunk in skus.chunks(engine::limits::QUERY_SKUS_MAX) {
        let query = Query::Availability {
            skus: chunk.to_vec(),
            target: engine::Target::All,
            channel: engine::ChannelId::from(crate::retail::network::CHANNEL_WEB),
        };
        let r = client
            .read(query, Consistency::Linearizable)
            .await
            .map_err(|e| format!("final read: {e}"))?;
        answers.push(r.answer.map_err(|e| format!("final read: {e:?}"))?);
    }
    let mut answers = answers.into_iter();
    read_balances(skus, |_q| -> Result<Answer, String> {
        answers.next().ok_or_else(|| "missing answer".to_owned())
    })
}

/// Replays `dataset` through the cluster behind `client`, then runs the engine replay of the
/// same input and compares. Errors only when the cluster stops answering.
pub async fn replay(
    client: &Client,
    input_file: &str,
    dataset: Dataset,
    config: PlanConfig,
    options: &ReplayOptions,
) -> Result<ClusterReplayReport, String> {
    let mut planner = Planner::new(dataset.events.clone(), config.clone());
    let first_ts = dataset.events.first().map_or(0, |e| e.time_ms);
    let last_ts = dataset.events.last().map_or(first_ts, |e| e.time_ms);
    let progress = bar(options.progress, last_ts.saturating_sub(first_ts));
    let start = Instant::now();
    let rec = Arc::new(Recorder::new(start, "request"));
    let mut behind = Duration::ZERO;
    let mut slowest: Vec<(String, usize, u64, f64)> = Vec::new();
    let mut last_tick = Instant::now();
    while let Some(batch) = planner.next_batch() {
        if let Some(speed) = options.speed.filter(|s| *s > 0.0) {
            let offset = batch.timestamp_ms.saturating_sub(first_ts) as f64 / 1_000.0 / speed;
            let due = start + Duration::from_secs_f64(offset.min(1e9));
            let now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            } else {
                behind = now - due;
            }
        }
        let sent = Instant::now();
        let (outcomes, index) = send_batch(client, &batch.requests, &rec).await?;
        let done = Instant::now();
        let ms = (done - sent).as_secs_f64() * 1_000.0;
        if slowest.len() < 5 || slowest.last().is_some_and(|s| ms > s.3) {
            slowest.push((
                format_datetime_ms(batch.timestamp_ms),
                batch.requests.len(),
                index,
                ms,
            ));
            slowest.sort_by(|a, b| b.3.total_cmp(&a.3));
            slowest.truncate(5);
        }
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        for o in &outcomes {
            *codes
                .entry(engine::code_of(o).as_str().to_owned())
                .or_default() += 1;
        }
        rec.record_many("request", done - sent, &codes, done);
        rec.record("round", done - sent, "ok", done);
        planner.observe(&outcomes);
        if last_tick.elapsed() > Duration::from_millis(100) {
            last_tick = Instant::now();
            progress.set_position(batch.timestamp_ms.saturating_sub(first_ts));
            let s = planner.stats();
            let secs = start.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!(
                "{}  orders {}  units reserved {}  {:.0} writes/s",
                time_of(batch.timestamp_ms),
                s.orders_placed,
                s.units_reserved,
                s.requests as f64 / secs
            ));
        }
    }
    progress.finish_and_clear();
    let elapsed = start.elapsed();
    let stats = rec.finish(elapsed);
    let skus = planner.skus();

    let cluster = cluster_balances(client, &skus).await?;
    let mirror = crate::retail::replay::mirror_mismatches(&planner, &cluster);

    // The reference: the engine replay of the same input (a few seconds).
    let engine_start = Instant::now();
    let engine = replay_events(input_file, dataset.clone(), config, 0.0, |_, _| {});
    let engine_seconds = engine_start.elapsed().as_secs_f64();
    // Nothing is held or awaiting pickup at the end, so any time after the data reads the
    // same balances.
    let engine_now = last_ts + 30 * 24 * 3_600_000;
    let engine_balances = read_balances(&skus, |q| engine.ledger.query(q, engine_now))
        .map_err(|e| format!("engine read: {e}"))?;
    let (mismatches, samples) = compare_balances(&cluster, &engine_balances);

    let plan = planner.stats().clone();
    let same_outcomes = plan.outcomes == engine.summary.plan.outcomes
        && plan.requests == engine.summary.plan.requests;
    let replicas = converge(client, Duration::from_secs(10)).await;
    let replicas_equal = !replicas.is_empty()
        && replicas
            .windows(2)
            .all(|w| (w[0].1, &w[0].2) == (w[1].1, &w[1].2));
    let rejections = plan
        .outcomes
        .iter()
        .filter(|(c, _)| c.as_str() != "ok")
        .map(|(c, n)| (c.clone(), *n))
        .collect();
    Ok(ClusterReplayReport {
        input_file: input_file.to_owned(),
        input: dataset.stats,
        rejections,
        speed: options.speed,
        seconds: elapsed.as_secs_f64(),
        requests_per_second: plan.requests as f64 / elapsed.as_secs_f64().max(1e-9),
        request_latency: stats
            .op("request")
            .map(|o| o.latency.clone())
            .unwrap_or_default(),
        round_latency: stats
            .op("round")
            .map(|o| o.latency.clone())
            .unwrap_or_default(),
        behind_schedule_seconds: behind.as_secs_f64(),
        slowest_rounds: slowest,
        small_frame_latency: stats
            .op("small-frame")
            .map(|o| o.latency.clone())
            .unwrap_or_default(),
        cluster_stock: stock_totals(skus.len() as u64, &cluster),
        engine_stock: stock_totals(skus.len() as u64, &engine_balances),
        stock_mismatches: mismatches,
        stock_mismatch_samples: samples,
        same_outcomes,
        mirror_mismatches: mirror.len() as u64,
        replicas,
        replicas_equal,
        engine_seconds,
        plan,
    })
}

/// Balances that differ between two reads (by SKU and location), and a few descriptions.
pub fn compare_balances(
    a: &[(SkuId, String, Balance)],
    b: &[(SkuId, String, Balance)],
) -> (u64, Vec<String>) {
    let key = |v: &[(SkuId, String, Balance)]| -> BTreeMap<(String, String), Balance> {
        v.iter()
            .map(|(s, l, bal)| ((s.0.clone(), l.clone()), *bal))
            .collect()
    };
    let (ka, kb) = (key(a), key(b));
    let mut n = 0;
    let mut samples = Vec::new();
    let mut note = |s: String| {
        n += 1;
        if samples.len() < 10 {
            samples.push(s);
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
    (n, samples)
}

/// Every known node's applied index and digest, once they agree (or after `timeout`).
pub async fn converge(client: &Client, timeout: Duration) -> Vec<(String, u64, String)> {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for node in client.nodes() {
            if let Ok(d) = client.digest_of(&node).await {
                seen.push((node, d.applied_index, d.digest));
            }
        }
        let agree = seen
            .windows(2)
            .all(|w| (w[0].1, &w[0].2) == (w[1].1, &w[1].2));
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
    use std::fmt::Write as _;
    let mut o = String::new();
    let p = &r.plan;
    let ms = |us: f64| us / 1_000.0;
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
        .map(|(t, n, i, ms)| format!("{t} ({n} writes, log index {i}) {ms:.0} ms"))
        .collect();
    let _ = writeln!(o, "             slowest rounds: {}", slow.join(", "));
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
    let digest = r.replicas.first().map(|x| x.2.clone()).unwrap_or_default();
    let _ = writeln!(
        o,
        "             replicas identical: {} ({} nodes at index {}, digest {}…)",
        ok(r.replicas_equal),
        r.replicas.len(),
        r.replicas.first().map_or(0, |x| x.1),
        digest.chars().take(16).collect::<String>()
    );
    let _ = writeln!(
        o,
        "result       {}",
        if r.is_consistent() {
            "CONSISTENT"
        } else {
            "INCONSISTENT"
        }
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sku: &str, loc: &str, on_hand: i64) -> (SkuId, String, Balance) {
        let balance = Balance {
            on_hand,
            ..Balance::default()
        };
        (SkuId::from(sku), loc.to_owned(), balance)
    }

    #[test]
    fn balances_are_compared_by_sku_and_location() {
        let a = vec![row("A", "w", 5), row("B", "w", 2), row("C", "s", 1)];
        let same = vec![row("C", "s", 1), row("A", "w", 5), row("B", "w", 2)];
        assert_eq!(compare_balances(&a, &same), (0, vec![]));
        let b = vec![row("A", "w", 4), row("B", "w", 2), row("D", "s", 1)];
        let (n, samples) = compare_balances(&a, &b);
        assert_eq!(n, 3);
        assert!(samples[0].starts_with("A@w: cluster"), "{samples:?}");
        assert_eq!(samples[1], "C@s: only on the cluster");
        assert_eq!(samples[2], "D@s: only in the engine");
    }
}

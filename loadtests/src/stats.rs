//! Recording a run: one HdrHistogram of latencies (ns, 3 significant digits) per operation,
//! outcomes by code, a throughput timeline, the generator's own lateness, the longest gap
//! between two completions (a pause as the generator sees it) and, for soaks, the same per
//! window of time ([`WindowStats`]).
//!
//! Tasks record into a shared [`Recorder`] (a mutex held for a histogram increment); the
//! summaries ([`LatencySummary`], [`RunStats`]) are plain data for the text, JSON, `.hgrm`
//! and SVG reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency recorded, ns (longer ones are clamped to it): one hour.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;
/// Significant digits of every histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Width of a throughput timeline bucket, ms.
pub const TIMELINE_BUCKET_MS: u64 = 250;

/// A new latency histogram (ns).
pub fn histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (1 <= low, high >= 2 * low, 3 digits).
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Latency percentiles of one operation, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Operations recorded.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest, µs.
    pub max_us: f64,
}

/// Percentiles of a histogram of ns values (each the highest value equivalent to the
/// recorded ones at the histogram's precision, as HdrHistogram reports them).
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let us = |ns: u64| ns as f64 / 1_000.0;
    LatencySummary {
        count: h.len(),
        mean_us: h.mean() / 1_000.0,
        p50_us: us(h.value_at_quantile(0.5)),
        p90_us: us(h.value_at_quantile(0.9)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
    }
}

/// One point of a latency-by-percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PercentilePoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at it, µs.
    pub latency_us: f64,
}

/// The latency-by-percentile curve of a histogram (HdrHistogram's percentile iteration, 5
/// ticks per half distance to 100%).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| PercentilePoint {
            percentile: v.quantile_iterated_to() * 100.0,
            latency_us: v.value_iterated_to() as f64 / 1_000.0,
        })
        .collect()
}

/// The classic HdrHistogram percentile distribution (`.hgrm`), values in milliseconds, as
/// written by HdrHistogram's `outputPercentileDistribution` (plottable with its online plotter).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let ms = |ns: u64| ns as f64 / 1_000_000.0;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                o,
                "{:12.3} {:2.12} {:10} {:14.2}",
                ms(v.value_iterated_to()),
                q,
                total,
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(
                o,
                "{:12.3} {:2.12} {:10}",
                ms(v.value_iterated_to()),
                q,
                total
            );
        }
    }
    let _ = writeln!(
        o,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1_000_000.0,
        h.stdev() / 1_000_000.0
    );
    let _ = writeln!(
        o,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    o
}

/// One operation's raw record.
#[derive(Clone)]
pub struct OpRecord {
    /// Latencies, ns.
    pub latency: Histogram<u64>,
    /// Final answers by code (`ok`, `insufficient_stock`...; `error:busy` and such when no
    /// final answer came).
    pub outcomes: BTreeMap<String, u64>,
}

impl Default for OpRecord {
    fn default() -> Self {
        OpRecord {
            latency: histogram(),
            outcomes: BTreeMap::new(),
        }
    }
}

/// One window of a windowed recording (a soak): the primary operation's latencies and the
/// longest gap between completions that ended in it.
#[derive(Clone)]
struct WindowRecord {
    latency: Histogram<u64>,
    longest_gap: Duration,
}

impl Default for WindowRecord {
    fn default() -> Self {
        WindowRecord {
            latency: histogram(),
            longest_gap: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    ops: BTreeMap<&'static str, OpRecord>,
    lateness: Option<Histogram<u64>>,
    timeline: Vec<u64>,
    dropped: u64,
    /// The latest completion seen, of any operation.
    last_done: Option<Instant>,
    /// The longest time between two consecutive completions (any operation).
    longest_gap: Duration,
    /// Per-window records; empty unless the recorder was made with a window width.
    windows: Vec<WindowRecord>,
}

impl Inner {
    /// Notes `n` completions of `op` at `done`, each `ns` long: the timeline, the gap since the
    /// previous completion and, if windowed, the window's record.
    fn completed(&mut self, rec: &Recorder, op: &'static str, ns: u64, n: u64, done: Instant) {
        let gap = self
            .last_done
            .map_or(Duration::ZERO, |last| done.saturating_duration_since(last));
        self.longest_gap = self.longest_gap.max(gap);
        self.last_done = Some(self.last_done.map_or(done, |last| last.max(done)));
        let since = done.saturating_duration_since(rec.start);
        if let Some(width) = rec.window {
            let w = (since.as_nanos() / width.as_nanos().max(1)) as usize;
            if self.windows.len() <= w {
                self.windows.resize_with(w + 1, WindowRecord::default);
            }
            let window = &mut self.windows[w];
            window.longest_gap = window.longest_gap.max(gap);
            if op == rec.primary {
                let _ = window.latency.record_n(ns, n);
            }
        }
        if op == rec.primary {
            rec.primary_done
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            let bucket = (since.as_millis() as u64 / TIMELINE_BUCKET_MS) as usize;
            if self.timeline.len() <= bucket {
                self.timeline.resize(bucket + 1, 0);
            }
            self.timeline[bucket] += n;
        }
    }
}

/// Collects a run's measurements from many tasks.
pub struct Recorder {
    start: Instant,
    primary: &'static str,
    /// Width of the windows of a soak; `None`: no windows.
    window: Option<Duration>,
    primary_done: std::sync::atomic::AtomicU64,
    inner: Mutex<Inner>,
}

impl Recorder {
    /// A recorder whose timeline starts at `start` and counts completions of `primary` (the
    /// operation whose throughput is the run's, e.g. `reserve`).
    pub fn new(start: Instant, primary: &'static str) -> Recorder {
        Recorder {
            start,
            primary,
            window: None,
            primary_done: std::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A recorder as [`Recorder::new`] that also keeps a [`WindowStats`] per `width` of time
    /// (at least 1 ms) from `start`.
    pub fn with_windows(start: Instant, primary: &'static str, width: Duration) -> Recorder {
        Recorder {
            window: Some(width.max(Duration::from_millis(1))),
            ..Recorder::new(start, primary)
        }
    }

    /// The operation whose completions make the throughput.
    pub fn primary(&self) -> &'static str {
        self.primary
    }

    /// Completions of the primary operation so far (cheap: for progress bars).
    pub fn primary_done(&self) -> u64 {
        self.primary_done.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one operation that took `latency` and ended with `code` at `done`.
    pub fn record(&self, op: &'static str, latency: Duration, code: &str, done: Instant) {
        let ns = (latency.as_nanos().min(u128::from(LATENCY_NS_MAX)) as u64).max(1);
        let mut inner = self.lock();
        let rec = inner.ops.entry(op).or_default();
        rec.latency.saturating_record(ns);
        match rec.outcomes.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                rec.outcomes.insert(code.to_owned(), 1);
            }
        }
        inner.completed(self, op, ns, 1, done);
    }

    /// Records `n` operations that shared one round trip (a frame of many reservations).
    pub fn record_many(
        &self,
        op: &'static str,
        latency: Duration,
        codes: &BTreeMap<String, u64>,
        done: Instant,
    ) {
        let n: u64 = codes.values().sum();
        if n == 0 {
            return;
        }
        let ns = (latency.as_nanos().min(u128::from(LATENCY_NS_MAX)) as u64).max(1);
        let mut inner = self.lock();
        let rec = inner.ops.entry(op).or_default();
        let _ = rec.latency.record_n(ns, n);
        for (code, k) in codes {
            *rec.outcomes.entry(code.clone()).or_default() += k;
        }
        inner.completed(self, op, ns, n, done);
    }

    /// Records how late the generator started a request (actual send - intended send).
    pub fn record_lateness(&self, late: Duration) {
        let ns = (late.as_nanos().min(u128::from(LATENCY_NS_MAX)) as u64).max(1);
        let mut inner = self.lock();
        inner
            .lateness
            .get_or_insert_with(histogram)
            .saturating_record(ns);
    }

    /// Counts a request the generator could not start (too many in flight).
    pub fn record_dropped(&self) {
        self.lock().dropped += 1;
    }

    /// The raw record of one operation.
    pub fn op(&self, op: &str) -> Option<OpRecord> {
        self.lock().ops.get(op).cloned()
    }

    /// Everything recorded so far, summarised, over `elapsed`.
    pub fn finish(&self, elapsed: Duration) -> RunStats {
        let inner = self.lock();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let ops: Vec<OpStats> = inner
            .ops
            .iter()
            .map(|(name, rec)| OpStats {
                op: (*name).to_owned(),
                latency: summarize(&rec.latency),
                per_second: rec.latency.len() as f64 / seconds,
                outcomes: rec.outcomes.clone(),
                curve: percentile_curve(&rec.latency),
            })
            .collect();
        let primary_count = inner.ops.get(self.primary).map_or(0, |r| r.latency.len());
        RunStats {
            seconds,
            primary: self.primary.to_owned(),
            throughput: primary_count as f64 / seconds,
            ops,
            lateness: inner.lateness.as_ref().map(summarize),
            dropped: inner.dropped,
            timeline_bucket_ms: TIMELINE_BUCKET_MS,
            timeline: inner
                .timeline
                .iter()
                .map(|&n| n as f64 * 1_000.0 / TIMELINE_BUCKET_MS as f64)
                .collect(),
            histograms: inner
                .ops
                .iter()
                .map(|(name, rec)| ((*name).to_owned(), rec.latency.clone()))
                .collect(),
            longest_gap_us: inner.longest_gap.as_nanos() as f64 / 1_000.0,
            windows: self.window_stats(&inner),
        }
    }

    fn window_stats(&self, inner: &Inner) -> Vec<WindowStats> {
        let Some(width) = self.window else {
            return Vec::new();
        };
        let seconds = width.as_secs_f64();
        (0u32..)
            .zip(&inner.windows)
            .map(|(i, w)| WindowStats {
                start_s: seconds * f64::from(i),
                seconds,
                throughput: w.latency.len() as f64 / seconds,
                latency: summarize(&w.latency),
                longest_gap_us: w.longest_gap.as_nanos() as f64 / 1_000.0,
            })
            .collect()
    }
}

/// One window of time of a soak: the primary operation's completions and latencies, and the
/// longest gap between two completions (of any operation) that ended in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    /// Start of the window, seconds after the run's start.
    pub start_s: f64,
    /// Width of the window, s.
    pub seconds: f64,
    /// Completions of the primary operation per second in the window.
    pub throughput: f64,
    /// Latencies of the primary operation that completed in the window.
    pub latency: LatencySummary,
    /// The longest gap between two consecutive completions ending in the window, µs.
    pub longest_gap_us: f64,
}

/// One operation's summary.
#[derive(Debug, Clone, Serialize)]
pub struct OpStats {
    /// `reserve`, `commit`, `release`, `read`...
    pub op: String,
    /// Latency percentiles.
    pub latency: LatencySummary,
    /// Completions per second over the run.
    pub per_second: f64,
    /// Final answers by code.
    pub outcomes: BTreeMap<String, u64>,
    /// Latency by percentile, for charts.
    pub curve: Vec<PercentilePoint>,
}

/// A run's summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// Measured seconds.
    pub seconds: f64,
    /// The operation whose rate is the run's throughput.
    pub primary: String,
    /// Completions of the primary operation per second.
    pub throughput: f64,
    /// Per operation.
    pub ops: Vec<OpStats>,
    /// How late the generator started requests (open loop only).
    pub lateness: Option<LatencySummary>,
    /// Requests the generator could not start (too many in flight).
    pub dropped: u64,
    /// Width of a timeline bucket, ms.
    pub timeline_bucket_ms: u64,
    /// Completions of the primary operation per second, per bucket.
    pub timeline: Vec<f64>,
    /// The raw histograms by operation (for `.hgrm` files; not in the JSON record, whose
    /// `curve`s carry the same percentiles).
    #[serde(skip)]
    pub histograms: BTreeMap<String, Histogram<u64>>,
    /// The longest time between two consecutive completions (of any operation), µs: how long
    /// the target answered nothing at all, as the generator sees it (a pause, a stall, or the
    /// generator itself descheduled).
    pub longest_gap_us: f64,
    /// Per window of time, for soaks (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowStats>,
}

impl RunStats {
    /// One operation's summary.
    pub fn op(&self, op: &str) -> Option<&OpStats> {
        self.ops.iter().find(|o| o.op == op)
    }

    /// Outcomes of the primary operation that are not `ok`, by code.
    pub fn rejections(&self) -> BTreeMap<String, u64> {
        self.op(&self.primary)
            .map(|o| {
                o.outcomes
                    .iter()
                    .filter(|(code, _)| code.as_str() != "ok")
                    .map(|(c, n)| (c.clone(), *n))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact_below_the_precision_limit() {
        // Values below 2,048 are stored exactly at 3 significant digits.
        let mut h = histogram();
        for v in 1..=1_000u64 {
            h.record(v).expect("in range");
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1_000);
        assert_eq!(s.p50_us, 0.5);
        assert_eq!(s.p90_us, 0.9);
        assert_eq!(s.p99_us, 0.99);
        assert_eq!(s.p999_us, 0.999);
        assert_eq!(s.max_us, 1.0);
        assert_eq!(s.mean_us, 0.5005);
    }

    #[test]
    fn percentiles_of_large_values_are_within_one_part_in_a_thousand() {
        let mut h = histogram();
        // 990 fast requests at 200 µs and 10 slow ones at 5 ms: p99 is still fast, p99.9 slow.
        h.record_n(200_000, 990).expect("in range");
        h.record_n(5_000_000, 10).expect("in range");
        let s = summarize(&h);
        assert_eq!(s.p50_us, 200.063); // 200,000 ns lies in a bucket 128 ns wide: 200,063 ns
        assert_eq!(s.p99_us, 200.063);
        assert_eq!(s.p999_us, 5_001.215); // 4,096 ns wide: 5,001,215 ns
        assert_eq!(s.max_us, 5_001.215);
        assert_eq!(summarize(&histogram()), LatencySummary::default());
    }

    #[test]
    fn the_recorder_counts_outcomes_and_the_timeline() {
        let start = Instant::now();
        let r = Recorder::new(start, "reserve");
        let at = |ms| start + Duration::from_millis(ms);
        r.record("reserve", Duration::from_micros(100), "ok", at(10));
        r.record("reserve", Duration::from_micros(300), "ok", at(260));
        r.record(
            "reserve",
            Duration::from_micros(200),
            "insufficient_stock",
            at(270),
        );
        r.record("commit", Duration::from_micros(400), "ok", at(600));
        let mut codes = BTreeMap::new();
        codes.insert("ok".to_owned(), 4);
        r.record_many("reserve", Duration::from_micros(900), &codes, at(600));
        r.record_lateness(Duration::from_nanos(1_500));
        r.record_dropped();
        let s = r.finish(Duration::from_secs(1));
        assert_eq!(s.throughput, 7.0);
        assert_eq!(s.timeline, vec![4.0, 8.0, 16.0]); // 1, 2, 4 per 250 ms bucket
        let reserve = s.op("reserve").expect("reserve recorded");
        assert_eq!(reserve.latency.count, 7);
        assert_eq!(reserve.outcomes["ok"], 6);
        assert_eq!(s.rejections().get("insufficient_stock"), Some(&1));
        assert_eq!(s.op("commit").map(|o| o.latency.count), Some(1));
        assert_eq!(s.lateness.as_ref().map(|l| l.max_us), Some(1.5));
        assert_eq!(s.dropped, 1);
        assert!(s.windows.is_empty(), "windows only when asked for");
    }

    #[test]
    fn the_longest_gap_between_completions_and_the_windows_of_a_soak() {
        let start = Instant::now();
        let r = Recorder::with_windows(start, "reserve", Duration::from_secs(1));
        let at = |ms| start + Duration::from_millis(ms);
        let us = Duration::from_micros;
        r.record("reserve", us(100), "ok", at(100));
        r.record("commit", us(100), "ok", at(150)); // any operation ends a gap: 50 ms
        r.record("reserve", us(2_000), "ok", at(1_400)); // 1,250 ms without an answer
        r.record("reserve", us(300), "ok", at(1_350)); // recorded late: no gap
        r.record("reserve", us(100), "ok", at(2_500)); // 1,100 ms after the latest
        let s = r.finish(Duration::from_secs(3));
        assert_eq!(s.longest_gap_us, 1_250_000.0);
        let gaps: Vec<f64> = s.windows.iter().map(|w| w.longest_gap_us).collect();
        assert_eq!(gaps, [50_000.0, 1_250_000.0, 1_100_000.0]);
        let rates: Vec<f64> = s.windows.iter().map(|w| w.throughput).collect();
        assert_eq!(rates, [1.0, 2.0, 1.0], "reserves only");
        let starts: Vec<f64> = s.windows.iter().map(|w| w.start_s).collect();
        assert_eq!(starts, [0.0, 1.0, 2.0]);
        let slowest = s.windows[1].latency.max_us;
        assert!((2_000.0..2_002.0).contains(&slowest), "{slowest}");
    }

    #[test]
    fn hgrm_has_the_classic_layout() {
        let mut h = histogram();
        for v in [1_000_000u64, 2_000_000, 3_000_000, 4_000_000] {
            h.record(v).expect("in range");
        }
        let text = hgrm(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        assert_eq!(
            lines.next(),
            Some("       1.000 0.000000000000          1           1.00")
        );
        assert!(
            text.contains("       4.002 1.000000000000          4\n"),
            "{text}"
        );
        assert!(text.contains("#[Max     =        4.002, Total count    =            4]"));
        let curve = percentile_curve(&h);
        assert_eq!(curve.first().map(|p| p.latency_us), Some(1_000.447));
        assert_eq!(curve.last().map(|p| p.percentile), Some(100.0));
    }
}

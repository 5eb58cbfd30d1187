//! Recording a run: one HdrHistogram of latencies (ns, 3 significant digits) per operation,
//! outcomes by code, a throughput timeline, and the generator's own lateness.
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

#[derive(Default)]
struct Inner {
    ops: BTreeMap<&'static str, OpRecord>,
    lateness: Option<Histogram<u64>>,
    timeline: Vec<u64>,
    dropped: u64,
}

/// Collects a run's measurements from many tasks.
pub struct Recorder {
    start: Instant,
    primary: &'static str,
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
            primary_done: std::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
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
        if op == self.primary {
            self.primary_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bucket = (done.saturating_duration_since(self.start).as_millis() as u64
                / TIMELINE_BUCKET_MS) as usize;
            if inner.timeline.len() <= bucket {
                inner.timeline.resize(bucket + 1, 0);
            }
            inner.timeline[bucket] += 1;
        }
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
        if op == self.primary {
            self.primary_done
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            let bucket = (done.saturating_duration_since(self.start).as_millis() as u64
                / TIMELINE_BUCKET_MS) as usize;
            if inner.timeline.len() <= bucket {
                inner.timeline.resize(bucket + 1, 0);
            }
            inner.timeline[bucket] += n;
        }
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
        }
    }
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

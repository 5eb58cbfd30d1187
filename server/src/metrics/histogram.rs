//! A histogram of atomics with fixed buckets: recording is a binary search over the bounds and
//! two relaxed `fetch_add`s, no lock and no allocation (prometheus-client's own histogram
//! takes a mutex per observation, which every request on both cores would contend for).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The bucket bounds of a histogram, in the integer unit it records (nanoseconds, writes),
/// ascending, and the factor that turns that unit into the exposed one (1e-9 for seconds).
#[derive(Debug, Clone, Copy)]
pub struct Buckets {
    /// Upper bounds (inclusive), ascending; `+Inf` is implied after the last.
    pub bounds: &'static [u64],
    /// Exposed value of one recorded unit.
    pub scale: f64,
}

/// Nanoseconds in a microsecond, millisecond and second.
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// Request latency, ns: checkouts answer in well under a millisecond (SPEC), and a write that
/// waits out a failover takes seconds (its timeout is 5 s).
pub const REQUEST_SECONDS: Buckets = Buckets {
    bounds: &[
        50 * US,
        100 * US,
        250 * US,
        500 * US,
        MS,
        2 * MS + MS / 2,
        5 * MS,
        10 * MS,
        25 * MS,
        50 * MS,
        100 * MS,
        250 * MS,
        500 * MS,
        S,
        2 * S + S / 2,
        5 * S,
    ],
    scale: 1e-9,
};

/// Time to apply one Raft entry, ns: microseconds for a few writes, milliseconds for a full
/// batch of 16,384 or a burst of expiries.
pub const APPLY_SECONDS: Buckets = Buckets {
    bounds: &[
        10 * US,
        25 * US,
        50 * US,
        100 * US,
        250 * US,
        500 * US,
        MS,
        2 * MS + MS / 2,
        5 * MS,
        10 * MS,
        25 * MS,
        50 * MS,
        100 * MS,
        250 * MS,
        S,
    ],
    scale: 1e-9,
};

/// Snapshot builds and installs, ns: milliseconds for a small ledger, seconds at 10 M
/// balances.
pub const SNAPSHOT_SECONDS: Buckets = Buckets {
    bounds: &[
        MS,
        5 * MS,
        10 * MS,
        50 * MS,
        100 * MS,
        250 * MS,
        500 * MS,
        S,
        2 * S + S / 2,
        5 * S,
        10 * S,
        30 * S,
        60 * S,
    ],
    scale: 1e-9,
};

/// Writes per Raft entry: powers of two up to a full batch
/// ([`engine::limits::BATCH_REQUESTS_MAX`]).
pub const ENTRY_WRITES: Buckets = Buckets {
    bounds: &[
        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384,
    ],
    scale: 1.0,
};

const _: () = assert!(engine::limits::BATCH_REQUESTS_MAX as u64 <= 16_384);

/// Buckets of one histogram at most (so the counts live inline).
pub const BUCKETS_MAX: usize = 20;

/// A histogram: counts per bucket and the sum, each an atomic. Clones share them (one is
/// registered, another kept by whoever records).
#[derive(Debug, Clone)]
pub struct Histogram {
    cells: Arc<Cells>,
}

#[derive(Debug)]
struct Cells {
    buckets: Buckets,
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS_MAX + 1],
    /// Sum of the observed values, in the recorded unit.
    sum: AtomicU64,
}

/// What a histogram held at one moment, in exposed units.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations in this bucket)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Observations (the sum of the bucket counts, so the two always agree).
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with these buckets.
    pub fn new(buckets: Buckets) -> Histogram {
        assert!(buckets.bounds.len() <= BUCKETS_MAX, "too many buckets");
        assert!(buckets.bounds.windows(2).all(|w| w[0] < w[1]));
        let cells = Cells {
            buckets,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        };
        Histogram {
            cells: Arc::new(cells),
        }
    }

    /// Records `n` observations of `value` (in the recorded unit).
    pub fn observe_n(&self, value: u64, n: u64) {
        let cells = &*self.cells;
        let at = cells.buckets.bounds.partition_point(|b| *b < value);
        cells.counts[at].fetch_add(n, Ordering::Relaxed);
        cells
            .sum
            .fetch_add(value.saturating_mul(n), Ordering::Relaxed);
    }

    /// Records one observation of `value`.
    pub fn observe(&self, value: u64) {
        self.observe_n(value, 1);
    }

    /// Records one duration (for histograms in seconds, which record ns).
    pub fn observe_duration(&self, elapsed: std::time::Duration) {
        self.observe(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        let counts = &self.cells.counts;
        counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The counts now, in exposed units.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let cells = &*self.cells;
        let (bounds, scale) = (cells.buckets.bounds, cells.buckets.scale);
        let buckets: Vec<(f64, u64)> = (0..=bounds.len())
            .map(|i| {
                let bound = bounds.get(i).map_or(f64::INFINITY, |b| *b as f64 * scale);
                (bound, cells.counts[i].load(Ordering::Relaxed))
            })
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: cells.sum.load(Ordering::Relaxed) as f64 * scale,
            buckets,
        }
    }

    /// Encodes the histogram as one series.
    pub(super) fn encode_into(&self, encoder: &mut MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(s.sum, s.count, &s.buckets, None)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.encode_into(&mut encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let h = Histogram::new(ENTRY_WRITES);
        h.observe(1);
        h.observe(3);
        h.observe(4);
        h.observe_n(16_384, 2);
        h.observe(16_385);
        let s = h.snapshot();
        let count_at = |bound: f64| s.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(count_at(1.0), Some(1));
        assert_eq!(count_at(2.0), Some(0));
        assert_eq!(count_at(4.0), Some(2), "3 and 4");
        assert_eq!(count_at(16_384.0), Some(2));
        assert_eq!(count_at(f64::INFINITY), Some(1));
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, (1 + 3 + 4 + 2 * 16_384 + 16_385) as f64);
    }

    #[test]
    fn durations_are_exposed_in_seconds() {
        let h = Histogram::new(REQUEST_SECONDS);
        h.observe_duration(std::time::Duration::from_micros(700));
        let s = h.snapshot();
        assert!((s.sum - 0.0007).abs() < 1e-12, "{}", s.sum);
        assert_eq!(s.buckets[4], (0.001, 1), "700 us is under the 1 ms bound");
    }

    #[test]
    fn every_bucket_set_fits_and_ascends() {
        for b in [
            REQUEST_SECONDS,
            APPLY_SECONDS,
            SNAPSHOT_SECONDS,
            ENTRY_WRITES,
        ] {
            Histogram::new(b);
        }
    }
}

//! Requests by transport, operation and outcome: one latency histogram per series in a dense
//! table indexed by [`RequestKey`], created on a series' first request (a node sees a few
//! dozen of the possible series, so only those hold memory and appear in `/metrics`).
//! `stockd_requests_total` is read from the same histogram's count, so the counter and the
//! histogram always agree.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::histogram::{Histogram, REQUEST_SECONDS};
use super::labels::{RequestKey, REQUEST_KEYS};

/// The request table.
pub struct Requests {
    /// One histogram per [`RequestKey::index`], made on first use.
    series: Box<[OnceLock<Histogram>]>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.series.iter().filter(|s| s.get().is_some()).count();
        f.debug_struct("Requests").field("series", &live).finish()
    }
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            series: (0..REQUEST_KEYS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl Requests {
    /// Records `n` requests of `key` that each took `elapsed` (a frame's operations are
    /// answered together: one observation per run of equal keys).
    pub fn record_n(&self, key: RequestKey, elapsed: Duration, n: u64) {
        let series = self.series[key.index()].get_or_init(|| Histogram::new(REQUEST_SECONDS));
        series.observe_n(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), n);
    }

    /// Requests of `key` so far.
    pub fn count(&self, key: RequestKey) -> u64 {
        self.series[key.index()].get().map_or(0, |h| h.count())
    }

    /// The series that saw a request, with their histograms.
    fn live(&self) -> impl Iterator<Item = (RequestKey, &Histogram)> {
        self.series
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.get().map(|h| (RequestKey::at(i), h)))
    }
}

/// The labels of a request series.
fn labels(key: RequestKey) -> [(&'static str, &'static str); 3] {
    [
        ("transport", key.transport.as_str()),
        ("operation", key.operation.as_str()),
        ("outcome", key.outcome.as_str()),
    ]
}

impl Collector for Requests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "requests",
                "Client requests answered, by transport, operation and outcome (the stable code).",
                None,
                MetricType::Counter,
            )?;
            for (key, histogram) in self.live() {
                let labels = labels(key);
                let counter = ConstCounter::new(histogram.count());
                counter.encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "request_duration",
            "Time from a request's arrival to its answer, by transport, operation and outcome.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (key, histogram) in self.live() {
            let labels = labels(key);
            histogram.encode_into(&mut family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

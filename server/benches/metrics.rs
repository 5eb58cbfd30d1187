//! What recording costs a request, and what a scrape costs (`server::metrics`).
//!
//! - `record/one`: one request (a frame of one reservation): a clock-free histogram update.
//! - `record/frame_100_same`: a gateway frame of 100 reservations with one outcome (one run).
//! - `record/frame_100_mixed`: 100 operations whose outcome alternates (100 runs: the worst).
//! - `render/series_N`: rendering with N request series live (no node attached: the series
//!   read from a node cost their own reads on top).
//!
//! `Throughput::Elements` = requests recorded (record) or series rendered (render).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use server::metrics::{Metrics, Operation, Outcome, RequestKey, Transport};

const ELAPSED: Duration = Duration::from_micros(420);

fn record(c: &mut Criterion) {
    let metrics = Metrics::new();
    let ok = (Operation::Reserve, Outcome::OK);
    let short = (
        Operation::Reserve,
        Outcome::Ledger(engine::Code::InsufficientStock),
    );
    let same = [ok; 100];
    let mixed: Vec<_> = (0..100)
        .map(|i| if i % 2 == 0 { ok } else { short })
        .collect();
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one", |b| {
        b.iter(|| metrics.record_requests(Transport::Quic, [ok], ELAPSED))
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("frame_100_same", |b| {
        b.iter(|| metrics.record_requests(Transport::Quic, same.iter().copied(), ELAPSED))
    });
    group.bench_function("frame_100_mixed", |b| {
        b.iter(|| metrics.record_requests(Transport::Quic, mixed.iter().copied(), ELAPSED))
    });
    group.finish();
}

/// Request keys for `n` distinct series.
fn keys(n: usize) -> impl Iterator<Item = RequestKey> {
    let operations = [
        Operation::Reserve,
        Operation::Release,
        Operation::PlaceOrder,
        Operation::Availability,
        Operation::Status,
    ];
    let outcomes = [
        Outcome::OK,
        Outcome::Ledger(engine::Code::InsufficientStock),
        Outcome::Ledger(engine::Code::NotFound),
        Outcome::NotLeader,
        Outcome::Busy,
        Outcome::Timeout,
        Outcome::Forbidden,
        Outcome::Unavailable,
        Outcome::NotReady,
        Outcome::Internal,
    ];
    let transports = [Transport::Quic, Transport::Http];
    transports
        .into_iter()
        .flat_map(move |t| operations.into_iter().map(move |o| (t, o)))
        .flat_map(move |(transport, operation)| {
            outcomes.into_iter().map(move |outcome| RequestKey {
                transport,
                operation,
                outcome,
            })
        })
        .take(n)
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for n in [10, 100] {
        let metrics = Metrics::new();
        for key in keys(n) {
            metrics.record_request(key, ELAPSED, 1);
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("series_{n}"), |b| b.iter(|| metrics.render().len()));
    }
    group.finish();
}

criterion_group!(benches, record, render);
criterion_main!(benches);

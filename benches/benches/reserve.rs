//! Reservation throughput of the engine (no IO, one core), in batches as the server applies
//! them: single-line and 5-line `reserve` on a ledger of 1,000,000 balances (100,000 SKUs at
//! 10 locations, 80/20 SKU popularity, uniform locations, 1-3 units per line, UUID-shaped
//! reservation ids). Criterion reports reservations per second (`Throughput::Elements` =
//! requests per batch).
//!
//! Two states, because holds and dedup entries accumulate while the benchmark runs and the
//! ledger is put back every 2,000,000 reserved lines:
//! - `cold`: back to a fresh clone of the loaded ledger: the reservation and dedup tables
//!   start empty and grow (rehashing, faulting in fresh pages) during the timed batches;
//! - `warm`: time is moved past every deadline and retention period instead, so the tables
//!   are empty again but keep their capacity and memory (a server that has been taking this
//!   traffic); one untimed window is run first to size them.
//!
//! Timed: `Ledger::apply` of one batch and dropping its outcomes. Not timed: building the
//! requests (the server decodes them from the log) and the resets.

use std::time::{Duration, Instant};

use benches::{load_stock, Reset, Session, Shape, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::Config;

/// Reserved lines after which the working ledger is put back.
const RESET_AFTER_LINES: usize = 2_000_000;

/// Applies reservation batches untimed until the session's window is full, then resets it
/// (sizes the tables of a [`Reset::Expire`] session).
fn prewarm(session: &mut Session, work: &mut Workload, batch: usize, lines: usize) {
    while !session.due(batch) {
        let requests = work.reserve_batch(batch, lines);
        benches::assert_all_ok(&session.driver.apply(&requests));
        session.count(batch);
    }
    session.reset();
}

fn reserve(c: &mut Criterion) {
    let shape = Shape::ONE_MILLION;
    let base = load_stock(shape, Config::default());
    let mut group = c.benchmark_group("reserve");
    group.sample_size(20);
    let cases = [
        (1, 1024, Reset::Clone),
        (1, 8192, Reset::Clone),
        (1, 1024, Reset::Expire),
        (1, 8192, Reset::Expire),
        (5, 8192, Reset::Clone),
        (5, 8192, Reset::Expire),
    ];
    for (lines, batch, mode) in cases {
        let mut session = Session::new(base.clone(), RESET_AFTER_LINES / lines, mode);
        let mut work = Workload::new(shape, 42 + lines as u64);
        let state = match mode {
            Reset::Clone => "cold",
            Reset::Expire => {
                prewarm(&mut session, &mut work, batch, lines);
                "warm"
            }
        };
        group.throughput(Throughput::Elements(batch as u64));
        let id = BenchmarkId::new(format!("{lines}_line_{state}"), batch);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    if session.due(batch) {
                        session.reset();
                    }
                    let requests = work.reserve_batch(batch, lines);
                    let start = Instant::now();
                    let outcomes = session.driver.apply(&requests);
                    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
                    drop(outcomes);
                    timed += start.elapsed();
                    assert_eq!(ok, batch, "some reservations were rejected");
                    session.count(batch);
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = reserve
}
criterion_main!(benches);

//! Expiry of 1,000,000 holds: the apply time of the batches that release them, from the first
//! (empty) batch whose timestamp passes every hold's deadline to the last one the expiry
//! backlog needs (a batch expires at most `EXPIRY_STEPS_PER_BATCH` holds, so about a thousand
//! empty batches in all), on a ledger of 1,000,000 balances (see `reserve.rs`) holding
//! 1,000,000 single-line reservations (80/20 SKU popularity, 15-minute TTL, placed in batches
//! of 8,192 two ms apart). `Throughput::Elements` = holds expired: holds per second of apply
//! time (SPEC section 4: >= 5,000,000).
//!
//! Timed: those `Ledger::apply` calls, back to back. Not timed: cloning the prepared ledger
//! before them and dropping it after.

use std::time::{Duration, Instant};

use benches::{assert_all_ok, load_stock, Driver, Shape, Workload, HOLD_TTL_MS};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use engine::limits::EXPIRY_STEPS_PER_BATCH;
use engine::Config;

/// Holds to expire.
const HOLDS: usize = 1_000_000;
/// Reservations per batch while placing them.
const BATCH: usize = 8192;

fn expiry(c: &mut Criterion) {
    let shape = Shape::ONE_MILLION;
    let mut driver = Driver::new(load_stock(shape, Config::default()));
    let mut work = Workload::new(shape, 7);
    let mut placed = 0;
    while placed < HOLDS {
        let n = BATCH.min(HOLDS - placed);
        let batch = work.reserve_batch(n, 1);
        assert_all_ok(&driver.apply(&batch));
        placed += n;
    }
    assert_eq!(driver.status().live_reservations, HOLDS as u64);
    let mut group = c.benchmark_group("expiry");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(HOLDS as u64));
    group.bench_function("1M_holds", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let mut copy = driver.clone();
                let start = Instant::now();
                copy.advance(HOLD_TTL_MS + 1000);
                let batches = 1 + copy.expire_due();
                timed += start.elapsed();
                assert!(batches > HOLDS / EXPIRY_STEPS_PER_BATCH);
                assert_eq!(copy.ledger.next_deadline_ms(), None, "every hold expired");
                drop(copy);
            }
            timed
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = expiry
}
criterion_main!(benches);

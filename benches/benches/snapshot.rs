//! Snapshot and restore of a ledger of 1,000,000 balances (100,000 SKUs at 10 locations,
//! loaded with `set_on_hand`, the dedup window passed), in two retention settings:
//! - `default`: the default [`Config`]; the change feed is full (1,000,000 retained events),
//!   as on a server that has run for a while;
//! - `minimal`: feed and dedup retention of 1 entry, so the snapshot is (almost) only the
//!   balances and the SKU and location tables.
//!
//! Prints the snapshot size in bytes; criterion times `Ledger::snapshot` and
//! `Ledger::restore` (which checks every invariant), excluding dropping the result.
//! `Throughput::Elements` = balances. 10,000,000 balances: see `src/bin/state_size.rs`.

use std::time::Duration;

use benches::{load_stock, Shape};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use engine::{Config, Ledger};

fn snapshot(c: &mut Criterion) {
    let shape = Shape::ONE_MILLION;
    let minimal = Config {
        feed_events: 1,
        dedup_entries: 1,
        ..Config::default()
    };
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(shape.balances() as u64));
    for (name, config) in [("default", Config::default()), ("minimal", minimal)] {
        let ledger = load_stock(shape, config);
        let bytes = ledger.snapshot();
        let restored = Ledger::restore(&bytes).expect("the snapshot restores");
        assert!(restored.snapshot() == bytes, "restore round-trips");
        drop(restored);
        println!(
            "snapshot/{name}: {} balances -> {} bytes ({:.1} bytes per balance)",
            shape.balances(),
            bytes.len(),
            bytes.len() as f64 / shape.balances() as f64
        );
        group.bench_function(BenchmarkId::new("snapshot_1M", name), |b| {
            b.iter_with_large_drop(|| ledger.snapshot())
        });
        group.bench_function(BenchmarkId::new("restore_1M", name), |b| {
            b.iter_with_large_drop(|| Ledger::restore(&bytes).expect("the snapshot restores"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = snapshot
}
criterion_main!(benches);

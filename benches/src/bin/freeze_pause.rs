//! Freeze of a large ledger, and the batches applied while its pages are being copied (SPEC
//! section 4, "No stalls": a snapshot must not stop the apply loop).
//!
//! Usage: `freeze_pause [balances] [dedup] [batches]` (defaults: 10,000,000 balances, 4,000,000
//! remembered requests, 30 batches). The ledger: `balances` balances loaded as in every engine
//! benchmark (default retention, so the change feed is full: 1,000,000 events), then `dedup`
//! single-line reservations (8,192 per batch) so that the dedup window holds that many entries.
//!
//! Printed:
//! - `freeze`: `Ledger::freeze` timed 7 times (min / median / max), each view dropped at once;
//! - `baseline`: `batches` batches of 8,192 single-line reservations with no freeze around;
//! - `after freeze (view held)`: the same number of batches right after a freeze whose view is
//!   only held, not encoded: the page copies alone;
//! - `after freeze`: the same number of batches right after a freeze, while another thread
//!   encodes the frozen view (its pages are shared, so these batches copy each page they write
//!   first): every batch's time, the first, the worst and the median, against the baseline;
//! - the frozen view's encoding time and bytes, checked equal to a snapshot taken at the freeze.

use std::time::{Duration, Instant};

use benches::{assert_all_ok, load_stock, Driver, Shape, Workload};
use engine::Config;

/// Reservations per batch.
const BATCH: usize = 8192;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Applies `n` prepared batches and returns each one's time (apply + dropping the outcomes).
fn timed_batches(driver: &mut Driver, work: &mut Workload, n: usize) -> Vec<Duration> {
    let batches: Vec<_> = (0..n).map(|_| work.reserve_batch(BATCH, 1)).collect();
    batches
        .iter()
        .map(|batch| {
            let start = Instant::now();
            let out = driver.apply(batch);
            let took = start.elapsed();
            assert_all_ok(&out);
            took
        })
        .collect()
}

/// The ledger of the module docs: `balances` loaded, then `dedup` reservations applied so the
/// dedup window is full (a freeze copies the page tables of everything the ledger remembers).
fn load(shape: Shape, dedup: usize, work: &mut Workload) -> Driver {
    let start = Instant::now();
    let mut driver = Driver::new(load_stock(shape, Config::default()));
    for _ in 0..dedup.div_ceil(BATCH) {
        assert_all_ok(&driver.apply(&work.reserve_batch(BATCH, 1)));
    }
    let status = driver.status();
    println!(
        "ledger: {} balances, {} remembered requests, {} live holds, feed at {} (loaded in {:.1} s)",
        status.balances,
        status.dedup_entries,
        status.live_reservations,
        status.feed_next_seq,
        start.elapsed().as_secs_f64()
    );
    driver
}

/// Times 7 freezes, each view dropped at once, and prints min / median / max.
fn time_freezes(driver: &Driver) {
    let mut sorted: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            let view = driver.ledger.freeze();
            let took = start.elapsed();
            drop(view);
            took
        })
        .collect();
    sorted.sort();
    println!(
        "freeze: min {:.3} ms, median {:.3} ms, max {:.3} ms (7 runs)",
        ms(sorted[0]),
        ms(sorted[3]),
        ms(sorted[6])
    );
}

/// Freezes, encodes the view on another thread, and times `batches` batches applied
/// meanwhile (the first writes to each shared page copy it), against the baseline median.
fn after_freeze(driver: &mut Driver, work: &mut Workload, batches: usize, base_median: Duration) {
    let expected = driver.ledger.snapshot();
    let view = driver.ledger.freeze();
    let encoder = std::thread::spawn(move || {
        let start = Instant::now();
        let bytes = view.encode();
        (start.elapsed(), bytes)
    });
    let after = timed_batches(driver, work, batches);
    let (encode_time, bytes) = encoder.join().expect("the encoder thread");
    assert!(
        bytes == expected,
        "the frozen view encodes to the snapshot of its moment"
    );
    report(
        "after freeze (view encoded on another thread meanwhile)",
        &after,
        base_median,
    );
    println!(
        "frozen view: encoded in {:.2} s to {} bytes, equal to the snapshot taken at the freeze",
        encode_time.as_secs_f64(),
        bytes.len()
    );
}

/// Freezes and times `batches` batches while the view is only held (no encoder running): what
/// the page copies cost on their own.
fn held_freeze(driver: &mut Driver, work: &mut Workload, batches: usize, base_median: Duration) {
    let view = driver.ledger.freeze();
    let after = timed_batches(driver, work, batches);
    drop(view);
    report("after freeze (view held, not encoded)", &after, base_median);
}

/// Prints the first, worst and median of `after` against the baseline median, then each batch.
fn report(label: &str, after: &[Duration], base_median: Duration) {
    let worst = *after.iter().max().expect("batches");
    println!(
        "{label}: first {:.2} ms, worst {:.2} ms ({:.2}x the baseline median), median {:.2} ms",
        ms(after[0]),
        ms(worst),
        worst.as_secs_f64() / base_median.as_secs_f64(),
        ms(median(after.to_vec()))
    );
    println!(
        "  every batch (ms): {}",
        after
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.replace('_', "").parse().expect("numeric arguments"))
        .collect();
    let balances = args.first().copied().unwrap_or(10_000_000);
    let dedup = args.get(1).copied().unwrap_or(4_000_000);
    let batches = args.get(2).copied().unwrap_or(30);
    let shape = Shape::with_balances(balances);
    let mut work = Workload::new(shape, 42);
    let mut driver = load(shape, dedup, &mut work);
    time_freezes(&driver);
    // The same batches with no freeze around: what `after_freeze` is compared with.
    let baseline = timed_batches(&mut driver, &mut work, batches);
    let base_median = median(baseline.clone());
    println!(
        "baseline: {batches} batches of {BATCH}: median {:.2} ms, max {:.2} ms ({:.0} reservations/s at the median)",
        ms(base_median),
        ms(*baseline.iter().max().expect("batches")),
        BATCH as f64 / base_median.as_secs_f64()
    );
    held_freeze(&mut driver, &mut work, batches, base_median);
    after_freeze(&mut driver, &mut work, batches, base_median);
}

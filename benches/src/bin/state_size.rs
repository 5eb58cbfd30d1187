//! State size of the engine: memory per balance, and snapshot / restore time and bytes, for a
//! ledger of N balances (SPEC section 5: 10 million balances in memory on one node; snapshot
//! and restore of that state measured). A plain binary with `std::time::Instant`, because at
//! 10,000,000 balances criterion's repeated sampling takes too long.
//!
//! Usage: `state_size <balances> [default|minimal] [repeats]`
//! - `balances`: a multiple of 10 (N/10 SKUs at 10 locations), e.g. 1000000 or 10000000;
//! - `default`: the default retention (the change feed keeps 1,000,000 events); `minimal`:
//!   feed and dedup retention of 1 entry, to see the balances alone (default: `minimal`);
//! - `repeats`: snapshot and restore runs (default 3); min and median are printed.
//!
//! Memory is measured two ways, on mimalloc (the allocator `stockd` runs on): the growth of
//! `VmRSS` from before the ledger exists to after it is loaded (what the process holds,
//! including memory the allocator keeps after frees), and the growth of the live heap (bytes
//! allocated and not freed: the ledger itself). The loading requests are built and dropped one
//! batch at a time, and the dedup window is let pass, so what remains is the ledger. A restore
//! may reuse memory the load freed, so its `VmRSS` growth can be below its live heap. Run it in
//! release: `cargo run --release -p benches --bin state_size -- 10000000`.

use std::time::{Duration, Instant};

use benches::{load_stock, vm_hwm_bytes, vm_rss_bytes, Shape};
use cap::Cap;
use engine::{Config, Ledger};

/// The allocator `stockd` runs on (mimalloc), counted: `allocated()` is the live heap (bytes
/// handed out and not yet freed), which `VmRSS` is not (an allocator keeps freed memory for
/// later).
#[global_allocator]
static HEAP: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn min_median(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[0], times[times.len() / 2])
}

/// The command line (see the module docs).
struct Args {
    shape: Shape,
    /// `default` or `minimal`, as given.
    mode: String,
    config: Config,
    repeats: usize,
}

/// Parses the command line; prints the usage and exits with status 2 on a bad one.
fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: state_size <balances> [default|minimal] [repeats]";
    let balances: usize = match args.first().map(|a| a.replace('_', "").parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let mode = args.get(1).map_or("minimal", String::as_str);
    let config = match mode {
        "default" => Config::default(),
        "minimal" => Config {
            feed_events: 1,
            dedup_entries: 1,
            ..Config::default()
        },
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    Args {
        shape: Shape::with_balances(balances),
        mode: mode.to_owned(),
        config,
        repeats: args.get(2).and_then(|r| r.parse().ok()).unwrap_or(3).max(1),
    }
}

/// Loads the ledger and prints its load time and the memory it took.
fn load(args: &Args) -> Ledger {
    let shape = args.shape;
    let n = shape.balances() as f64;
    let rss_before = vm_rss_bytes().unwrap_or(0);
    let heap_before = HEAP.allocated();
    let start = Instant::now();
    let ledger = load_stock(shape, args.config);
    let load = start.elapsed();
    let rss_loaded = vm_rss_bytes().unwrap_or(0);
    let heap_loaded = HEAP.allocated().saturating_sub(heap_before);
    let ledger_bytes = rss_loaded.saturating_sub(rss_before);
    println!(
        "balances: {} ({} SKUs x {} locations), retention: {}",
        shape.balances(),
        shape.skus,
        shape.locations,
        args.mode
    );
    println!(
        "load: {:.2} s with set_on_hand in batches of {} ({:.0} requests/s, incl. building them)",
        load.as_secs_f64(),
        benches::LOAD_BATCH,
        n / load.as_secs_f64()
    );
    println!(
        "memory: VmRSS {:.1} MiB -> {:.1} MiB: ledger {:.1} MiB = {:.1} bytes per balance",
        mib(rss_before),
        mib(rss_loaded),
        mib(ledger_bytes),
        ledger_bytes as f64 / n
    );
    println!(
        "live heap: ledger {:.1} MiB = {:.1} bytes per balance",
        mib(heap_loaded as u64),
        heap_loaded as f64 / n,
    );
    ledger
}

/// Times `repeats` snapshots, prints them, and returns the last snapshot's bytes. The previous
/// bytes are dropped before each run, so only one snapshot is in memory at a time.
fn snapshots(ledger: &Ledger, repeats: usize, n: f64) -> Vec<u8> {
    let mut snapshot_times = Vec::with_capacity(repeats);
    let mut bytes = Vec::new();
    for _ in 0..repeats {
        drop(std::mem::take(&mut bytes));
        let start = Instant::now();
        bytes = ledger.snapshot();
        snapshot_times.push(start.elapsed());
    }
    let (snap_min, snap_median) = min_median(snapshot_times);
    println!(
        "snapshot: {} bytes ({:.1} MiB, {:.1} bytes per balance); time min {:.3} s, median {:.3} s ({:.0} balances/s)",
        bytes.len(),
        mib(bytes.len() as u64),
        bytes.len() as f64 / n,
        snap_min.as_secs_f64(),
        snap_median.as_secs_f64(),
        n / snap_median.as_secs_f64()
    );
    bytes
}

/// Times `repeats` restores of `bytes` and prints them with the memory of the first restored
/// ledger, which is also checked to snapshot back to the same bytes.
fn restores(bytes: &[u8], repeats: usize, n: f64) {
    let mut restore_times = Vec::with_capacity(repeats);
    let mut restored_bytes = 0;
    let mut restored_heap = 0;
    for i in 0..repeats {
        let rss = vm_rss_bytes().unwrap_or(0);
        let heap = HEAP.allocated();
        let start = Instant::now();
        let restored = Ledger::restore(bytes).expect("the snapshot restores");
        restore_times.push(start.elapsed());
        if i == 0 {
            restored_bytes = vm_rss_bytes().unwrap_or(0).saturating_sub(rss);
            restored_heap = HEAP.allocated().saturating_sub(heap);
            assert!(
                restored.snapshot() == bytes,
                "restore then snapshot gives the same bytes"
            );
        }
        drop(restored);
    }
    let (restore_min, restore_median) = min_median(restore_times);
    println!(
        "restore: time min {:.3} s, median {:.3} s ({:.0} balances/s), incl. the invariant check; restored ledger VmRSS +{:.1} MiB ({:.1} bytes per balance), live heap +{:.1} MiB ({:.1} bytes per balance)",
        restore_min.as_secs_f64(),
        restore_median.as_secs_f64(),
        n / restore_median.as_secs_f64(),
        mib(restored_bytes),
        restored_bytes as f64 / n,
        mib(restored_heap as u64),
        restored_heap as f64 / n
    );
}

fn main() {
    let args = parse_args();
    let n = args.shape.balances() as f64;
    let ledger = load(&args);
    let bytes = snapshots(&ledger, args.repeats, n);
    restores(&bytes, args.repeats, n);
    println!("peak VmHWM: {:.1} MiB", mib(vm_hwm_bytes().unwrap_or(0)));
}

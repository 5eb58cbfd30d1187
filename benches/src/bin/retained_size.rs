//! Memory per retained finished checkout: what the retention settings cost (docs/OPERATIONS.md,
//! "Retention"). Each checkout is a one-line `reserve`, its `place_order` and a `fulfil` of the
//! whole order, so it leaves two finished objects (a placed reservation and a closed order)
//! and three remembered request outcomes.
//!
//! Usage: `retained_size <finished|dedup|bounded> [checkouts]` (default 1,000,000), one mode
//! per process (the resident size of a process does not shrink reliably when a ledger is
//! dropped):
//! - `finished`: finished objects retained (default `retired_entries`), dedup log and change
//!   feed at 1 entry: bytes per finished checkout;
//! - `dedup`: request outcomes remembered (default `dedup_entries`), finished objects and the
//!   feed at 1: bytes per remembered request;
//! - `bounded`: `retired_entries` 1,000, dedup log and feed at 1: what the same traffic costs
//!   once retention is bounded (the slots of dropped objects are reused).
//!
//! Memory is the growth of `VmRSS` over the checkouts, after the stock was loaded (10,000
//! balances). Run it in release: `cargo run --release -p benches --bin retained_size --
//! finished`.

use benches::{assert_all_ok, load_stock, vm_rss_bytes, Driver, Shape, Workload};
use engine::{Config, Request};

/// Checkouts per batch (three requests each: the batch limit is 16,384).
const CHECKOUTS_PER_BATCH: usize = 4_096;

fn config(mode: &str) -> Option<Config> {
    let minimal = Config {
        dedup_entries: 1,
        feed_events: 1,
        retired_entries: 1,
        ..Config::default()
    };
    match mode {
        "finished" => Some(Config {
            retired_entries: Config::default().retired_entries,
            ..minimal
        }),
        "dedup" => Some(Config {
            dedup_entries: Config::default().dedup_entries,
            ..minimal
        }),
        "bounded" => Some(Config {
            retired_entries: 1_000,
            ..minimal
        }),
        _ => None,
    }
}

/// Runs `checkouts` checkouts in batches: reserves, then the orders, then the fulfilments.
fn checkouts(driver: &mut Driver, workload: &mut Workload, checkouts: usize) {
    let mut done = 0;
    while done < checkouts {
        let n = CHECKOUTS_PER_BATCH.min(checkouts - done);
        let carts: Vec<_> = (0..n).map(|_| workload.cart(1)).collect();
        let reserves: Vec<Request> = carts.iter().map(|c| workload.reserve(c)).collect();
        assert_all_ok(&driver.apply(&reserves));
        let orders: Vec<Request> = carts.iter().map(|c| workload.place_order(c)).collect();
        assert_all_ok(&driver.apply(&orders));
        let fulfils: Vec<Request> = carts.iter().map(|c| workload.fulfil(c)).collect();
        assert_all_ok(&driver.apply(&fulfils));
        done += n;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: retained_size <finished|dedup|bounded> [checkouts]";
    let mode = args.first().map_or("", String::as_str);
    let (Some(config), Ok(n)) = (
        config(mode),
        args.get(1)
            .map_or(Ok(1_000_000), |a| a.replace('_', "").parse::<usize>()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let shape = Shape::with_balances(10_000);
    let mut driver = Driver::new(load_stock(shape, config));
    let mut workload = Workload::new(shape, 7);
    // Warm the allocator and the tables a little, then measure.
    checkouts(&mut driver, &mut workload, CHECKOUTS_PER_BATCH);
    let before = vm_rss_bytes().unwrap_or(0);
    checkouts(&mut driver, &mut workload, n);
    let after = vm_rss_bytes().unwrap_or(0);
    let grown = after.saturating_sub(before);
    let status = driver.status();
    println!(
        "{mode}: {n} checkouts, VmRSS +{:.1} MiB: {:.0} bytes per checkout \
         (dedup entries {}, config {:?})",
        grown as f64 / (1024.0 * 1024.0),
        grown as f64 / n as f64,
        status.dedup_entries,
        driver.ledger.config()
    );
}

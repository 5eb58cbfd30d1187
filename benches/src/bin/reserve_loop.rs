//! A plain loop of `reserve` batches, for profiling the reservation path (criterion's own
//! loop mixes setup, request building and resets into a profile) and as a cross-check of the
//! criterion numbers.
//!
//! Usage: `reserve_loop [batches] [batch_size] [lines] [cold|warm] [balances]` (default 244
//! batches of 8192 single-line reservations: 2,000,000 holds, as one reset window of
//! `benches/reserve.rs`; `cold`; the same ledger of 1,000,000 balances; a smaller ledger,
//! e.g. 10000, shows the cost when the balances and SKU tables fit in the CPU caches). All requests are
//! built first; then only the apply loop runs, timed with `Instant` (apply + dropping the
//! outcomes). `warm` runs the same window once untimed and lets time pass past every
//! retention period before the timed window (the `warm` state of `benches/reserve.rs`).
//!
//! After the loop, empty batches past every deadline expire all the holds it placed (at most
//! `EXPIRY_STEPS_PER_BATCH` a batch, so as many batches as that takes): their apply time, their
//! number and the longest one are printed too, and so is the time of two reads, `status` and
//! the availability of one SKU at all locations, made twice: before the first of those batches
//! as of its time (every hold is past its deadline and none is swept: each read subtracts them
//! all on the fly), and while the backlog is at its largest (after the first batch, as of
//! `BATCH_STEP_MS` later: a read between two batches; overdue holds still count as held, and a
//! read looks at none of them).
//!
//! To profile only the loop, give perf a control FIFO and name it in `PERF_CTL_FIFO` (and
//! its ack FIFO in `PERF_ACK_FIFO`): the binary writes `enable` before the loop and `disable`
//! after it (around the expiry batch instead with `PROFILE_PHASE=expire`). Example:
//! ```text
//! mkfifo /tmp/ctl /tmp/ack
//! PERF_CTL_FIFO=/tmp/ctl PERF_ACK_FIFO=/tmp/ack perf record -D -1 \
//!     --control fifo:/tmp/ctl,/tmp/ack -g target/release/reserve_loop
//! ```

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use benches::{load_stock, Driver, Reset, Session, Shape, Workload, BATCH_STEP_MS, HOLD_TTL_MS};
use engine::{ChannelId, Config, Query, Request, Target};

/// Sends a command to perf through the control FIFO named in `PERF_CTL_FIFO`, if any, and
/// waits for its acknowledgement on `PERF_ACK_FIFO`.
fn perf_control(command: &str) {
    let Ok(ctl) = std::env::var("PERF_CTL_FIFO") else {
        return;
    };
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(ctl)
        .expect("open the perf control FIFO");
    fifo.write_all(format!("{command}\n").as_bytes())
        .expect("write to the perf control FIFO");
    drop(fifo);
    if let Ok(ack) = std::env::var("PERF_ACK_FIFO") {
        let mut buf = [0u8; 5];
        let mut fifo = std::fs::File::open(ack).expect("open the perf ack FIFO");
        let _ = fifo.read(&mut buf);
    }
}

/// The command line (see the module docs).
struct Args {
    batches: usize,
    batch_size: usize,
    lines: usize,
    /// Run one untimed window first and let every retention period pass.
    warm: bool,
    shape: Shape,
}

fn parse_args() -> Args {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let warm = match args.get(3).map(String::as_str) {
        None | Some("cold") => false,
        Some("warm") => true,
        Some(other) => panic!("cold or warm, not {other}"),
    };
    let shape = args.get(4).map_or(Shape::ONE_MILLION, |b| {
        Shape::with_balances(b.replace('_', "").parse().expect("numeric balances"))
    });
    args.truncate(3);
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.replace('_', "").parse().expect("numeric arguments"))
        .collect();
    Args {
        batches: args.first().copied().unwrap_or(244),
        batch_size: args.get(1).copied().unwrap_or(8192),
        lines: args.get(2).copied().unwrap_or(1),
        warm,
        shape,
    }
}

/// The `warm` state: one window of the same traffic applied, then expired past every
/// retention period, so the timed window runs on tables that already grew (as in a long-running
/// node) rather than on fresh ones.
fn warm_up(driver: Driver, work: &mut Workload, args: &Args) -> Driver {
    let mut session = Session::new(driver.ledger, args.batches * args.batch_size, Reset::Expire);
    for _ in 0..args.batches {
        let batch = work.reserve_batch(args.batch_size, args.lines);
        benches::assert_all_ok(&session.driver.apply(&batch));
    }
    session.reset();
    session.driver
}

/// What the timed window measured.
struct Window {
    /// Apply + dropping the outcomes, summed over the batches (request building excluded).
    timed: Duration,
    rejected: usize,
    /// Each batch's apply + drop, in order.
    batches: Vec<Duration>,
}

/// Applies every prepared batch, timing each apply and the drop of its outcomes only.
fn run_window(driver: &mut Driver, requests: &[Vec<Request>], profile: bool) -> Window {
    let mut batches = Vec::with_capacity(requests.len());
    let mut rejected = 0;
    if profile {
        perf_control("enable");
    }
    for batch in requests {
        let start = Instant::now();
        let outcomes = driver.apply(batch);
        rejected += outcomes.iter().filter(|o| o.is_err()).count();
        drop(outcomes);
        batches.push(start.elapsed());
    }
    if profile {
        perf_control("disable");
    }
    Window {
        timed: batches.iter().sum(),
        rejected,
        batches,
    }
}

/// The median batch and the longest ones of the loop, with their positions: a batch far
/// above the median is work that does not scale with the batch (a table growing, pages copied).
fn print_longest(times: &[Duration]) {
    let mut by_time: Vec<(usize, Duration)> = times.iter().copied().enumerate().collect();
    by_time.sort_unstable_by_key(|&(_, d)| std::cmp::Reverse(d));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = by_time.get(by_time.len() / 2).map_or(0.0, |&(_, d)| ms(d));
    let longest: Vec<String> = by_time
        .iter()
        .take(5)
        .map(|&(i, d)| format!("{:.3} ms (batch {})", ms(d), i + 1))
        .collect();
    println!(
        "per batch: median {median:.3} ms, longest {}",
        longest.join(", ")
    );
}

/// Expires every hold with empty batches past all deadlines and prints their apply time, and
/// the time of two reads made before them and while the backlog is at its largest.
fn expire_all(driver: &mut Driver, profile: bool) {
    let holds = driver.status().live_reservations;
    let before = time_reads(driver, driver.ledger.now_ms() + HOLD_TTL_MS + 1000);
    if profile {
        perf_control("enable");
    }
    let start = Instant::now();
    driver.advance(HOLD_TTL_MS + 1000);
    let first = start.elapsed();
    if profile {
        perf_control("disable");
    }
    let during = time_reads(driver, driver.ledger.now_ms() + BATCH_STEP_MS);
    if profile {
        perf_control("enable");
    }
    let mut batches = vec![first];
    while driver.expiry_backlog() {
        let start = Instant::now();
        driver.advance(BATCH_STEP_MS);
        batches.push(start.elapsed());
    }
    if profile {
        perf_control("disable");
    }
    assert_eq!(driver.ledger.next_deadline_ms(), None, "every hold expired");
    let total: Duration = batches.iter().sum();
    let n = batches.len();
    let (longest_at, _) = batches
        .iter()
        .enumerate()
        .max_by_key(|(_, d)| **d)
        .expect("one batch at least");
    batches.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "expiry of {holds} holds in {n} batches: {:.3} s, {:.0} holds/s; per batch: first {:.3} ms, median {:.3} ms, longest {:.3} ms (batch {})",
        total.as_secs_f64(),
        holds as f64 / total.as_secs_f64(),
        ms(first),
        ms(batches[n / 2]),
        ms(batches[n - 1]),
        longest_at + 1
    );
    println!(
        "reads before the first expiry batch: status {:.3} ms, availability of one SKU {:.3} ms; during the backlog: status {:.3} ms, availability of one SKU {:.3} ms",
        ms(before.0),
        ms(before.1),
        ms(during.0),
        ms(during.1)
    );
}

/// The time of a `status` query and of an availability query of one SKU at all locations,
/// each as of `now`.
fn time_reads(driver: &Driver, now: u64) -> (Duration, Duration) {
    let start = Instant::now();
    let status = driver.ledger.query(&Query::Status, now);
    let status_took = start.elapsed();
    assert!(status.is_ok());
    let availability = Query::Availability {
        skus: vec![benches::sku_id(0)],
        target: Target::All,
        channel: ChannelId::from("web"),
    };
    let start = Instant::now();
    let answer = driver.ledger.query(&availability, now);
    let availability_took = start.elapsed();
    assert!(answer.is_ok(), "{answer:?}");
    (status_took, availability_took)
}

fn main() {
    let args = parse_args();
    let (batches, batch_size, lines) = (args.batches, args.batch_size, args.lines);
    let mut driver = Driver::new(load_stock(args.shape, Config::default()));
    let mut work = Workload::new(args.shape, 42);
    if args.warm {
        driver = warm_up(driver, &mut work, &args);
    }
    // Every request is built before the clock starts: only the apply loop is measured.
    let requests: Vec<_> = (0..batches)
        .map(|_| work.reserve_batch(batch_size, lines))
        .collect();
    let profile_expiry = std::env::var("PROFILE_PHASE").is_ok_and(|p| p == "expire");
    let Window {
        timed,
        rejected,
        batches: times,
    } = run_window(&mut driver, &requests, !profile_expiry);
    assert_eq!(rejected, 0, "some reservations were rejected");
    let n = (batches * batch_size) as f64;
    println!(
        "{} balances, {} batches x {batch_size} {lines}-line reservations ({}): {:.3} s, {:.0} reservations/s, {:.0} ns each",
        args.shape.balances(),
        batches,
        if args.warm { "warm" } else { "cold" },
        timed.as_secs_f64(),
        n / timed.as_secs_f64(),
        timed.as_secs_f64() * 1e9 / n
    );
    print_longest(&times);
    drop(requests);
    expire_all(&mut driver, profile_expiry);
}

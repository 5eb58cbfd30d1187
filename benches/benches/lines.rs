//! The cost of a kit line and of a purchase-limited line against a plain line (issue 13): one
//! `reserve` of one line per request, in batches of 1,024, on a ledger of 100,000 SKUs at 4
//! locations (400,000 balances). Criterion reports reservations per second.
//!
//! - `plain`: a line of one SKU at one location;
//! - `kit_2`: a line of a kit of 2 components (two held lines, each at one balance);
//! - `limited`: a line of a SKU with a purchase limit, for a customer (a new customer per
//!   request: each grant creates a counted record, the most a limited line costs).
//!
//! Timed: `Ledger::apply` of one batch. Not timed: building requests and putting the ledger
//! back (a fresh clone of the loaded one) every 200,000 reservations.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{
    BatchHeader, ChannelId, Command, Config, CustomerId, KitComponent, Ledger, Line, LocationDef,
    LocationId, LocationKind, Reason, Request, RequestId, ReservationId, SkuId, Target,
};

const SKUS: usize = 100_000;
const LOCATIONS: usize = 4;
const BATCH: usize = 1_024;
const RESET_AFTER: u64 = 200_000;

/// What each request's line names.
#[derive(Clone, Copy)]
enum Shape {
    Plain,
    Kit,
    Limited,
}

/// A ledger and the position of its next batch.
struct Driver {
    ledger: Ledger,
    index: u64,
    now_ms: u64,
}

impl Driver {
    fn apply(&mut self, requests: &[Request]) -> usize {
        self.index += 1;
        self.now_ms += 1;
        let header = BatchHeader {
            log_index: self.index,
            timestamp_ms: self.now_ms,
        };
        let outcomes = self.ledger.apply(header, requests);
        outcomes.iter().filter(|o| o.is_ok()).count()
    }
}

fn request(id: u64, command: Command) -> Request {
    Request {
        request_id: RequestId(u128::from(id) + 1),
        command,
    }
}

/// 100,000 SKUs with stock at 4 locations, kits `K{i}` = `S{2i}` + `S{2i+1}`, and a limit on
/// `L{i}` (its own 100,000 SKUs would double the ledger: limited SKUs are the first 1,000,
/// stocked like the others).
fn load() -> Driver {
    let mut driver = Driver {
        ledger: Ledger::new(Config::default()),
        index: 0,
        now_ms: 1_000_000,
    };
    let mut commands: Vec<Command> = (0..LOCATIONS)
        .map(|l| {
            Command::DefineLocation(LocationDef {
                location: LocationId::from(format!("L{l}")),
                kind: LocationKind::Warehouse,
                pickup: false,
                coordinates: None,
                channels: None,
            })
        })
        .collect();
    for s in 0..SKUS {
        for l in 0..LOCATIONS {
            commands.push(Command::SetOnHand {
                sku: SkuId::from(format!("S{s}")),
                location: LocationId::from(format!("L{l}")),
                qty: 1_000_000_000,
                reason: Reason::from("count"),
                expected: None,
            });
        }
    }
    for k in 0..SKUS / 2 {
        commands.push(Command::DefineKit {
            kit: SkuId::from(format!("K{k}")),
            components: [2 * k, 2 * k + 1]
                .iter()
                .map(|s| KitComponent {
                    sku: SkuId::from(format!("S{s}")),
                    qty: 1,
                })
                .collect(),
        });
    }
    for s in 0..1_000 {
        commands.push(Command::SetPurchaseLimit {
            sku: SkuId::from(format!("S{s}")),
            qty_max: 1_000,
            window_ms: 3_600_000,
            strict: false,
        });
    }
    let mut id = 0;
    for chunk in commands.chunks(8_192) {
        let requests: Vec<Request> = chunk
            .iter()
            .map(|c| {
                id += 1;
                request(1 << 40 | id, c.clone())
            })
            .collect();
        assert_eq!(
            driver.apply(&requests),
            requests.len(),
            "loading is accepted"
        );
    }
    driver
}

/// Request `n` of a shape: a 1-unit hold of one line.
fn reserve(shape: Shape, n: u64) -> Request {
    // A cheap spread over SKUs and locations (a multiplicative hash).
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let location = LocationId::from(format!("L{}", h % LOCATIONS as u64));
    let sku = match shape {
        Shape::Plain => format!("S{}", h % SKUS as u64),
        Shape::Kit => format!("K{}", h % (SKUS as u64 / 2)),
        Shape::Limited => format!("S{}", h % 1_000),
    };
    let hold = Command::Reserve {
        reservation: ReservationId::from(format!("r{n:016x}")),
        channel: ChannelId::from("web"),
        lines: vec![Line {
            sku: SkuId::from(sku),
            target: Target::Location(location),
            qty: 1,
        }],
        ttl_ms: 600_000,
    };
    let command = match shape {
        Shape::Limited => Command::AsCustomer {
            customer: CustomerId::from(format!("c{n}")),
            command: Box::new(hold),
        },
        _ => hold,
    };
    request(n, command)
}

fn lines(c: &mut Criterion) {
    let base = load();
    let mut group = c.benchmark_group("line");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, shape) in [
        ("plain", Shape::Plain),
        ("kit_2", Shape::Kit),
        ("limited", Shape::Limited),
    ] {
        let mut driver = Driver {
            ledger: base.ledger.clone(),
            index: base.index,
            now_ms: base.now_ms,
        };
        let mut n = 0u64;
        group.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    if n >= RESET_AFTER {
                        driver.ledger = base.ledger.clone();
                        n = 0;
                    }
                    let requests: Vec<Request> = (0..BATCH as u64)
                        .map(|i| reserve(shape, (1 << 32) + n + i))
                        .collect();
                    n += BATCH as u64;
                    let start = Instant::now();
                    let ok = driver.apply(&requests);
                    timed += start.elapsed();
                    assert_eq!(ok, BATCH, "{name}: some reservations were rejected");
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
    targets = lines
}
criterion_main!(benches);

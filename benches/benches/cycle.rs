//! Full checkout cycles per second: `reserve` -> `place_order` (from the reservation) ->
//! `fulfil`, single-line carts, on a ledger of 1,000,000 balances (see `reserve.rs`).
//!
//! Pipelined like real traffic, where the three steps of one cart arrive in different
//! batches: batch i carries the reserves of cohort i, the place_orders of cohort i-1 and the
//! fulfils of cohort i-2, interleaved; 2,730 carts per cohort, so 8,190 requests per batch
//! and 2,730 completed cycles per batch (`Throughput::Elements` = cycles).
//!
//! Timed: `Ledger::apply` of one steady-state batch and dropping its outcomes. Not timed:
//! building requests, and every 600,000 cycles draining the pipeline, moving time past every
//! retention period (the tables keep their capacity: the "warm" state of `reserve.rs`) and
//! priming the pipeline again. One untimed window runs first to size the tables.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use benches::{assert_all_ok, load_stock, Cart, Reset, Session, Shape, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{Config, Request};

/// Carts per cohort (three requests each per batch in steady state).
const COHORT: usize = 2730;
/// Requests applied after which the working ledger is put back to its base.
const RESET_AFTER_REQUESTS: usize = 1_800_000;

/// The carts in flight: `stages[0]` was reserved last batch, `stages[1]` placed last batch.
struct Pipeline {
    session: Session,
    work: Workload,
    stages: VecDeque<Vec<Cart>>,
}

impl Pipeline {
    /// The next batch: new reserves, place_orders of the last cohort, fulfils of the one
    /// before, interleaved.
    fn next_batch(&mut self) -> (Vec<Request>, usize) {
        let fresh: Vec<Cart> = (0..COHORT).map(|_| self.work.cart(1)).collect();
        let reserved = self.stages.pop_front();
        let placed = self.stages.pop_front();
        let mut batch = Vec::with_capacity(3 * COHORT);
        let mut cycles = 0;
        for (i, cart) in fresh.iter().enumerate() {
            batch.push(self.work.reserve(cart));
            if let Some(r) = &reserved {
                batch.push(self.work.place_order(&r[i]));
            }
            if let Some(p) = &placed {
                batch.push(self.work.fulfil(&p[i]));
                cycles += 1;
            }
        }
        // Next batch: `fresh` gets placed, `reserved` gets fulfilled.
        self.stages.push_back(fresh);
        if let Some(r) = reserved {
            self.stages.push_back(r);
        }
        (batch, cycles)
    }

    /// Applies batches until the pipeline is full (untimed).
    fn prime(&mut self) {
        assert!(self.stages.is_empty(), "pipeline drained");
        for _ in 0..2 {
            let (batch, _) = self.next_batch();
            assert_all_ok(&self.session.driver.apply(&batch));
            self.session.count(batch.len());
        }
    }

    /// Places and fulfils the carts in flight, then resets the session and primes the
    /// pipeline again (untimed).
    fn restart(&mut self) {
        while let Some(reserved) = self.stages.pop_front() {
            let placed = self.stages.pop_front();
            let mut batch: Vec<Request> =
                reserved.iter().map(|c| self.work.place_order(c)).collect();
            if let Some(placed) = &placed {
                batch.extend(placed.iter().map(|c| self.work.fulfil(c)));
            }
            assert_all_ok(&self.session.driver.apply(&batch));
            let fulfils: Vec<Request> = reserved.iter().map(|c| self.work.fulfil(c)).collect();
            assert_all_ok(&self.session.driver.apply(&fulfils));
        }
        self.session.reset();
        self.prime();
    }
}

fn cycle(c: &mut Criterion) {
    let shape = Shape::ONE_MILLION;
    let base = load_stock(shape, Config::default());
    let mut pipeline = Pipeline {
        session: Session::new(base, RESET_AFTER_REQUESTS, Reset::Expire),
        work: Workload::new(shape, 99),
        stages: VecDeque::new(),
    };
    pipeline.prime();
    while !pipeline.session.due(3 * COHORT) {
        let (batch, _) = pipeline.next_batch();
        assert_all_ok(&pipeline.session.driver.apply(&batch));
        pipeline.session.count(batch.len());
    }
    pipeline.restart();
    let mut group = c.benchmark_group("cycle");
    group.sample_size(20);
    group.throughput(Throughput::Elements(COHORT as u64));
    group.bench_function(BenchmarkId::new("reserve_place_fulfil", 3 * COHORT), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                if pipeline.session.due(3 * COHORT) {
                    pipeline.restart();
                }
                let (batch, cycles) = pipeline.next_batch();
                assert_eq!(cycles, COHORT, "pipeline primed");
                let start = Instant::now();
                let outcomes = pipeline.session.driver.apply(&batch);
                let ok = outcomes.iter().filter(|o| o.is_ok()).count();
                drop(outcomes);
                timed += start.elapsed();
                assert_eq!(ok, batch.len(), "some requests were rejected");
                pipeline.session.count(batch.len());
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
    targets = cycle
}
criterion_main!(benches);

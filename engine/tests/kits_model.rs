//! Property tests of kits, exchanges and per-customer purchase limits (SPEC section 3, "Kits,
//! exchanges and purchase limits"), on random sequences of one-request batches.
//!
//! A small MODEL of what purchase limits count (holds and orders per customer, by limit
//! generation and placement time, cancelled units given back, returned units kept, exchanges
//! netted) runs beside the engine. After every step:
//! - the engine's invariants hold (`check_invariants`: balances = holds + orders, and every kit
//!   line's components moved together in holds and orders);
//! - a customer's write on a limited SKU was granted exactly when the units the model counts
//!   plus its demand (net of an exchange's returns) stay within `qty_max`, and refused with
//!   `limit_exceeded` only when they do not: so counted units never exceed the limit at grant
//!   time;
//! - an exchange did both halves (the RMA and the new order exist and name each other) or
//!   nothing (neither exists);
//! - a ledger restored from a snapshot taken mid-way ends byte-identical.
//!
//! Fixture: components `A`, `B`, `C` stocked at `wh1` and `wh2`; kits `K1` = A + 2 B and
//! `K2` = B + C; customers `c0`..`c2`; windows of 10 minutes; orders are fulfilled or cancelled
//! whole, so what a cancel gives back is everything the order counted.

use std::collections::BTreeMap;

use engine::query::OrderState;
use engine::{
    code_of, Answer, BatchHeader, Code, Command, Config, CustomerId, Disposition, Exchange,
    Fulfilment, KitComponent, Ledger, Line, LocationDef, LocationId, LocationKind, OrderId,
    OrderSource, Query, Reason, Request, RequestId, ReservationId, ReturnLine, RmaId, SkuId,
    Target,
};
use proptest::prelude::*;

const SKUS: [&str; 5] = ["A", "B", "C", "K1", "K2"];
const LOCS: [&str; 2] = ["wh1", "wh2"];
const WINDOW_MS: u64 = 600_000;
const TTL_MS: u64 = 300_000;

/// The composition of a kit in the fixture.
fn parts(sku: &str) -> &'static [(&'static str, i64)] {
    match sku {
        "K1" => &[("A", 1), ("B", 2)],
        "K2" => &[("B", 1), ("C", 1)],
        _ => &[],
    }
}

/// Units per SKU a set of lines asks, as limits count them (a kit for itself and its parts).
fn demand(lines: &[(usize, usize, i64)]) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for &(s, _, qty) in lines {
        *out.entry(SKUS[s]).or_default() += qty;
        for &(part, per) in parts(SKUS[s]) {
            *out.entry(part).or_default() += qty * per;
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        customer: Option<usize>,
        lines: Vec<(usize, usize, i64)>,
    },
    Order {
        customer: Option<usize>,
        lines: Vec<(usize, usize, i64)>,
    },
    Place(usize),
    Release(usize),
    Fulfil(usize),
    Cancel(usize),
    Exchange {
        order: usize,
        back: usize,
        lines: Vec<(usize, usize, i64)>,
    },
    Limit {
        sku: usize,
        qty_max: i64,
        strict: bool,
    },
    Restock(usize, usize),
    Advance(u64),
}

fn arb_lines() -> impl Strategy<Value = Vec<(usize, usize, i64)>> {
    prop::collection::vec((0..SKUS.len(), 0..LOCS.len(), 1i64..3), 1..3)
}

fn arb_op() -> impl Strategy<Value = Op> {
    let customer = prop::option::weighted(0.8, 0usize..3);
    prop_oneof![
        4 => (customer.clone(), arb_lines()).prop_map(|(customer, lines)| Op::Reserve { customer, lines }),
        4 => (customer, arb_lines()).prop_map(|(customer, lines)| Op::Order { customer, lines }),
        2 => (0usize..8).prop_map(Op::Place),
        1 => (0usize..8).prop_map(Op::Release),
        2 => (0usize..8).prop_map(Op::Fulfil),
        2 => (0usize..8).prop_map(Op::Cancel),
        2 => (0usize..8, 0..SKUS.len(), arb_lines())
            .prop_map(|(order, back, lines)| Op::Exchange { order, back, lines }),
        2 => (0..SKUS.len(), 0i64..4, prop::bool::weighted(0.2))
            .prop_map(|(sku, qty_max, strict)| Op::Limit { sku, qty_max, strict }),
        1 => (0..3usize, 0..LOCS.len()).prop_map(|(s, l)| Op::Restock(s, l)),
        2 => (1u64..800).prop_map(|s| Op::Advance(s * 1_000)),
    ]
}

/// A purchase limit as the model knows it.
#[derive(Debug, Clone, Copy)]
struct Limit {
    qty_max: i64,
    strict: bool,
    generation: u64,
}

/// Units one hold or order counts, per SKU, under a generation.
type Counts = BTreeMap<&'static str, (u64, i64)>;

#[derive(Debug)]
struct Hold {
    id: String,
    customer: Option<usize>,
    expires_at: u64,
    live: bool,
    lines: Vec<(usize, usize, i64)>,
    counted: Counts,
}

#[derive(Debug)]
struct Placed {
    id: String,
    customer: Option<usize>,
    placed_at: u64,
    counted: Counts,
    lines: Vec<(usize, usize, i64)>,
}

#[derive(Default)]
struct Model {
    now: u64,
    generation: u64,
    limits: BTreeMap<&'static str, Limit>,
    holds: Vec<Hold>,
    orders: Vec<Placed>,
}

impl Model {
    /// Units `customer` has counted against `sku` now.
    fn counted(&self, sku: &str, customer: usize) -> i64 {
        let Some(limit) = self.limits.get(sku) else {
            return 0;
        };
        let live = |c: &Counts| match c.get(sku) {
            Some(&(g, units)) if g == limit.generation => units,
            _ => 0,
        };
        let held: i64 = self
            .holds
            .iter()
            .filter(|h| h.live && h.expires_at > self.now && h.customer == Some(customer))
            .map(|h| live(&h.counted))
            .sum();
        let ordered: i64 = self
            .orders
            .iter()
            .filter(|o| o.customer == Some(customer) && o.placed_at + WINDOW_MS > self.now)
            .map(|o| live(&o.counted))
            .sum();
        held + ordered
    }

    /// What a customer's write on `lines` (net of `returned`) should get from the limits:
    /// `Ok(counts)` or the code.
    fn judge(
        &self,
        customer: Option<usize>,
        lines: &[(usize, usize, i64)],
        returned: &BTreeMap<&'static str, i64>,
    ) -> Result<Counts, Code> {
        let mut counted = Counts::new();
        for (sku, units) in demand(lines) {
            let Some(limit) = self.limits.get(sku) else {
                continue;
            };
            let Some(c) = customer else {
                if limit.strict {
                    return Err(Code::Invalid);
                }
                continue;
            };
            let net = (units - returned.get(sku).copied().unwrap_or(0)).max(0);
            if net == 0 {
                continue;
            }
            if self.counted(sku, c) + net > limit.qty_max {
                return Err(Code::LimitExceeded);
            }
            counted.insert(sku, (limit.generation, net));
        }
        Ok(counted)
    }

    /// What placing a hold's lines counts now (current limits, no check).
    fn count_unchecked(&self, customer: Option<usize>, lines: &[(usize, usize, i64)]) -> Counts {
        if customer.is_none() {
            return Counts::new();
        }
        demand(lines)
            .into_iter()
            .filter_map(|(sku, units)| self.limits.get(sku).map(|l| (sku, (l.generation, units))))
            .collect()
    }
}

struct Run {
    ledger: Ledger,
    model: Model,
    index: u64,
    /// Every batch applied, to replay on a restored copy.
    steps: Vec<(BatchHeader, Request)>,
}

fn line(s: usize, l: usize, qty: i64) -> Line {
    Line {
        sku: SkuId::from(SKUS[s].to_owned()),
        target: Target::Location(LocationId::from(LOCS[l].to_owned())),
        qty,
    }
}

fn customer_write(customer: Option<usize>, command: Command) -> Command {
    match customer {
        None => command,
        Some(c) => Command::AsCustomer {
            customer: CustomerId::from(format!("c{c}")),
            command: Box::new(command),
        },
    }
}

impl Run {
    fn new() -> Run {
        let mut run = Run {
            ledger: Ledger::new(Config::default()),
            model: Model {
                now: 1_000_000,
                ..Model::default()
            },
            index: 0,
            steps: Vec::new(),
        };
        for l in LOCS {
            run.must(Command::DefineLocation(LocationDef {
                location: LocationId::from(l.to_owned()),
                kind: LocationKind::Warehouse,
                pickup: false,
                coordinates: None,
                channels: None,
            }));
        }
        for kit in ["K1", "K2"] {
            run.must(Command::DefineKit {
                kit: SkuId::from(kit.to_owned()),
                components: parts(kit)
                    .iter()
                    .map(|(s, q)| KitComponent {
                        sku: SkuId::from((*s).to_owned()),
                        qty: *q,
                    })
                    .collect(),
            });
        }
        for s in 0..3 {
            for l in 0..LOCS.len() {
                run.must(stock(s, l, 6));
            }
        }
        run
    }

    fn apply(&mut self, command: Command) -> Code {
        self.index += 1;
        let request = Request {
            request_id: RequestId(u128::from(self.index)),
            command,
        };
        let header = BatchHeader {
            log_index: self.index,
            timestamp_ms: self.model.now,
        };
        let out = self.ledger.apply(header, std::slice::from_ref(&request));
        self.steps.push((header, request));
        if let Err(e) = self.ledger.check_invariants() {
            panic!("after {:?}: {e}", self.steps.last());
        }
        code_of(&out[0])
    }

    fn must(&mut self, command: Command) {
        assert_eq!(self.apply(command), Code::Ok);
    }

    fn order_state(&self, id: &str) -> Option<OrderState> {
        match self
            .ledger
            .query(&Query::Order(OrderId::from(id.to_owned())), self.model.now)
        {
            Ok(Answer::Order(o)) => Some(o.state),
            _ => None,
        }
    }
}

fn stock(s: usize, l: usize, qty: i64) -> Command {
    Command::SetOnHand {
        sku: SkuId::from(SKUS[s].to_owned()),
        location: LocationId::from(LOCS[l].to_owned()),
        qty,
        reason: Reason::from("count".to_owned()),
        expected: None,
    }
}

/// Checks a customer's write against the model: granted iff the limits allow it (when stock
/// did); `limit_exceeded` / the strict `invalid` only when the model says so.
fn check_judged(
    code: Code,
    judged: &Result<Counts, Code>,
    what: &str,
) -> Result<(), TestCaseError> {
    match (code, judged) {
        (Code::Ok, Ok(_)) => Ok(()),
        (Code::Ok, Err(want)) => Err(TestCaseError::fail(format!(
            "{what}: granted, model {want}"
        ))),
        (Code::LimitExceeded, Err(Code::LimitExceeded)) => Ok(()),
        (Code::LimitExceeded, _) => Err(TestCaseError::fail(format!(
            "{what}: limit_exceeded, model {judged:?}"
        ))),
        (Code::Invalid, Err(Code::Invalid)) => Ok(()),
        // Stock is checked before limits: a shortage may hide a limit.
        (Code::InsufficientStock, _) => Ok(()),
        (other, _) => Err(TestCaseError::fail(format!(
            "{what}: {other}, model {judged:?}"
        ))),
    }
}

fn step(run: &mut Run, op: &Op) -> Result<(), TestCaseError> {
    let n = run.index;
    match op {
        Op::Reserve { customer, lines } => {
            let id = format!("r{n}");
            let judged = run.model.judge(*customer, lines, &BTreeMap::new());
            let code = run.apply(customer_write(
                *customer,
                Command::Reserve {
                    reservation: ReservationId::from(id.clone()),
                    channel: "web".into(),
                    lines: lines.iter().map(|&(s, l, q)| line(s, l, q)).collect(),
                    ttl_ms: TTL_MS,
                },
            ));
            check_judged(code, &judged, "reserve")?;
            if code == Code::Ok {
                run.model.holds.push(Hold {
                    id,
                    customer: *customer,
                    expires_at: run.model.now + TTL_MS,
                    live: true,
                    lines: lines.clone(),
                    counted: judged.unwrap_or_default(),
                });
            }
        }
        Op::Order { customer, lines } => {
            let id = format!("o{n}");
            let judged = run.model.judge(*customer, lines, &BTreeMap::new());
            let code = run.apply(customer_write(*customer, direct(&id, "web", lines)));
            check_judged(code, &judged, "order")?;
            if code == Code::Ok {
                let counted = judged.unwrap_or_default();
                push_order(run, id, *customer, lines.clone(), counted);
            }
        }
        Op::Place(i) => place(run, *i)?,
        Op::Release(i) => {
            let Some(h) = run.model.holds.get_mut(*i) else {
                return Ok(());
            };
            let (id, live) = (h.id.clone(), h.live && h.expires_at > run.model.now);
            let code = run.apply(Command::Release {
                reservation: ReservationId::from(id),
            });
            prop_assert_eq!(code == Code::Ok, live);
            run.model.holds[*i].live = false;
        }
        Op::Fulfil(i) => {
            let Some(o) = run.model.orders.get(*i) else {
                return Ok(());
            };
            let (id, lines) = (o.id.clone(), o.lines.clone());
            if run.order_state(&id) != Some(OrderState::Open) {
                return Ok(());
            }
            let located = lines
                .iter()
                .map(|&(s, l, q)| engine::LocatedLine {
                    sku: SkuId::from(SKUS[s].to_owned()),
                    location: LocationId::from(LOCS[l].to_owned()),
                    qty: q,
                })
                .collect();
            let code = run.apply(Command::Fulfil {
                order: OrderId::from(id),
                lines: located,
            });
            // Counts can fall short of allocations after a count; nothing else refuses.
            prop_assert!(
                matches!(code, Code::Ok | Code::InsufficientStock),
                "{}",
                code
            );
        }
        Op::Cancel(i) => {
            let Some(o) = run.model.orders.get(*i) else {
                return Ok(());
            };
            let id = o.id.clone();
            let open = run.order_state(&id) == Some(OrderState::Open);
            let code = run.apply(Command::Cancel {
                order: OrderId::from(id),
                lines: None,
            });
            prop_assert_eq!(code == Code::Ok, open);
            if open {
                run.model.orders[*i].counted.clear();
            }
        }
        Op::Exchange { order, back, lines } => exchange(run, *order, *back, lines)?,
        Op::Limit {
            sku,
            qty_max,
            strict,
        } => {
            let name = SKUS[*sku];
            run.must(Command::SetPurchaseLimit {
                sku: SkuId::from(name.to_owned()),
                qty_max: *qty_max,
                window_ms: WINDOW_MS,
                strict: *strict,
            });
            let model = &mut run.model;
            match (*qty_max, model.limits.get_mut(name)) {
                (0, _) => {
                    model.limits.remove(name);
                }
                (_, Some(limit)) => {
                    limit.qty_max = *qty_max;
                    limit.strict = *strict;
                }
                (_, None) => {
                    // The engine's generation is its next sequence number: only equality
                    // matters, so the model numbers its own.
                    model.generation += 1;
                    let generation = model.generation;
                    model.limits.insert(
                        name,
                        Limit {
                            qty_max: *qty_max,
                            strict: *strict,
                            generation,
                        },
                    );
                }
            }
        }
        Op::Restock(s, l) => run.must(stock(*s, *l, 6)),
        Op::Advance(ms) => run.model.now += ms,
    }
    Ok(())
}

fn direct(id: &str, channel: &str, lines: &[(usize, usize, i64)]) -> Command {
    Command::PlaceOrder {
        order: OrderId::from(id.to_owned()),
        source: OrderSource::Lines {
            channel: channel.into(),
            lines: lines.iter().map(|&(s, l, q)| line(s, l, q)).collect(),
        },
        fulfilment: Fulfilment::Ship,
    }
}

fn push_order(
    run: &mut Run,
    id: String,
    customer: Option<usize>,
    lines: Vec<(usize, usize, i64)>,
    counted: Counts,
) {
    run.model.orders.push(Placed {
        id,
        customer,
        placed_at: run.model.now,
        counted,
        lines,
    });
}

/// Places hold `i`: counted once, from place_order, without a new check.
fn place(run: &mut Run, i: usize) -> Result<(), TestCaseError> {
    let Some(h) = run.model.holds.get(i) else {
        return Ok(());
    };
    let live = h.live && h.expires_at > run.model.now;
    let (hold, customer, lines) = (h.id.clone(), h.customer, h.lines.clone());
    let id = format!("p{}", run.index);
    let code = run.apply(Command::PlaceOrder {
        order: OrderId::from(id.clone()),
        source: OrderSource::Reservation(ReservationId::from(hold)),
        fulfilment: Fulfilment::Ship,
    });
    prop_assert_eq!(code == Code::Ok, live, "{}", code);
    if code == Code::Ok {
        run.model.holds[i].live = false;
        let counted = run.model.count_unchecked(customer, &lines);
        push_order(run, id, customer, lines, counted);
    }
    Ok(())
}

/// An exchange of one unit of SKU `back` of order `i` for `lines`, at the order's first
/// location: both halves or nothing, the new order counted net of the return.
fn exchange(
    run: &mut Run,
    i: usize,
    back: usize,
    lines: &[(usize, usize, i64)],
) -> Result<(), TestCaseError> {
    let Some(o) = run.model.orders.get(i) else {
        return Ok(());
    };
    let (of, customer) = (o.id.clone(), o.customer);
    let (rma, new_id) = (format!("x{}", run.index), format!("e{}", run.index));
    let returned: BTreeMap<&'static str, i64> = demand(&[(back, 0, 1)]);
    let judged = run.model.judge(customer, lines, &returned);
    let code = run.apply(Command::Exchange(Box::new(Exchange {
        rma: RmaId::from(rma.clone()),
        order: OrderId::from(of),
        returns: vec![ReturnLine {
            sku: SkuId::from(SKUS[back].to_owned()),
            qty: 1,
            received_at: LocationId::from(LOCS[0].to_owned()),
            disposition: Disposition::Restock,
        }],
        new_order: OrderId::from(new_id.clone()),
        channel: "web".into(),
        lines: lines.iter().map(|&(s, l, q)| line(s, l, q)).collect(),
        fulfilment: Fulfilment::Ship,
    })));
    let now = run.model.now;
    let rma_exists = run
        .ledger
        .query(&Query::Rma(RmaId::from(rma.clone())), now)
        .is_ok();
    let order_exists = run.order_state(&new_id).is_some();
    prop_assert_eq!(rma_exists, code == Code::Ok, "{}", code);
    prop_assert_eq!(order_exists, code == Code::Ok, "{}", code);
    if code == Code::Ok {
        // Only a return that passed could have been judged: the return's codes come first.
        check_judged(code, &judged, "exchange")?;
        push_order(
            run,
            new_id,
            customer,
            lines.to_vec(),
            judged.unwrap_or_default(),
        );
    } else if matches!(code, Code::LimitExceeded) {
        check_judged(code, &judged, "exchange")?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn kits_limits_and_exchanges_keep_their_rules(
        ops in prop::collection::vec(arb_op(), 1..60),
        cut in 0usize..60,
    ) {
        let mut run = Run::new();
        let mut restored: Option<(Ledger, usize)> = None;
        for (i, op) in ops.iter().enumerate() {
            if i == cut {
                let copy = Ledger::restore(&run.ledger.snapshot()).expect("restores");
                restored = Some((copy, run.steps.len()));
            }
            step(&mut run, op)?;
        }
        if let Some((mut copy, from)) = restored {
            for (header, request) in &run.steps[from..] {
                copy.apply(*header, std::slice::from_ref(request));
            }
            prop_assert_eq!(copy.digest(), run.ledger.digest());
        }
    }
}

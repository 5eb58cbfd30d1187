//! Prefix search and pickups due: exact answers, limits, deadlines passing between batches,
//! and the same answers after a restore (the indexes are derived).

use crate::command::{Command, Fulfilment, Line, LocatedLine, LocationDef, LocationKind};
use crate::command::{OrderSource, Request, Target};
use crate::ids::{LocationId, OrderId, Reason, RequestId, SkuId};
use crate::ledger::{BatchHeader, Config, Ledger};
use crate::outcome::{InvalidReason, Rejection};
use crate::query::{Answer, PickupsDue, Query, SkuMatches};

/// A ledger driven one batch at a time, at times the test chooses.
struct Fixture {
    ledger: Ledger,
    index: u64,
    request: u128,
}

impl Fixture {
    fn new() -> Self {
        let mut f = Fixture {
            ledger: Ledger::new(Config::default()),
            index: 0,
            request: 0,
        };
        for (id, kind) in [("s1", LocationKind::Store), ("s2", LocationKind::Store)] {
            f.write(
                1_000,
                Command::DefineLocation(LocationDef {
                    location: LocationId::from(id),
                    kind,
                    pickup: true,
                    coordinates: None,
                    channels: None,
                }),
            );
        }
        f
    }

    /// Applies one write in its own batch at `at_ms`; panics if it is rejected.
    #[track_caller]
    fn write(&mut self, at_ms: u64, command: Command) {
        self.index += 1;
        self.request += 1;
        let header = BatchHeader {
            log_index: self.index,
            timestamp_ms: at_ms,
        };
        let request = Request {
            request_id: RequestId(self.request),
            command,
        };
        let outcome = self.ledger.apply(header, &[request]);
        assert!(outcome[0].is_ok(), "{outcome:?}");
    }

    fn stock(&mut self, at_ms: u64, sku: &str, loc: &str, qty: i64) {
        self.write(
            at_ms,
            Command::SetOnHand {
                sku: SkuId::from(sku),
                location: LocationId::from(loc),
                qty,
                reason: Reason::from("count"),
                expected: None,
            },
        );
    }

    fn pickup_order(&mut self, at_ms: u64, order: &str, lines: &[(&str, &str, i64)], window: u64) {
        let lines = lines
            .iter()
            .map(|&(sku, loc, qty)| Line {
                sku: SkuId::from(sku),
                target: Target::Location(LocationId::from(loc)),
                qty,
            })
            .collect();
        self.write(
            at_ms,
            Command::PlaceOrder {
                order: OrderId::from(order),
                source: OrderSource::Lines {
                    channel: "web".into(),
                    lines,
                },
                fulfilment: Fulfilment::Pickup {
                    deadline_ms: window,
                },
            },
        );
    }

    fn search(&self, prefix: &str, max: u32) -> Result<SkuMatches, Rejection> {
        let query = Query::SkuSearch {
            prefix: SkuId::from(prefix),
            max,
        };
        self.ledger.query(&query, 0).map(|a| match a {
            Answer::SkuSearch(m) => m,
            other => panic!("{other:?}"),
        })
    }

    fn pickups(&self, loc: &str, max: u32, now_ms: u64) -> Result<PickupsDue, Rejection> {
        let query = Query::Pickups {
            location: LocationId::from(loc),
            max,
        };
        self.ledger.query(&query, now_ms).map(|a| match a {
            Answer::Pickups(p) => p,
            other => panic!("{other:?}"),
        })
    }

    /// The same ledger through a snapshot: derived indexes rebuilt.
    fn restored(&self) -> Fixture {
        Fixture {
            ledger: Ledger::restore(&self.ledger.snapshot()).expect("restore"),
            index: self.index,
            request: self.request,
        }
    }
}

#[track_caller]
fn check_search(f: &Fixture, prefix: &str, max: u32, expected: &[&str], more: bool) {
    let found = f.search(prefix, max).expect("search");
    let ids: Vec<&str> = found.skus.iter().map(|m| m.sku.as_str()).collect();
    assert_eq!(
        (ids.as_slice(), found.more),
        (expected, more),
        "prefix {prefix}"
    );
}

/// (order, deadline, [(sku, qty)]) of a pickups answer.
type Due = Vec<(String, u64, Vec<(String, i64)>)>;

fn due(p: &PickupsDue) -> Due {
    p.pickups
        .iter()
        .map(|v| {
            let lines = v
                .lines
                .iter()
                .map(|l| (l.sku.0.to_string(), l.qty))
                .collect();
            (v.order.0.to_string(), v.deadline_ms, lines)
        })
        .collect()
}

fn limit(name: &str) -> Rejection {
    Rejection::limit(name)
}

#[test]
fn prefix_search_is_in_id_order_bounded_and_survives_restore() {
    let mut f = Fixture::new();
    for sku in ["TSHIRT-M", "TSHIRT-L", "TSHIRT-S", "TROUSERS-42", "SHOE-40"] {
        f.stock(2_000, sku, "s1", 1);
    }
    f.write(
        2_000,
        Command::DefineSku {
            sku: SkuId::from("TSHIRT-XL-a-very-long-sku-id-that-is-not-inline"),
            scale: 2,
        },
    );
    let long = "TSHIRT-XL-a-very-long-sku-id-that-is-not-inline";
    check_search(
        &f,
        "TSHIRT-",
        10,
        &["TSHIRT-L", "TSHIRT-M", "TSHIRT-S", long],
        false,
    );
    check_search(&f, "TSHIRT-", 2, &["TSHIRT-L", "TSHIRT-M"], true);
    check_search(
        &f,
        "T",
        10,
        &["TROUSERS-42", "TSHIRT-L", "TSHIRT-M", "TSHIRT-S", long],
        false,
    );
    check_search(&f, "TSHIRT-M", 10, &["TSHIRT-M"], false);
    check_search(&f, "tshirt", 10, &[], false);
    check_search(&f, "ZZZ", 10, &[], false);
    assert_eq!(f.search(long, 1).expect("an answer").skus[0].scale, 2);
    let r = f.restored();
    check_search(
        &r,
        "TSHIRT-",
        10,
        &["TSHIRT-L", "TSHIRT-M", "TSHIRT-S", long],
        false,
    );
    check_search(&r, "S", 10, &["SHOE-40"], false);
}

#[test]
fn prefix_search_rejects_bad_input() {
    let f = Fixture::new();
    let bad = Rejection::Invalid {
        reason: InvalidReason::BadId {
            field: "sku".into(),
        },
    };
    assert_eq!(f.search("", 10), Err(bad.clone()));
    assert_eq!(f.search("a b", 10), Err(bad.clone()));
    assert_eq!(f.search(&"x".repeat(65), 10), Err(bad));
    assert_eq!(f.search("a", 0), Err(limit("SKU_SEARCH_RESULTS_MAX")));
    let over = crate::limits::SKU_SEARCH_RESULTS_MAX + 1;
    assert_eq!(f.search("a", over), Err(limit("SKU_SEARCH_RESULTS_MAX")));
}

#[test]
fn pickups_due_by_deadline_until_collected_or_lapsed() {
    let mut f = Fixture::new();
    f.stock(2_000, "A", "s1", 10);
    f.stock(2_000, "B", "s1", 10);
    f.stock(2_000, "A", "s2", 10);
    f.pickup_order(3_000, "late", &[("A", "s1", 2)], 50_000);
    f.pickup_order(3_000, "soon", &[("A", "s1", 1), ("B", "s1", 3)], 10_000);
    f.pickup_order(3_000, "other-store", &[("A", "s2", 1)], 5_000);
    let expected: Due = vec![
        (
            "soon".into(),
            13_000,
            vec![("A".into(), 1), ("B".into(), 3)],
        ),
        ("late".into(), 53_000, vec![("A".into(), 2)]),
    ];
    assert_eq!(
        due(&f.pickups("s1", 10, 3_000).expect("an answer")),
        expected
    );
    assert_eq!(
        due(&f.restored().pickups("s1", 10, 3_000).expect("an answer")),
        expected
    );
    let first = f.pickups("s1", 1, 3_000).expect("an answer");
    assert_eq!((due(&first), first.more), (expected[..1].to_vec(), true));
    // A deadline that passed shows nothing, before and after the batch that cancels it.
    assert_eq!(
        due(&f.pickups("s1", 10, 13_000).expect("an answer")),
        expected[1..].to_vec()
    );
    assert_eq!(
        due(&f.pickups("s2", 10, 8_000).expect("an answer")),
        Due::new()
    );
    f.stock(20_000, "C", "s1", 1);
    assert_eq!(
        due(&f.pickups("s1", 10, 20_000).expect("an answer")),
        expected[1..].to_vec()
    );
    // Partly handed over: the rest is still due; collected: gone.
    f.write(
        21_000,
        Command::Fulfil {
            order: OrderId::from("late"),
            lines: vec![LocatedLine {
                sku: SkuId::from("A"),
                location: LocationId::from("s1"),
                qty: 1,
            }],
        },
    );
    let rest: Due = vec![("late".into(), 53_000, vec![("A".into(), 1)])];
    assert_eq!(due(&f.pickups("s1", 10, 21_000).expect("an answer")), rest);
    f.write(
        22_000,
        Command::PickedUp {
            order: "late".into(),
        },
    );
    assert_eq!(
        due(&f.pickups("s1", 10, 22_000).expect("an answer")),
        Due::new()
    );
    assert!(
        f.ledger.ix.pickups.is_empty(),
        "closed and lapsed pickups leave the index"
    );
}

#[test]
fn a_reallocated_pickup_line_is_due_at_its_new_store() {
    let mut f = Fixture::new();
    f.stock(2_000, "A", "s1", 10);
    f.stock(2_000, "A", "s2", 10);
    f.pickup_order(3_000, "o1", &[("A", "s1", 4)], 10_000);
    f.write(
        4_000,
        Command::Reallocate {
            order: OrderId::from("o1"),
            sku: SkuId::from("A"),
            from: LocationId::from("s1"),
            to: LocationId::from("s2"),
            qty: 4,
        },
    );
    assert_eq!(
        due(&f.pickups("s1", 10, 4_000).expect("an answer")),
        Due::new()
    );
    let moved: Due = vec![("o1".into(), 13_000, vec![("A".into(), 4)])];
    assert_eq!(due(&f.pickups("s2", 10, 4_000).expect("an answer")), moved);
    assert_eq!(
        due(&f.restored().pickups("s2", 10, 4_000).expect("an answer")),
        moved
    );
    f.write(
        5_000,
        Command::Cancel {
            order: "o1".into(),
            lines: None,
        },
    );
    assert!(f.ledger.ix.pickups.is_empty());
}

#[test]
fn pickups_reject_bad_input() {
    let f = Fixture::new();
    assert_eq!(f.pickups("s1", 0, 0), Err(limit("PICKUPS_PER_QUERY_MAX")));
    let over = crate::limits::PICKUPS_PER_QUERY_MAX + 1;
    assert_eq!(
        f.pickups("s1", over, 0),
        Err(limit("PICKUPS_PER_QUERY_MAX"))
    );
    assert!(matches!(
        f.pickups("nowhere", 10, 0),
        Err(Rejection::NotFound { .. })
    ));
    let bad_id = f.pickups("a b", 10, 0).expect_err("a rejection");
    assert_eq!(bad_id.code(), crate::outcome::Code::Invalid);
}

//! Kits, exchanges, purchase limits and the location-filtered feed through the public API:
//! what the case files cannot see (views' `exchange_of`, replies, snapshots, the feed filter).

use engine::query::{Answer, ChangesPage, OrderView, RmaView};
use engine::{
    BatchHeader, Code, Command, Config, CustomerId, Disposition, Exchange, Fulfilment,
    KitComponent, Ledger, Line, LocatedLine, LocationDef, LocationId, LocationKind, OrderId,
    OrderSource, Outcome, Query, Reason, Request, RequestId, ReservationId, ReturnLine, RmaId,
    SkuId, Target,
};

/// A ledger driven one request per batch, one second apart.
struct Harness {
    ledger: Ledger,
    index: u64,
    now_ms: u64,
}

impl Harness {
    fn new() -> Harness {
        let mut h = Harness {
            ledger: Ledger::new(Config::default()),
            index: 0,
            now_ms: 1_000_000,
        };
        for (loc, kind) in [
            ("wh1", LocationKind::Warehouse),
            ("s1", LocationKind::Store),
        ] {
            h.ok(Command::DefineLocation(LocationDef {
                location: LocationId::from(loc.to_owned()),
                kind,
                pickup: true,
                coordinates: None,
                channels: None,
            }));
        }
        h
    }

    fn apply(&mut self, command: Command) -> Outcome {
        self.index += 1;
        self.now_ms += 1_000;
        let header = BatchHeader {
            log_index: self.index,
            timestamp_ms: self.now_ms,
        };
        let request = Request {
            request_id: RequestId(u128::from(self.index)),
            command,
        };
        let out = self.ledger.apply(header, &[request]).remove(0);
        self.ledger.check_invariants().expect("invariants hold");
        out
    }

    #[track_caller]
    fn ok(&mut self, command: Command) -> engine::Reply {
        self.apply(command).expect("ok")
    }

    #[track_caller]
    fn code(&mut self, command: Command) -> Code {
        engine::code_of(&self.apply(command))
    }

    fn query(&self, query: Query) -> Answer {
        self.ledger.query(&query, self.now_ms).expect("answer")
    }
}

fn sku(s: &str) -> SkuId {
    SkuId::from(s.to_owned())
}

fn loc(s: &str) -> LocationId {
    LocationId::from(s.to_owned())
}

fn stock(s: &str, at: &str, qty: i64) -> Command {
    Command::SetOnHand {
        sku: sku(s),
        location: loc(at),
        qty,
        reason: Reason::from("count".to_owned()),
        expected: None,
    }
}

fn line(s: &str, at: &str, qty: i64) -> Line {
    Line {
        sku: sku(s),
        target: Target::Location(loc(at)),
        qty,
    }
}

fn order(id: &str, lines: Vec<Line>) -> Command {
    Command::PlaceOrder {
        order: OrderId::from(id.to_owned()),
        source: OrderSource::Lines {
            channel: "web".into(),
            lines,
        },
        fulfilment: Fulfilment::Ship,
    }
}

fn for_customer(customer: &str, command: Command) -> Command {
    Command::AsCustomer {
        customer: CustomerId::from(customer.to_owned()),
        command: Box::new(command),
    }
}

fn fulfil(id: &str, s: &str, at: &str, qty: i64) -> Command {
    Command::Fulfil {
        order: OrderId::from(id.to_owned()),
        lines: vec![LocatedLine {
            sku: sku(s),
            location: loc(at),
            qty,
        }],
    }
}

fn exchange(rma: &str, of: &str, back: &str, new_order: &str, new: Line) -> Command {
    Command::Exchange(Box::new(Exchange {
        rma: RmaId::from(rma.to_owned()),
        order: OrderId::from(of.to_owned()),
        returns: vec![ReturnLine {
            sku: sku(back),
            qty: 1,
            received_at: loc("s1"),
            disposition: Disposition::Restock,
        }],
        new_order: OrderId::from(new_order.to_owned()),
        channel: "pos".into(),
        lines: vec![new],
        fulfilment: Fulfilment::Ship,
    }))
}

fn kit(id: &str, parts: &[(&str, i64)]) -> Command {
    Command::DefineKit {
        kit: sku(id),
        components: parts
            .iter()
            .map(|(s, qty)| KitComponent {
                sku: sku(s),
                qty: *qty,
            })
            .collect(),
    }
}

fn order_view(h: &Harness, id: &str) -> OrderView {
    match h.query(Query::Order(OrderId::from(id.to_owned()))) {
        Answer::Order(o) => o,
        other => panic!("{other:?}"),
    }
}

fn rma_view(h: &Harness, id: &str) -> RmaView {
    match h.query(Query::Rma(RmaId::from(id.to_owned()))) {
        Answer::Rma(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_exchange_names_both_halves_and_keeps_the_customer() {
    let mut h = Harness::new();
    h.ok(stock("M", "wh1", 1));
    h.ok(stock("L", "s1", 1));
    h.ok(for_customer("ann", order("o1", vec![line("M", "wh1", 1)])));
    h.ok(fulfil("o1", "M", "wh1", 1));
    h.ok(exchange("x1", "o1", "M", "o2", line("L", "s1", 1)));
    let new = order_view(&h, "o2");
    assert_eq!(new.exchange_of, Some(RmaId::from("x1".to_owned())));
    assert_eq!(new.customer, Some(CustomerId::from("ann".to_owned())));
    assert_eq!(
        rma_view(&h, "x1").exchange_of,
        Some(OrderId::from("o2".to_owned()))
    );
    assert_eq!(order_view(&h, "o1").exchange_of, None);
}

#[test]
fn a_kit_hold_answers_and_replays_in_kit_units() {
    let mut h = Harness::new();
    h.ok(kit("K", &[("A", 2), ("B", 3)]));
    h.ok(stock("A", "wh1", 10));
    h.ok(stock("B", "wh1", 10));
    let reserve = Command::Reserve {
        reservation: ReservationId::from("r1".to_owned()),
        channel: "web".into(),
        lines: vec![
            Line {
                sku: sku("K"),
                target: Target::All,
                qty: 3,
            },
            line("A", "wh1", 1),
        ],
        ttl_ms: 60_000,
    };
    let request = Request {
        request_id: RequestId(77),
        command: reserve,
    };
    h.index += 1;
    let header = BatchHeader {
        log_index: h.index,
        timestamp_ms: h.now_ms,
    };
    let first = h.ledger.apply(header, std::slice::from_ref(&request));
    let engine::Reply::Reserved { allocations, .. } = first[0].clone().expect("held") else {
        panic!("{first:?}")
    };
    let got: Vec<(u16, i64)> = allocations.iter().map(|a| (a.line, a.qty)).collect();
    assert_eq!(got, vec![(0, 3), (1, 1)]);
    h.index += 1;
    let header = BatchHeader {
        log_index: h.index,
        timestamp_ms: h.now_ms,
    };
    assert_eq!(
        h.ledger.apply(header, &[request]),
        first,
        "a replay answers the same"
    );
    match h.query(Query::Reservation(ReservationId::from("r1".to_owned()))) {
        Answer::Reservation(r) => {
            let lines: Vec<(&str, i64)> = r.lines.iter().map(|l| (l.sku.as_str(), l.qty)).collect();
            assert_eq!(lines, vec![("K", 3), ("A", 1)]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_feed_filtered_by_location_shows_only_those_balances_and_moves_on() {
    let mut h = Harness::new();
    h.ok(stock("A", "wh1", 5));
    h.ok(stock("A", "s1", 5));
    h.ok(stock("B", "wh1", 5));
    h.ok(stock("B", "s1", 2));
    let page = |h: &Harness, since, max, at: &[&str]| -> ChangesPage {
        let locations = at.iter().map(|l| loc(l)).collect();
        match h.query(Query::ChangesAt {
            since,
            max,
            locations,
        }) {
            Answer::Changes(p) => p,
            other => panic!("{other:?}"),
        }
    };
    let s1 = page(&h, 0, 10, &["s1"]);
    let seen: Vec<(u64, &str)> = s1.events.iter().map(|e| (e.seq, e.sku.as_str())).collect();
    assert_eq!(seen, vec![(2, "A"), (4, "B")]);
    assert_eq!(s1.next, 5);
    let first = page(&h, 0, 1, &["s1"]);
    assert_eq!((first.events.len(), first.next), (1, 3));
    // Nothing at s1 after the last event: an empty page that still moves to the end.
    h.ok(stock("A", "wh1", 6));
    let tail = page(&h, 5, 10, &["s1"]);
    assert_eq!((tail.events.len(), tail.next), (0, 6));
    let both = page(&h, 0, 10, &["s1", "wh1"]);
    assert_eq!(both.events.len(), 5);
    let unknown = h.ledger.query(
        &Query::ChangesAt {
            since: 0,
            max: 10,
            locations: vec![loc("nowhere")],
        },
        h.now_ms,
    );
    assert_eq!(unknown.map_err(|r| r.code()).err(), Some(Code::NotFound));
    let none = h.ledger.query(
        &Query::ChangesAt {
            since: 0,
            max: 10,
            locations: vec![],
        },
        h.now_ms,
    );
    assert_eq!(none.map_err(|r| r.code()).err(), Some(Code::Invalid));
}

#[test]
fn customer_writes_are_only_reserve_and_direct_orders() {
    let mut h = Harness::new();
    h.ok(stock("A", "wh1", 5));
    let release = Command::Release {
        reservation: ReservationId::from("r1".to_owned()),
    };
    assert_eq!(h.code(for_customer("ann", release)), Code::Invalid);
    let nested = for_customer(
        "ann",
        for_customer("bob", order("o1", vec![line("A", "wh1", 1)])),
    );
    assert_eq!(h.code(nested), Code::Invalid);
    for bad in ["", &"c".repeat(65), "tab\there"] {
        let bad_id = for_customer(bad, order("o1", vec![line("A", "wh1", 1)]));
        assert_eq!(h.code(bad_id), Code::Invalid, "customer id {bad:?}");
    }
    let from_hold = Command::PlaceOrder {
        order: OrderId::from("o1".to_owned()),
        source: OrderSource::Reservation(ReservationId::from("r1".to_owned())),
        fulfilment: Fulfilment::Ship,
    };
    assert_eq!(h.code(for_customer("ann", from_hold)), Code::Invalid);
}

#[test]
fn limit_exceeded_says_how_many_units_are_still_allowed() {
    let mut h = Harness::new();
    h.ok(stock("A", "wh1", 50));
    h.ok(Command::SetPurchaseLimit {
        sku: sku("A"),
        qty_max: 5,
        window_ms: 3_600_000,
        strict: false,
    });
    h.ok(for_customer("ann", order("o1", vec![line("A", "wh1", 3)])));
    let refused = h.apply(for_customer("ann", order("o2", vec![line("A", "wh1", 3)])));
    assert_eq!(
        refused,
        Err(engine::Rejection::LimitExceeded {
            sku: sku("A"),
            allowed: 2
        })
    );
    let window = Command::SetPurchaseLimit {
        sku: sku("A"),
        qty_max: 5,
        window_ms: 59_999,
        strict: false,
    };
    assert_eq!(h.code(window), Code::Invalid);
}

#[test]
fn kits_and_counts_survive_a_snapshot_byte_for_byte() {
    let mut h = Harness::new();
    h.ok(kit("K", &[("A", 1), ("B", 2)]));
    h.ok(stock("A", "wh1", 10));
    h.ok(stock("B", "wh1", 10));
    h.ok(Command::SetPurchaseLimit {
        sku: sku("K"),
        qty_max: 2,
        window_ms: 3_600_000,
        strict: true,
    });
    let hold = Command::Reserve {
        reservation: ReservationId::from("r1".to_owned()),
        channel: "web".into(),
        lines: vec![line("K", "wh1", 1)],
        ttl_ms: 600_000,
    };
    h.ok(for_customer("ann", hold));
    h.ok(for_customer("ann", order("o1", vec![line("K", "wh1", 1)])));
    let restored = Ledger::restore(&h.ledger.snapshot()).expect("restores");
    assert_eq!(restored.digest(), h.ledger.digest());
    let mut twin = Harness {
        ledger: restored,
        index: h.index,
        now_ms: h.now_ms,
    };
    // The derived counters came back: the kit is in use, ann is at her limit.
    for x in [&mut h, &mut twin] {
        assert_eq!(x.code(kit("K", &[("A", 2)])), Code::InvalidState);
        let more = for_customer("ann", order("o2", vec![line("K", "wh1", 1)]));
        assert_eq!(x.code(more), Code::LimitExceeded);
        let anonymous = order("o3", vec![line("K", "wh1", 1)]);
        assert_eq!(x.code(anonymous), Code::Invalid);
    }
    assert_eq!(twin.ledger.digest(), h.ledger.digest());
}

#[test]
fn another_snapshot_version_is_refused_by_name() {
    let h = Harness::new();
    let mut bytes = h.ledger.snapshot();
    bytes[8..12].copy_from_slice(&5u32.to_le_bytes());
    match Ledger::restore(&bytes) {
        Err(engine::SnapshotError::UnsupportedVersion(5)) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// A snapshot's balances are packed as they are read (ARCHITECTURE.md, engine, "Balances"): one
/// whose field does not fit is a corrupt snapshot, one that fits but breaks the invariant
/// (above `QTY_MAX`, or more unavailable than on hand) fails the check, and neither panics.
#[test]
fn a_snapshot_balance_out_of_range_is_an_error_not_a_panic() {
    let mut h = Harness::new();
    let units = 777_777_777_777;
    h.ok(stock("A", "wh1", units));
    let bytes = h.ledger.snapshot();
    let encoded = |b: &engine::Balance| postcard::to_allocvec(b).expect("encodes");
    let good = engine::Balance {
        on_hand: units,
        ..Default::default()
    };
    let pattern = encoded(&good);
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("the balance is in the snapshot");
    let with = |b: engine::Balance| {
        let mut corrupt = bytes[..at].to_vec();
        corrupt.extend(encoded(&b));
        corrupt.extend(&bytes[at + pattern.len()..]);
        corrupt
    };
    let max = engine::limits::QTY_MAX;
    for (bad, corrupt) in [
        (
            engine::Balance {
                reserved: -1,
                ..good
            },
            true,
        ),
        (
            engine::Balance {
                incoming: 1 << 50,
                ..good
            },
            true,
        ),
        (
            engine::Balance {
                safety_stock: i64::MIN,
                ..good
            },
            true,
        ),
        (
            engine::Balance {
                on_hand: max + 1,
                ..good
            },
            false,
        ),
        (
            engine::Balance {
                unavailable: units + 1,
                ..good
            },
            false,
        ),
    ] {
        match Ledger::restore(&with(bad)) {
            Err(engine::SnapshotError::Corrupt(e)) if corrupt => {
                assert!(e.contains("out of range"), "{e}")
            }
            Err(engine::SnapshotError::Inconsistent(_)) if !corrupt => {}
            other => panic!("{bad:?}: {:?}", other.map(|_| ())),
        }
    }
    let edge = engine::Balance {
        on_hand: max,
        unavailable: max,
        safety_stock: max,
        ..good
    };
    let restored = Ledger::restore(&with(edge)).expect("fields at QTY_MAX are a balance");
    assert_eq!(restored.snapshot(), with(edge));
}

#[test]
fn nearby_finds_stores_with_whole_kits() {
    let mut h = Harness::new();
    let near = |lat_e6, lon_e6| engine::Coordinates { lat_e6, lon_e6 };
    for (id, coordinates) in [
        ("p1", near(48_850_000, 2_350_000)),
        ("p2", near(48_860_000, 2_350_000)),
    ] {
        h.ok(Command::DefineLocation(LocationDef {
            location: loc(id),
            kind: LocationKind::Store,
            pickup: true,
            coordinates: Some(coordinates),
            channels: None,
        }));
    }
    h.ok(kit("K", &[("A", 1), ("B", 2)]));
    // p1 has 3 A and 3 B (1 kit); p2 has 4 A and 8 B (4 kits).
    for (s, at, qty) in [
        ("A", "p1", 3),
        ("B", "p1", 3),
        ("A", "p2", 4),
        ("B", "p2", 8),
    ] {
        h.ok(stock(s, at, qty));
    }
    let ask = |qty| Query::Nearby {
        sku: sku("K"),
        center: near(48_850_000, 2_350_000),
        radius_km: 10,
        qty,
        channel: "web".into(),
    };
    let rows = |answer: Answer| match answer {
        Answer::Nearby(rows) => rows
            .into_iter()
            .map(|r| (r.location.0.into_string(), r.ats))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rows(h.query(ask(1))),
        vec![("p1".to_owned(), 1), ("p2".to_owned(), 4)]
    );
    assert_eq!(rows(h.query(ask(2))), vec![("p2".to_owned(), 4)]);
}

/// SPEC section 3: a customer id is opaque (1..=64 bytes the caller resolved, such as a hashed
/// e-mail in base64), not limited to the alphabet of the ledger's own ids.
#[test]
fn a_customer_id_is_opaque_bytes_not_an_id_of_the_ledger() {
    let mut h = Harness::new();
    h.ok(stock("A", "wh1", 5));
    let base64 = "q83vEjRWeJA+/w==";
    h.ok(for_customer(base64, order("o1", vec![line("A", "wh1", 1)])));
    h.ok(for_customer(
        "Ann Smith #42",
        order("o2", vec![line("A", "wh1", 1)]),
    ));
    let widest = "\u{e9}".repeat(32);
    h.ok(for_customer(
        &widest,
        order("o3", vec![line("A", "wh1", 1)]),
    ));
}

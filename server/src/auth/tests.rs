//! Every role against every operation (SPEC section 7), as a table.

use engine::{
    BatchHeader, ChannelId, Command, Config, Disposition, Fulfilment, Ledger, Line, LocatedLine,
    LocationDef, LocationId, LocationKind, OrderId, OrderSource, Query, Reason, Request, RequestId,
    ReservationId, ReturnLine, RmaId, SkuId, Target, TransferId,
};
use pki::{ClientRole, Principal};
use protocol::{AdminOp, Consistency, Op};

use super::*;

fn principal(role: ClientRole) -> Principal {
    Principal {
        name: format!("{role}-1"),
        role,
        channels: vec!["web".to_owned()],
        locations: vec!["store-1".to_owned()],
        credential_id: "00".to_owned(),
        expires_at_ms: u64::MAX,
    }
}

fn loc(s: &str) -> LocationId {
    LocationId::from(s.to_owned())
}

fn sku() -> SkuId {
    SkuId::from("A".to_owned())
}

fn line(target: Target) -> Vec<Line> {
    vec![Line {
        sku: sku(),
        target,
        qty: 1,
    }]
}

fn located(at: &str) -> Vec<LocatedLine> {
    vec![LocatedLine {
        sku: sku(),
        location: loc(at),
        qty: 1,
    }]
}

fn reserve(channel: &str, target: Target) -> Command {
    Command::Reserve {
        reservation: ReservationId::from("r1".to_owned()),
        channel: ChannelId::from(channel.to_owned()),
        lines: line(target),
        ttl_ms: 60_000,
    }
}

fn direct_order(channel: &str, at: &str) -> Command {
    Command::PlaceOrder {
        order: OrderId::from("o1".to_owned()),
        source: OrderSource::Lines {
            channel: ChannelId::from(channel.to_owned()),
            lines: line(Target::Location(loc(at))),
        },
        fulfilment: Fulfilment::Ship,
    }
}

fn customer(command: Command) -> Command {
    Command::AsCustomer {
        customer: engine::CustomerId::from("c1".to_owned()),
        command: Box::new(command),
    }
}

fn exchange(received_at: &str, channel: &str, at: &str) -> Command {
    Command::Exchange(Box::new(engine::Exchange {
        rma: RmaId::from("m1".to_owned()),
        order: OrderId::from("o1".to_owned()),
        returns: vec![ReturnLine {
            sku: sku(),
            qty: 1,
            received_at: loc(received_at),
            disposition: Disposition::Restock,
        }],
        new_order: OrderId::from("o2".to_owned()),
        channel: ChannelId::from(channel.to_owned()),
        lines: line(Target::Location(loc(at))),
        fulfilment: Fulfilment::Ship,
    }))
}

fn stock(at: &str) -> Command {
    Command::Adjust {
        sku: sku(),
        location: loc(at),
        delta: 1,
        reason: Reason::from("count".to_owned()),
    }
}

fn write(command: Command) -> Op {
    Op::Write(Request {
        request_id: RequestId(1),
        command,
    })
}

/// One row: an operation and what each role gets, in the order reader, checkout (channel
/// `web`), store (location `store-1`), ops, admin. `A` allowed, `D` denied, `L` decided by
/// the object (a [`Lookup`]).
fn table() -> Vec<(&'static str, Op, &'static str)> {
    let order = || OrderId::from("o1".to_owned());
    let hold = || ReservationId::from("r1".to_owned());
    let transfer = || TransferId::from("t1".to_owned());
    let at = |s: &str| Target::Location(loc(s));
    vec![
        (
            "read",
            Op::Read {
                query: Query::Order(order()),
                consistency: Consistency::Local,
            },
            "AAAAA",
        ),
        (
            "sku search",
            Op::Read {
                query: Query::SkuSearch {
                    prefix: sku(),
                    max: 10,
                },
                consistency: Consistency::Local,
            },
            "AAAAA",
        ),
        (
            "pickups due",
            Op::Read {
                query: Query::Pickups {
                    location: loc("store-2"),
                    max: 10,
                },
                consistency: Consistency::Local,
            },
            "AAAAA",
        ),
        (
            "retention",
            Op::Read {
                query: Query::Retention,
                consistency: Consistency::Linearizable,
            },
            "AAAAA",
        ),
        ("status", Op::Status, "AAAAA"),
        ("digest", Op::Digest, "AAAAA"),
        ("subscribe", Op::Subscribe { since: 0 }, "AAAAA"),
        (
            "remove-node",
            Op::Admin(AdminOp::RemoveNode { id: 2 }),
            "DDDDA",
        ),
        (
            "define_location",
            write(Command::DefineLocation(LocationDef {
                location: loc("store-1"),
                kind: LocationKind::Store,
                pickup: true,
                coordinates: None,
                channels: None,
            })),
            "DDDAA",
        ),
        (
            "define_sku",
            write(Command::DefineSku {
                sku: sku(),
                scale: 0,
            }),
            "DDDAA",
        ),
        ("adjust own", write(stock("store-1")), "DDAAA"),
        ("adjust other", write(stock("store-2")), "DDDAA"),
        (
            "set_on_hand other",
            write(Command::SetOnHand {
                sku: sku(),
                location: loc("store-2"),
                qty: 1,
                reason: Reason::from("count".to_owned()),
                expected: None,
            }),
            "DDDAA",
        ),
        (
            "sell own",
            write(Command::Sell {
                sku: sku(),
                location: loc("store-1"),
                qty: 1,
            }),
            "DDAAA",
        ),
        ("reserve web", write(reserve("web", at("store-1"))), "DADAA"),
        ("reserve app", write(reserve("app", at("store-1"))), "DDDAA"),
        (
            "reserve pos own",
            write(reserve("pos", at("store-1"))),
            "DDAAA",
        ),
        (
            "reserve pos other",
            write(reserve("pos", at("store-2"))),
            "DDDAA",
        ),
        (
            "reserve pos group",
            write(reserve("pos", Target::All)),
            "DDDAA",
        ),
        (
            "extend",
            write(Command::Extend {
                reservation: hold(),
                ttl_ms: 1,
            }),
            "DLLAA",
        ),
        (
            "release",
            write(Command::Release {
                reservation: hold(),
            }),
            "DLLAA",
        ),
        (
            "place from hold",
            write(Command::PlaceOrder {
                order: order(),
                source: OrderSource::Reservation(hold()),
                fulfilment: Fulfilment::Ship,
            }),
            "DLLAA",
        ),
        ("place web", write(direct_order("web", "store-2")), "DADAA"),
        (
            "place pos own",
            write(direct_order("pos", "store-1")),
            "DDAAA",
        ),
        (
            "fulfil own",
            write(Command::Fulfil {
                order: order(),
                lines: located("store-1"),
            }),
            "DDAAA",
        ),
        (
            "fulfil other",
            write(Command::Fulfil {
                order: order(),
                lines: located("store-2"),
            }),
            "DDDAA",
        ),
        (
            "cancel lines own",
            write(Command::Cancel {
                order: order(),
                lines: Some(located("store-1")),
            }),
            "DDAAA",
        ),
        (
            "cancel whole",
            write(Command::Cancel {
                order: order(),
                lines: None,
            }),
            "DDLAA",
        ),
        (
            "ready_for_pickup",
            write(Command::ReadyForPickup { order: order() }),
            "DDLAA",
        ),
        (
            "picked_up",
            write(Command::PickedUp { order: order() }),
            "DDLAA",
        ),
        (
            "reallocate in",
            write(Command::Reallocate {
                order: order(),
                sku: sku(),
                from: loc("store-2"),
                to: loc("store-1"),
                qty: 1,
            }),
            "DDDAA",
        ),
        (
            "return own",
            write(Command::Return {
                rma: RmaId::from("m1".to_owned()),
                order: order(),
                lines: vec![ReturnLine {
                    sku: sku(),
                    qty: 1,
                    received_at: loc("store-1"),
                    disposition: Disposition::Restock,
                }],
            }),
            "DDAAA",
        ),
        (
            "ship from own",
            write(Command::ShipTransfer {
                transfer: transfer(),
                sku: sku(),
                from: loc("store-1"),
                to: loc("store-2"),
                qty: 1,
            }),
            "DDAAA",
        ),
        (
            "ship from other",
            write(Command::ShipTransfer {
                transfer: transfer(),
                sku: sku(),
                from: loc("store-2"),
                to: loc("store-1"),
                qty: 1,
            }),
            "DDDAA",
        ),
        (
            "receive",
            write(Command::ReceiveTransfer {
                transfer: transfer(),
                received: 1,
                damaged: 0,
            }),
            "DDLAA",
        ),
        (
            "define_kit",
            write(Command::DefineKit {
                kit: SkuId::from("kit".to_owned()),
                components: vec![engine::KitComponent { sku: sku(), qty: 1 }],
            }),
            "DDDAA",
        ),
        (
            "set_purchase_limit",
            write(Command::SetPurchaseLimit {
                sku: sku(),
                qty_max: 1,
                window_ms: 60_000,
                strict: false,
            }),
            "DDDAA",
        ),
        (
            "customer reserve web",
            write(customer(reserve("web", Target::All))),
            "DADAA",
        ),
        (
            "customer order pos own",
            write(customer(direct_order("pos", "store-1"))),
            "DDAAA",
        ),
        (
            "customer of a customer",
            write(customer(customer(reserve("web", Target::All)))),
            "DDDAA",
        ),
        (
            "exchange own",
            write(exchange("store-1", "pos", "store-1")),
            "DDAAA",
        ),
        (
            "exchange received elsewhere",
            write(exchange("store-2", "pos", "store-1")),
            "DDDAA",
        ),
        (
            "exchange sold on web",
            write(exchange("store-1", "web", "store-1")),
            "DDDAA",
        ),
        (
            "revoke",
            write(Command::RevokeCredential {
                credential: "ab".to_owned(),
                until_ms: 1,
            }),
            "DDDDA",
        ),
        (
            "create_token",
            write(Command::CreateToken(engine::TokenDef {
                id: "ab".to_owned(),
                grant: engine::TokenGrant {
                    name: "t".to_owned(),
                    role: "reader".to_owned(),
                    channels: Vec::new(),
                    locations: Vec::new(),
                    expires_at_ms: 1,
                    secret_hash: [0; 32],
                },
            })),
            "DDDDA",
        ),
        (
            "set_retention",
            write(Command::SetRetention(Config::default())),
            "DDDDA",
        ),
    ]
}

#[test]
fn every_role_against_every_operation() {
    let mut wrong = Vec::new();
    for (name, op, expected) in table() {
        for (role, want) in ClientRole::ALL.into_iter().zip(expected.chars()) {
            let got = match authorize(&principal(role), &op) {
                Access::Allowed => 'A',
                Access::Denied(_) => 'D',
                Access::Lookup(_) => 'L',
            };
            if got != want {
                wrong.push(format!("{name} as {role}: {got}, expected {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_table_covers_every_command() {
    let named: std::collections::BTreeSet<&str> = table()
        .iter()
        .filter_map(|(_, op, _)| match op {
            Op::Write(r) => Some(r.command.name()),
            _ => None,
        })
        .collect();
    // Commands with the same rule as one in the table: restore/mark/safety stock as adjust,
    // define_group as define_sku. (A customer's write is named as the write it wraps; a
    // customer's customer write, refused by the engine, is `as_customer`.)
    let same_rule = [
        "set_safety_stock",
        "mark_unavailable",
        "restore_unavailable",
        "define_group",
    ];
    assert_eq!(named.len() + same_rule.len(), 28, "{named:?}");
}

fn apply(ledger: &mut Ledger, index: u64, commands: Vec<Command>) {
    let requests: Vec<Request> = commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| Request {
            request_id: RequestId(u128::from(index) * 1_000 + i as u128),
            command,
        })
        .collect();
    let outcomes = ledger.apply(
        BatchHeader {
            log_index: index,
            timestamp_ms: 1_000,
        },
        &requests,
    );
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
}

#[test]
fn lookups_decide_by_the_object() {
    let mut ledger = Ledger::new(Config::default());
    let define = |l: &str| {
        Command::DefineLocation(LocationDef {
            location: loc(l),
            kind: LocationKind::Store,
            pickup: true,
            coordinates: None,
            channels: None,
        })
    };
    apply(
        &mut ledger,
        1,
        vec![
            define("store-1"),
            define("store-2"),
            stock("store-1"),
            stock("store-2"),
        ],
    );
    let hold = |id: &str, channel: &str, at: &str| Command::Reserve {
        reservation: ReservationId::from(id.to_owned()),
        channel: ChannelId::from(channel.to_owned()),
        lines: line(Target::Location(loc(at))),
        ttl_ms: 60_000,
    };
    apply(
        &mut ledger,
        2,
        vec![
            hold("web-1", "web", "store-1"),
            hold("pos-2", "pos", "store-2"),
        ],
    );
    let check =
        |role, lookup: Lookup| check_lookup(&principal(role), &lookup, &ledger, 1_000).is_ok();
    let id = |s: &str| ReservationId::from(s.to_owned());
    assert!(check(
        ClientRole::Checkout,
        Lookup::HoldChannel(id("web-1"))
    ));
    assert!(!check(
        ClientRole::Checkout,
        Lookup::HoldChannel(id("pos-2"))
    ));
    assert!(check(ClientRole::Store, Lookup::HoldLocations(id("web-1"))));
    assert!(!check(
        ClientRole::Store,
        Lookup::HoldLocations(id("pos-2"))
    ));
    assert!(
        check(ClientRole::Store, Lookup::HoldLocations(id("missing"))),
        "not_found is the engine's"
    );
    let refused = |role, lookup| {
        check_lookup(&principal(role), &lookup, &ledger, 1_000)
            .expect_err("refused")
            .to_string()
    };
    assert_eq!(
        refused(ClientRole::Checkout, Lookup::HoldChannel(id("pos-2"))),
        "checkout-1 (role checkout) may not act on a hold of channel pos"
    );
    assert_eq!(
        refused(ClientRole::Store, Lookup::HoldLocations(id("pos-2"))),
        "store-1 (role store) may not act on a hold at location store-2"
    );
}

/// The refusal of `command` written by `role`, as its `forbidden` text.
#[track_caller]
fn check_refusal(role: ClientRole, command: Command, expected: &str) {
    match authorize(&principal(role), &write(command)) {
        Access::Denied(refused) => assert_eq!(refused.to_string(), expected),
        other => panic!("{role}: {other:?}, expected a refusal"),
    }
}

#[test]
fn refusals_say_who_and_why_in_the_words_of_the_forbidden_answer() {
    use ClientRole::{Checkout, Ops, Reader, Store};
    check_refusal(
        Reader,
        stock("store-1"),
        "reader-1 (role reader) may not write",
    );
    check_refusal(
        Checkout,
        reserve("pos", Target::Location(loc("store-1"))),
        "checkout-1 (role checkout) may not sell on channel pos",
    );
    check_refusal(
        Checkout,
        stock("store-1"),
        "checkout-1 (role checkout) may not adjust",
    );
    check_refusal(
        Store,
        stock("store-2"),
        "store-1 (role store) may not act at location store-2",
    );
    check_refusal(
        Store,
        reserve("web", Target::Location(loc("store-1"))),
        "store-1 (role store) may not sell on channel web (stores sell on pos)",
    );
    check_refusal(
        Store,
        reserve("pos", Target::All),
        "store-1 (role store) may not source from a group or all locations",
    );
    let revoke = Command::RevokeCredential {
        credential: "0a".to_owned(),
        until_ms: 1,
    };
    check_refusal(
        Ops,
        revoke,
        "ops-1 (role ops) may not issue or revoke credentials",
    );
    let membership = Op::Admin(AdminOp::RemoveNode { id: 2 });
    match authorize(&principal(Ops), &membership) {
        Access::Denied(refused) => assert_eq!(
            refused.to_string(),
            "ops-1 (role ops) may not change cluster membership"
        ),
        other => panic!("{other:?}"),
    }
}

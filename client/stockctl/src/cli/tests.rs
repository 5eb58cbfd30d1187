//! Command-line parsing and building writes, with exact expected values.

use super::execute::event_json;
use super::*;
use crate::grammar::{GrammarError, Qty};
use engine::query::ChangeEvent;
use engine::units::UnitError;
use engine::{
    ChannelId, Command, Fulfilment, GroupId, Line, LocatedLine, LocationDef, LocationId,
    LocationKind, OrderId, OrderSource, Reason, RequestId, ReservationId, ReturnLine, RmaId, SkuId,
    Target, TransferId,
};
use protocol::{Consistency, NodeAddr};

#[track_caller]
fn parse(argv: &[&str]) -> Cli {
    let mut full = vec!["stockctl"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full) {
        Ok(cli) => cli,
        Err(e) => panic!("{argv:?} does not parse: {e}"),
    }
}

#[track_caller]
fn usage_error(argv: &[&str]) -> String {
    let mut full = vec!["stockctl"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full) {
        Ok(cli) => panic!("{argv:?} parsed: {cli:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "usage errors exit with 2");
            e.to_string()
        }
    }
}

fn facts(scales: &[(&str, u8)], groups: &[&str]) -> Facts {
    Facts {
        scales: scales.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        object_skus: vec![],
    }
}

#[track_caller]
fn check_build(argv: &[&str], facts: &Facts, expected: Command) {
    let cli = parse(argv);
    let built = build(&cli.command, facts).expect("builds");
    assert_eq!(built.command, expected);
}

#[test]
fn global_options_anywhere() {
    let cli = parse(&[
        "release",
        "r1",
        "--connect",
        "10.0.0.1:7400,10.0.0.2:7400",
        "-c",
        "h3:1",
        "--json",
        "--request-id",
        "00ff",
        "--fingerprint",
        "ab:cd",
    ]);
    assert_eq!(
        cli.global.connect,
        vec!["10.0.0.1:7400", "10.0.0.2:7400", "h3:1"]
    );
    assert!(cli.global.json);
    assert_eq!(cli.global.request_id, Some(RequestId(255)));
    assert_eq!(cli.global.fingerprint.as_deref(), Some("ab:cd"));
    assert_eq!(cli.global.timeout_ms, 5_000);
    assert!(usage_error(&["release", "r1", "--request-id", "0"]).contains("zero"));
    assert!(
        usage_error(&["release", "r1", "--ca", "x", "--fingerprint", "y"])
            .contains("cannot be used with")
    );
}

#[test]
fn reserve_lines_use_scales_and_groups() {
    let argv = [
        "reserve",
        "r1",
        "web",
        "CLOTH@online:0.59",
        "A@wh1:2",
        "B@all:3",
        "--ttl",
        "15m",
    ];
    let cli = parse(&argv);
    assert_eq!(
        needs(&cli.command),
        Needs {
            skus: vec!["CLOTH".into(), "A".into(), "B".into()],
            places: vec!["online".into(), "wh1".into()],
            hint: Some("online".into()),
            ..Needs::default()
        }
    );
    check_build(
        &argv,
        &facts(&[("CLOTH", 2)], &["online"]),
        Command::Reserve {
            reservation: ReservationId::from("r1"),
            channel: ChannelId::from("web"),
            lines: vec![
                Line {
                    sku: SkuId::from("CLOTH"),
                    target: Target::Group(GroupId::from("online")),
                    qty: 59,
                },
                Line {
                    sku: SkuId::from("A"),
                    target: Target::Location(LocationId::from("wh1")),
                    qty: 2,
                },
                Line {
                    sku: SkuId::from("B"),
                    target: Target::All,
                    qty: 3,
                },
            ],
            ttl_ms: 900_000,
        },
    );
}

#[test]
fn too_many_decimals_is_invalid_before_sending() {
    let cli = parse(&["sell", "CLOTH@s1", "0.591"]);
    assert_eq!(
        build(&cli.command, &facts(&[("CLOTH", 2)], &[])).map(|b| b.command),
        Err(BuildError::Invalid(GrammarError::Units {
            text: "0.591".into(),
            why: UnitError::TooManyDecimals { scale: 2 }
        }))
    );
    let cli = parse(&["sell", "A@s1", "1.5"]);
    assert_eq!(
        build(&cli.command, &facts(&[], &[])).map(|b| b.command),
        Err(BuildError::Invalid(GrammarError::Units {
            text: "1.5".into(),
            why: UnitError::TooManyDecimals { scale: 0 }
        }))
    );
    // Not a number at all is a usage error, before connecting.
    assert!(usage_error(&["sell", "A@s1", "1,5"]).contains("not a decimal quantity"));
    assert!(usage_error(&["sell", "A@s1", "1e3"]).contains("not a decimal quantity"));
}

#[test]
fn stock_writes() {
    let f = facts(&[("CLOTH", 3)], &[]);
    check_build(
        &["adjust", "CLOTH@wh1", "-2.5", "--reason", "shrinkage"],
        &f,
        Command::Adjust {
            sku: SkuId::from("CLOTH"),
            location: LocationId::from("wh1"),
            delta: -2500,
            reason: Reason::from("shrinkage"),
        },
    );
    check_build(
        &["set-on-hand", "CLOTH@wh1", "3", "--expected", "2.75"],
        &f,
        Command::SetOnHand {
            sku: SkuId::from("CLOTH"),
            location: LocationId::from("wh1"),
            qty: 3000,
            reason: Reason::from("count"),
            expected: Some(2750),
        },
    );
    check_build(
        &["unavailable", "A@wh1", "1"],
        &f,
        Command::MarkUnavailable {
            sku: SkuId::from("A"),
            location: LocationId::from("wh1"),
            qty: 1,
            reason: Reason::from("unavailable"),
        },
    );
    let cli = parse(&["safety-stock", "CLOTH@s1", "1"]);
    let built = build(&cli.command, &f).expect("builds");
    assert_eq!(built.context.sku.as_deref(), Some("CLOTH"));
    assert!(usage_error(&["sell", "A", "1"]).contains("SKU@LOCATION"));
}

#[test]
fn definitions() {
    check_build(
        &[
            "define-location",
            "s1",
            "store",
            "--pickup",
            "--lat",
            "-33.8688",
            "--lon",
            "151.2093",
            "--channels",
            "web,pos",
        ],
        &Facts::default(),
        Command::DefineLocation(LocationDef {
            location: LocationId::from("s1"),
            kind: LocationKind::Store,
            pickup: true,
            coordinates: Some(engine::Coordinates {
                lat_e6: -33_868_800,
                lon_e6: 151_209_300,
            }),
            channels: Some(vec![ChannelId::from("web"), ChannelId::from("pos")]),
        }),
    );
    check_build(
        &["define-location", "wh1", "warehouse"],
        &Facts::default(),
        Command::DefineLocation(LocationDef {
            location: LocationId::from("wh1"),
            kind: LocationKind::Warehouse,
            pickup: false,
            coordinates: None,
            channels: None,
        }),
    );
    assert!(usage_error(&["define-location", "x", "shed"]).contains("expected warehouse"));
    assert!(usage_error(&["define-location", "x", "store", "--lat", "1"]).contains("--lon"));
    check_build(
        &["define-sku", "CLOTH", "--scale", "3"],
        &Facts::default(),
        Command::DefineSku {
            sku: SkuId::from("CLOTH"),
            scale: 3,
        },
    );
    check_build(
        &["define-group", "online", "wh1", "wh2"],
        &Facts::default(),
        Command::DefineGroup {
            group: GroupId::from("online"),
            locations: vec![LocationId::from("wh1"), LocationId::from("wh2")],
        },
    );
}

#[test]
fn orders() {
    let f = facts(&[("A", 0)], &[]);
    check_build(
        &[
            "place-order",
            "o1",
            "--from",
            "r1",
            "--pickup",
            "--deadline",
            "1h",
        ],
        &f,
        Command::PlaceOrder {
            order: OrderId::from("o1"),
            source: OrderSource::Reservation(ReservationId::from("r1")),
            fulfilment: Fulfilment::Pickup {
                deadline_ms: 3_600_000,
            },
        },
    );
    check_build(
        &["place-order", "o2", "--channel", "pos", "A@s1:2"],
        &f,
        Command::PlaceOrder {
            order: OrderId::from("o2"),
            source: OrderSource::Lines {
                channel: ChannelId::from("pos"),
                lines: vec![Line {
                    sku: SkuId::from("A"),
                    target: Target::Location(LocationId::from("s1")),
                    qty: 2,
                }],
            },
            fulfilment: Fulfilment::Ship,
        },
    );
    let cli = parse(&["place-order", "o3", "--pickup"]);
    assert_eq!(
        build(&cli.command, &f).map(|b| b.command),
        Err(BuildError::Usage(
            "place-order needs --from RES, or --channel and lines"
        ))
    );
    assert!(
        usage_error(&["place-order", "o1", "--from", "r1", "A@s1:1"]).contains("cannot be used")
    );
    check_build(
        &["cancel", "o1"],
        &f,
        Command::Cancel {
            order: OrderId::from("o1"),
            lines: None,
        },
    );
    check_build(
        &["fulfil", "o1", "A@wh:1:2"],
        &f,
        Command::Fulfil {
            order: OrderId::from("o1"),
            lines: vec![LocatedLine {
                sku: SkuId::from("A"),
                location: LocationId::from("wh:1"),
                qty: 2,
            }],
        },
    );
    check_build(
        &["reallocate", "o1", "A", "wh1", "wh2", "1"],
        &f,
        Command::Reallocate {
            order: OrderId::from("o1"),
            sku: SkuId::from("A"),
            from: LocationId::from("wh1"),
            to: LocationId::from("wh2"),
            qty: 1,
        },
    );
    check_build(
        &["return", "rma1", "o1", "A@s2:1:damaged"],
        &f,
        Command::Return {
            rma: RmaId::from("rma1"),
            order: OrderId::from("o1"),
            lines: vec![ReturnLine {
                sku: SkuId::from("A"),
                qty: 1,
                received_at: LocationId::from("s2"),
                disposition: engine::Disposition::Damaged,
            }],
        },
    );
    assert!(usage_error(&["return", "rma1", "o1", "A@s2:1:lost"]).contains("restock|damaged|scrap"));
}

#[test]
fn transfers_take_the_transfer_skus_scale() {
    let cli = parse(&[
        "receive-transfer",
        "t1",
        "--received",
        "1.5",
        "--damaged",
        "0.25",
    ]);
    assert_eq!(
        needs(&cli.command),
        Needs {
            transfer: Some("t1".into()),
            ..Needs::default()
        }
    );
    let mut f = facts(&[("CLOTH", 2)], &[]);
    f.object_skus = vec!["CLOTH".into()];
    let built = build(&cli.command, &f).expect("builds");
    assert_eq!(
        built.command,
        Command::ReceiveTransfer {
            transfer: TransferId::from("t1"),
            received: 150,
            damaged: 25,
        }
    );
    assert_eq!(built.context.sku.as_deref(), Some("CLOTH"));
    check_build(
        &["ship-transfer", "t1", "CLOTH", "wh1", "s1", "2"],
        &f,
        Command::ShipTransfer {
            transfer: TransferId::from("t1"),
            sku: SkuId::from("CLOTH"),
            from: LocationId::from("wh1"),
            to: LocationId::from("s1"),
            qty: 200,
        },
    );
}

#[test]
fn reads_and_admin() {
    let cli = parse(&[
        "availability",
        "A",
        "B",
        "--at",
        "online",
        "--consistency",
        "at-least=42",
    ]);
    match cli.command {
        Cmd::Availability {
            skus,
            at,
            channel,
            consistency,
        } => {
            assert_eq!(skus, vec!["A", "B"]);
            assert_eq!(at, "online");
            assert_eq!(channel, "web");
            assert_eq!(consistency, Consistency::AtLeast(42));
        }
        other => panic!("{other:?}"),
    }
    assert!(usage_error(&["order", "o1", "--consistency", "eventual"]).contains("at-least=INDEX"));
    let cli = parse(&["init", "1=127.0.0.1:7400", "2=127.0.0.1:7401"]);
    let Cmd::Init { members } = cli.command else {
        panic!("not init");
    };
    assert_eq!(
        members,
        vec![
            NodeAddr {
                id: 1,
                addr: "127.0.0.1:7400".into()
            },
            NodeAddr {
                id: 2,
                addr: "127.0.0.1:7401".into()
            }
        ]
    );
    assert!(usage_error(&["init", "127.0.0.1:7400"]).contains("ID=HOST:PORT"));
    assert!(usage_error(&["add-node", "0", "h:1"]).contains("positive"));
    let cli = parse(&[
        "nearby",
        "A",
        "--lat",
        "48.8566",
        "--lon",
        "-2.35",
        "--radius-km",
        "10",
    ]);
    let Cmd::Nearby { lat, lon, qty, .. } = cli.command else {
        panic!("not nearby");
    };
    assert_eq!(
        (lat, lon, qty),
        (48_856_600, -2_350_000, Qty::parse("1").expect("a quantity"))
    );
    assert!(!is_write(&parse(&["status"]).command));
    assert!(is_write(&parse(&["ready", "o1"]).command));
}

#[test]
fn trust_and_addresses_are_checked() {
    let cli = parse(&["status", "--connect", "nohost", "--fingerprint", "aa"]);
    assert_eq!(
        client_config(&cli.global)
            .map(|c| c.nodes)
            .map_err(|e| e.to_string()),
        Err("\"nohost\": expected HOST:PORT".into())
    );
    // Trust alone is not enough: every client has an identity (SPEC section 7).
    let cli = parse(&["status", "--fingerprint", "aa"]);
    assert!(client_config(&cli.global)
        .map(|c| c.nodes)
        .is_err_and(|e| e.to_string().starts_with("no identity")));
    let dir = std::env::temp_dir().join(format!("stockctl-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    pki::ensure_ca(&dir).expect("CA");
    pki::ensure_admin(&dir).expect("admin");
    let (cert, key) = (dir.join("admin.pem"), dir.join("admin.key"));
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let cli = parse(&[
        "status",
        "--fingerprint",
        "aa",
        "--cert",
        &cert,
        "--key",
        &key,
    ]);
    let config = client_config(&cli.global).expect("config");
    assert_eq!(config.nodes, vec![DEFAULT_CONNECT]);
    assert!(config.identity.is_some());
    std::fs::remove_dir_all(&dir).ok();
    let cli = parse(&["status", "--ca", "/nonexistent/ca.pem"]);
    assert!(client_config(&cli.global)
        .map(|c| c.nodes)
        .is_err_and(|e| e.to_string().starts_with("--ca: /nonexistent/ca.pem")));
}

#[test]
fn change_events_with_any_request_id_become_json() {
    // serde_json cannot hold a u128: a real request id must still print (as hex).
    let event = ChangeEvent {
        seq: 7,
        log_index: 9,
        timestamp_ms: 1_000,
        request_id: Some(RequestId(u128::MAX - 1)),
        cause: engine::query::Cause::Reserve,
        sku: SkuId::from("A"),
        location: LocationId::from("wh"),
        balance: engine::Balance {
            on_hand: 5,
            reserved: 2,
            ..engine::Balance::default()
        },
        shortfall: 0,
        author: None,
    };
    let value = event_json(&event);
    assert_eq!(value["request_id"], "fffffffffffffffffffffffffffffffe");
    assert_eq!(value["seq"], 7);
    assert_eq!(value["balance"]["reserved"], 2);
    let expiry = ChangeEvent {
        request_id: None,
        ..event
    };
    assert!(event_json(&expiry)["request_id"].is_null());
}

#[test]
fn signed_quantities_parse_and_negative_counts_reach_the_ledger() {
    // The help says "Receipt (+)", so `+3` reads as 3; a negative count is for the ledger to
    // reject with its typed `invalid`, not a command-line error.
    let cli = parse(&["adjust", "A@wh1", "+3"]);
    assert!(matches!(&cli.command, Cmd::Adjust { delta, .. } if delta.as_str() == "3"));
    let cli = parse(&["adjust", "A@wh1", "-2"]);
    assert!(matches!(&cli.command, Cmd::Adjust { delta, .. } if delta.as_str() == "-2"));
    let cli = parse(&["set-on-hand", "A@wh1", "-1"]);
    assert!(matches!(&cli.command, Cmd::SetOnHand { qty, .. } if qty.as_str() == "-1"));
}

#[test]
fn retention_set_takes_the_values_to_change_and_at_least_one() {
    let cli = parse(&[
        "retention",
        "set",
        "--finished-entries",
        "1000",
        "--dedup-window-s",
        "600",
    ]);
    let Cmd::Retention {
        action: command::RetentionCmd::Set(change),
    } = cli.command
    else {
        panic!("{:?}", cli.command)
    };
    let expected = command::RetentionChange {
        finished_entries: Some(1_000),
        dedup_window_s: Some(600),
        ..command::RetentionChange::default()
    };
    assert_eq!(change, expected);
    let nothing = usage_error(&["retention", "set"]);
    assert!(nothing.contains("--finished-entries"), "{nothing}");
    assert!(is_write(
        &parse(&["retention", "set", "--feed-events", "10000"]).command
    ));
    assert!(!is_write(&parse(&["retention", "show"]).command));
}

#[test]
fn retention_shows_counts_and_times() {
    let text = show::retention(&engine::Config {
        retired_ms: 90 * 86_400_000,
        dedup_window_ms: 90_000,
        ..engine::Config::default()
    });
    assert_eq!(
        text,
        "finished objects: 10000000 entries, 90d (retired_ms=7776000000)\n\
         dedup: 4000000 entries, 90s (dedup_window_ms=90000)\n\
         change feed: 1000000 events"
    );
}

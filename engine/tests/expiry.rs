//! Expiry in bounded batches (SPEC section 4, "No stalls"; `limits::EXPIRY_STEPS_PER_BATCH`):
//! a burst of deadlines larger than one batch's budget is worked off over later batches in
//! (deadline, creation) order, and meanwhile a hold or pickup past its deadline answers every
//! write and read that names it exactly as the expired one it is (SPEC section 3).

use engine::limits::{BATCH_REQUESTS_MAX, EXPIRY_STEPS_PER_BATCH};
use engine::query::{Answer, Cause, ChangeEvent, OrderView, ReservationState};
use engine::{
    BatchHeader, ChannelId, Code, Command, Config, Fulfilment, Ledger, Line, LocatedLine,
    LocationDef, LocationId, LocationKind, ObjectKind, OrderId, OrderSource, Outcome, Query,
    Reason, Rejection, Request, RequestId, ReservationId, SkuId, Target,
};

/// Time of the first batch.
const T0: u64 = 1_700_000_000_000;
/// TTL of the burst's holds: they all share the deadline `T0 + BURST_TTL_MS`.
const BURST_TTL_MS: u64 = 60_000;
/// The burst's deadline.
const DUE: u64 = T0 + BURST_TTL_MS;

/// A ledger with a warehouse `wh` and two pickup stores, `st` and `st2`, driven batch by batch.
struct Run {
    ledger: Ledger,
    requests: u128,
}

impl Run {
    fn new() -> Run {
        let mut run = Run {
            ledger: Ledger::new(Config::default()),
            requests: 0,
        };
        let loc = |id: &str, kind, pickup| {
            Command::DefineLocation(LocationDef {
                location: LocationId::from(id),
                kind,
                pickup,
                coordinates: None,
                channels: None,
            })
        };
        run.all_ok(
            T0,
            vec![
                loc("wh", LocationKind::Warehouse, false),
                loc("st", LocationKind::Store, true),
                loc("st2", LocationKind::Store, true),
            ],
        );
        run
    }

    /// Applies `commands` as one batch stamped `ts`, with fresh request ids.
    fn batch(&mut self, ts: u64, commands: Vec<Command>) -> Vec<Outcome> {
        let requests: Vec<Request> = commands
            .into_iter()
            .map(|command| {
                self.requests += 1;
                Request {
                    request_id: RequestId(self.requests),
                    command,
                }
            })
            .collect();
        self.replay(ts, &requests)
    }

    /// Applies `requests` as given as one batch stamped `ts`.
    fn replay(&mut self, ts: u64, requests: &[Request]) -> Vec<Outcome> {
        let header = BatchHeader {
            log_index: self.ledger.applied_index() + 1,
            timestamp_ms: ts,
        };
        self.ledger.apply(header, requests)
    }

    #[track_caller]
    fn all_ok(&mut self, ts: u64, commands: Vec<Command>) {
        for chunk in commands.chunks(BATCH_REQUESTS_MAX) {
            let out = self.batch(ts, chunk.to_vec());
            if let Some(bad) = out.iter().find(|o| o.is_err()) {
                panic!("{bad:?}");
            }
        }
    }

    /// Whether some deadline is due and not yet worked off.
    fn backlog(&self) -> bool {
        self.ledger
            .next_deadline_ms()
            .is_some_and(|at| at <= self.ledger.now_ms())
    }

    /// The change-feed events of the last batch.
    fn last_batch_events(&self) -> Vec<ChangeEvent> {
        let index = self.ledger.applied_index();
        let mut since = 1;
        let mut events = Vec::new();
        loop {
            let query = Query::Changes { since, max: 10_000 };
            let Ok(Answer::Changes(page)) = self.ledger.query(&query, self.ledger.now_ms()) else {
                panic!("changes");
            };
            if page.events.is_empty() {
                return events;
            }
            since = page.next;
            events.extend(page.events.into_iter().filter(|e| e.log_index == index));
        }
    }

    fn hold_state(&self, id: &str, at: u64) -> ReservationState {
        match self
            .ledger
            .query(&Query::Reservation(ReservationId::from(id)), at)
        {
            Ok(Answer::Reservation(view)) => view.state,
            other => panic!("{other:?}"),
        }
    }

    fn order(&self, id: &str, at: u64) -> OrderView {
        match self.ledger.query(&Query::Order(OrderId::from(id)), at) {
            Ok(Answer::Order(view)) => view,
            other => panic!("{other:?}"),
        }
    }

    fn live_reservations(&self, at: u64) -> u64 {
        match self.ledger.query(&Query::Status, at) {
            Ok(Answer::Status(status)) => status.live_reservations,
            other => panic!("{other:?}"),
        }
    }
}

fn count(sku: &str, loc: &str, qty: i64) -> Command {
    Command::SetOnHand {
        sku: SkuId::from(sku),
        location: LocationId::from(loc),
        qty,
        reason: Reason::from("count"),
        expected: None,
    }
}

fn line(sku: &str, loc: &str, qty: i64) -> Line {
    Line {
        sku: SkuId::from(sku),
        target: Target::Location(LocationId::from(loc)),
        qty,
    }
}

fn located(sku: &str, loc: &str, qty: i64) -> LocatedLine {
    LocatedLine {
        sku: SkuId::from(sku),
        location: LocationId::from(loc),
        qty,
    }
}

fn reserve(id: &str, sku: &str, qty: i64, ttl_ms: u64) -> Command {
    Command::Reserve {
        reservation: ReservationId::from(id),
        channel: ChannelId::from("web"),
        lines: vec![line(sku, "wh", qty)],
        ttl_ms,
    }
}

/// `n` one-line holds `b0`, `b1`... of SKU `B` at `wh`, made at `T0`, all due at [`DUE`].
fn burst(run: &mut Run, n: usize) {
    run.all_ok(T0, vec![count("B", "wh", n as i64)]);
    let holds = (0..n)
        .map(|i| reserve(&format!("b{i}"), "B", 1, BURST_TTL_MS))
        .collect();
    run.all_ok(T0, holds);
}

/// Applies empty batches one ms apart from `ts` until nothing due is left; returns how many
/// each expired (one change-feed event per one-line hold).
fn drain(run: &mut Run, mut ts: u64) -> Vec<usize> {
    let mut expired = Vec::new();
    while run.backlog() {
        assert!(expired.len() < 100, "the backlog does not drain");
        run.batch(ts, vec![]);
        let events = run.last_batch_events();
        assert!(events.iter().all(|e| e.cause == Cause::Expire));
        expired.push(events.len());
        ts += 1;
    }
    expired
}

#[test]
fn a_burst_beyond_one_batch_is_worked_off_over_later_batches_in_deadline_order() {
    let mut run = Run::new();
    let n = EXPIRY_STEPS_PER_BATCH + EXPIRY_STEPS_PER_BATCH / 2 + 1;
    // One unit of its own SKU per hold, so that the feed tells the order of expiry.
    let sku = |i: usize| format!("S{i}");
    run.all_ok(T0, (0..n).map(|i| count(&sku(i), "wh", 1)).collect());
    run.all_ok(T0, vec![count("E", "wh", 1), count("F", "wh", 3)]);
    run.all_ok(T0, vec![reserve("early", "E", 1, 10_000)]);
    let holds = (0..n)
        .map(|i| reserve(&format!("b{i}"), &sku(i), 1, BURST_TTL_MS))
        .collect();
    run.all_ok(T0, holds);
    // Later: `early` moves to the burst's deadline (it keeps its older creation), and three
    // holds come due before the burst.
    let mut later = vec![Command::Extend {
        reservation: ReservationId::from("early"),
        ttl_ms: BURST_TTL_MS - 1,
    }];
    later.extend((0..3).map(|i| reserve(&format!("soon{i}"), "F", 1, 30_000)));
    run.all_ok(T0 + 1, later);
    assert!(!run.backlog());

    let mut expired_skus: Vec<String> = Vec::new();
    let mut per_batch = Vec::new();
    let mut ts = DUE;
    let mut restored: Option<Ledger> = None;
    loop {
        run.batch(ts, vec![]);
        let events = run.last_batch_events();
        assert!(events.iter().all(|e| e.cause == Cause::Expire));
        per_batch.push(events.len());
        expired_skus.extend(events.iter().map(|e| e.sku.0.to_string()));
        // A replica restored in the middle of the backlog works it off the same way.
        if let Some(copy) = restored.as_mut() {
            copy.apply(
                BatchHeader {
                    log_index: run.ledger.applied_index(),
                    timestamp_ms: ts,
                },
                &[],
            );
            assert_eq!(copy.snapshot(), run.ledger.snapshot());
        } else {
            restored = Some(Ledger::restore(&run.ledger.snapshot()).expect("restores"));
        }
        // Every hold answers as expired at once; the counts, like the writes' figures, keep
        // each overdue hold until it is swept.
        assert_eq!(
            run.live_reservations(ts),
            (n + 4 - expired_skus.len()) as u64
        );
        assert_eq!(
            run.hold_state(&format!("b{}", n - 1), ts),
            ReservationState::Expired
        );
        run.ledger.check_invariants().expect("invariants");
        if !run.backlog() {
            break;
        }
        ts += 1;
    }
    // One step per one-line hold, and one for the stale entry `early` left at its first
    // deadline (the first looked at).
    assert_eq!(
        per_batch,
        [EXPIRY_STEPS_PER_BATCH - 1, EXPIRY_STEPS_PER_BATCH / 2 + 6]
    );
    let mut expected = vec!["F".to_owned(); 3];
    expected.push("E".to_owned());
    expected.extend((0..n).map(sku));
    assert_eq!(expired_skus, expected, "(deadline, creation) order");
    assert_eq!(run.hold_state("early", ts), ReservationState::Expired);
}

#[test]
fn extend_release_and_place_order_on_an_overdue_unswept_hold_answer_expired() {
    // The same writes at the deadline, with and without a backlog before the holds.
    let writes = || {
        vec![
            Command::Release {
                reservation: ReservationId::from("h1"),
            },
            Command::Extend {
                reservation: ReservationId::from("h2"),
                ttl_ms: 60_000,
            },
            Command::PlaceOrder {
                order: OrderId::from("o3"),
                source: OrderSource::Reservation(ReservationId::from("h3")),
                fulfilment: Fulfilment::Ship,
            },
        ]
    };
    let mut outcomes = Vec::new();
    for backlog in [false, true] {
        let mut run = Run::new();
        if backlog {
            // More than the batch sweeps before and after its few requests.
            burst(&mut run, 2 * EXPIRY_STEPS_PER_BATCH);
        }
        run.all_ok(T0, vec![count("A", "wh", 3)]);
        run.all_ok(
            T0,
            ["h1", "h2", "h3"]
                .iter()
                .map(|id| reserve(id, "A", 1, BURST_TTL_MS))
                .collect(),
        );
        let requests: Vec<Request> = writes()
            .into_iter()
            .enumerate()
            .map(|(i, command)| Request {
                request_id: RequestId(1_000_000 + i as u128),
                command,
            })
            .collect();
        let out = run.replay(DUE, &requests);
        assert_eq!(run.backlog(), backlog, "the budget went on the burst");
        run.ledger.check_invariants().expect("invariants");
        // Replays answer the same; after the sweep, too.
        assert_eq!(run.replay(DUE, &requests), out);
        drain(&mut run, DUE + 1);
        assert_eq!(run.replay(DUE + 10, &requests), out);
        for id in ["h1", "h2", "h3"] {
            assert_eq!(run.hold_state(id, DUE + 10), ReservationState::Expired);
        }
        run.ledger.check_invariants().expect("invariants");
        outcomes.push(out);
    }
    let expired = Err(Rejection::Expired {
        kind: ObjectKind::Reservation,
    });
    assert_eq!(outcomes[0], vec![expired.clone(), expired.clone(), expired]);
    assert_eq!(outcomes[1], outcomes[0]);
}

/// Every write on pickup order `o1` that an expired pickup refuses.
fn pickup_writes() -> Vec<Command> {
    let o1 = || OrderId::from("o1");
    vec![
        Command::Fulfil {
            order: o1(),
            lines: vec![located("P", "st", 1)],
        },
        Command::PickedUp { order: o1() },
        Command::ReadyForPickup { order: o1() },
        Command::Reallocate {
            order: o1(),
            sku: SkuId::from("P"),
            from: LocationId::from("st"),
            to: LocationId::from("st2"),
            qty: 1,
        },
        Command::Cancel {
            order: o1(),
            lines: Some(vec![located("P", "st", 1)]),
        },
        Command::Cancel {
            order: o1(),
            lines: None,
        },
    ]
}

#[test]
fn an_overdue_unswept_pickup_cannot_be_collected_fulfilled_or_moved() {
    let pickup_order = Command::PlaceOrder {
        order: OrderId::from("o1"),
        source: OrderSource::Lines {
            channel: ChannelId::from("web"),
            lines: vec![line("P", "st", 2)],
        },
        fulfilment: Fulfilment::Pickup {
            deadline_ms: BURST_TTL_MS,
        },
    };
    let writes = pickup_writes();
    let mut seen = Vec::new();
    for backlog in [false, true] {
        let mut run = Run::new();
        if backlog {
            // More than the batch sweeps before and after its few requests.
            burst(&mut run, 2 * EXPIRY_STEPS_PER_BATCH);
        }
        run.all_ok(T0, vec![count("P", "st", 2), count("P", "st2", 2)]);
        run.all_ok(T0, vec![pickup_order.clone()]);
        let out = run.batch(DUE, writes.clone());
        assert_eq!(run.backlog(), backlog, "the budget went on the burst");
        let events: Vec<(Option<RequestId>, Cause, i64)> = run
            .last_batch_events()
            .iter()
            .filter(|e| e.sku.0 != "B")
            .map(|e| (e.request_id, e.cause, e.balance.allocated))
            .collect();
        let view = run.order("o1", DUE);
        run.ledger.check_invariants().expect("invariants");
        drain(&mut run, DUE + 1);
        assert_eq!(run.order("o1", DUE + 10), view);
        seen.push((out, events, view));
    }
    let (out, events, view) = &seen[0];
    let code = |o: &Outcome| o.as_ref().err().map(Rejection::code);
    let expired = Some(Code::Expired);
    assert_eq!(
        out.iter().map(code).collect::<Vec<_>>(),
        [
            Some(Code::OverFulfil),
            expired,
            expired,
            Some(Code::OverFulfil),
            Some(Code::NothingToCancel),
            Some(Code::NothingToCancel),
        ]
    );
    // The missed pickup's units came back as an expiry (no request) and nothing else moved.
    assert_eq!(events, &[(None, Cause::PickupExpired, 0)]);
    assert_eq!(view.lines[0].cancelled, 2);
    assert_eq!(
        seen[1], seen[0],
        "the same with a backlog of expiries before it"
    );
}

/// The availability of one SKU at `wh` for `web`, as of `at`: (reserved, ATS).
fn availability(run: &Run, sku: &str, at: u64) -> (i64, i64) {
    let query = Query::Availability {
        skus: vec![SkuId::from(sku)],
        target: Target::Location(LocationId::from("wh")),
        channel: ChannelId::from("web"),
    };
    match run.ledger.query(&query, at) {
        Ok(Answer::Availability(skus)) => (skus[0].rows[0].balance.reserved, skus[0].ats),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_count_an_overdue_unswept_hold_as_writes_do_until_it_is_swept() {
    let mut run = Run::new();
    burst(&mut run, 2 * EXPIRY_STEPS_PER_BATCH);
    run.all_ok(T0, vec![count("Q", "wh", 2), count("W", "wh", 1)]);
    // `q1` comes due with the burst, after it; `w1` two ms later.
    run.all_ok(
        T0,
        vec![
            reserve("q1", "Q", 1, BURST_TTL_MS),
            reserve("w1", "W", 1, BURST_TTL_MS + 2),
        ],
    );
    let out = run.batch(DUE, vec![reserve("q2", "Q", 2, BURST_TTL_MS)]);
    // The budgets went on the burst: `q1` is overdue but not swept, and still holds its unit
    // for writes (conservative)...
    assert!(run.backlog());
    let seen = match &out[0] {
        Err(Rejection::InsufficientStock { available, .. }) => *available,
        other => panic!("{other:?}"),
    };
    assert_eq!(seen, 1);
    // ...and for reads, at the batch's time and later: the figure a `reserve` is given.
    for at in [DUE, DUE + 1, DUE + 3] {
        assert_eq!(
            availability(&run, "Q", at),
            (1, seen),
            "at DUE + {}",
            at - DUE
        );
    }
    // A deadline after the last batch's time is still subtracted as of the read's time.
    assert_eq!(availability(&run, "W", DUE), (1, 0));
    assert_eq!(availability(&run, "W", DUE + 3), (0, 1));
    // Counters agree: `q1` (and the rest of the burst) is live until swept, `w1` lapses at its
    // deadline.
    let live = run.live_reservations(DUE);
    assert!(live > 2, "{live}");
    assert_eq!(run.live_reservations(DUE + 3), live - 1);
    // The hold itself answers as expired, to reads as to writes.
    assert_eq!(run.hold_state("q1", DUE), ReservationState::Expired);

    drain(&mut run, DUE + 1);
    // Swept: both the read and a `reserve` see the released unit.
    assert_eq!(availability(&run, "Q", DUE + 10), (0, 2));
    let out = run.batch(DUE + 10, vec![reserve("q2", "Q", 2, BURST_TTL_MS)]);
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(availability(&run, "Q", DUE + 10), (2, 0));
    run.ledger.check_invariants().expect("invariants");
}

/// Applies batches of `per_batch` new holds of `lines` lines each (one unit of SKUs `L0`,
/// `L1`...), each due by the next batch, from [`DUE`] on, after a burst of ten budgets' worth
/// of one-line holds due at `DUE`, until no overdue hold is left (at most 20 batches); returns
/// the overdue holds left after each batch.
fn overdue_under_load(lines: usize, per_batch: usize) -> Vec<u64> {
    let mut run = Run::new();
    burst(&mut run, 10 * EXPIRY_STEPS_PER_BATCH);
    run.all_ok(
        T0,
        (0..lines)
            .map(|l| count(&format!("L{l}"), "wh", 1_000_000))
            .collect(),
    );
    let mut overdue = Vec::new();
    let mut ts = DUE;
    while overdue.last() != Some(&0) && overdue.len() < 20 {
        let holds = (0..per_batch)
            .map(|i| Command::Reserve {
                reservation: ReservationId::from(format!("l{ts}-{i}").as_str()),
                channel: ChannelId::from("web"),
                lines: (0..lines)
                    .map(|l| line(&format!("L{l}"), "wh", 1))
                    .collect(),
                ttl_ms: 1,
            })
            .collect();
        run.all_ok(ts, holds);
        // As of the batch's time every live hold is overdue but those it made.
        overdue.push(run.live_reservations(ts) - per_batch as u64);
        run.ledger.check_invariants().expect("invariants");
        ts += 1;
    }
    overdue
}

#[test]
fn a_sustained_load_cannot_grow_the_backlog() {
    // Each batch brings twice the base budget's steps of new holds, each due by the next
    // batch: with a fixed budget the backlog grew by a budget's worth per batch
    // ([9216, 10240, 11264...] one-line holds). A batch now also sweeps what its requests
    // added, so the backlog shrinks in every batch, one-line holds or four-line ones.
    for (lines, per_batch) in [
        (1, 2 * EXPIRY_STEPS_PER_BATCH),
        (4, EXPIRY_STEPS_PER_BATCH / 2),
    ] {
        let overdue = overdue_under_load(lines, per_batch);
        assert_eq!(overdue.last(), Some(&0), "{lines} lines: {overdue:?}");
        for pair in overdue.windows(2) {
            assert!(pair[1] < pair[0], "{lines} lines: {overdue:?}");
        }
    }
}

/// Two request ids and two reservation ids whose 32-bit hashes differ only in bit 0: the id
/// tables keep `hash | 1` as an entry's tag (engine/src/probe.rs), so each pair shares a tag and
/// only the stored ids tell them apart. Replays, a release, a re-reserve and reuse after
/// retention must still see four distinct ids. (The pairs were found by search for the engine's
/// hash at the time of writing; with another hash the test still passes but tests less.)
#[test]
fn ids_whose_hashes_share_a_tag_stay_distinct() {
    let mut run = Run::new();
    run.all_ok(T0, vec![count("A", "wh", 100)]);
    let requests = vec![
        Request {
            request_id: RequestId(76522777150811282127572199565662238230),
            command: reserve("r81375", "A", 1, 600_000),
        },
        Request {
            request_id: RequestId(238264124852965584462111380025066986158),
            command: reserve("r137534", "A", 2, 600_000),
        },
    ];
    let first = run.replay(T0 + 1, &requests);
    assert!(first.iter().all(|o| o.is_ok()), "{first:?}");
    assert_eq!(
        run.replay(T0 + 2, &requests),
        first,
        "a replay answers the original"
    );
    run.ledger
        .check_invariants()
        .expect("a replay reserves nothing more");
    let release = |id: &str| Command::Release {
        reservation: ReservationId::from(id),
    };
    let out = run.batch(T0 + 3, vec![release("r81375")]);
    assert!(out[0].is_ok(), "{out:?}");
    let out = run.batch(T0 + 4, vec![reserve("r137534", "A", 1, 600_000)]);
    assert!(out[0].is_err(), "r137534 still exists: {out:?}");
    let out = run.batch(T0 + 5, vec![release("r137534")]);
    assert!(out[0].is_ok(), "{out:?}");
    let late = T0 + 100 * 24 * 3_600_000;
    for k in 0..50 {
        run.batch(late + k, vec![]);
    }
    run.ledger
        .check_invariants()
        .expect("invariants after retention");
    let again = vec![
        reserve("r137534", "A", 1, 600_000),
        reserve("r81375", "A", 1, 600_000),
    ];
    let out = run.batch(late + 100, again);
    assert!(out.iter().all(|o| o.is_ok()), "both ids reusable: {out:?}");
    run.ledger.check_invariants().expect("invariants");
}

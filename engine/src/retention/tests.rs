use crate::limits::{self, BATCH_REQUESTS_MAX, CLEANUP_STEPS_PER_BATCH, EXPIRY_STEPS_PER_BATCH};
use crate::query::ReservationState;
use crate::test_fixtures::reserve;
use crate::{
    Answer, BatchHeader, Code, Command, Config, InvalidReason, Ledger, LocationDef, LocationId,
    LocationKind, Outcome, Query, Reason, Rejection, Reply, Request, RequestId, ReservationId,
    SkuId,
};

/// A ledger driven one batch at a time, each batch one second after the last, with fresh
/// request ids.
struct Run {
    ledger: Ledger,
    now_ms: u64,
    next_request: u128,
}

impl Run {
    /// A ledger with 1,000,000 units of SKU `A` at warehouse `wh`.
    fn new() -> Run {
        let mut run = Run {
            ledger: Ledger::new(Config::default()),
            now_ms: 1_000_000,
            next_request: 1,
        };
        run.must(Command::DefineLocation(LocationDef {
            location: LocationId::from("wh"),
            kind: LocationKind::Warehouse,
            pickup: false,
            coordinates: None,
            channels: None,
        }));
        run.must(Command::SetOnHand {
            sku: SkuId::from("A"),
            location: LocationId::from("wh"),
            qty: 1_000_000,
            reason: Reason::from("count"),
            expected: None,
        });
        run
    }

    /// Applies `commands` as one batch, one second after the previous batch.
    fn batch(&mut self, commands: Vec<Command>) -> Vec<Outcome> {
        let requests: Vec<Request> = commands
            .into_iter()
            .map(|command| {
                self.next_request += 1;
                Request {
                    request_id: RequestId(self.next_request),
                    command,
                }
            })
            .collect();
        self.replay(&requests)
    }

    /// Applies `requests` (request ids as given) as one batch, one second after the last.
    fn replay(&mut self, requests: &[Request]) -> Vec<Outcome> {
        self.now_ms += 1_000;
        let header = BatchHeader {
            log_index: self.ledger.applied_index() + 1,
            timestamp_ms: self.now_ms,
        };
        self.ledger.apply(header, requests)
    }

    #[track_caller]
    fn must(&mut self, command: Command) {
        let outcome = self.batch(vec![command]).remove(0);
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    /// The state of hold `id`, `None` once retention dropped it.
    #[track_caller]
    fn hold(&self, id: &str) -> Option<ReservationState> {
        let query = Query::Reservation(ReservationId::from(id));
        match self.ledger.query(&query, self.now_ms) {
            Ok(Answer::Reservation(view)) => Some(view.state),
            Err(Rejection::NotFound { .. }) => None,
            other => panic!("reservation {id}: {other:?}"),
        }
    }
}

fn release(id: &str) -> Command {
    Command::Release {
        reservation: ReservationId::from(id),
    }
}

fn retention(change: impl FnOnce(&mut Config)) -> Command {
    let mut config = Config::default();
    change(&mut config);
    Command::SetRetention(config)
}

#[track_caller]
fn check_out_of_range(change: impl FnOnce(&mut Config), field: &str, min: u64, max: u64) {
    let mut run = Run::new();
    let outcome = run.batch(vec![retention(change)]).remove(0);
    let reason = InvalidReason::RetentionOutOfRange {
        field: field.to_owned(),
        min,
        max,
    };
    assert_eq!(outcome, Err(Rejection::invalid(reason)));
    assert_eq!(run.ledger.config(), Config::default(), "nothing changed");
}

#[test]
fn every_setting_outside_its_range_is_invalid_and_changes_nothing() {
    let ms = |min: u64, max: u64| (min, max);
    let (lo, hi) = ms(limits::DEDUP_WINDOW_MS_MIN, limits::DEDUP_WINDOW_MS_DEFAULT);
    check_out_of_range(|c| c.dedup_window_ms = lo - 1, "dedup_window_ms", lo, hi);
    check_out_of_range(|c| c.dedup_window_ms = hi + 1, "dedup_window_ms", lo, hi);
    let (lo, hi) = ms(limits::RETIRED_MS_MIN, limits::RETIRED_MS_DEFAULT);
    check_out_of_range(|c| c.retired_ms = lo - 1, "retired_ms", lo, hi);
    check_out_of_range(|c| c.retired_ms = hi + 1, "retired_ms", lo, hi);
    let count = |min: usize, max: usize| (min as u64, max as u64);
    let (lo, hi) = count(limits::DEDUP_ENTRIES_MIN, limits::DEDUP_ENTRIES_DEFAULT);
    check_out_of_range(
        |c| c.dedup_entries = lo as usize - 1,
        "dedup_entries",
        lo,
        hi,
    );
    check_out_of_range(
        |c| c.dedup_entries = hi as usize + 1,
        "dedup_entries",
        lo,
        hi,
    );
    let (lo, hi) = count(limits::FEED_EVENTS_MIN, limits::FEED_EVENTS_DEFAULT);
    check_out_of_range(|c| c.feed_events = lo as usize - 1, "feed_events", lo, hi);
    check_out_of_range(|c| c.feed_events = hi as usize + 1, "feed_events", lo, hi);
    let (lo, hi) = count(limits::RETIRED_ENTRIES_MIN, limits::RETIRED_ENTRIES_DEFAULT);
    check_out_of_range(|c| c.retired_entries = 0, "retired_entries", lo, hi);
    check_out_of_range(
        |c| c.retired_entries = hi as usize + 1,
        "retired_entries",
        lo,
        hi,
    );
    let code = crate::code_of(&Err(Rejection::invalid(
        InvalidReason::RetentionOutOfRange {
            field: "feed_events".into(),
            min: lo,
            max: hi,
        },
    )));
    assert_eq!(code, Code::Invalid);
}

#[test]
fn the_query_answers_the_settings_in_force() {
    let mut run = Run::new();
    let asked = |run: &Run| match run.ledger.query(&Query::Retention, run.now_ms) {
        Ok(Answer::Retention(config)) => config,
        other => panic!("{other:?}"),
    };
    assert_eq!(asked(&run), Config::default());
    let lowered = Config {
        dedup_window_ms: limits::DEDUP_WINDOW_MS_MIN,
        dedup_entries: limits::DEDUP_ENTRIES_MIN,
        feed_events: limits::FEED_EVENTS_MIN,
        retired_ms: limits::RETIRED_MS_MIN,
        retired_entries: limits::RETIRED_ENTRIES_MIN,
    };
    let outcome = run.batch(vec![Command::SetRetention(lowered)]).remove(0);
    assert_eq!(outcome, Ok(Reply::Done));
    assert_eq!(asked(&run), lowered);
    assert_eq!(run.ledger.config(), lowered);
}

/// Holds h0..h9 made in order and released in the opposite order (h9 finishes first).
fn ten_released_holds() -> Run {
    let mut run = Run::new();
    let ids: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    run.batch(ids.iter().map(|id| reserve(id, 600_000)).collect());
    for id in ids.iter().rev() {
        run.must(release(id));
    }
    run
}

#[test]
fn lowering_retired_entries_drops_the_oldest_finished_first() {
    let mut run = ten_released_holds();
    assert!((0..10).all(|i| run.hold(&format!("h{i}")).is_some()));
    run.must(retention(|c| c.retired_entries = 3));
    // Finished last: h2, h1, h0. Gone at once, before any clean-up ran.
    let kept: Vec<bool> = (0..10)
        .map(|i| run.hold(&format!("h{i}")).is_some())
        .collect();
    assert_eq!(
        kept,
        [true, true, true, false, false, false, false, false, false, false]
    );
    assert_eq!(run.hold("h0"), Some(ReservationState::Released));
    // A newly finished hold pushes the oldest retained one out.
    run.batch(vec![reserve("h10", 600_000)]);
    run.must(release("h10"));
    assert_eq!(run.hold("h2"), None);
    assert!(["h1", "h0", "h10"].iter().all(|id| run.hold(id).is_some()));
    // A dropped hold's id is free for a new hold.
    run.must(reserve("h9", 600_000));
    assert_eq!(run.hold("h9"), Some(ReservationState::Active));
    run.ledger.check_invariants().expect("invariants");
}

#[test]
fn the_same_commands_give_the_same_snapshot_restored_or_not() {
    let lowered = |run: &mut Run| {
        run.must(retention(|c| {
            c.retired_entries = 2;
            c.feed_events = limits::FEED_EVENTS_MIN;
        }));
    };
    let mut first = ten_released_holds();
    lowered(&mut first);
    let mut second = ten_released_holds();
    lowered(&mut second);
    assert_eq!(first.ledger.snapshot(), second.ledger.snapshot());
    // A replica restored from a snapshot with a clean-up backlog stays identical.
    let mut restored = Run {
        ledger: Ledger::restore(&first.ledger.snapshot()).expect("restore"),
        now_ms: first.now_ms,
        next_request: first.next_request,
    };
    assert_eq!(restored.ledger.config(), first.ledger.config());
    for run in [&mut first, &mut restored] {
        run.must(reserve("h9", 600_000)); // a dropped hold's id, not yet cleaned up
        run.batch(vec![reserve("h11", 600_000), release("h11")]);
    }
    assert_eq!(first.ledger.snapshot(), restored.ledger.snapshot());
    assert_eq!(first.hold("h11"), Some(ReservationState::Released));
    assert_eq!(first.hold("h9"), Some(ReservationState::Active));
    assert_eq!(first.hold("h1"), None);
}

#[test]
fn a_lowered_dedup_window_forgets_older_request_ids() {
    let mut run = Run::new();
    let made = Request {
        request_id: RequestId(u128::MAX),
        command: reserve("r1", 600_000),
    };
    let original = run.replay(std::slice::from_ref(&made)).remove(0);
    assert!(
        matches!(original, Ok(Reply::Reserved { .. })),
        "{original:?}"
    );
    assert_eq!(run.replay(std::slice::from_ref(&made))[0], original);
    run.must(retention(|c| {
        c.dedup_window_ms = limits::DEDUP_WINDOW_MS_MIN
    }));
    // Within the new window: still the original answer.
    assert_eq!(run.replay(std::slice::from_ref(&made))[0], original);
    run.now_ms += limits::DEDUP_WINDOW_MS_MIN;
    // Past it: a new request, whose hold id is taken.
    let again = run.replay(std::slice::from_ref(&made)).remove(0);
    assert_eq!(crate::code_of(&again), Code::AlreadyExists);
}

#[test]
fn lowered_dedup_entries_forget_the_oldest_request_ids() {
    // `set_retention` accepts no fewer than `DEDUP_ENTRIES_MIN` (half a million): the count
    // cap is exercised on a small setting through the function the write calls.
    let mut run = Run::new();
    let requests: Vec<Request> = (0..5)
        .map(|i| Request {
            request_id: RequestId(1_000 + i),
            command: reserve(&format!("r{i}"), 600_000),
        })
        .collect();
    let originals = run.replay(&requests);
    run.ledger.state.config.dedup_entries = 2;
    run.ledger.enforce_counts();
    assert_eq!(run.ledger.state.dedup.len(), 2);
    let replays = run.replay(&requests[3..]);
    assert_eq!(replays, originals[3..], "the newest two are remembered");
    let forgotten = run.replay(&requests[..1]).remove(0);
    assert_eq!(crate::code_of(&forgotten), Code::AlreadyExists);
}

#[test]
fn a_big_reduction_is_worked_off_over_later_batches() {
    let mut run = Run::new();
    let holds = CLEANUP_STEPS_PER_BATCH + CLEANUP_STEPS_PER_BATCH / 2;
    let ids: Vec<String> = (0..holds).map(|i| format!("x{i}")).collect();
    for chunk in ids.chunks(BATCH_REQUESTS_MAX) {
        run.batch(chunk.iter().map(|id| reserve(id, 1_000)).collect());
    }
    // Every hold expires, at most EXPIRY_STEPS_PER_BATCH a batch (one step per one-line hold):
    // `holds` finished objects.
    while run.ledger.ix.live_reservations > 0 {
        let live = run.ledger.ix.live_reservations;
        run.batch(vec![]);
        assert!(live - run.ledger.ix.live_reservations <= EXPIRY_STEPS_PER_BATCH);
    }
    assert_eq!(run.hold("x0"), Some(ReservationState::Expired));
    let (retired, feed) = (&run.ledger.state.retired, &run.ledger.state.feed);
    assert_eq!((retired.clean(), retired.len()), (0, holds as u64));
    assert!(feed.len() > 2 * holds as u64);
    run.must(retention(|c| {
        c.retired_entries = 1_000;
        c.feed_events = limits::FEED_EVENTS_MIN;
    }));
    // Dropped for every read at once; nothing cleaned up yet.
    assert_eq!(run.hold("x0"), None);
    assert_eq!(run.hold(&ids[holds - 1_001]), None);
    assert_eq!(
        run.hold(&ids[holds - 1_000]),
        Some(ReservationState::Expired)
    );
    let state = &run.ledger.state;
    assert_eq!(state.retired.len(), 1_000);
    assert_eq!(state.feed.len(), limits::FEED_EVENTS_MIN as u64);
    assert_eq!(state.retired.clean(), 0);
    let backlog = (state.retired.head(), state.feed.head() - state.feed.clean());
    assert_eq!(backlog.0, holds as u64 - 1_000);
    // Then at most CLEANUP_STEPS_PER_BATCH entries of each log (and one per new entry) per
    // batch, until none is left.
    let mut batches = 0;
    let gaps = |l: &Ledger| {
        let (retired, feed) = (&l.state.retired, &l.state.feed);
        (retired.head() - retired.clean(), feed.head() - feed.clean())
    };
    // Drained: the feed cleans a dropped event as it drops it; the retirement queue keeps the
    // one entry this batch's release dropped for the next batch's clean-up.
    while matches!(gaps(&run.ledger), (retired, feed) if retired > 1 || feed > 0) {
        assert!(batches < 10, "the backlog does not drain");
        let before = (
            run.ledger.state.retired.clean(),
            run.ledger.state.feed.clean(),
        );
        // Writes go on meanwhile: each new event or finished object drops one more, never
        // the backlog.
        let id = format!("y{batches}");
        run.batch(vec![reserve(&id, 600_000), release(&id)]);
        let after = (
            run.ledger.state.retired.clean(),
            run.ledger.state.feed.clean(),
        );
        assert!(after.0 - before.0 <= CLEANUP_STEPS_PER_BATCH as u64 + 1);
        assert!(after.1 - before.1 <= CLEANUP_STEPS_PER_BATCH as u64 + 2);
        run.ledger.check_invariants().expect("invariants");
        batches += 1;
    }
    // 97,304 objects and about 190,000 events: several batches, not one.
    let steps = CLEANUP_STEPS_PER_BATCH as u64;
    assert_eq!(
        batches,
        backlog.0.div_ceil(steps).max(backlog.1.div_ceil(steps))
    );
    assert!(batches > 1);
    assert_eq!(run.hold(&ids[holds - 1]), Some(ReservationState::Expired));
}

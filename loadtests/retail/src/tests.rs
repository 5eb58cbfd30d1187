//! End-to-end tests of the mapping on hand-written CSV snippets.

use super::describe;
use super::input::format_datetime_ms;
use super::*;

const HEADER: &str = "invoice,stock_code,description,quantity,invoice_date,unit_price,customer_id,country,is_cancellation,source\n";

/// A week of a small shop, Thursday 2009-12-03 to Tuesday 2009-12-08.
const SNIPPET: &str = concat!(
    // UK web order; A twice (summed), postage dropped.
    "500001,A1,APPLE,10,2009-12-03 09:00:00,1.00,12346,United Kingdom,False,s\n",
    "500001,B2,\"BOX, \"\"BIG\"\"\",5,2009-12-03 09:00:00,2.00,12346,United Kingdom,False,s\n",
    "500001,POST,POSTAGE,1,2009-12-03 09:00:00,5.00,12346,United Kingdom,False,s\n",
    "500001,A1,APPLE,2,2009-12-03 09:00:00,1.00,12346,United Kingdom,False,s\n",
    // EU web order in the same minute.
    "500002,A1,APPLE,6,2009-12-03 09:00:00,1.00,12347,Germany,False,s\n",
    // Same-day cancellation of 4 A from 500001: still open -> cancel.
    "C500003,A1,APPLE,-4,2009-12-03 10:30:00,1.00,12346,United Kingdom,True,s\n",
    // Pickup: UK, small, 500004 % 4 == 0; customer 12348 % 4 == 0 -> store-london.
    "500004,A1,APPLE,2,2009-12-03 11:00:00,1.00,12348,United Kingdom,False,s\n",
    // Trade order: 400 x 2.55 = 1,020 GBP -> b2b.
    "500005,C3X,CANDLE,400,2009-12-03 12:00:00,2.55,12349,United Kingdom,False,s\n",
    // Write-off and stock found (no customer, price 0).
    // (40 A1 broken: uk-wh keeps fewer than its orders need -> short-shipped at dispatch.)
    "500006,A1,damaged,-40,2009-12-03 13:00:00,0,,United Kingdom,False,s\n",
    "500007,B2,found,2,2009-12-03 13:00:00,0,,United Kingdom,False,s\n",
    // Pickup candidate whose store lacks stock: shipped from the group instead.
    "500012,B2,\"BOX, \"\"BIG\"\"\",3,2009-12-04 10:00:00,2.00,12352,United Kingdom,False,s\n",
    // After Friday's dispatch: a return of 2 A of 500002 (received at eu-wh).
    "C500008,A1,APPLE,-2,2009-12-04 15:00:00,1.00,12347,Germany,True,s\n",
    // A guest cancellation: nothing to match.
    "C500009,B2,\"BOX, \"\"BIG\"\"\",-1,2009-12-04 16:00:00,2.00,,United Kingdom,True,s\n",
    // A write-off above what is on hand.
    "500010,C3X,?,-5000,2009-12-04 17:00:00,0,,United Kingdom,False,s\n",
    // Monday after the review: more A than uk-wh and the stores can give -> trimmed.
    "500011,A1,APPLE,90,2009-12-07 09:00:00,1.00,12350,United Kingdom,False,s\n",
    "500011,B2,\"BOX, \"\"BIG\"\"\",1,2009-12-07 09:00:00,2.00,12350,United Kingdom,False,s\n",
);

fn dataset(body: &str) -> Dataset {
    let lines = read_lines(format!("{HEADER}{body}").as_bytes()).expect("snippet parses");
    build(lines)
}

/// Runs events through the planner and an engine; returns the trace (one line per request:
/// `MM-DD HH:MM #n command -> code`), the planner and the ledger.
fn run_events(events: Vec<Event>) -> (Vec<String>, Planner, engine::Ledger) {
    let mut planner = Planner::new(events, PlanConfig::default());
    let mut backend = EngineBackend::default();
    let mut trace = Vec::new();
    let namespace = u128::from(PlanConfig::default().request_id_namespace) << 64;
    let mut next_id = 1u128;
    let mut last_time = 0;
    drive(&mut planner, &mut backend, |batch, outcomes| {
        assert!(batch.requests.len() <= engine::limits::BATCH_REQUESTS_MAX);
        assert!(batch.timestamp_ms >= last_time, "time never goes back");
        last_time = batch.timestamp_ms;
        for (r, o) in batch.requests.iter().zip(outcomes) {
            // Request ids: the namespace, then 1, 2, 3... in emission order.
            assert_eq!(r.request_id.0, namespace | next_id);
            next_id += 1;
            trace.push(format!(
                "{} {} -> {}",
                &format_datetime_ms(batch.timestamp_ms)[5..16],
                describe::request(r),
                engine::code_of(o)
            ));
        }
    });
    (trace, planner, backend.into_ledger())
}

fn run(body: &str) -> (Vec<String>, Planner, engine::Ledger) {
    run_events(dataset(body).events)
}

#[test]
fn the_snippet_becomes_exactly_these_requests() {
    let (trace, planner, ledger) = run(SNIPPET);
    let expected = [
        "12-03 09:00 #1 define_location uk-wh warehouse pickup=false at=51652000,-81000 channels=web,b2b -> ok",
        "12-03 09:00 #2 define_location eu-wh warehouse pickup=false at=51370000,6172000 channels=web,b2b -> ok",
        "12-03 09:00 #3 define_location store-london store pickup=true at=51511700,-124000 channels=pos,web -> ok",
        "12-03 09:00 #4 define_location store-manchester store pickup=true at=53480800,-2242600 channels=pos,web -> ok",
        "12-03 09:00 #5 define_location store-birmingham store pickup=true at=52479700,-1898300 channels=pos,web -> ok",
        "12-03 09:00 #6 define_location store-edinburgh store pickup=true at=55953300,-3188300 channels=pos,web -> ok",
        "12-03 09:00 #7 define_group online-uk [uk-wh,store-london,store-manchester,store-birmingham,store-edinburgh] -> ok",
        "12-03 09:00 #8 define_group online-eu [eu-wh,uk-wh] -> ok",
        "12-03 09:00 #9 define_group online-intl [uk-wh] -> ok",
        "12-03 09:00 #10 adjust A1@uk-wh +52 opening-stock -> ok",
        "12-03 09:00 #11 adjust A1@eu-wh +3 opening-stock -> ok",
        "12-03 09:00 #12 set_safety_stock A1@store-london 2 -> ok",
        "12-03 09:00 #13 set_safety_stock A1@store-manchester 2 -> ok",
        "12-03 09:00 #14 set_safety_stock A1@store-birmingham 2 -> ok",
        "12-03 09:00 #15 set_safety_stock A1@store-edinburgh 2 -> ok",
        "12-03 09:00 #16 adjust A1@store-london +9 opening-stock -> ok",
        "12-03 09:00 #17 adjust A1@store-manchester +9 opening-stock -> ok",
        "12-03 09:00 #18 adjust A1@store-birmingham +9 opening-stock -> ok",
        "12-03 09:00 #19 adjust A1@store-edinburgh +9 opening-stock -> ok",
        "12-03 09:00 #20 adjust B2@uk-wh +5 opening-stock -> ok",
        "12-03 09:00 #21 set_safety_stock B2@store-london 2 -> ok",
        "12-03 09:00 #22 set_safety_stock B2@store-manchester 2 -> ok",
        "12-03 09:00 #23 set_safety_stock B2@store-birmingham 2 -> ok",
        "12-03 09:00 #24 set_safety_stock B2@store-edinburgh 2 -> ok",
        "12-03 09:00 #25 adjust B2@store-london +3 opening-stock -> ok",
        "12-03 09:00 #26 adjust B2@store-manchester +3 opening-stock -> ok",
        "12-03 09:00 #27 adjust B2@store-birmingham +3 opening-stock -> ok",
        "12-03 09:00 #28 adjust B2@store-edinburgh +3 opening-stock -> ok",
        "12-03 09:00 #29 reserve rsv-500001 web ttl=900000 [A1@online-uk:12 B2@online-uk:5] -> ok",
        "12-03 09:00 #30 reserve rsv-500002 web ttl=900000 [A1@online-eu:6] -> ok",
        "12-03 09:00 #31 place_order ord-500001 from rsv-500001 ship -> ok",
        "12-03 09:00 #32 place_order ord-500002 from rsv-500002 ship -> ok",
        "12-03 10:30 #33 cancel ord-500001 [A1@uk-wh:4] -> ok",
        "12-03 11:00 #34 reserve rsv-500004 web ttl=900000 [A1@store-london:2] -> ok",
        "12-03 11:00 #35 place_order ord-500004 from rsv-500004 pickup(604800000) -> ok",
        "12-03 12:00 #36 adjust C3X@uk-wh +200 opening-stock -> ok",
        "12-03 12:00 #37 reserve rsv-500005 b2b ttl=900000 [C3X@online-uk:400] -> insufficient_stock",
        "12-03 12:00 #38 reserve rsv-500005 b2b ttl=900000 [C3X@online-uk:200] -> ok",
        "12-03 12:00 #39 place_order ord-500005 from rsv-500005 ship -> ok",
        "12-03 13:00 #40 adjust A1@uk-wh -40 write-off -> ok",
        "12-03 13:00 #41 adjust B2@uk-wh +2 stock-found -> ok",
        "12-04 06:00 #42 fulfil ord-500001 [A1@uk-wh:8 B2@uk-wh:5] -> ok",
        "12-04 06:00 #43 fulfil ord-500002 [A1@uk-wh:6] -> insufficient_stock",
        "12-04 06:00 #44 ready_for_pickup ord-500004 -> ok",
        "12-04 06:00 #45 fulfil ord-500005 [C3X@uk-wh:200] -> ok",
        "12-04 06:00 #46 cancel ord-500002 [A1@uk-wh:2] -> ok",
        "12-04 06:00 #47 fulfil ord-500002 [A1@uk-wh:4] -> ok",
        "12-04 10:00 #48 reserve rsv-500012 web ttl=900000 [B2@store-london:3] -> insufficient_stock",
        "12-04 10:00 #49 reserve rsv-500012 web ttl=900000 [B2@online-uk:3] -> ok",
        "12-04 10:00 #50 place_order ord-500012 from rsv-500012 ship -> ok",
        "12-04 12:00 #51 picked_up ord-500004 -> ok",
        "12-04 15:00 #52 return rma-C500008-1 ord-500002 [A1:2@uk-wh restock] -> ok",
        "12-04 17:00 #53 adjust C3X@uk-wh -5000 write-off -> insufficient_stock",
        "12-05 06:00 #54 fulfil ord-500012 [B2@uk-wh:2 B2@store-london:1] -> ok",
        "12-07 05:00 #55 adjust A1@uk-wh +54 receipt -> ok",
        "12-07 05:00 #56 adjust A1@eu-wh +21 receipt -> ok",
        "12-07 05:00 #57 adjust B2@uk-wh +32 receipt -> ok",
        "12-07 05:00 #58 adjust B2@store-london +2 receipt -> ok",
        "12-07 05:00 #59 adjust B2@store-manchester +1 receipt -> ok",
        "12-07 05:00 #60 adjust B2@store-birmingham +1 receipt -> ok",
        "12-07 05:00 #61 adjust B2@store-edinburgh +1 receipt -> ok",
        "12-07 05:00 #62 adjust C3X@uk-wh +1600 receipt -> ok",
        "12-07 09:00 #63 reserve rsv-500011 web ttl=900000 [A1@online-uk:90 B2@online-uk:1] -> insufficient_stock",
        "12-07 09:00 #64 reserve rsv-500011 web ttl=900000 [A1@online-uk:82 B2@online-uk:1] -> ok",
        "12-07 09:00 #65 place_order ord-500011 from rsv-500011 ship -> ok",
        "12-08 06:00 #66 fulfil ord-500011 [A1@uk-wh:56 A1@store-london:5 A1@store-manchester:7 A1@store-birmingham:7 A1@store-edinburgh:7 B2@uk-wh:1] -> ok",
    ];
    for (i, (got, want)) in trace.iter().zip(expected.iter()).enumerate() {
        assert_eq!(got, want, "request {}", i + 1);
    }
    assert_eq!(trace.len(), expected.len());
    assert_eq!(planner.stats().requests, 66);
    assert_eq!(planner.stats().batches, 23);
    assert!(planner.is_finished());
    assert!(ledger.check_invariants().is_ok());
}

#[test]
fn the_snippet_input_is_filtered_and_grouped() {
    let d = dataset(SNIPPET);
    let s = &d.stats;
    assert_eq!(s.lines_read, 16);
    assert_eq!(s.lines_used, 15);
    assert_eq!(s.lines_merged, 1);
    assert_eq!(
        s.lines_dropped,
        std::collections::BTreeMap::from([("postage".to_owned(), 1)])
    );
    assert_eq!(
        (
            s.invoices_read,
            s.sale_invoices,
            s.cancellation_invoices,
            s.write_off_events,
            s.stock_found_events,
            s.skus
        ),
        (12, 6, 3, 2, 1, 3)
    );
    assert_eq!(s.first_event, "2009-12-03 09:00:00");
    assert_eq!(s.last_event, "2009-12-07 09:00:00");
}

/// (sku, location) -> (on_hand, reserved, allocated, safety_stock), read through queries.
fn balances(ledger: &engine::Ledger, skus: &[&str]) -> Vec<(String, String, [i64; 4])> {
    let query = engine::Query::Availability {
        skus: skus.iter().map(|s| engine::SkuId::from(*s)).collect(),
        target: engine::Target::All,
        channel: engine::ChannelId::from("web"),
    };
    let Ok(engine::Answer::Availability(rows)) = ledger.query(&query, ledger.now_ms()) else {
        panic!("availability");
    };
    let mut out = Vec::new();
    for sku in rows {
        for row in sku.rows {
            let b = row.balance;
            out.push((
                sku.sku.0.to_string(),
                row.location.0.into_string(),
                [b.on_hand, b.reserved, b.allocated, b.safety_stock],
            ));
        }
    }
    out
}

#[test]
fn the_snippet_replays_to_exactly_these_balances() {
    let (_, planner, ledger) = run(SNIPPET);
    let want = |sku: &str, loc: &str, b: [i64; 4]| (sku.to_owned(), loc.to_owned(), b);
    assert_eq!(
        balances(&ledger, &["A1", "B2", "C3X"]),
        vec![
            // 52 opening - 40 written off - 8 - 4 shipped + 2 returned + 54 received - 56.
            want("A1", "uk-wh", [0, 0, 0, 0]),
            want("A1", "eu-wh", [24, 0, 0, 0]),
            // 9 opening - 2 picked up - 5 shipped from store.
            want("A1", "store-london", [2, 0, 0, 2]),
            want("A1", "store-manchester", [2, 0, 0, 2]),
            want("A1", "store-birmingham", [2, 0, 0, 2]),
            want("A1", "store-edinburgh", [2, 0, 0, 2]),
            // 5 opening + 2 found - 5 - 2 shipped + 32 received - 1.
            want("B2", "uk-wh", [31, 0, 0, 0]),
            want("B2", "store-london", [4, 0, 0, 2]),
            want("B2", "store-manchester", [4, 0, 0, 2]),
            want("B2", "store-birmingham", [4, 0, 0, 2]),
            want("B2", "store-edinburgh", [4, 0, 0, 2]),
            // 200 opening - 200 shipped + 1600 received (write-off of 5000: nothing on hand).
            want("C3X", "uk-wh", [1600, 0, 0, 0]),
        ]
    );
    let all = replay::read_balances(&planner.skus(), |q| ledger.query(q, ledger.now_ms()))
        .expect("reads");
    assert_eq!(all.len(), 12);
    assert!(replay::mirror_mismatches(&planner, &all).is_empty());
    let s = planner.stats();
    assert_eq!(
        (
            s.units_requested,
            s.units_reserved,
            s.units_fulfilled,
            s.units_short_shipped,
            s.units_cancelled,
            s.units_returned,
            s.units_unmatched_no_customer,
            s.units_unmatched_no_order,
        ),
        (519, 311, 305, 2, 4, 2, 1, 0)
    );
    assert_eq!(
        (
            s.units_opening,
            s.units_replenished,
            s.units_found,
            s.units_written_off
        ),
        (308, 1712, 2, 40)
    );
    assert_eq!(
        (
            s.checkouts,
            s.checkouts_b2b,
            s.reserve_attempts,
            s.lines_trimmed,
            s.pickups_attempted,
            s.pickups_fell_back,
            s.pickup_orders,
            s.pickups_collected,
            s.orders_placed,
        ),
        (6, 1, 9, 2, 2, 1, 1, 1, 6)
    );
    assert_eq!(
        s.outcomes,
        std::collections::BTreeMap::from([
            ("insufficient_stock".to_owned(), 5),
            ("ok".to_owned(), 61)
        ])
    );
    assert_eq!(s.unexpected, 0, "{:?}", s.unexpected_samples);
}

#[test]
fn the_replay_is_deterministic() {
    let (trace_a, _, ledger_a) = run(SNIPPET);
    let (trace_b, _, ledger_b) = run(SNIPPET);
    assert_eq!(trace_a, trace_b);
    assert_eq!(ledger_a.digest(), ledger_b.digest());
}

#[test]
fn replay_events_summarises_and_ends_clean() {
    let r = replay_events(
        "snippet",
        dataset(SNIPPET),
        PlanConfig::default(),
        0.0,
        |_, _| {},
    );
    let s = &r.summary;
    assert!(s.is_clean(), "{}", render(s));
    assert_eq!(s.rejections.get("insufficient_stock"), Some(&5));
    assert_eq!(s.final_stock.on_hand, 24 + 8 + 31 + 16 + 1600);
    assert_eq!(s.final_stock.safety_stock, 16);
    assert_eq!((s.final_stock.reserved, s.final_stock.allocated), (0, 0));
    assert_eq!(s.final_stock.balances, 12);
    assert_eq!(s.final_stock.on_hand_by_location["uk-wh"], 1631);
    let text = render(s);
    assert!(text.contains("check_invariants: ok"), "{text}");
    let json = serde_json::to_value(s).expect("serialises");
    assert_eq!(json["plan"]["orders_placed"], 6);
    assert_eq!(json["invariants"], "ok");
}

#[test]
fn bulk_lines_are_bought_for_the_order() {
    let (trace, planner, _) = run(concat!(
        // 1,510 GBP: a trade order; 1,500 units on one line: bought for the order.
        "600001,Z9,BULK,1500,2010-03-01 10:00:00,1.00,13902,Denmark,False,s\n",
        "600001,Y8,SMALL,10,2010-03-01 10:00:00,1.00,13902,Denmark,False,s\n",
    ));
    let requests: Vec<&str> = trace
        .iter()
        .map(String::as_str)
        .filter(|t| !t.contains("define_"))
        .collect();
    assert_eq!(
        requests,
        [
            "03-01 10:00 #10 adjust Z9@eu-wh +1500 bulk-receipt -> ok",
            // Opening stock: half of the first 28 days' demand (the bulk line excluded).
            "03-01 10:00 #11 adjust Y8@eu-wh +5 opening-stock -> ok",
            "03-01 10:00 #12 reserve rsv-600001 b2b ttl=900000 [Z9@online-eu:1500 Y8@online-eu:10] -> insufficient_stock",
            "03-01 10:00 #13 reserve rsv-600001 b2b ttl=900000 [Z9@online-eu:1500 Y8@online-eu:5] -> ok",
            "03-01 10:00 #14 place_order ord-600001 from rsv-600001 ship -> ok",
            "03-02 06:00 #15 fulfil ord-600001 [Z9@eu-wh:1500 Y8@eu-wh:5] -> ok",
        ]
    );
    assert_eq!(planner.stats().bulk_lines, 1);
    assert_eq!(planner.stats().units_bulk_received, 1500);
}

#[test]
fn invoices_above_the_line_limit_become_several_checkouts() {
    let body: String = (0..300)
        .map(|i| format!("700001,S{i},X,1,2010-03-01 10:00:00,1.00,1,United Kingdom,False,s\n"))
        .collect();
    let (trace, planner, ledger) = run(&body);
    let reserves: Vec<&String> = trace.iter().filter(|t| t.contains(" reserve ")).collect();
    assert_eq!(reserves.len(), 2);
    assert!(reserves[0].contains("rsv-700001 web"));
    assert!(reserves[1].contains("rsv-700001-2 web"));
    assert_eq!(reserves[0].matches("@online-uk:1").count(), 256);
    assert_eq!(reserves[1].matches("@online-uk:1").count(), 44);
    let s = planner.stats();
    assert_eq!((s.checkouts, s.checkouts_split, s.orders_placed), (2, 1, 2));
    assert_eq!((s.units_reserved, s.units_fulfilled), (300, 300));
    assert!(ledger.check_invariants().is_ok());
}

/// Polls a future to completion on this thread. The test sinks answer at once, so no waker
/// is ever needed; a runtime would be a dependency this crate must not have.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// What a test sink does wrong, if anything.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Answers like the engine.
    None,
    /// Reports one more unit on hand in the first balance of the final read.
    ExtraUnitInFinalRead,
    /// Fails the fourth batch.
    FailFourthBatch,
}

/// An in-process engine behind the [`LedgerSink`] trait, with an optional fault.
struct TestSink {
    backend: EngineBackend,
    fault: Fault,
    batches: u64,
    observed: u64,
    finished: bool,
}

impl TestSink {
    fn new(fault: Fault) -> Self {
        TestSink {
            backend: EngineBackend::default(),
            fault,
            batches: 0,
            observed: 0,
            finished: false,
        }
    }
}

impl LedgerSink for TestSink {
    type Error = String;

    async fn apply(&mut self, batch: &Batch) -> Result<Vec<engine::Outcome>, String> {
        self.batches += 1;
        if self.fault == Fault::FailFourthBatch && self.batches == 4 {
            return Err("the cluster stopped answering".to_owned());
        }
        Ok(Backend::apply(&mut self.backend, batch))
    }

    async fn query(&mut self, query: engine::Query) -> Result<engine::Answer, String> {
        let ledger = self.backend.ledger();
        let mut answer = ledger
            .query(&query, ledger.now_ms())
            .map_err(|e| format!("{e:?}"))?;
        if self.fault == Fault::ExtraUnitInFinalRead {
            if let engine::Answer::Availability(rows) = &mut answer {
                rows[0].rows[0].balance.on_hand += 1;
            }
        }
        Ok(answer)
    }

    fn observed(&mut self, _batch: &Batch, stats: &PlanStats) {
        self.observed += 1;
        assert_eq!(stats.batches, self.batches, "observed after every batch");
    }

    fn finished(&mut self) {
        self.finished = true;
    }
}

#[test]
fn a_sink_that_answers_like_the_engine_is_consistent() {
    let mut sink = TestSink::new(Fault::None);
    let r = block_on(replay_through(
        &mut sink,
        "snippet",
        dataset(SNIPPET),
        PlanConfig::default(),
    ))
    .expect("replays");
    assert!(r.is_consistent(), "{r:?}");
    assert!(sink.finished);
    assert_eq!(sink.observed, sink.batches);
    let engine = replay_events(
        "snippet",
        dataset(SNIPPET),
        PlanConfig::default(),
        0.0,
        |_, _| {},
    );
    assert_eq!(r.plan.requests, engine.summary.plan.requests);
    assert_eq!(r.sink_stock, engine.summary.final_stock);
    assert_eq!(r.engine_stock, engine.summary.final_stock);
    assert_eq!(r.rejections.get("insufficient_stock"), Some(&5));
    assert_eq!(r.skus.len(), 3);
}

#[test]
fn a_sink_that_ends_with_other_stock_is_caught() {
    let mut sink = TestSink::new(Fault::ExtraUnitInFinalRead);
    let r = block_on(replay_through(
        &mut sink,
        "snippet",
        dataset(SNIPPET),
        PlanConfig::default(),
    ))
    .expect("replays");
    assert!(!r.is_consistent());
    assert_eq!(r.stock_mismatches.count, 1, "{r:?}");
    assert!(
        r.stock_mismatches.samples[0].contains(": cluster "),
        "{:?}",
        r.stock_mismatches.samples
    );
    assert_eq!(r.mirror_mismatches, 1);
    assert!(r.same_outcomes, "the writes were answered faithfully");
    assert_eq!(r.sink_stock.on_hand, r.engine_stock.on_hand + 1);
}

#[test]
fn a_sink_failure_stops_the_replay() {
    let mut sink = TestSink::new(Fault::FailFourthBatch);
    let r = block_on(replay_through(
        &mut sink,
        "snippet",
        dataset(SNIPPET),
        PlanConfig::default(),
    ));
    match r {
        Err(SinkReplayError::Sink(e)) => assert_eq!(e, "the cluster stopped answering"),
        other => panic!("{other:?}"),
    }
    assert!(!sink.finished);
}

fn row(sku: &str, loc: &str, on_hand: i64) -> BalanceRow {
    BalanceRow {
        sku: engine::SkuId::from(sku),
        location: loc.to_owned(),
        balance: engine::Balance {
            on_hand,
            ..engine::Balance::default()
        },
    }
}

#[test]
fn balances_are_compared_by_sku_and_location() {
    let a = vec![row("A", "w", 5), row("B", "w", 2), row("C", "s", 1)];
    let same = vec![row("C", "s", 1), row("A", "w", 5), row("B", "w", 2)];
    assert_eq!(sink::compare_balances(&a, &same), BalanceDiff::default());
    let b = vec![row("A", "w", 4), row("B", "w", 2), row("D", "s", 1)];
    let diff = sink::compare_balances(&a, &b);
    assert_eq!(diff.count, 3);
    assert!(diff.samples[0].starts_with("A@w: cluster"), "{diff:?}");
    assert_eq!(diff.samples[1], "C@s: only on the cluster");
    assert_eq!(diff.samples[2], "D@s: only in the engine");
}

//! A read's time adjustment looks only at the deadlines after the last batch's time, never at
//! a backlog of overdue holds (see the module doc of `view.rs`).

use crate::limits::{BATCH_REQUESTS_MAX, EXPIRY_STEPS_PER_BATCH, READ_LAPSED_STEPS_MAX};
use crate::test_fixtures::reserve;
use crate::{
    Answer, BatchHeader, ChannelId, Command, Config, Ledger, LocationDef, LocationId, LocationKind,
    Query, Reason, Request, RequestId, SkuId, Target,
};

/// Time of the first batch.
const T0: u64 = 1_000_000;
/// TTL of the backlog's holds.
const TTL_MS: u64 = 60_000;

/// Applies `commands` in batches stamped `ts` (one empty batch for none), with request ids
/// from `next`; all must pass.
fn apply(ledger: &mut Ledger, next: &mut u128, ts: u64, commands: Vec<Command>) {
    let chunks: Vec<&[Command]> = if commands.is_empty() {
        vec![&[]]
    } else {
        commands.chunks(BATCH_REQUESTS_MAX).collect()
    };
    for chunk in chunks {
        let requests: Vec<Request> = chunk
            .iter()
            .map(|command| {
                *next += 1;
                Request {
                    request_id: RequestId(*next),
                    command: command.clone(),
                }
            })
            .collect();
        let header = BatchHeader {
            log_index: ledger.applied_index() + 1,
            timestamp_ms: ts,
        };
        let out = ledger.apply(header, &requests);
        assert!(out.iter().all(|o| o.is_ok()), "{out:?}");
    }
}

/// A ledger with warehouse `wh` holding `qty` units of SKU `A`, applied at `T0`, and the next
/// request id.
fn stocked(qty: i64) -> (Ledger, u128) {
    let (mut ledger, mut next) = (Ledger::new(Config::default()), 0);
    let setup = vec![
        Command::DefineLocation(LocationDef {
            location: LocationId::from("wh"),
            kind: LocationKind::Warehouse,
            pickup: false,
            coordinates: None,
            channels: None,
        }),
        Command::SetOnHand {
            sku: SkuId::from("A"),
            location: LocationId::from("wh"),
            qty,
            reason: Reason::from("count"),
            expected: None,
        },
    ];
    apply(&mut ledger, &mut next, T0, setup);
    (ledger, next)
}

#[test]
fn a_read_during_a_backlog_looks_at_no_overdue_entry() {
    let backlog = 3 * EXPIRY_STEPS_PER_BATCH;
    let (mut ledger, mut next) = stocked(backlog as i64 + 2);
    let mut holds: Vec<Command> = (0..backlog)
        .map(|i| reserve(&format!("b{i}"), TTL_MS))
        .collect();
    holds.push(reserve("late1", TTL_MS + 5));
    holds.push(reserve("late2", TTL_MS + 5));
    apply(&mut ledger, &mut next, T0, holds);
    // The first batch past the burst's deadline sweeps one budget's worth of it.
    apply(&mut ledger, &mut next, T0 + TTL_MS, vec![]);
    let overdue = (backlog - EXPIRY_STEPS_PER_BATCH) as u64;
    assert!(ledger
        .next_deadline_ms()
        .is_some_and(|at| at <= ledger.now_ms()));

    let visit = |now: u64| {
        let mut lapsed = 0;
        let looked_at = ledger.visit_lapsed(now, |_| lapsed += 1);
        (looked_at, lapsed)
    };
    // At the batch's time nothing is looked at; later, only the two holds due since.
    assert_eq!(visit(T0 + TTL_MS), (0, 0));
    assert_eq!(visit(T0 + TTL_MS + 4), (0, 0));
    assert_eq!(visit(T0 + TTL_MS + 5), (2, 2));
    assert_eq!(visit(u64::MAX), (2, 2));

    // So the reads count the overdue holds as held, and subtract the two later ones.
    let reserved = |now: u64| {
        let query = Query::Availability {
            skus: vec![SkuId::from("A")],
            target: Target::All,
            channel: ChannelId::from("web"),
        };
        match ledger.query(&query, now) {
            Ok(Answer::Availability(skus)) => skus[0].rows[0].balance.reserved,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(reserved(T0 + TTL_MS) as u64, overdue + 2);
    assert_eq!(reserved(T0 + TTL_MS + 5) as u64, overdue);
    match ledger.query(&Query::Status, T0 + TTL_MS + 5) {
        Ok(Answer::Status(status)) => assert_eq!(status.live_reservations, overdue),
        other => panic!("{other:?}"),
    }
}

/// A read between a burst's deadline and the batch that sweeps it looks at no more than
/// [`READ_LAPSED_STEPS_MAX`] entries (SPEC section 4: a read holds the ledger's read lock, which
/// stops apply): it subtracts the first of the lapsed holds, in (deadline, creation) order, and
/// counts the rest as held, as writes and reads do for a backlog.
#[test]
fn a_read_after_a_burst_deadline_looks_at_a_bounded_number_of_entries() {
    let burst = 3 * READ_LAPSED_STEPS_MAX;
    let (mut ledger, mut next) = stocked(burst as i64);
    let holds: Vec<Command> = (0..burst)
        .map(|i| reserve(&format!("h{i}"), TTL_MS))
        .collect();
    apply(&mut ledger, &mut next, T0, holds);
    let mut lapsed = 0;
    let looked_at = ledger.visit_lapsed(T0 + TTL_MS, |_| lapsed += 1);
    assert_eq!(
        (looked_at, lapsed),
        (READ_LAPSED_STEPS_MAX, READ_LAPSED_STEPS_MAX)
    );
    let query = Query::Availability {
        skus: vec![SkuId::from("A")],
        target: Target::All,
        channel: ChannelId::from("web"),
    };
    let reserved = match ledger.query(&query, T0 + TTL_MS) {
        Ok(Answer::Availability(skus)) => skus[0].rows[0].balance.reserved,
        other => panic!("{other:?}"),
    };
    assert_eq!(reserved as usize, burst - READ_LAPSED_STEPS_MAX);
    // Before the deadline, every hold counts; after the batches sweep them, none does.
    let before = ledger.query(&query, T0 + TTL_MS - 1);
    assert!(
        matches!(before, Ok(Answer::Availability(ref s)) if s[0].rows[0].balance.reserved as usize == burst)
    );
    for i in 0..burst.div_ceil(EXPIRY_STEPS_PER_BATCH) as u64 {
        apply(&mut ledger, &mut next, T0 + TTL_MS + i, vec![]);
    }
    match ledger.query(&query, T0 + TTL_MS + 100) {
        Ok(Answer::Availability(skus)) => assert_eq!(skus[0].rows[0].balance.reserved, 0),
        other => panic!("{other:?}"),
    }
}

//! Change-feed subscriptions: one per stream, paced by the subscriber's reading.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use engine::{Answer, LocationId, Query};
use protocol::{ClientFrame, OpResult, ServerError, ServerMessage};

use super::streams::reply;
use crate::metrics::{Operation, Outcome, Transport};
use crate::node::NodeCtx;
use crate::replies::{NoRoom, Outbox, Room};

/// How often an idle subscription checks that its node is still a member, ms.
pub const SUBSCRIPTION_CHECK_MS: u64 = 1_000;

/// Events per message of a change-feed subscription.
pub const EVENTS_PER_MESSAGE_MAX: u32 = 1_000;

/// Where a subscription starts, and which locations it follows (none: all).
pub(super) struct From {
    /// First feed sequence number wanted.
    pub since: u64,
    /// Only events at these locations (`Op::SubscribeAt`); empty for the whole feed.
    pub locations: Vec<LocationId>,
}

/// Answers a `Subscribe` or `SubscribeAt` frame (which `arrived` then): starts the stream's
/// subscription unless it has one or the frame carries more; returns whether the stream is
/// subscribed now.
pub(super) async fn subscribe(
    ctx: &Arc<NodeCtx>,
    outbox: &Outbox,
    frame: ClientFrame,
    from: From,
    subscribed: bool,
    arrived: Instant,
) -> bool {
    let answer = |result: OpResult| {
        let answered = [(Operation::Subscribe, Outcome::of_result(&result))];
        ctx.metrics
            .record_requests(Transport::Quic, answered, arrived.elapsed());
        reply(outbox, frame.id, vec![result])
    };
    if subscribed || frame.ops.len() != 1 {
        let refused = OpResult::Failed(ServerError::InvalidOp {
            message: "one subscription per stream, alone in its frame".to_owned(),
        });
        answer(refused).await;
        return subscribed;
    }
    if let Some(removed) = ctx.membership.removed_error() {
        // Its feed stopped where the cluster left it.
        answer(OpResult::Failed(removed)).await;
        return subscribed;
    }
    if !from.locations.is_empty() {
        // Unknown locations and too many of them are refused now, not on the first page.
        let probe = Query::ChangesAt {
            since: u64::MAX,
            max: 1,
            locations: from.locations.clone(),
        };
        let checked = {
            let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
            ledger.query(&probe, ctx.clock.now_ms())
        };
        if let Err(rejection) = checked {
            let refused = OpResult::Failed(ServerError::InvalidOp {
                message: format!("subscribe: {rejection}"),
            });
            answer(refused).await;
            return subscribed;
        }
    }
    // The room for the message that ends a cut subscription is kept from the start, so the
    // subscriber always learns where to resume.
    let Some(last) = outbox.small_room().await else {
        return subscribed;
    };
    // `Subscribed` is queued before the first events.
    answer(OpResult::Subscribed).await;
    tokio::spawn(subscription(from, ctx.clone(), outbox.clone(), last));
    true
}

/// Streams change-feed events to a subscriber from `since`, waking on every apply. Before
/// reading the feed it takes room for a largest events message, waiting at most
/// `replies::SUBSCRIBER_WAIT_MS`: a subscriber that reads, however slowly, is served (and falls
/// behind in the feed, not in memory); one that does not is cut with `SubscriptionCut {
/// resume_from }` in the room `last` kept for it. It never holds the ledger lock while it waits,
/// so it never slows apply or other clients. A subscriber slower than the feed's retention
/// sees a gap in sequence numbers (and `truncated` on a `changes` read).
async fn subscription(from: From, ctx: Arc<NodeCtx>, outbox: Outbox, last: Room) {
    let (mut since, locations) = (from.since, from.locations);
    let queue = Arc::new(Semaphore::new(
        crate::replies::SUBSCRIBER_QUEUE_KIB_MAX as usize,
    ));
    let mut applied = ctx.shared.applied();
    loop {
        let room = match outbox.events_room(&queue).await {
            Ok(room) => room,
            // `since` is the first event not queued: everything before it was.
            Err(NoRoom::Full(full)) => return outbox.cut(last, since, full),
            Err(NoRoom::Closed) => return,
        };
        let page = {
            let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
            let page = if locations.is_empty() {
                Query::Changes {
                    since,
                    max: EVENTS_PER_MESSAGE_MAX,
                }
            } else {
                Query::ChangesAt {
                    since,
                    max: EVENTS_PER_MESSAGE_MAX,
                    locations: locations.clone(),
                }
            };
            ledger.query(&page, ctx.clock.now_ms())
        };
        let Ok(Answer::Changes(page)) = page else {
            return;
        };
        // A filtered page may scan events without matching any: go on at once while it moves.
        let moved = page.next > since;
        since = page.next;
        if page.events.is_empty() && moved && !locations.is_empty() {
            drop(room);
            continue;
        }
        if page.events.is_empty() {
            drop(room);
            // Wake on new entries, and now and then to notice a removal (a removed node applies
            // nothing more): ending the stream sends the client to resubscribe elsewhere.
            let wait = Duration::from_millis(SUBSCRIPTION_CHECK_MS);
            let changed = tokio::time::timeout(wait, applied.changed()).await;
            if matches!(changed, Ok(Err(_)))
                || outbox.is_closed()
                || ctx.membership.removed_error().is_some()
            {
                return;
            }
            continue;
        }
        if !outbox.send(room, &ServerMessage::Events(page.events)) {
            return;
        }
    }
}

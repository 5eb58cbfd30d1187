//! Change-feed subscriptions: one per stream, paced by the subscriber's reading.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use engine::{Answer, Query};
use protocol::{ClientFrame, OpResult, ServerError, ServerMessage};

use super::streams::reply;
use crate::metrics::{Operation, Outcome, Transport};
use crate::node::NodeCtx;
use crate::replies::{NoRoom, Outbox, Room};

/// How often an idle subscription checks that its node is still a member, ms.
pub const SUBSCRIPTION_CHECK_MS: u64 = 1_000;

/// Events per message of a change-feed subscription.
pub const EVENTS_PER_MESSAGE_MAX: u32 = 1_000;

/// Answers a `Subscribe` frame (which `arrived` then): starts the stream's subscription
/// unless it has one or the frame carries more; returns whether the stream is subscribed now.
pub(super) async fn subscribe(
    ctx: &Arc<NodeCtx>,
    outbox: &Outbox,
    frame: ClientFrame,
    since: u64,
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
    // The room for the message that ends a cut subscription is kept from the start, so the
    // subscriber always learns where to resume.
    let Some(last) = outbox.small_room().await else {
        return subscribed;
    };
    // `Subscribed` is queued before the first events.
    answer(OpResult::Subscribed).await;
    tokio::spawn(subscription(since, ctx.clone(), outbox.clone(), last));
    true
}

/// Streams change-feed events to a subscriber from `since`, waking on every apply. Before
/// reading the feed it takes room for a largest events message, waiting at most
/// `replies::SUBSCRIBER_WAIT_MS`: a subscriber that reads, however slowly, is served (and falls
/// behind in the feed, not in memory); one that does not is cut with `SubscriptionCut {
/// resume_from }` in the room `last` kept for it. It never holds the ledger lock while it waits,
/// so it never slows apply or other clients. A subscriber slower than the feed's retention
/// sees a gap in sequence numbers (and `truncated` on a `changes` read).
async fn subscription(mut since: u64, ctx: Arc<NodeCtx>, outbox: Outbox, last: Room) {
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
            let page = Query::Changes {
                since,
                max: EVENTS_PER_MESSAGE_MAX,
            };
            ledger.query(&page, ctx.clock.now_ms())
        };
        let Ok(Answer::Changes(page)) = page else {
            return;
        };
        since = page.next;
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

//! Deadlines fire on time with no client writes: the leader proposes a tick when the earliest
//! hold expiry passes, so the change feed shows the expiry at its deadline (SPEC section 3,
//! Expiry; the cluster issue: "Expiry and pickup deadlines fire on time even when no client
//! writes").

use std::time::{Duration, Instant};

use engine::query::{Cause, ReservationState};
use engine::{
    Answer, ChannelId, Command, Line, LocationId, Query, Reply, ReservationId, SkuId, Target,
};
use protocol::Consistency;
use testkit::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_expires_in_the_feed_without_any_write() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let count = testkit::count("A", "wh", 3);
    client
        .write(count)
        .await
        .expect("count")
        .outcome
        .expect("ok");
    let reserve = Command::Reserve {
        reservation: ReservationId::from("r1"),
        channel: ChannelId::from("web"),
        lines: vec![Line {
            sku: SkuId::from("A"),
            target: Target::Location(LocationId::from("wh")),
            qty: 2,
        }],
        ttl_ms: 60_000,
    };
    let written = client.write(reserve).await.expect("reserve");
    let Ok(Reply::Reserved { expires_at_ms, .. }) = written.outcome else {
        panic!("{:?}", written.outcome)
    };

    // Nobody writes; a minute passes on the cluster's clock.
    cluster.clock().advance(61_000);
    let start = Instant::now();
    let expiry = loop {
        let page = client
            .read(
                Query::Changes { since: 0, max: 100 },
                Consistency::Linearizable,
            )
            .await
            .expect("read");
        let Ok(Answer::Changes(page)) = page.answer else {
            panic!("{:?}", page.answer)
        };
        if let Some(e) = page.events.into_iter().find(|e| e.cause == Cause::Expire) {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no expiry event without writes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        expiry.timestamp_ms >= expires_at_ms,
        "expired at {} before its deadline {expires_at_ms}",
        expiry.timestamp_ms
    );
    assert_eq!(expiry.request_id, None);
    assert_eq!((expiry.balance.on_hand, expiry.balance.reserved), (3, 0));
    let answer = client
        .read(
            Query::Reservation(ReservationId::from("r1")),
            Consistency::Linearizable,
        )
        .await
        .expect("read");
    let Ok(Answer::Reservation(view)) = answer.answer else {
        panic!("{:?}", answer.answer)
    };
    assert_eq!(view.state, ReservationState::Expired);
    let ticks: u64 = cluster
        .running()
        .iter()
        .map(|id| cluster.node(*id).status().batches.ticks)
        .sum();
    assert!(ticks >= 1, "the leader proposed no tick");
    client.close();
    cluster.shutdown().await;
}

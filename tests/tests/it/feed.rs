//! The change feed as a live subscription (SPEC section 3, `changes`): every balance change,
//! in order, with its cause, request id and log index, pushed as entries apply.

use std::time::Duration;

use engine::query::Cause;
use engine::{ChannelId, Command, Line, LocationId, ReservationId, SkuId, Target};
use testkit::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_change_in_order() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let mut feed = client.subscribe(1).await.expect("subscribe");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let count = testkit::count("A", "wh", 5);
    let counted = client.write(count).await.expect("count");
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
    let reserved = client.write(reserve).await.expect("reserve");
    let release = Command::Release {
        reservation: ReservationId::from("r1"),
    };
    client
        .write(release)
        .await
        .expect("release")
        .outcome
        .expect("ok");

    let mut events = Vec::new();
    while events.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("event in time")
            .expect("event");
        events.push(event);
    }
    let seen: Vec<(u64, Cause, i64, i64)> = events
        .iter()
        .map(|e| (e.seq, e.cause, e.balance.on_hand, e.balance.reserved))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, Cause::SetOnHand, 5, 0),
            (2, Cause::Reserve, 5, 2),
            (3, Cause::Release, 5, 0)
        ]
    );
    assert_eq!(events[0].log_index, counted.log_index);
    assert_eq!(events[1].request_id, Some(reserved.request_id));
    assert!(events
        .iter()
        .all(|e| e.sku.as_str() == "A" && e.location.as_str() == "wh"));
    client.close();
    cluster.shutdown().await;
}

/// A store associate's alerts (SPEC section 3, `changes(since, locations)`): a subscription to
/// one store sees only that store's balances, in order, and an unknown store is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_subscription_sees_only_its_store() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    for define in [testkit::warehouse("wh"), testkit::warehouse("store-1")] {
        client
            .write(define)
            .await
            .expect("define")
            .outcome
            .expect("ok");
    }
    // A stream is served from the node it lands on, which may be a follower that has not yet
    // applied the definition (docs/PROTOCOL.md, "Change feed"): subscribe once all have it.
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas agree");
    let mut alerts = client
        .subscribe_at(1, vec![LocationId::from("store-1")])
        .await
        .expect("subscribe");
    for (at, qty) in [("wh", 5), ("store-1", 3), ("wh", 6), ("store-1", 2)] {
        let counted = client.write(testkit::count("A", at, qty)).await;
        counted.expect("count").outcome.expect("ok");
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), alerts.next())
            .await
            .expect("event in time")
            .expect("event");
        seen.push((
            event.seq,
            event.location.0.to_string(),
            event.balance.on_hand,
        ));
    }
    assert_eq!(
        seen,
        vec![(2, "store-1".to_owned(), 3), (4, "store-1".to_owned(), 2)]
    );
    let unknown = client
        .subscribe_at(1, vec![LocationId::from("nowhere")])
        .await;
    assert!(unknown.is_err(), "an unknown store is refused");
    client.close();
    cluster.shutdown().await;
}

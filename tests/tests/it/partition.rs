//! A minority partition cannot acknowledge writes or answer linearizable reads; healing
//! restores it (SPEC section 4).

use std::time::Duration;

use engine::{Query, Request, RequestId};
use protocol::{Consistency, Op, OpResult, ServerMessage};
use testkit::{Cluster, RawConnection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_cannot_acknowledge_and_heals() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    client
        .write(testkit::count("A", "wh", 1))
        .await
        .expect("count")
        .outcome
        .expect("ok");

    let old = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    cluster.isolate(old, true);

    // The isolated node, asked directly (no client retries), acknowledges no write and
    // answers no linearizable read: it times out, or has stepped down and says so.
    let raw = RawConnection::connect(&cluster.addr(old), &cluster.ca_path())
        .await
        .expect("raw connection");
    let write = Op::Write(Request {
        request_id: RequestId(0x5eed),
        command: testkit::count("A", "wh", 99),
    });
    let reply = raw
        .call(vec![write], Duration::from_secs(10))
        .await
        .expect("a reply");
    let ServerMessage::Reply { results, .. } = reply else {
        panic!("{reply:?}")
    };
    assert!(
        matches!(results[0], OpResult::Failed(_)),
        "an isolated node acknowledged a write: {results:?}"
    );
    let read = Op::Read {
        query: Query::Status,
        consistency: Consistency::Linearizable,
    };
    let reply = raw
        .call(vec![read], Duration::from_secs(10))
        .await
        .expect("a reply");
    let ServerMessage::Reply { results, .. } = reply else {
        panic!("{reply:?}")
    };
    assert!(
        matches!(results[0], OpResult::Failed(_)),
        "an isolated node answered a linearizable read: {results:?}"
    );

    // The majority elects a leader and goes on.
    let new = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    assert_ne!(new, old);
    client
        .write(testkit::count("A", "wh", 2))
        .await
        .expect("majority write")
        .outcome
        .expect("ok");

    // Healing: the old leader rejoins, steps down and converges; the cut-off write was never
    // applied (on_hand went 1 -> 2, never 99).
    cluster.isolate(old, false);
    cluster
        .wait_converged(Duration::from_secs(15))
        .await
        .expect("replicas converge");
    let digest_old = cluster.node(old).digest().digest;
    let digest_new = cluster.node(new).digest().digest;
    assert_eq!(digest_old, digest_new);
    let feed = client
        .read(
            Query::Changes { since: 0, max: 100 },
            Consistency::Linearizable,
        )
        .await
        .expect("read")
        .answer;
    let Ok(engine::Answer::Changes(page)) = feed else {
        panic!("{feed:?}")
    };
    let counts: Vec<i64> = page.events.iter().map(|e| e.balance.on_hand).collect();
    assert_eq!(
        counts,
        vec![1, 2],
        "the feed shows exactly the acknowledged counts"
    );
    raw.connection.close(0u32.into(), b"done");
    client.close();
    cluster.shutdown().await;
}

/// A follower cut off for several election timeouts rejoins without unseating the healthy
/// leader: it asks for pre-votes, which nobody grants while the leader is live, so no term
/// moves (SPEC section 4: no disruptive elections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_follower_rejoins_without_an_election() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    client
        .write(testkit::warehouse("wh"))
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let term = cluster.node(leader).status().term;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.isolate(follower, true);
    for qty in 1..=10 {
        client
            .write(testkit::count("A", "wh", qty))
            .await
            .expect("write")
            .outcome
            .expect("ok");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.isolate(follower, false);
    cluster
        .wait_converged(Duration::from_secs(15))
        .await
        .expect("replicas converge");
    for id in 1..=3 {
        let status = cluster.node(id).status();
        assert_eq!(
            status.term, term,
            "node {id}: term {term} -> {}",
            status.term
        );
    }
    assert_eq!(
        cluster
            .wait_leader(Duration::from_secs(5))
            .await
            .expect("a leader"),
        leader
    );
    client.close();
    cluster.shutdown().await;
}

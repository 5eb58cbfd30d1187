//! A follower that was merely paused (SIGSTOP: a stalled VM, a long GC) must not force an
//! election when it resumes: the leader was healthy all along (pre-vote, leader stickiness).

use std::time::Duration;

use protocol::Role;
use testkit::{ProcessCluster, ProcessConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_resumes_without_an_election() {
    let cluster =
        ProcessCluster::start(ProcessConfig::new(env!("CARGO_BIN_EXE_stockd"), "pause", 3))
            .expect("cluster starts");
    let client = cluster.client(20_000).await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let leader = cluster
        .leader(Duration::from_secs(20))
        .await
        .expect("a leader");
    let term = cluster.status(leader).await.expect("leader status").term;
    let follower = leader % 3 + 1;
    cluster.signal(follower, "STOP").expect("signal sent");
    for _ in 0..20 {
        testkit::acknowledged_receipt(&client, "A", "wh")
            .await
            .expect("receipt acknowledged");
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    cluster.signal(follower, "CONT").expect("signal sent");
    for _ in 0..20 {
        testkit::acknowledged_receipt(&client, "A", "wh")
            .await
            .expect("receipt acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in 1..=3 {
        let status = cluster.status(id).await.expect("status");
        assert_eq!(
            status.term, term,
            "node {id}: term {term} -> {}",
            status.term
        );
        let expected = if id == leader {
            Role::Leader
        } else {
            Role::Follower
        };
        assert_eq!(status.role, expected, "node {id}");
    }
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    client.close();
}

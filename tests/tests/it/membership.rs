//! Cluster membership: a node that cannot be reached is never made a voter (found by the
//! break-it pass: `add-node` of an unreachable address made it a voter at once, and losing
//! one of the three original nodes then stopped every write).

use std::time::Duration;

use protocol::NodeAddr;
use server::raft::log_store::Durability;
use tests::{fast_timings, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_stays_a_learner_and_the_cluster_keeps_its_quorum() {
    let timings = server::node::RaftTimings {
        add_node_catch_up_ms: 1_500,
        ..fast_timings()
    };
    let mut cluster = TestCluster::start_with(
        3,
        Durability::Replicated {
            flush_interval_ms: 50,
        },
        timings,
    )
    .await;
    let client = cluster.client().await;
    // A port with nothing behind it.
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let error = client
        .add_node(NodeAddr {
            id: 9,
            addr: nowhere.to_string(),
        })
        .await
        .expect_err("an unreachable node is not added as a voter");
    assert!(error.to_string().contains("did not catch up"), "{error}");
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let status = cluster.node(leader).status();
    let voters: Vec<u64> = status.members.iter().map(|m| m.id).collect();
    assert!(
        voters.contains(&9),
        "node 9 is known (as a learner): {voters:?}"
    );
    let metrics = cluster.node(leader).raft().metrics().borrow().clone();
    let voter_ids: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
    assert_eq!(voter_ids, vec![1, 2, 3], "voters unchanged");
    // Losing one of the three voters still leaves a majority.
    let other = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.kill(other).await;
    let define = tests::warehouse("wh");
    client
        .write(define)
        .await
        .expect("a write with 2 of 3 voters")
        .outcome
        .expect("ok");
    // The learner can be removed again.
    client.remove_node(9).await.expect("remove the learner");
    client.close();
    cluster.shutdown().await;
}

//! What a node tells its operators (SPEC section 6, "Operations"): readiness means its state
//! is rebuilt AND a leader is known (a load balancer must not send traffic to a node that can
//! answer nothing but `not_leader` or `unavailable`).

use std::time::Duration;

use testkit::Cluster;

/// A node that belongs to no cluster yet knows no leader: it is not ready (before the fix,
/// `status` said `ready=true` as soon as its empty state was "rebuilt").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_knows_no_leader_is_not_ready() {
    let mut cluster = Cluster::replicated(1).await.expect("cluster starts");
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    assert!(cluster.node(leader).status().ready, "the leader is ready");
    let alone = cluster.start_joining().await.expect("node starts");
    let status = cluster.node(alone).status();
    assert_eq!(status.leader, None, "{status:?}");
    assert!(!status.ready, "ready with no leader known: {status:?}");
    cluster.shutdown().await;
}

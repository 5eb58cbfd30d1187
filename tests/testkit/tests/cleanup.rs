//! Nothing a cluster starts outlives it: its nodes stop and its directory goes, whether it is
//! shut down, dropped on its runtime, or stopped from another thread.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::{BackgroundCluster, Cluster, ClusterConfig, Error};

/// Whether `addr`'s port is free again: a node still running would hold it.
fn port_is_free(addr: &str) -> bool {
    UdpSocket::bind(addr).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_nodes_and_removes_the_directory() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let digest = cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    assert_eq!(digest.digest.len(), 64);
    let root = cluster.root().to_owned();
    let addrs = cluster.addrs();
    assert!(root.join("n1").is_dir());
    cluster.shutdown().await;
    assert!(!root.exists(), "{} left behind", root.display());
    for addr in addrs {
        assert!(port_is_free(&addr), "{addr} still bound");
    }
}

#[test]
fn a_dropped_cluster_stops_with_its_runtime() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (root, addr) = runtime.block_on(async {
        let cluster = Cluster::replicated(1).await.expect("cluster starts");
        // Dropped here without shutdown, as a panicking test would.
        (cluster.root().to_owned(), cluster.addr(1))
    });
    drop(runtime);
    assert!(!root.exists(), "{} left behind", root.display());
    assert!(port_is_free(&addr), "{addr} still bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_dropped_by_a_failing_test_is_stopped_before_it_returns() {
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    let failing = tokio::spawn(async move {
        let cluster = Cluster::replicated(3).await.expect("cluster starts");
        *sink.lock().expect("lock") = Some((cluster.root().to_owned(), cluster.addrs()));
        panic!("a failing test (expected: this test checks what its cluster leaves)");
    });
    let outcome = failing.await;
    assert!(outcome.is_err_and(|e| e.is_panic()));
    let (root, addrs) = seen
        .lock()
        .expect("lock")
        .take()
        .expect("the cluster started");
    // The unwind dropped the cluster: by now its nodes are stopped and its directory gone.
    assert!(!root.exists(), "{} left behind", root.display());
    for addr in addrs {
        assert!(port_is_free(&addr), "{addr} still bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_restarts_on_its_address_and_catches_up() {
    let mut cluster = Cluster::replicated(3).await.expect("cluster starts");
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    let down = leader % 3 + 1;
    cluster.kill(down).await.expect("node stops");
    assert!(matches!(cluster.kill(down).await, Err(Error::NotRunning(id)) if id == down));
    let client = cluster.client().await.expect("client connects");
    client
        .write(testkit::warehouse("wh"))
        .await
        .expect("a write with a node down")
        .outcome
        .expect("ok");
    cluster.restart(down).await.expect("node restarts");
    assert!(matches!(cluster.restart(down).await, Err(Error::Running(id)) if id == down));
    let digest = cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    // The restarted node holds the write it missed.
    assert_eq!(cluster.node(down).digest().digest, digest.digest);
    client.close();
    cluster.shutdown().await;
}

#[test]
fn a_background_cluster_removes_its_directory_when_stopped() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = BackgroundCluster::start(runtime, ClusterConfig::new(3)).expect("cluster starts");
    let root = cluster.root().to_owned();
    let addrs = cluster.addrs().to_vec();
    assert!(cluster.client_config().is_ok());
    let waiter = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let digest = waiter
        .block_on(cluster.wait_converged(Duration::from_secs(10)))
        .expect("replicas converge");
    assert_eq!(digest.digest.len(), 64);
    cluster.stop();
    assert!(!root.exists(), "{} left behind", root.display());
    for addr in addrs {
        assert!(port_is_free(&addr), "{addr} still bound");
    }
}

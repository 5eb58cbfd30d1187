//! The crash tests' process cluster leaves nothing behind: dropping it kills every `stockd`
//! it started (a SIGSTOPped one too, which cannot die until continued) and removes its root.

use std::path::Path;
use std::time::Duration;

use testkit::{ProcessCluster, ProcessConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cluster_kills_every_process_and_removes_its_root() {
    let config = ProcessConfig::new(env!("CARGO_BIN_EXE_stockd"), "process-cluster", 3);
    let cluster = ProcessCluster::start(config).expect("cluster starts");
    let leader = cluster
        .leader(Duration::from_secs(20))
        .await
        .expect("a leader");
    let digest = cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    assert_eq!(digest.digest.len(), 64);
    let paused = leader % 3 + 1;
    cluster.signal(paused, "STOP").expect("signal sent");
    let pids: Vec<u32> = (1..=3).filter_map(|id| cluster.pid(id)).collect();
    assert_eq!(pids.len(), 3);
    let root = cluster.root().to_owned();
    drop(cluster);
    for pid in pids {
        // Killed and reaped: no process, not even a zombie, keeps the id.
        let proc = format!("/proc/{pid}");
        assert!(
            !Path::new(&proc).exists(),
            "stockd {pid} outlived its cluster"
        );
    }
    assert!(!root.exists(), "{} left behind", root.display());
}

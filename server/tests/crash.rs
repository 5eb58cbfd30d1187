//! Real processes, real crashes: three `stockd` processes on loopback; a follower is killed
//! with SIGKILL (no QUIC close, no log flush) and restarted. It must rejoin within seconds with
//! every acknowledged write, and without election storms (found by the break-it pass: the
//! leader kept using the dead node's connection until its 30 s idle timeout, and the restarted
//! node, hearing nothing, pushed the term up with elections meanwhile).

use std::time::{Duration, Instant};

use protocol::Role;
use testkit::{ProcessCluster, ProcessConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_rejoins_within_seconds_without_election_storms() {
    let mut cluster =
        ProcessCluster::start(ProcessConfig::new(env!("CARGO_BIN_EXE_stockd"), "crash", 3))
            .expect("cluster starts");
    let client = cluster.client(20_000).await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    for _ in 0..20 {
        client
            .write(testkit::receipt("A", "wh"))
            .await
            .expect("write")
            .outcome
            .expect("ok");
    }
    let statuses = client.status().await;
    let leader = statuses
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .find(|s| s.role == Role::Leader)
        .map(|s| s.node.id)
        .expect("a leader");
    let term_before = statuses
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .map(|s| s.term)
        .max()
        .unwrap_or(0);
    let victim = if leader == 3 { 2 } else { 3 };
    cluster.kill(victim);
    for _ in 0..20 {
        client
            .write(testkit::receipt("A", "wh"))
            .await
            .expect("write while a follower is down")
            .outcome
            .expect("ok");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.spawn(victim).expect("node starts");
    let restarted = Instant::now();
    let target = client
        .status_of(&cluster.addr(leader))
        .await
        .expect("leader status")
        .applied_index;
    // Through a fresh connection each time: this measures the node, not the client's pool.
    let caught_up = |s: &protocol::NodeStatus| s.applied_index >= target && s.ready;
    cluster
        .wait_status(victim, "rejoined", Duration::from_secs(10), caught_up)
        .await
        .expect("the killed node rejoins within 10 s");
    let rejoined = restarted.elapsed();
    let term_after = client
        .status()
        .await
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .map(|s| s.term)
        .max()
        .unwrap_or(0);
    println!(
        "node {victim} rejoined {rejoined:?} after its restart; term {term_before} -> {term_after}"
    );
    assert!(
        term_after <= term_before + 1,
        "election storm: term {term_before} -> {term_after}"
    );
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    client.close();
}

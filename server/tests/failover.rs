//! Killing the leader costs one election, not a fight: the survivors stand at randomized
//! times, a candidate stands as soon as a majority granted its pre-vote (not after waiting for
//! the dead node), and it does not stand once it heard from a new leader or voted for another
//! candidate. Each round kills the leader (SIGKILL), waits for a new one, writes through it,
//! restarts the old one and lets it rejoin; the term may rise by one per round (plus one spare
//! for a rare split vote). Before the fix, each kill cost 2-7 elections. Normal elections are
//! not errors: no node logs an ERROR line meanwhile (SPEC section 6).

use std::time::{Duration, Instant};

use protocol::Role;
use testkit::{ProcessCluster as Cluster, ProcessConfig};

/// Leader kills.
const ROUNDS: u64 = 3;
/// Term increases allowed over all rounds: one election per kill, plus one spare.
const ELECTIONS_MAX: u64 = ROUNDS + 1;
/// How long after a new leader the test watches for further elections (the old fight went on
/// for up to 5 s after a kill).
const WATCH: Duration = Duration::from_secs(3);

/// The ERROR lines of every node's log (`n<id>.log` in the cluster's root). A killed leader
/// is a normal election: before openraft's per-RPC errors were filtered (`server::logging`),
/// the new leader logged two ERROR lines per heartbeat to the dead node, ten a second.
fn error_lines(cluster: &Cluster) -> Vec<String> {
    (1..=3)
        .flat_map(|id| {
            let log = std::fs::read_to_string(cluster.root().join(format!("n{id}.log")))
                .unwrap_or_default();
            log.lines()
                .filter(|line| line.contains(" ERROR "))
                .map(|line| format!("n{id}: {line}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The highest term any live node reports.
async fn term(cluster: &Cluster) -> u64 {
    let mut term = 0;
    for id in 1..=3 {
        if let Some(s) = cluster.status(id).await {
            term = term.max(s.term);
        }
    }
    term
}

/// Waits until node `id` follows a leader in `term` again.
async fn wait_rejoined(cluster: &Cluster, id: u64, term: u64) {
    let start = Instant::now();
    loop {
        let status = cluster.status(id).await;
        if status.is_some_and(|s| s.role == Role::Follower && s.term >= term && s.ready) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node {id} did not rejoin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_costs_one_election() {
    let mut cluster = Cluster::start(ProcessConfig::new(
        env!("CARGO_BIN_EXE_stockd"),
        "failover",
        3,
    ))
    .expect("cluster starts");
    let client = cluster.client(30_000).await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let first = term(&cluster).await;
    for round in 0..ROUNDS {
        let old = cluster
            .leader(Duration::from_secs(20))
            .await
            .expect("a leader");
        for _ in 0..10 {
            testkit::acknowledged_receipt(&client, "A", "wh")
                .await
                .expect("receipt acknowledged");
        }
        cluster.kill(old);
        let killed = Instant::now();
        testkit::acknowledged_receipt(&client, "A", "wh")
            .await
            .expect("receipt acknowledged");
        let new = cluster
            .leader(Duration::from_secs(20))
            .await
            .expect("a new leader");
        assert_ne!(new, old, "round {round}");
        eprintln!(
            "round {round}: node {old} killed, node {new} leads, a write went through {:?} later",
            killed.elapsed()
        );
        tokio::time::sleep(WATCH).await;
        let now = term(&cluster).await;
        cluster.spawn(old).expect("the old leader restarts");
        wait_rejoined(&cluster, old, now).await;
    }
    tokio::time::sleep(WATCH).await;
    let elections = term(&cluster).await - first;
    eprintln!("{elections} elections for {ROUNDS} leader kills");
    assert!(
        elections <= ELECTIONS_MAX,
        "{elections} elections for {ROUNDS} leader kills (at most {ELECTIONS_MAX} allowed); node logs in {}",
        cluster.root().display()
    );
    let errors = error_lines(&cluster);
    assert!(
        errors.is_empty(),
        "{} ERROR lines in the node logs during normal elections:\n{}",
        errors.len(),
        errors.join("\n")
    );
    client.close();
}

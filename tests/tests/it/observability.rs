//! What a node tells its operators (SPEC section 6, "Operations"): readiness means its state
//! is rebuilt AND a live leader is known (a load balancer must not send traffic to a node that
//! can answer nothing but `not_leader` or `unavailable`), and `/metrics` moves with traffic.

use std::time::{Duration, Instant};

use engine::Command;
use prometheus_parse::{Scrape, Value};
use protocol::NotReady;
use testkit::Cluster;

/// How long a readiness change may take to show: the leader lease of the test timings
/// (500 ms) plus an election, with room for a loaded machine.
const READINESS_WAIT: Duration = Duration::from_secs(10);

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
    assert_eq!(cluster.node(leader).readiness(), Ok(()));
    let alone = cluster.start_joining().await.expect("node starts");
    let status = cluster.node(alone).status();
    assert_eq!(status.leader, None, "{status:?}");
    assert!(!status.ready, "ready with no leader known: {status:?}");
    assert_eq!(status.not_ready, Some(NotReady::NoLeader));
    assert_eq!(cluster.node(alone).readiness(), Err(NotReady::NoLeader));
    // stockctl status prints the same truth, with the reason.
    let line = stockctl::cli::show::status(&cluster.addr(alone), &status);
    assert!(
        line.contains("ready=false (no live leader known)"),
        "{line}"
    );
    cluster.shutdown().await;
}

/// Polls node `id`'s readiness until it is `wanted`.
async fn wait_readiness(cluster: &Cluster, id: u64, wanted: Result<(), NotReady>) {
    let start = Instant::now();
    loop {
        let now = cluster.node(id).readiness();
        if now == wanted {
            return;
        }
        assert!(
            start.elapsed() < READINESS_WAIT,
            "node {id}: {now:?}, waited for {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A follower cut off from its leader still names it (openraft keeps the last leader it
/// heard), but it has not heard from it within the lease: not ready, until it hears again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_its_leader_is_not_ready_until_it_hears_from_one() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    wait_readiness(&cluster, follower, Ok(())).await;
    cluster.isolate(follower, true);
    wait_readiness(&cluster, follower, Err(NotReady::NoLeader)).await;
    cluster.isolate(follower, false);
    wait_readiness(&cluster, follower, Ok(())).await;
    cluster.shutdown().await;
}

fn scrape(cluster: &Cluster, id: u64) -> Scrape {
    let text = cluster.node(id).metrics().render();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the text parses")
}

/// The value of the series `name` whose labels include `labels` (a histogram's count), if
/// the node exposes it.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))?;
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(buckets) => buckets.last().map(|b| b.count),
        Value::Summary(_) => None,
    }
}

/// The sum over every node of a series (absent counts as 0).
fn total(cluster: &Cluster, name: &str, labels: &[(&str, &str)]) -> f64 {
    (1..=3)
        .map(|id| value(&scrape(cluster, id), name, labels).unwrap_or(0.0))
        .sum()
}

fn reserve(id: &str, qty: i64) -> Command {
    testkit::hold(id, "web", "TEE", "wh", qty, 600_000)
}

/// Traffic moves the request counters and latency histograms (by operation and outcome),
/// the writes per entry, the apply times, and the Raft indexes of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_when_traffic_flows() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    // The leader writes the admin token's grant on its own: counting starts after it.
    cluster
        .wait_admin_token(Duration::from_secs(10))
        .await
        .expect("the admin token's grant");
    let before = scrape(&cluster, leader);
    let applied_before = value(&before, "stockd_raft_applied_index", &[]).expect("applied");
    let writes_before = total(&cluster, "stockd_raft_entry_writes_sum", &[]);
    for command in [testkit::warehouse("wh"), testkit::count("TEE", "wh", 5)] {
        client
            .write(command)
            .await
            .expect("write")
            .outcome
            .expect("ok");
    }
    let mut last_index = 0;
    for (i, qty) in [1, 1, 1, 1, 1, 3].into_iter().enumerate() {
        let written = client
            .write(reserve(&format!("r{i}"), qty))
            .await
            .expect("write");
        last_index = written.log_index;
    }
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas agree");

    let ok = [
        ("transport", "quic"),
        ("operation", "reserve"),
        ("outcome", "ok"),
    ];
    let short = [("operation", "reserve"), ("outcome", "insufficient_stock")];
    assert_eq!(total(&cluster, "stockd_requests_total", &ok), 5.0);
    assert_eq!(total(&cluster, "stockd_request_duration_seconds", &ok), 5.0);
    assert_eq!(total(&cluster, "stockd_requests_total", &short), 1.0);
    // Eight writes in all, proposed by the leader in one or more entries.
    let writes = total(&cluster, "stockd_raft_entry_writes_sum", &[]) - writes_before;
    assert_eq!(writes, 8.0);
    assert!(total(&cluster, "stockd_raft_entry_writes", &[]) >= 1.0);

    let after = scrape(&cluster, leader);
    assert_eq!(
        value(&after, "stockd_raft_role", &[("role", "leader")]),
        Some(1.0)
    );
    assert_eq!(value(&after, "stockd_ready", &[]), Some(1.0));
    assert!(value(&after, "stockd_connections", &[("kind", "client")]) >= Some(1.0));
    assert!(value(&after, "stockd_raft_commit_index", &[]) >= Some(last_index as f64));
    for id in (1..=3).filter(|id| *id != leader) {
        let follower = id.to_string();
        let lag = value(
            &after,
            "stockd_raft_replication_lag_entries",
            &[("follower", &follower)],
        );
        assert!(lag.is_some(), "no lag series for node {id}");
    }
    for id in 1..=3 {
        let node = scrape(&cluster, id);
        let applied = value(&node, "stockd_raft_applied_index", &[]).expect("applied");
        assert!(
            applied >= last_index as f64 && applied > applied_before,
            "node {id}: {applied}"
        );
        let applies = value(&node, "stockd_apply_duration_seconds", &[]).expect("apply");
        assert!(applies >= 3.0, "node {id} applied {applies} entries");
    }
    client.close();
    cluster.shutdown().await;
}

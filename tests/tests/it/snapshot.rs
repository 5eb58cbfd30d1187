//! Snapshots off the apply path (SPEC section 4, "No stalls"): while every node's snapshot
//! encoder is held still after its freeze, writes, linearizable reads and reads on every node
//! go on; let go, each snapshot is of the frozen moment, a restarted node loads its own, and a
//! node that missed the purged log catches up from one. A correctness check, not a timing
//! test: a build that held the ledger would make the writes below wait forever.

use std::collections::BTreeMap;
use std::time::Duration;

use client::Client;
use engine::{Answer, ChannelId, Command, LocationId, Query, Reason, SkuId, Target};
use protocol::{Consistency, NodeStatus};
use server::node::RaftTimings;
use server::raft::log_store::Durability;
use testkit::{fast_timings, Cluster, ClusterConfig};

const SKUS: usize = 3;
/// Long enough for a loaded machine; the checks are of what happens, not of how fast.
const WAIT: Duration = Duration::from_secs(20);

fn receipt(sku: usize) -> Command {
    Command::Adjust {
        sku: SkuId::from(format!("S{sku}")),
        location: LocationId::from("wh"),
        delta: 1,
        reason: Reason::from("receipt"),
    }
}

/// `count` receipts, one entry each (sequential writes); returns the last one's log index.
async fn receipts(client: &Client, count: usize) -> u64 {
    let mut last = 0;
    for i in 0..count {
        let written = client.write(receipt(i % SKUS)).await.expect("write");
        written.outcome.expect("receipt ok");
        last = written.log_index;
    }
    last
}

async fn check_on_hand(client: &Client, consistency: Consistency, expected: i64) {
    let query = Query::Availability {
        skus: (0..SKUS).map(|k| SkuId::from(format!("S{k}"))).collect(),
        target: Target::Location(LocationId::from("wh")),
        channel: ChannelId::from("web"),
    };
    let answer = client.read(query, consistency).await.expect("read").answer;
    let Ok(Answer::Availability(rows)) = answer else {
        panic!("{answer:?}")
    };
    let on_hand: Vec<i64> = rows.iter().map(|r| r.rows[0].balance.on_hand).collect();
    assert_eq!(on_hand, vec![expected; SKUS], "{consistency:?}");
}

async fn node_client(cluster: &Cluster, id: u64) -> Client {
    let config = cluster
        .client_config(vec![cluster.addr(id)])
        .expect("CA certificate");
    Client::connect(config).await.expect("connect")
}

/// Snapshots only when a test asks: every automatic threshold out of reach.
fn timings() -> RaftTimings {
    RaftTimings {
        snapshot_every: u64::MAX,
        snapshot_log_bytes: u64::MAX,
        snapshot_interval_ms: u64::MAX,
        log_kept: 5,
        ..fast_timings()
    }
}

/// Lets the held builds go after [`WAIT`] unless stopped first: a build that blocked apply
/// would otherwise hang the test (the nodes' threads, blocked on the ledger, starve the
/// runtime's timers too) instead of failing it.
struct Watchdog {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(holds: Vec<std::sync::Arc<server::raft::network::Faults>>) -> Watchdog {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let fired = stopped.recv_timeout(WAIT).is_err();
            if fired {
                for faults in holds {
                    faults.hold_snapshots(false);
                }
            }
            fired
        });
        Watchdog { stop, thread }
    }

    /// Stops it; whether it had to let the builds go.
    fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.thread.join().expect("watchdog")
    }
}

fn building(status: &NodeStatus) -> Option<u64> {
    status.snapshots.building.map(|b| b.index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_go_on_while_every_snapshot_encoder_is_held() {
    let mut cluster = Cluster::start(ClusterConfig {
        durability: Durability::Replicated {
            flush_interval_ms: 20,
        },
        timings: timings(),
        ..ClusterConfig::new(3)
    })
    .await
    .expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let leader = cluster.wait_leader(WAIT).await.expect("a leader");
    let down = if leader == 3 { 2 } else { 3 };
    cluster.kill(down).await.expect("node stops");
    receipts(&client, 30).await;

    // Freeze every running node and hold its encoder.
    let up = cluster.running();
    let mut frozen = BTreeMap::new();
    for &id in &up {
        cluster.node(id).faults().hold_snapshots(true);
        assert!(cluster.node(id).trigger_snapshot().await, "raft runs");
        let status = cluster
            .wait_status(id, "building a snapshot", WAIT, |s| building(s).is_some())
            .await
            .expect("a build starts");
        frozen.insert(id, building(&status).expect("building"));
    }

    // Meanwhile everything goes on: writes, linearizable reads, and reads of every node at
    // the index of the last write.
    let meanwhile = async {
        let last = receipts(&client, 60).await;
        check_on_hand(&client, Consistency::Linearizable, 30).await;
        for &id in &up {
            let node = node_client(&cluster, id).await;
            check_on_hand(&node, Consistency::AtLeast(last), 30).await;
            node.close();
        }
        last
    };
    let watchdog = Watchdog::start(up.iter().map(|&id| cluster.node(id).faults()).collect());
    let last = meanwhile.await;
    assert!(
        !watchdog.stop(),
        "writes and reads waited for the held encoders"
    );
    for &id in &up {
        assert!(cluster.node(id).trigger_snapshot().await, "raft runs");
        let status = cluster.node(id).status();
        assert_eq!(building(&status), Some(frozen[&id]), "one build at a time");
        assert_eq!(
            (status.snapshot_index, status.snapshots.built_total),
            (0, 0)
        );
        assert!(frozen[&id] < last, "the build froze before the writes");
    }

    // Let go: each snapshot is of its frozen moment, not of the state it was written in.
    for &id in &up {
        cluster.node(id).faults().hold_snapshots(false);
    }
    for &id in &up {
        let status = cluster
            .wait_status(id, "done building", WAIT, |s| s.snapshots.built_total == 1)
            .await
            .expect("the build finishes");
        assert_eq!(status.snapshot_index, frozen[&id]);
        let built = status.snapshots.last.expect("a last build");
        assert_eq!(
            (built.index, status.snapshots.building),
            (frozen[&id], None)
        );
    }

    // A restarted node starts from its own snapshot file, then replays the log after it.
    let restarted = *up.iter().find(|&&id| id != leader).expect("a follower");
    cluster.kill(restarted).await.expect("node stops");
    cluster.restart(restarted).await.expect("node restarts");
    assert_eq!(
        cluster.node(restarted).status().snapshot_index,
        frozen[&restarted]
    );

    // The node that was down missed entries the others purged: it catches up from a snapshot.
    cluster.restart(down).await.expect("node restarts");
    let digest = cluster
        .wait_converged(WAIT)
        .await
        .expect("replicas converge");
    let status = cluster.node(down).status();
    assert!(
        status.snapshot_index > 0,
        "no snapshot installed: {status:?}"
    );
    assert_eq!(cluster.node(down).digest().digest, digest.digest);
    let node = node_client(&cluster, down).await;
    check_on_hand(&node, Consistency::Local, 30).await;
    node.close();
    client.close();
    cluster.shutdown().await;
}

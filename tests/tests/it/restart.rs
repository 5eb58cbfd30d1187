//! Restarts: a whole cluster in `fsync` mode recovers every acknowledged write; a node that was
//! down while the log was purged catches up from a snapshot; replicas end with equal digests.

use std::time::Duration;

use client::Client;
use engine::{Answer, ChannelId, Command, LocationId, Query, Reason, SkuId, Target};
use protocol::Consistency;
use server::node::RaftTimings;
use server::raft::log_store::Durability;
use testkit::{fast_timings, Cluster, ClusterConfig};

async fn define(client: &Client) {
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
}

fn receipt(sku: usize) -> Command {
    Command::Adjust {
        sku: SkuId::from(format!("S{sku}")),
        location: LocationId::from("wh"),
        delta: 1,
        reason: Reason::from("receipt"),
    }
}

async fn on_hand(client: &Client, skus: usize) -> Vec<i64> {
    let skus: Vec<SkuId> = (0..skus).map(|k| SkuId::from(format!("S{k}"))).collect();
    let query = Query::Availability {
        skus,
        target: Target::Location(LocationId::from("wh")),
        channel: ChannelId::from("web"),
    };
    let answer = client
        .read(query, Consistency::Linearizable)
        .await
        .expect("read")
        .answer;
    let Ok(Answer::Availability(rows)) = answer else {
        panic!("{answer:?}")
    };
    rows.iter()
        .map(|r| r.rows.first().map_or(0, |row| row.balance.on_hand))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_in_fsync_mode_recovers_every_acknowledged_write() {
    const SKUS: usize = 5;
    let mut cluster = Cluster::start(ClusterConfig {
        durability: Durability::Fsync,
        ..ClusterConfig::new(3)
    })
    .await
    .expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    define(&client).await;
    let mut acknowledged = [0i64; SKUS];
    let mut pending = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        pending.push(tokio::spawn(async move {
            (i % SKUS, client.write(receipt(i % SKUS)).await)
        }));
    }
    for task in pending {
        let (sku, result) = task.await.expect("task");
        if let Ok(written) = result {
            written.outcome.expect("receipt ok");
            acknowledged[sku] += 1;
        }
    }
    assert_eq!(
        acknowledged.iter().sum::<i64>(),
        200,
        "every write acknowledged while healthy"
    );
    client.close();
    for id in 1..=3 {
        cluster.kill(id).await.expect("node stops");
    }
    for id in 1..=3 {
        cluster.restart(id).await.expect("node restarts");
    }
    cluster
        .wait_leader(Duration::from_secs(15))
        .await
        .expect("a leader");
    let client = cluster.client().await.expect("client connects");
    assert_eq!(on_hand(&client, SKUS).await, acknowledged.to_vec());
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    client.close();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_during_purge_catches_up_from_a_snapshot() {
    let timings = RaftTimings {
        snapshot_every: 50,
        log_kept: 5,
        ..fast_timings()
    };
    let mut cluster = Cluster::start(ClusterConfig {
        durability: Durability::Replicated {
            flush_interval_ms: 20,
        },
        timings,
        ..ClusterConfig::new(3)
    })
    .await
    .expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    define(&client).await;
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let down = if leader == 3 { 2 } else { 3 };
    cluster.kill(down).await.expect("node stops");
    // One write per entry: sequential writes, each its own batch.
    for i in 0..300 {
        client
            .write(receipt(i % 3))
            .await
            .expect("write")
            .outcome
            .expect("ok");
    }
    // Each node snapshots on its own schedule (checked every 250 ms, staggered by node id).
    let up: Vec<u64> = cluster.running();
    let start = std::time::Instant::now();
    while up
        .iter()
        .any(|id| cluster.node(*id).status().snapshot_index == 0)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no snapshot on every running node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.restart(down).await.expect("node restarts");
    let digest = cluster
        .wait_converged(Duration::from_secs(20))
        .await
        .expect("replicas converge");
    let status = cluster.node(down).status();
    assert!(
        status.snapshot_index > 0,
        "the restarted node installed no snapshot: {status:?}"
    );
    assert_eq!(cluster.node(down).digest().digest, digest.digest);
    assert_eq!(on_hand(&client, 3).await, vec![100, 100, 100]);
    client.close();
    cluster.shutdown().await;
}

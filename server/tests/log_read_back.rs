//! A follower far behind catches up from the leader's log read back from disk: the leader
//! keeps only the newest `LOG_CACHE_BYTES_MAX` (16 MiB) of applied entries in memory, and a
//! follower that was down while more than that was written gets the older ones through the
//! log writer (`server::raft::log_store`, Memory). Snapshots are off for the test, so the
//! follower can only catch up from log entries; the three replicas must end identical. Two
//! more tests catch up a follower too slow to take a megabyte of entries within a heartbeat, or
//! a snapshot chunk within openraft's default chunk timeout (`Faults::set_replication_delay`).
//! In-process nodes ([`testkit::Cluster`]), so the leader's metrics can be read.

use std::time::{Duration, Instant};

use engine::{Command, LocationId, Reason, Request, SkuId};
use server::node::RaftTimings;
use server::raft::log_store::LOG_CACHE_BYTES_MAX;
use testkit::{fast_timings, Cluster, ClusterConfig};

/// Log bytes written while the follower is down: more than the cache, so that the entries it
/// lacks start well before the leader's first entry in memory.
const WRITTEN_BYTES_MIN: u64 = LOG_CACHE_BYTES_MAX + (LOG_CACHE_BYTES_MAX / 2);
/// Writes per `write_batch` call (one frame of up to 1,024 writes is one log entry).
const WRITES_PER_CALL: usize = 8 * 1_024;
/// SKUs written to (the ledger stays small: the bytes are in the log, not the state).
const SKUS: usize = 16;

/// An id of `ID_BYTES_MAX` (64) bytes: the largest writes, so fewer of them fill the log.
fn long_id(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n}-{}", "x".repeat(64))[..64].to_owned()
}

/// A receipt of one unit of SKU `n % SKUS` at the long-named location, with a long reason.
fn receipt(location: &str, n: usize) -> Request {
    Request {
        request_id: client::api::new_request_id(),
        command: Command::Adjust {
            sku: SkuId::from(long_id("sku", n % SKUS).as_str()),
            location: LocationId::from(location),
            delta: 1,
            reason: Reason::from(long_id("receipt", 0).as_str()),
        },
    }
}

/// The value of gauge `name` in node `id`'s metrics.
fn gauge(cluster: &Cluster, id: u64, name: &str) -> u64 {
    cluster
        .metric(id, name)
        .unwrap_or_else(|| panic!("node {id} exposes no {name}")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_catches_up_from_the_log_read_back_from_disk() {
    let started = Instant::now();
    // No snapshot during the test (the follower would install one instead of the log).
    let (mut cluster, client, leader) =
        started_with_location(RaftTimings::default().log_kept).await;
    let location = long_id("wh", 0);
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge before the stop");
    let down = if leader == 3 { 2 } else { 3 };
    cluster.kill(down).await.expect("node stops");
    let before = gauge(&cluster, leader, "stockd_raft_log_bytes");

    let mut written = 0usize;
    while gauge(&cluster, leader, "stockd_raft_log_bytes") - before < WRITTEN_BYTES_MIN {
        let requests = (written..written + WRITES_PER_CALL)
            .map(|n| receipt(&location, n))
            .collect();
        for result in client.write_batch(requests).await {
            result.expect("write").outcome.expect("receipt ok");
        }
        written += WRITES_PER_CALL;
    }
    let write_time = started.elapsed();
    assert_eq!(
        cluster.wait_leader(Duration::from_secs(1)).await.ok(),
        Some(leader),
        "the leader changed while the follower was down"
    );
    let log_bytes = gauge(&cluster, leader, "stockd_raft_log_bytes");
    let memory_bytes = gauge(&cluster, leader, "stockd_raft_log_memory_bytes");
    // The entries the stopped follower lacks (at least those written since `before`) take more
    // bytes than the leader keeps in memory, which are its newest: the oldest of them are on
    // its disk only. Entries only leave memory (nothing is written until the follower is back)
    // and no node snapshots (checked below), so the follower's catch-up must read them back.
    assert!(
        log_bytes - before > memory_bytes,
        "the follower's missing entries are all in the leader's memory: {} bytes written \
         while it was down, {memory_bytes} in memory, {log_bytes} in the log",
        log_bytes - before
    );

    cluster.restart(down).await.expect("node restarts");
    let digest = cluster
        .wait_converged(Duration::from_secs(60))
        .await
        .expect("replicas converge");
    for id in 1..=3 {
        let status = cluster.node(id).status();
        assert_eq!(
            status.snapshot_index, 0,
            "node {id} snapshotted, so the follower may have caught up from a snapshot: {status:?}"
        );
        assert_eq!(cluster.node(id).digest().digest, digest.digest, "node {id}");
    }
    let on_hand = testkit::on_hand(&client, &long_id("sku", 0), &location)
        .await
        .expect("on hand");
    assert_eq!(
        on_hand,
        (written / SKUS) as i64,
        "every receipt applied once"
    );
    eprintln!(
        "{written} writes, {} MiB of log while node {down} was down ({} MiB in the leader's \
         memory) in {write_time:?}; converged after {:?}",
        (log_bytes - before) >> 20,
        memory_bytes >> 20,
        started.elapsed()
    );
    client.close();
    cluster.shutdown().await;
}

/// Writes per `write_batch` call in the slow-follower test: one frame of up to 1,024 writes
/// (one log entry of ~215 KB with these long ids).
const SLOW_WRITES_PER_CALL: usize = 1_024;
/// Calls while the follower is cut off: ~20 entries, ~4 MiB.
const SLOW_CALLS: usize = 20;
/// The slow follower's wait per KiB of AppendEntries received, µs: an AppendEntries of 1 MiB
/// (four of these entries) then waits ~60 ms, more than the 50 ms heartbeat interval openraft
/// gives it, and one entry ~13 ms.
const SLOW_US_PER_KIB: u64 = 60;

/// A started cluster (fast timings, snapshots only when asked, `log_kept` entries kept behind
/// one) with the long-named location defined and a leader: (cluster, client, leader).
async fn started_with_location(log_kept: u64) -> (Cluster, client::Client, u64) {
    let timings = RaftTimings {
        snapshot_every: u64::MAX,
        snapshot_log_bytes: u64::MAX,
        snapshot_interval_ms: u64::MAX,
        log_kept,
        ..fast_timings()
    };
    let cluster = Cluster::start(ClusterConfig {
        timings,
        ..ClusterConfig::new(3)
    })
    .await
    .expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let location = long_id("wh", 0);
    let define = testkit::warehouse(&location);
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    (cluster, client, leader)
}

/// A started cluster (fast timings, snapshots only when asked, `log_kept` entries kept behind
/// one) with the long-named location defined and one follower cut off while `SLOW_CALLS`
/// frames of receipts were written: (cluster, client, leader, that follower).
async fn a_follower_behind(log_kept: u64) -> (Cluster, client::Client, u64, u64) {
    let (cluster, client, leader) = started_with_location(log_kept).await;
    let location = long_id("wh", 0);
    let slow = if leader == 3 { 2 } else { 3 };
    cluster.isolate(slow, true);
    for call in 0..SLOW_CALLS {
        let requests = (0..SLOW_WRITES_PER_CALL)
            .map(|n| receipt(&location, call * SLOW_WRITES_PER_CALL + n))
            .collect();
        for result in client.write_batch(requests).await {
            result.expect("write").outcome.expect("receipt ok");
        }
    }
    (cluster, client, leader, slow)
}

/// Makes follower `slow` wait `us_per_kib` µs per KiB of replication it receives, reconnects it,
/// and waits until it holds the same ledger as the others.
async fn reconnect_slowed(cluster: &Cluster, slow: u64, us_per_kib: u64) {
    cluster
        .node(slow)
        .faults()
        .set_replication_delay(us_per_kib);
    cluster.isolate(slow, false);
    let digest = cluster
        .wait_converged(Duration::from_secs(60))
        .await
        .expect("the slow follower catches up");
    assert_eq!(cluster.node(slow).digest().digest, digest.digest);
}

/// A follower that needs longer than a heartbeat interval for a megabyte of entries still
/// catches up: the leader sends it fewer entries per AppendEntries after openraft dropped one
/// unanswered (`server::raft::network`, `AppendBudget`). Without that, openraft resends the
/// same megabyte every time and the follower never gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_too_slow_for_a_megabyte_per_heartbeat_catches_up() {
    let (cluster, client, leader, slow) = a_follower_behind(RaftTimings::default().log_kept).await;
    reconnect_slowed(&cluster, slow, SLOW_US_PER_KIB).await;
    assert_eq!(
        cluster.node(slow).status().snapshot_index,
        0,
        "caught up from the log"
    );
    let peer = slow.to_string();
    let dropped = cluster
        .metric_with(
            leader,
            "stockd_raft_appends_dropped_total",
            &[("follower", &peer)],
        )
        .expect("the leader counts the dropped AppendEntries");
    assert!(
        dropped >= 1.0,
        "no AppendEntries to node {slow} was dropped: {dropped}"
    );
    client.close();
    cluster.shutdown().await;
}

/// The slow follower's wait per KiB in the snapshot test, µs: a 1 MiB snapshot chunk then waits
/// ~256 ms, more than openraft's default 200 ms for one chunk.
const SLOW_SNAPSHOT_US_PER_KIB: u64 = 250;

/// A follower that needs longer than openraft's default chunk timeout for a snapshot chunk
/// still installs the snapshot (`server::raft::consensus::SNAPSHOT_CHUNK_TIMEOUT_MS`). Without
/// it each chunk times out, is sent again, and after five failures the transfer restarts from
/// its first byte, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_too_slow_for_a_snapshot_chunk_in_200_ms_installs_the_snapshot() {
    // The receipts' remembered request ids make the snapshot a few MiB: several full chunks.
    let (cluster, client, leader, slow) = a_follower_behind(5).await;
    assert!(cluster.node(leader).trigger_snapshot().await, "raft runs");
    cluster
        .wait_status(leader, "a snapshot built", Duration::from_secs(30), |s| {
            s.snapshots.built_total == 1
        })
        .await
        .expect("the leader snapshots");
    reconnect_slowed(&cluster, slow, SLOW_SNAPSHOT_US_PER_KIB).await;
    let status = cluster.node(slow).status();
    assert!(
        status.snapshot_index > 0,
        "no snapshot installed: {status:?}"
    );
    client.close();
    cluster.shutdown().await;
}

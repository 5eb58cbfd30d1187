//! A full disk is survivable: a node whose data directory fills stops acknowledging (not
//! ready), the cluster goes on with the others, and once space is freed the node resumes by
//! itself and catches up, losing and duplicating nothing. A LEADER whose disk fills stops
//! leading: the others elect a new leader and writes are acknowledged again within
//! [`WRITES_RESUME_WITHIN`], while the full node never says it leads. The data directory is a
//! small tmpfs the test mounts; where mounting is not allowed the test says so and does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client::Client;
use testkit::{ProcessCluster, ProcessConfig, TempDir};

/// A tmpfs mounted for the test, unmounted (lazily: a killed node may still hold it) on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file; returns it (delete it to free the space).
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let block = vec![0xA5u8; 64 << 10];
    while file.write_all(&block).is_ok() {}
    // Bytes below one block may still fit: take them too.
    while file.write_all(&[0xA5]).is_ok() {}
    path
}

/// Longest a write may take while a node's disk is full, the leader's included: a leader that
/// cannot write its log stops heartbeats at once, the others stand after an election timeout
/// plus its lease (at most 1.6 s with the default timings), and the client retries with
/// backoff. Generous for a loaded test machine; a leader that clings on misses it forever.
const WRITES_RESUME_WITHIN: Duration = Duration::from_secs(10);

/// A receipt that must be acknowledged within [`WRITES_RESUME_WITHIN`].
async fn timed_receipt(client: &Client, what: &str) {
    let start = Instant::now();
    let acked = tokio::time::timeout(
        WRITES_RESUME_WITHIN,
        testkit::acknowledged_receipt(client, "A", "wh"),
    )
    .await;
    match acked {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("{what}: the receipt failed: {e}"),
        Err(_) => panic!(
            "{what}: a write was not acknowledged within {WRITES_RESUME_WITHIN:?} (started {:?} ago)",
            start.elapsed()
        ),
    }
}

async fn full_disk(test: &str, victim_is_leader: bool) {
    // The mount point goes too, after the unmount (it is dropped last).
    let root = TempDir::new(&format!("{test}-mnt")).expect("mount point");
    let mount = match Mount::tmpfs(root.path(), "8m") {
        Ok(mount) => mount,
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: cannot mount a tmpfs here ({e}); run as root to test a full disk"
            );
            return;
        }
    };
    let config = ProcessConfig::new(env!("CARGO_BIN_EXE_stockd"), test, 3);
    let mut cluster =
        ProcessCluster::start(config.data_dir(2, root.path().join("n2"))).expect("cluster starts");
    let client = cluster.client(60_000).await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let mut acked = 0u64;
    for _ in 0..20 {
        testkit::acknowledged_receipt(&client, "A", "wh")
            .await
            .expect("receipt acknowledged");
        acked += 1;
    }
    if victim_is_leader {
        cluster.make_leader(2).await.expect("node 2 leads");
    }
    let filler = fill(root.path());
    // Writes go on (node 2 leads no more, or never did) until node 2, whose log can no longer
    // grow, says it is not ready (the first writes may still fit in a page it holds).
    let start = Instant::now();
    loop {
        for _ in 0..20 {
            timed_receipt(&client, "node 2's disk is full").await;
            acked += 1;
        }
        let full = cluster
            .status(2)
            .await
            .is_some_and(|s| !s.ready && s.health.storage_error.is_some());
        if full {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node 2 still ready with a full disk"
        );
    }
    // Still full: the cluster writes on without it, and it says it leads nothing.
    for _ in 0..10 {
        timed_receipt(&client, "node 2's disk is still full").await;
        acked += 1;
    }
    let status = cluster.status(2).await.expect("node 2 answers status");
    assert_ne!(
        status.role,
        protocol::Role::Leader,
        "node 2 cannot write its log but says it leads (term {})",
        status.term
    );
    std::fs::remove_file(&filler).expect("free the space");
    let ready_again = |s: &protocol::NodeStatus| {
        s.ready && s.health.storage_error.is_none() && s.health.storage_errors_total > 0
    };
    let within = Duration::from_secs(30);
    cluster
        .wait_status(2, "ready again once space is freed", within, ready_again)
        .await
        .expect("node 2 recovers");
    for _ in 0..10 {
        testkit::acknowledged_receipt(&client, "A", "wh")
            .await
            .expect("receipt acknowledged");
        acked += 1;
    }
    cluster
        .wait_converged(Duration::from_secs(30))
        .await
        .expect("replicas converge");
    let on_hand = testkit::on_hand(&client, "A", "wh").await.expect("on hand");
    assert_eq!(
        on_hand, acked as i64,
        "every acknowledged write once, on the node that was full"
    );
    client.close();
    drop(cluster);
    drop(mount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_full_disk_resumes_by_itself() {
    full_disk("disk-full-follower", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_a_full_disk_steps_aside_and_resumes_by_itself() {
    full_disk("disk-full-leader", true).await;
}

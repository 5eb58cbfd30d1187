//! Real processes, real crashes: three `stockd` processes on loopback; a follower is killed
//! with SIGKILL (no QUIC close, no log flush) and restarted. It must rejoin within seconds with
//! every acknowledged write, and without election storms (found by the break-it pass: the
//! leader kept using the dead node's connection until its 30 s idle timeout, and the restarted
//! node, hearing nothing, pushed the term up with elections meanwhile).

mod support;

use std::time::{Duration, Instant};

use client::{Client, ClientConfig};
use engine::{Command as Write, LocationDef, LocationId, LocationKind, Reason, SkuId};
use pki::Trust;
use protocol::Role;
use support::{client, Cluster};

fn receipt() -> Write {
    Write::Adjust {
        sku: SkuId::from("A"),
        location: LocationId::from("wh"),
        delta: 1,
        reason: Reason::from("receipt"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_rejoins_within_seconds_without_election_storms() {
    let mut cluster = Cluster::start("crash", 3, &[]);
    let all: Vec<String> = (1..=3).map(|i| cluster.addr(i)).collect();
    let client = client(all.clone(), &cluster.ca(), 20_000).await;
    let define = Write::DefineLocation(LocationDef {
        location: LocationId::from("wh"),
        kind: LocationKind::Warehouse,
        pickup: false,
        coordinates: None,
        channels: None,
    });
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    for _ in 0..20 {
        client
            .write(receipt())
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
        .map(|s| s.node.id as usize)
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
            .write(receipt())
            .await
            .expect("write while a follower is down")
            .outcome
            .expect("ok");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.spawn(victim);
    let restarted = Instant::now();
    let target = client
        .status_of(&cluster.addr(leader))
        .await
        .expect("leader status")
        .applied_index;
    loop {
        // A fresh connection each time: this measures the node, not the client's pool.
        let ca = pki::load_certs(&cluster.ca()).expect("CA");
        let mut config = ClientConfig::new(vec![cluster.addr(victim)], Trust::Ca(ca));
        config.timeout_ms = 500;
        config.connect_timeout_ms = 500;
        if let Ok(probe) = Client::connect(config).await {
            let status = probe.status_of(&cluster.addr(victim)).await;
            probe.close();
            if status.is_ok_and(|s| s.applied_index >= target && s.ready) {
                break;
            }
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "node {victim} did not rejoin within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let converged = Instant::now();
    loop {
        let mut digests = Vec::new();
        for addr in &all {
            let d = client.digest_of(addr).await.expect("digest");
            digests.push((d.applied_index, d.digest));
        }
        if digests.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            converged.elapsed() < Duration::from_secs(10),
            "replicas differ: {digests:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close();
}

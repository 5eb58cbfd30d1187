//! Leader kill under load (SPEC section 4: linearizable writes, exactly-once, no oversell).
//!
//! Workers keep reserving single units of a few SKUs with little stock while the leader is
//! stopped. Afterwards: the survivors agree byte for byte; every acknowledged hold is there; no
//! retried request was applied twice (no `already_exists` answer to a retry, and reserved units
//! equal the holds acknowledged plus those whose answer was lost but which did apply); no SKU is
//! oversold (exactly min(stock, demand) granted); and the new leader served writes within a
//! bounded time, which the test prints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::Client;
use engine::{
    Answer, ChannelId, Code, Command, Line, LocationId, Query, Reason, ReservationId, SkuId, Target,
};
use protocol::Consistency;
use testkit::Cluster;

const SKUS: usize = 4;
const STOCK: i64 = 60;

#[derive(Default)]
struct Log {
    /// Reservation ids acknowledged `ok`.
    granted: Vec<(usize, String)>,
    /// Reservation ids rejected `insufficient_stock`.
    refused: Vec<usize>,
    /// Reservation ids whose outcome never arrived (the client gave up).
    unknown: Vec<(usize, String)>,
    /// Any other code (must stay empty).
    unexpected: Vec<String>,
    /// When the first write after the kill was acknowledged.
    first_ack_after_kill: Option<Instant>,
}

async fn setup(client: &Client) {
    let location = testkit::warehouse("wh");
    client
        .write(location)
        .await
        .expect("define location")
        .outcome
        .expect("ok");
    for k in 0..SKUS {
        let count = Command::SetOnHand {
            sku: SkuId::from(format!("S{k}")),
            location: LocationId::from("wh"),
            qty: STOCK,
            reason: Reason::from("count"),
            expected: None,
        };
        client
            .write(count)
            .await
            .expect("count")
            .outcome
            .expect("ok");
    }
}

async fn worker(
    client: Client,
    w: usize,
    stop: Arc<AtomicBool>,
    killed: Arc<Mutex<Option<Instant>>>,
    log: Arc<Mutex<Log>>,
) {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let sku = (w + i) % SKUS;
        let id = format!("w{w}-{i}");
        let command = Command::Reserve {
            reservation: ReservationId::from(id.clone()),
            channel: ChannelId::from("web"),
            lines: vec![Line {
                sku: SkuId::from(format!("S{sku}")),
                target: Target::Location(LocationId::from("wh")),
                qty: 1,
            }],
            ttl_ms: 3_600_000,
        };
        let result = client.write(command).await;
        let mut log = log.lock().expect("log");
        match result {
            Ok(written) => {
                if killed.lock().expect("kill time").is_some() && log.first_ack_after_kill.is_none()
                {
                    log.first_ack_after_kill = Some(Instant::now());
                }
                match written.outcome {
                    Ok(_) => log.granted.push((sku, id)),
                    Err(r) if r.code() == Code::InsufficientStock => log.refused.push(sku),
                    Err(r) => log.unexpected.push(format!("{id}: {r}")),
                }
            }
            Err(_) => log.unknown.push((sku, id)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_under_load_loses_nothing_and_applies_nothing_twice() {
    let mut cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    setup(&client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(Mutex::new(None));
    let log = Arc::new(Mutex::new(Log::default()));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            tokio::spawn(worker(
                client.clone(),
                w,
                stop.clone(),
                killed.clone(),
                log.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let kill_at = Instant::now();
    *killed.lock().expect("kill time") = Some(kill_at);
    cluster.kill(leader).await.expect("node stops");
    let new_leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    let elected_after = kill_at.elapsed();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let log = std::mem::take(&mut *log.lock().expect("log"));
    let served_after = log.first_ack_after_kill.map(|t| t.duration_since(kill_at));
    println!(
        "leader {leader} killed; node {new_leader} elected after {elected_after:?}; first write acknowledged after the kill: {served_after:?}; granted {} refused {} unknown {}",
        log.granted.len(),
        log.refused.len(),
        log.unknown.len()
    );
    assert!(
        log.unexpected.is_empty(),
        "unexpected outcomes (a retry applied twice?): {:?}",
        log.unexpected
    );
    let served_after = served_after.expect("the new leader served writes");
    assert!(
        served_after < Duration::from_secs(10),
        "writes resumed only after {served_after:?}"
    );
    assert!(!log.granted.is_empty());

    let digest = cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    assert_eq!(digest.digest.len(), 64);

    // Every acknowledged hold is on every survivor; unknown ones are there or not, never twice.
    for id in cluster.running() {
        let node_client = Client::connect(
            cluster
                .client_config(vec![cluster.addr(id)])
                .expect("CA certificate"),
        )
        .await
        .expect("connect");
        let mut reserved_expected = [0i64; SKUS];
        for (sku, rid) in &log.granted {
            let answer = node_client
                .read(
                    Query::Reservation(ReservationId::from(rid.clone())),
                    Consistency::Local,
                )
                .await
                .expect("read")
                .answer;
            assert!(
                matches!(answer, Ok(Answer::Reservation(_))),
                "node {id} lost acknowledged hold {rid}: {answer:?}"
            );
            reserved_expected[*sku] += 1;
        }
        for (sku, rid) in &log.unknown {
            let answer = node_client
                .read(
                    Query::Reservation(ReservationId::from(rid.clone())),
                    Consistency::Local,
                )
                .await
                .expect("read")
                .answer;
            if answer.is_ok() {
                reserved_expected[*sku] += 1;
            }
        }
        let skus: Vec<SkuId> = (0..SKUS).map(|k| SkuId::from(format!("S{k}"))).collect();
        let answer = node_client
            .read(
                Query::Availability {
                    skus,
                    target: Target::Location(LocationId::from("wh")),
                    channel: ChannelId::from("web"),
                },
                Consistency::Local,
            )
            .await
            .expect("read")
            .answer;
        let Ok(Answer::Availability(rows)) = answer else {
            panic!("{answer:?}")
        };
        for (k, row) in rows.iter().enumerate() {
            let balance = row.rows[0].balance;
            assert_eq!(
                balance.reserved, reserved_expected[k],
                "node {id} S{k}: reserved vs holds granted"
            );
            assert!(
                balance.reserved <= STOCK,
                "S{k} oversold: {}",
                balance.reserved
            );
            if log.refused.contains(&k) {
                assert_eq!(
                    balance.reserved, STOCK,
                    "S{k}: refused while stock was left"
                );
            }
        }
        node_client.close();
    }
    client.close();
    cluster.shutdown().await;
}

//! A node restarted alone after the whole cluster crashed serves no partial ledger: it is not
//! ready until it has replayed everything its log holds up to the committed index it recorded
//! with its writes, and it never answers from an index lower than one it answered before the
//! crash (SPEC section 4). Real processes, SIGKILL ~50 ms after the last acknowledged write.

use std::time::{Duration, Instant};

use engine::{ChannelId, Command as Write, Line, LocationId, ReservationId, SkuId, Target};
use protocol::{NotReady, Role};
use testkit::{ProcessCluster, ProcessConfig};

/// Holds acknowledged before the crash.
const HOLDS: u64 = 30;
/// How long the restarted node is watched, ms.
const WATCH_MS: u64 = 4_000;

async fn thirty_holds(cluster: &ProcessCluster) {
    let client = cluster.client(20_000).await.expect("client connects");
    let define = testkit::warehouse("wh");
    client
        .write(define)
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let stock = testkit::count("A", "wh", 1_000);
    client
        .write(stock)
        .await
        .expect("stock")
        .outcome
        .expect("ok");
    for n in 0..HOLDS {
        let reserve = Write::Reserve {
            reservation: ReservationId::from(format!("r-{n}").as_str()),
            channel: ChannelId::from("web"),
            lines: vec![Line {
                sku: SkuId::from("A"),
                target: Target::Location(LocationId::from("wh")),
                qty: 1,
            }],
            ttl_ms: 3_600_000,
        };
        client
            .write(reserve)
            .await
            .expect("reserve")
            .outcome
            .expect("ok");
    }
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_alone_serves_no_partial_ledger() {
    let mut cluster = ProcessCluster::start(ProcessConfig::new(
        env!("CARGO_BIN_EXE_stockd"),
        "restart-alone",
        3,
    ))
    .expect("cluster starts");
    let leader = cluster
        .leader(Duration::from_secs(20))
        .await
        .expect("a leader");
    thirty_holds(&cluster).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // What each node has answered: it must never answer from less after the crash.
    let mut answered = [0u64; 3];
    for id in 1..=3 {
        answered[id as usize - 1] = cluster.status(id).await.map_or(0, |s| s.applied_index);
    }
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id).expect("node starts");
        let start = Instant::now();
        let mut ready_seen = false;
        while start.elapsed() < Duration::from_millis(WATCH_MS) {
            if let Some(status) = cluster.status(id).await {
                assert_ne!(status.role, Role::Leader, "node {id} leads alone");
                // Alone, it knows no leader: "rebuilt" is all readiness can mean here.
                let rebuilt = matches!(status.not_ready, None | Some(NotReady::NoLeader));
                if rebuilt {
                    ready_seen = true;
                    assert!(
                        status.applied_index >= answered[id as usize - 1],
                        "node {id} ready at index {} but it had answered from index {}",
                        status.applied_index,
                        answered[id as usize - 1]
                    );
                    if id == leader {
                        assert_eq!(
                            status.ledger.live_reservations, HOLDS,
                            "the former leader (node {id}) serves a partial ledger"
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            ready_seen,
            "node {id} never became ready after replaying its log"
        );
        cluster.kill(id);
    }
}

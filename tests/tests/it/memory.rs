//! A node over its memory budget (`stockd --memory-limit-mib`, `server::memory`) answers
//! `busy` to new demand (reservations, direct orders) and serves everything else, instead of growing until
//! the kernel kills it (SPEC section 4: overload sheds load).

use std::time::Duration;

use client::ClientError;
use engine::{ChannelId, Command, LocationId, Query, SkuId, Target};
use protocol::{Consistency, ServerError};
use testkit::{Cluster, ClusterConfig};

fn reserve(id: &str) -> Command {
    testkit::hold(id, "web", "TEE", "wh", 1, 600_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_over_its_memory_budget_refuses_new_holds_and_serves_the_rest() {
    // 1 MiB is below any process's resident size: every node is over its budget from the start.
    let cluster = Cluster::start(ClusterConfig {
        memory_limit_mib: Some(1),
        ..ClusterConfig::new(3)
    })
    .await
    .expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    // Stock writes and definitions go on: the stock a full node knows stays true.
    for command in [testkit::warehouse("wh"), testkit::count("TEE", "wh", 5)] {
        let written = client.write(command).await.expect("write");
        written.outcome.expect("ok");
    }
    match client.write(reserve("r1")).await {
        Err(ClientError::GaveUp {
            last: client::retry::Failure::Server(ServerError::Busy),
            ..
        }) => {}
        other => panic!("a new hold over the budget must be refused busy: {other:?}"),
    }
    // Nothing was held, and reads are served.
    let read = client
        .read(
            Query::Availability {
                skus: vec![SkuId::from("TEE")],
                target: Target::Location(LocationId::from("wh")),
                channel: ChannelId::from("web"),
            },
            Consistency::Linearizable,
        )
        .await
        .expect("read");
    let text = format!("{read:?}");
    assert!(text.contains("reserved: 0"), "{text}");
    let metrics = cluster.node(leader).metrics().render();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
            .to_owned()
    };
    assert!(line("stockd_memory_limit_bytes").ends_with(" 1048576"));
    let shed: f64 = line("stockd_memory_shed_total")
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(shed >= 1.0, "refusals counted: {shed}");
    client.close();
    cluster.shutdown().await;
}

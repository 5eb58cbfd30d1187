//! The retention settings on a live 3-node cluster: replicated state, changed only by the
//! `set_retention` write (admin only), read back the same from every node, and enforced on
//! every node: finished holds beyond a lowered count are gone everywhere. Over QUIC (client
//! library) and HTTP (`GET`/`PUT /v1/retention`, through a follower).

use std::time::Duration;

use client::{Client, ClientError};
use engine::{Answer, Command, Config, Query, Rejection, ReservationId};
use pki::{ClientCertRequest, ClientRole};
use protocol::ServerError;
use serde_json::{json, Value};
use testkit::Cluster;

const HOLDS: usize = 10;

fn reserve(id: &str) -> Command {
    testkit::hold(id, "web", "A", "wh", 1, 600_000)
}

/// Holds h0..h9, each made and released in turn: h0 finished first.
async fn finished_holds(client: &Client) {
    for command in [testkit::warehouse("wh"), testkit::count("A", "wh", 100)] {
        client
            .write(command)
            .await
            .expect("write")
            .outcome
            .expect("ok");
    }
    for i in 0..HOLDS {
        let id = format!("h{i}");
        client
            .write(reserve(&id))
            .await
            .expect("reserve")
            .outcome
            .expect("held");
        let release = Command::Release {
            reservation: ReservationId::from(id.as_str()),
        };
        client
            .write(release)
            .await
            .expect("release")
            .outcome
            .expect("released");
    }
}

/// A client of `cluster` presenting a new `ops` identity: every ledger write but credentials
/// and retention.
async fn ops_client(cluster: &Cluster) -> Client {
    let request = ClientCertRequest {
        name: "operator".to_owned(),
        role: ClientRole::Ops,
        channels: Vec::new(),
        locations: Vec::new(),
        days: 2,
    };
    let dir = cluster.root().join("clients");
    let issued = pki::issue_client(&cluster.ca_dir(), &dir, &request).expect("issued");
    let identity = pki::load_client_identity(&issued.cert, &issued.key).expect("identity");
    let mut config = cluster.client_config(cluster.addrs()).expect("config");
    config.deadline_ms = 5_000;
    Client::connect(config.with_identity(identity))
        .await
        .expect("connects")
}

/// Which of h0..h9 node `addr` still finds, as its own applied state shows them.
async fn holds_found(client: &Client, addr: &str) -> Vec<bool> {
    let mut found = Vec::new();
    for i in 0..HOLDS {
        let query = Query::Reservation(ReservationId::from(format!("h{i}").as_str()));
        let read = client.read_at(addr, query).await.expect("read");
        found.push(match read.answer {
            Ok(Answer::Reservation(_)) => true,
            Err(Rejection::NotFound { .. }) => false,
            other => panic!("h{i} at {addr}: {other:?}"),
        });
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_set_by_an_admin_and_enforced_on_every_replica() {
    let cluster = Cluster::replicated(3).await.expect("cluster");
    let client = cluster.client().await.expect("client connects");
    finished_holds(&client).await;
    // An ops principal may not change it: forbidden, and nothing changes.
    let ops = ops_client(&cluster).await;
    let lowered = Config {
        retired_entries: 3,
        ..Config::default()
    };
    match ops.set_retention(lowered).await {
        Err(ClientError::Server(ServerError::Forbidden { .. })) => {}
        other => panic!("ops must be refused: {other:?}"),
    }
    assert_eq!(
        ops.retention().await.expect("ops reads it"),
        Config::default()
    );
    // Out of range: rejected by the ledger, nothing changes.
    let written = client
        .set_retention(Config {
            retired_entries: 0,
            ..Config::default()
        })
        .await
        .expect("answered");
    let rejection = written.outcome.expect_err("retired_entries 0 is invalid");
    assert!(
        rejection.to_string().contains("retired_entries"),
        "{rejection}"
    );
    assert_eq!(client.retention().await.expect("read"), Config::default());
    // The admin lowers it: every replica applies it and drops the oldest finished holds.
    client
        .set_retention(lowered)
        .await
        .expect("answered")
        .outcome
        .expect("set");
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    let kept = [
        false, false, false, false, false, false, false, true, true, true,
    ];
    for addr in cluster.addrs() {
        assert_eq!(client.retention_at(&addr).await.expect("read"), lowered);
        assert_eq!(holds_found(&client, &addr).await, kept, "at {addr}");
    }
    http_reads_and_replaces_it(&cluster, lowered).await;
    ops.close();
    client.close();
    cluster.shutdown().await;
}

/// `GET /v1/retention` on every node answers `lowered`; `PUT` through a follower replaces it
/// (forwarded to the leader), needs an idempotency key, and refuses a value out of range.
async fn http_reads_and_replaces_it(cluster: &Cluster, lowered: Config) {
    let token = cluster.admin_token().expect("admin token");
    let http = reqwest::Client::new();
    let url = |id: u64| format!("{}/v1/retention", cluster.http_url(id));
    let get = |id: u64| {
        let request = http
            .get(format!("{}?consistency=local", url(id)))
            .bearer_auth(&token);
        async move {
            let response = request.send().await.expect("answers");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // The admin token's grant reaches the ledger once a leader proposed it.
    for id in 1..=3 {
        let mut answer = get(id).await;
        for _ in 0..100 {
            if answer.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = get(id).await;
        }
        assert_eq!(answer.0, 200, "node {id}: {}", answer.1);
        assert_eq!(answer.1["retired_entries"], lowered.retired_entries as u64);
        assert_eq!(answer.1["dedup_window_ms"], lowered.dedup_window_ms);
    }
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let mut body = json!({"dedup_window_ms": 600_000, "dedup_entries": 1_000_000,
        "feed_events": 50_000, "retired_ms": 86_400_000, "retired_entries": 2});
    let put = |body: &Value, key: Option<String>| {
        let mut request = http.put(url(follower)).bearer_auth(&token).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        async move {
            let response = request.send().await.expect("answers");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let key = || Some(format!("{:032x}", client::new_request_id().0));
    assert_eq!(put(&body, None).await.0, 400, "a write needs a key");
    let (status, answer) = put(&body, key()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = get(follower).await;
    assert_eq!(
        (status, &answer["retired_entries"]),
        (200, &json!(2)),
        "{answer}"
    );
    assert_eq!(answer["feed_events"], 50_000);
    body["feed_events"] = json!(1);
    let (status, problem) = put(&body, key()).await;
    assert_eq!(
        (status, &problem["code"]),
        (422, &json!("invalid")),
        "{problem}"
    );
}

//! The client over real QUIC against mock nodes on 127.0.0.1:0: scripted nodes (a follower
//! that redirects, a leader that is busy, then times out, then answers) prove leader discovery,
//! redirects and retries with the same request id; a node wrapping an in-process engine
//! delivers a subscription's events. (`stockctl` and the case runner are tested end to end in
//! `client/stockctl/tests/network.rs`, over the same mock nodes.)

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::retry::Failure;
use client::{Client, ClientError, WriteResult};
use engine::{Code, Command, ObjectKind, Rejection, Reply, RequestId, SkuId};
use protocol::{ClientFrame, NodeAddr, Op, OpResult, Role, ServerError};
use support::*;

// ---------------------------------------------------------------------------------------------
// Scripted nodes: redirects and retries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_leader_hint_and_retries_busy_and_timeout_with_the_same_request_id() {
    let certs = Certs::new("redirect");
    // The leader: busy, then timeout, then applied at log index 7.
    let writes = Arc::new(AtomicUsize::new(0));
    let w = writes.clone();
    let leader = MockNode::start(
        &certs,
        per_op(move |op| match op {
            Op::Status => OpResult::Status(status(2, Role::Leader, None)),
            Op::Write(_) => match w.fetch_add(1, Ordering::SeqCst) {
                0 => OpResult::Failed(ServerError::Busy),
                1 => OpResult::Failed(ServerError::Timeout),
                _ => done(7),
            },
            _ => OpResult::Failed(ServerError::Internal {
                message: "unexpected".into(),
            }),
        }),
        None,
    );
    // A follower in an election: its status knows no leader, its writes name the leader.
    let hint = NodeAddr {
        id: 2,
        addr: leader.addr.clone(),
    };
    let follower = MockNode::start(
        &certs,
        per_op(move |op| match op {
            Op::Status => OpResult::Status(status(1, Role::Follower, None)),
            _ => OpResult::Failed(ServerError::NotLeader {
                leader: Some(hint.clone()),
            }),
        }),
        None,
    );
    let client = Client::connect(config(&certs, vec![follower.addr.clone()]))
        .await
        .expect("connects");
    let id = RequestId(0x1234_5678_9abc_def0_1122_3344_5566_7788);
    let result = client.write_with_id(release(id.0)).await;
    assert_eq!(
        result,
        Ok(WriteResult {
            request_id: id,
            outcome: Ok(Reply::Done),
            log_index: 7
        })
    );
    assert_eq!(
        follower.write_ids(),
        vec![id],
        "one attempt at the follower"
    );
    assert_eq!(leader.write_ids(), vec![id, id, id], "three at the leader");
    assert_eq!(client.leader_hint(), Some(leader.addr.clone()));
    assert_eq!(
        client.nodes(),
        vec![follower.addr.clone(), leader.addr.clone()]
    );
    // The leader is now known: the next write goes straight there.
    let next = client.write(release(0).command).await.expect("written");
    assert_eq!(next.log_index, 7);
    assert_eq!(follower.write_ids().len(), 1);
    let ids = leader.write_ids();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[3], next.request_id);
    assert_ne!(next.request_id, RequestId(0), "fresh ids are not zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_with_the_last_server_error_after_the_retries() {
    let certs = Certs::new("busy");
    let node = MockNode::start(
        &certs,
        per_op(|op| match op {
            Op::Status => OpResult::Status(status(1, Role::Leader, None)),
            _ => OpResult::Failed(ServerError::Busy),
        }),
        None,
    );
    let mut config = config(&certs, vec![node.addr.clone()]);
    config.retries = 3;
    let client = Client::connect(config).await.expect("connects");
    let result = client.write_with_id(release(42)).await;
    assert_eq!(
        result,
        Err(ClientError::GaveUp {
            attempts: 4,
            last: Failure::Server(ServerError::Busy)
        })
    );
    assert_eq!(
        result.err().and_then(|e| e.server_error().cloned()),
        Some(ServerError::Busy)
    );
    assert_eq!(node.write_ids(), vec![RequestId(42); 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_final_and_final_node_errors_are_not_retried() {
    let certs = Certs::new("final");
    let node = MockNode::start(
        &certs,
        per_op(|op| match op {
            Op::Status => OpResult::Status(status(1, Role::Leader, None)),
            Op::Write(r) if r.request_id == RequestId(1) => OpResult::Written {
                outcome: Err(Rejection::NotFound {
                    kind: ObjectKind::Reservation,
                    id: "r1".into(),
                }),
                log_index: 3,
            },
            _ => OpResult::Failed(ServerError::InvalidOp {
                message: "no".into(),
            }),
        }),
        None,
    );
    let client = Client::connect(config(&certs, vec![node.addr.clone()]))
        .await
        .expect("connects");
    let result = client.write_with_id(release(1)).await.expect("answered");
    assert_eq!(
        result.outcome.map_err(|r| r.code()),
        Err(Code::NotFound),
        "a rejection is an outcome"
    );
    assert_eq!(
        client.write_with_id(release(2)).await,
        Err(ClientError::Server(ServerError::InvalidOp {
            message: "no".into()
        }))
    );
    assert_eq!(node.write_ids(), vec![RequestId(1), RequestId(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resends_only_its_failed_writes_with_their_ids() {
    let certs = Certs::new("batch");
    let frames = Arc::new(AtomicUsize::new(0));
    let f = frames.clone();
    let handler: Handler = Arc::new(move |frame: &ClientFrame| {
        if frame.ops == [Op::Status] {
            return Action::Reply(vec![OpResult::Status(status(1, Role::Leader, None))]);
        }
        let first = f.fetch_add(1, Ordering::SeqCst) == 0;
        Action::Reply(
            frame
                .ops
                .iter()
                .map(|op| match op {
                    Op::Write(r) if first && r.request_id == RequestId(2) => {
                        OpResult::Failed(ServerError::Busy)
                    }
                    Op::Write(r) => done(r.request_id.0 as u64 * 10),
                    _ => OpResult::AdminDone,
                })
                .collect(),
        )
    });
    let node = MockNode::start(&certs, handler, None);
    let client = Client::connect(config(&certs, vec![node.addr.clone()]))
        .await
        .expect("connects");
    let results = client
        .write_batch(vec![release(1), release(2), release(3)])
        .await;
    let logs: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("written").log_index)
        .collect();
    assert_eq!(logs, vec![10, 20, 30]);
    let writes: Vec<Vec<RequestId>> = node
        .frames()
        .iter()
        .filter(|f| f.ops != [Op::Status])
        .map(|f| {
            f.ops
                .iter()
                .filter_map(|op| match op {
                    Op::Write(r) => Some(r.request_id),
                    _ => None,
                })
                .collect()
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            vec![RequestId(1), RequestId(2), RequestId(3)],
            vec![RequestId(2)]
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_node_drops_the_connection() {
    let certs = Certs::new("reconnect");
    let writes = Arc::new(AtomicUsize::new(0));
    let w = writes.clone();
    let handler: Handler = Arc::new(move |frame: &ClientFrame| {
        if frame.ops == [Op::Status] {
            return Action::Reply(vec![OpResult::Status(status(1, Role::Leader, None))]);
        }
        if w.fetch_add(1, Ordering::SeqCst) == 0 {
            return Action::Close;
        }
        Action::Reply(vec![done(9)])
    });
    let node = MockNode::start(&certs, handler, None);
    let client = Client::connect(config(&certs, vec![node.addr.clone()]))
        .await
        .expect("connects");
    let result = client.write_with_id(release(77)).await.expect("written");
    assert_eq!(result.log_index, 9);
    assert_eq!(node.write_ids(), vec![RequestId(77), RequestId(77)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_a_connection_error() {
    let certs = Certs::new("unreachable");
    // A port with nobody behind it: bind a UDP socket, note its port, close it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let mut config = config(&certs, vec![format!("127.0.0.1:{port}")]);
    config.connect_timeout_ms = 300;
    let result = Client::connect(config).await;
    assert!(
        matches!(
            result,
            Err(ClientError::GaveUp {
                attempts: 1,
                last: Failure::Transport(_)
            })
        ),
        "{result:?}"
    );
}

async fn next(subscription: &mut client::Subscription) -> u64 {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("in time")
        .expect("an event")
        .seq
}

fn event(seq: u64) -> engine::query::ChangeEvent {
    engine::query::ChangeEvent {
        seq,
        log_index: seq,
        timestamp_ms: 1_767_225_600_000,
        request_id: Some(RequestId(u128::from(seq))),
        cause: engine::query::Cause::Adjust,
        sku: SkuId::from("A"),
        location: engine::LocationId::from("wh1"),
        balance: engine::Balance {
            on_hand: seq as i64,
            ..engine::Balance::default()
        },
        shortfall: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_after_a_dropped_connection_without_duplicates() {
    let certs = Certs::new("resume");
    let log: Arc<Mutex<Vec<engine::query::ChangeEvent>>> = Arc::new(Mutex::new(vec![]));
    let feed_log = log.clone();
    // The feed repeats the event before `since`, as a node might after a resubscription.
    let feed: Feed = Arc::new(move |since: u64| {
        let from = since.saturating_sub(1);
        let events: Vec<_> = feed_log
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e.seq >= from)
            .cloned()
            .collect();
        events
    });
    let node = MockNode::start(
        &certs,
        per_op(|op| match op {
            Op::Subscribe { .. } => OpResult::Subscribed,
            _ => OpResult::Status(status(1, Role::Leader, None)),
        }),
        Some(feed),
    );
    let client = Client::connect(config(&certs, vec![node.addr.clone()]))
        .await
        .expect("connects");
    let mut subscription = client.subscribe(1).await.expect("subscribed");
    log.lock().expect("lock").extend([event(1), event(2)]);
    assert_eq!(next(&mut subscription).await, 1);
    assert_eq!(next(&mut subscription).await, 2);
    node.drop_connections();
    // Let the client see the close before new events exist.
    tokio::time::sleep(Duration::from_millis(100)).await;
    log.lock().expect("lock").extend([event(3), event(4)]);
    assert_eq!(next(&mut subscription).await, 3, "no duplicate of 2");
    assert_eq!(next(&mut subscription).await, 4);
    assert_eq!(subscription.position(), 5);
    let sinces: Vec<u64> = node
        .frames()
        .iter()
        .filter_map(|f| match f.ops.as_slice() {
            [Op::Subscribe { since }] => Some(*since),
            _ => None,
        })
        .collect();
    assert_eq!(sinces, vec![1, 3], "resubscribed from the next event");
}

#[test]
fn subscription_delivers_events_in_order() {
    let cluster = LedgerCluster::start("feed");
    let config = config(&cluster.certs, vec![cluster.addr()]);
    let events = cluster.runtime.block_on(async move {
        let client = Client::connect(config).await.expect("connects");
        let mut subscription = client.subscribe(0).await.expect("subscribed");
        for qty in [5, 7] {
            let command = Command::SetOnHand {
                sku: SkuId::from("A"),
                location: engine::LocationId::from("wh1"),
                qty,
                reason: engine::Reason::from("count"),
                expected: None,
            };
            let location = Command::DefineLocation(engine::LocationDef {
                location: engine::LocationId::from("wh1"),
                kind: engine::LocationKind::Warehouse,
                pickup: false,
                coordinates: None,
                channels: None,
            });
            client.write(location).await.expect("defined");
            let written = client.write(command).await.expect("written");
            assert!(written.outcome.is_ok(), "{written:?}");
        }
        let mut got = Vec::new();
        for _ in 0..2 {
            let event = tokio::time::timeout(Duration::from_secs(5), subscription.next())
                .await
                .expect("an event in time")
                .expect("an event");
            got.push((event.seq, event.balance.on_hand));
        }
        assert_eq!(subscription.position(), 3);
        got
    });
    assert_eq!(events, vec![(1, 5), (2, 7)]);
}

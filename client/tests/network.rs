//! The client over real QUIC against mock nodes on 127.0.0.1:0: scripted nodes (a follower
//! that redirects, a leader that is busy, then times out, then answers) prove leader discovery,
//! redirects and retries with the same request id; a node wrapping an in-process engine runs
//! every scenario case through `ClusterTarget` and drives `stockctl` end to end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::case::run_case;
use client::cluster_target::{options_for, ClusterTarget};
use client::retry::Failure;
use client::{Client, ClientConfig, ClientError, WriteResult};
use engine::query::LedgerStatus;
use engine::{
    Answer, Code, Command, ObjectKind, Query, Rejection, Reply, Request, RequestId, ReservationId,
    SkuId,
};
use pki::Trust;
use protocol::{
    BatchStats, ClientFrame, NodeAddr, NodeStatus, Op, OpResult, Role, ServerError, ServerMessage,
};
use tokio::sync::Mutex as AsyncMutex;

// ---------------------------------------------------------------------------------------------
// Mock nodes

/// What a mock node does with a frame.
enum Action {
    Reply(Vec<OpResult>),
    /// Close the whole connection without answering.
    Close,
}

type Handler = Arc<dyn Fn(&ClientFrame) -> Action + Send + Sync>;
/// Events from a sequence number on, for subscriptions.
type Feed = Arc<dyn Fn(u64) -> Vec<engine::query::ChangeEvent> + Send + Sync>;

/// A cluster CA and a node certificate in a fresh temporary directory.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(name: &str) -> Certs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stockd-client-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        pki::ensure_ca(&dir).expect("CA");
        pki::ensure_node(&dir, &dir.join("node"), &["127.0.0.1".to_owned()])
            .expect("node certificate");
        Certs { dir }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn trust(&self) -> Trust {
        Trust::Ca(pki::load_certs(&self.ca_path()).expect("CA certificate"))
    }

    fn server_config(&self) -> quinn::ServerConfig {
        let identity = pki::load_identity(&self.dir.join("node")).expect("identity");
        let ca = pki::load_certs(&self.ca_path()).expect("CA certificate");
        pki::server_config(&identity, &ca).expect("server config")
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A QUIC endpoint answering client frames with a handler, recording every frame it got.
struct MockNode {
    addr: String,
    frames: Arc<Mutex<Vec<ClientFrame>>>,
    conns: Arc<Mutex<Vec<quinn::Connection>>>,
    endpoint: quinn::Endpoint,
}

impl MockNode {
    /// Must be called inside a tokio runtime (the node's tasks run there).
    fn start(certs: &Certs, handler: Handler, feed: Option<Feed>) -> MockNode {
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let endpoint = quinn::Endpoint::server(certs.server_config(), bind).expect("endpoint");
        let addr = endpoint.local_addr().expect("bound").to_string();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (e, f, c) = (endpoint.clone(), frames.clone(), conns.clone());
        tokio::spawn(async move {
            while let Some(incoming) = e.accept().await {
                let (handler, feed, frames) = (handler.clone(), feed.clone(), f.clone());
                let conns = c.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    conns.lock().expect("lock").push(conn.clone());
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        let stream = serve_stream(
                            conn.clone(),
                            send,
                            recv,
                            handler.clone(),
                            feed.clone(),
                            frames.clone(),
                        );
                        tokio::spawn(stream);
                    }
                });
            }
        });
        MockNode {
            addr,
            frames,
            conns,
            endpoint,
        }
    }

    /// Closes every client connection (the node stays up).
    fn drop_connections(&self) {
        for conn in self.conns.lock().expect("lock").drain(..) {
            conn.close(2u32.into(), b"dropped by the test");
        }
    }

    fn frames(&self) -> Vec<ClientFrame> {
        self.frames.lock().expect("lock").clone()
    }

    /// Request ids of every write this node received, in order.
    fn write_ids(&self) -> Vec<RequestId> {
        self.frames()
            .iter()
            .flat_map(|f| f.ops.iter())
            .filter_map(|op| match op {
                Op::Write(r) => Some(r.request_id),
                _ => None,
            })
            .collect()
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"mock stopped");
    }
}

async fn send(out: &AsyncMutex<quinn::SendStream>, message: &ServerMessage) -> bool {
    let bytes = protocol::encode(message).expect("encodes");
    protocol::write_frame(&mut *out.lock().await, &bytes)
        .await
        .is_ok()
}

async fn serve_stream(
    conn: quinn::Connection,
    send_stream: quinn::SendStream,
    mut recv: quinn::RecvStream,
    handler: Handler,
    feed: Option<Feed>,
    frames: Arc<Mutex<Vec<ClientFrame>>>,
) {
    let out = Arc::new(AsyncMutex::new(send_stream));
    while let Ok(Some(bytes)) = protocol::read_frame(&mut recv).await {
        let frame: ClientFrame = protocol::parse(&bytes).expect("a client frame");
        frames.lock().expect("lock").push(frame.clone());
        let results = match handler(&frame) {
            Action::Reply(results) => results,
            Action::Close => {
                conn.close(1u32.into(), b"mock closes");
                return;
            }
        };
        let reply = ServerMessage::Reply {
            id: frame.id,
            results,
        };
        if !send(&out, &reply).await {
            return;
        }
        if let (Some(feed), [Op::Subscribe { since }]) = (&feed, frame.ops.as_slice()) {
            let (feed, out, mut next) = (feed.clone(), out.clone(), *since);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let events = feed(next);
                    if let Some(last) = events.last() {
                        next = last.seq + 1;
                        if !send(&out, &ServerMessage::Events(events)).await {
                            return;
                        }
                    }
                }
            });
        }
    }
}

fn status(id: u64, role: Role, leader: Option<NodeAddr>) -> Box<NodeStatus> {
    Box::new(NodeStatus {
        node: NodeAddr {
            id,
            addr: format!("node-{id}:7400"),
        },
        role,
        term: 3,
        leader,
        members: vec![],
        applied_index: 0,
        last_log_index: 0,
        snapshot_index: 0,
        ready: true,
        durability: "replicated".into(),
        batches: BatchStats::default(),
        replies: protocol::ReplyStats::default(),
        ledger: LedgerStatus {
            applied_index: 0,
            now_ms: 0,
            skus: 0,
            locations: 0,
            balances: 0,
            live_reservations: 0,
            open_orders: 0,
            dedup_entries: 0,
            feed_next_seq: 1,
        },
        health: protocol::NodeHealth::default(),
        membership_index: 0,
        // A leader names itself as the one voter it knows of.
        membership: if role == Role::Leader {
            vec![protocol::Member {
                node: NodeAddr {
                    id,
                    addr: format!("node-{id}:7400"),
                },
                voter: true,
                matched_index: Some(0),
            }]
        } else {
            vec![]
        },
    })
}

/// Answers every operation of a frame with `f`.
fn per_op(f: impl Fn(&Op) -> OpResult + Send + Sync + 'static) -> Handler {
    Arc::new(move |frame: &ClientFrame| Action::Reply(frame.ops.iter().map(&f).collect()))
}

fn config(certs: &Certs, nodes: Vec<String>) -> ClientConfig {
    let mut config = ClientConfig::new(nodes, certs.trust());
    config.timeout_ms = 2_000;
    config.backoff_ms_min = 5;
    config.backoff_ms_max = 20;
    config
}

fn release(id: u128) -> Request {
    Request {
        request_id: RequestId(id),
        command: Command::Release {
            reservation: ReservationId::from("r1"),
        },
    }
}

fn done(log_index: u64) -> OpResult {
    OpResult::Written {
        outcome: Ok(Reply::Done),
        log_index,
    }
}

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

// ---------------------------------------------------------------------------------------------
// A node around an in-process engine

/// One engine behind a mock node: every write is a batch, stamped with the wall clock plus a
/// test-controlled offset (so `advance` in cases moves time without sleeping).
struct LedgerNode {
    state: Mutex<(engine::Ledger, u64, u64)>,
    offset_ms: AtomicU64,
}

impl LedgerNode {
    fn now(&self, last: u64) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (wall + self.offset_ms.load(Ordering::SeqCst)).max(last)
    }

    fn handle(&self, op: &Op) -> OpResult {
        let mut guard = self.state.lock().expect("lock");
        let (ledger, next_index, last_ts) = &mut *guard;
        match op {
            Op::Write(request) => {
                let header = engine::BatchHeader {
                    log_index: *next_index,
                    timestamp_ms: self.now(*last_ts),
                };
                *next_index += 1;
                *last_ts = header.timestamp_ms;
                let outcome = ledger
                    .apply(header, std::slice::from_ref(request))
                    .pop()
                    .expect("one outcome");
                ledger.check_invariants().expect("invariants");
                OpResult::Written {
                    outcome,
                    log_index: header.log_index,
                }
            }
            Op::Read { query, .. } => OpResult::Read {
                answer: ledger.query(query, self.now(*last_ts)),
                applied_index: *next_index - 1,
            },
            Op::Status => OpResult::Status(status(1, Role::Leader, None)),
            Op::Digest => OpResult::Digest {
                applied_index: *next_index - 1,
                digest: ledger.digest(),
            },
            Op::Subscribe { .. } => OpResult::Subscribed,
            Op::Admin(protocol::AdminOp::AddNode(node)) => OpResult::NodeAdded(added(node.id)),
            Op::Admin(_) => OpResult::AdminDone,
        }
    }

    fn feed(&self, since: u64) -> Vec<engine::query::ChangeEvent> {
        let guard = self.state.lock().expect("lock");
        match guard.0.query(&Query::Changes { since, max: 100 }, guard.2) {
            Ok(Answer::Changes(page)) => page.events,
            _ => vec![],
        }
    }
}

/// What the ledger node answers to `add-node` of node `id` (one state per id, for stockctl's
/// output tests).
fn added(id: u64) -> protocol::MemberState {
    match id {
        4 => protocol::MemberState::Voter,
        5 => protocol::MemberState::CatchingUp {
            matched_index: Some(3),
            target_index: 10,
        },
        6 => protocol::MemberState::Unreachable,
        _ => protocol::MemberState::NotAdded {
            reason: "nothing answered at h:1".into(),
        },
    }
}

/// A ledger node running in its own runtime (for synchronous callers: ClusterTarget, stockctl).
struct LedgerCluster {
    certs: Certs,
    node: Arc<LedgerNode>,
    mock: Option<MockNode>,
    runtime: tokio::runtime::Runtime,
}

impl LedgerCluster {
    fn start(name: &str) -> LedgerCluster {
        let certs = Certs::new(name);
        let node = Arc::new(LedgerNode {
            state: Mutex::new((engine::Ledger::default(), 1, 0)),
            offset_ms: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (h, f) = (node.clone(), node.clone());
        let mock = runtime.block_on(async {
            MockNode::start(
                &certs,
                per_op(move |op| h.handle(op)),
                Some(Arc::new(move |since| f.feed(since))),
            )
        });
        LedgerCluster {
            certs,
            node,
            mock: Some(mock),
            runtime,
        }
    }

    fn addr(&self) -> String {
        self.mock
            .as_ref()
            .map(|m| m.addr.clone())
            .unwrap_or_default()
    }
}

impl Drop for LedgerCluster {
    fn drop(&mut self) {
        // The endpoint closes inside the runtime that drives it.
        let _guard = self.runtime.enter();
        self.mock.take();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn case_files() -> Vec<PathBuf> {
    client::case::case_dirs(&workspace())
        .iter()
        .flat_map(|dir| {
            client::case::case_files(dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        })
        .collect()
}

#[test]
fn every_case_passes_through_the_client_against_a_ledger_node() {
    let cluster = LedgerCluster::start("cases");
    let mut target =
        ClusterTarget::connect(config(&cluster.certs, vec![cluster.addr()])).expect("connects");
    let node = cluster.node.clone();
    target.on_advance(Box::new(move |ms| {
        node.offset_ms.fetch_add(ms, Ordering::SeqCst);
        Ok(())
    }));
    let files = case_files();
    assert!(files.len() >= 30, "cases found: {}", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).expect("readable");
        // Each case in its own namespace on the shared ledger, run twice: a rerun must not
        // be a replay.
        for _ in 0..2 {
            let report = run_case(&name, &text, &mut target, &options_for(&name));
            if let Some(why) = report.failure {
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn subscription_delivers_events_in_order() {
    let cluster = LedgerCluster::start("feed");
    let target =
        ClusterTarget::connect(config(&cluster.certs, vec![cluster.addr()])).expect("connects");
    let client = target.client().clone();
    let events = target.block_on(async move {
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

// ---------------------------------------------------------------------------------------------
// stockctl end to end

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn stockctl(cluster: &LedgerCluster, args: &[&str]) -> Run {
    stockctl_at(cluster, &cluster.addr(), args)
}

/// stockctl with `--connect` set to `connect`.
fn stockctl_at(cluster: &LedgerCluster, connect: &str, args: &[&str]) -> Run {
    let ca = cluster.certs.ca_path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stockctl"))
        .arg("--connect")
        .arg(connect)
        .arg("--ca")
        .arg(&ca)
        .args(args)
        .output()
        .expect("stockctl runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[track_caller]
fn check(run: &Run, code: i32, stdout_starts: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.starts_with(stdout_starts),
        "stdout {:?} does not start with {stdout_starts:?} (stderr {:?})",
        run.stdout,
        run.stderr
    );
}

#[test]
fn stockctl_operates_a_ledger_in_display_units() {
    let cluster = LedgerCluster::start("stockctl");
    check(
        &stockctl(&cluster, &["define-location", "wh1", "warehouse"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["define-location", "wh2", "warehouse"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["define-group", "online", "wh1", "wh2"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["define-sku", "CLOTH", "--scale", "2"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["set-on-hand", "CLOTH@wh2", "33.6"]),
        0,
        "ok: on_hand=33.60 reserved=0.00",
    );
    // Too many decimals: invalid, decided locally.
    check(
        &stockctl(
            &cluster,
            &["reserve", "r1", "web", "CLOTH@online:0.591", "--ttl", "15m"],
        ),
        1,
        "rejected: invalid: quantity 0.591: more than 2 decimal places (not sent)",
    );
    // A group line: sourced from wh2 (wh1 has nothing).
    let reserved = stockctl(
        &cluster,
        &["reserve", "r1", "web", "CLOTH@online:0.59", "--ttl", "15m"],
    );
    check(&reserved, 0, "ok: reserved until ");
    assert!(
        reserved.stdout.contains("\n  line 1: CLOTH 0.59 at wh2\n"),
        "{}",
        reserved.stdout
    );
    check(
        &stockctl(
            &cluster,
            &["reserve", "r2", "web", "CLOTH@wh2:40", "--ttl", "15m"],
        ),
        1,
        "rejected: insufficient_stock: CLOTH@wh2: requested 40.00, available 33.01",
    );
    check(
        &stockctl(&cluster, &["availability", "CLOTH", "--at", "online"]),
        0,
        "CLOTH (scale 2): available=33.01 available[pos]=33.01\n  wh2: available=33.01",
    );
    let json = stockctl(
        &cluster,
        &["availability", "CLOTH", "--at", "wh2", "--json"],
    );
    check(&json, 0, "{");
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(value["code"], "ok");
    assert_eq!(value["answer"]["Availability"][0]["ats"], 3301);
    check(
        &stockctl(&cluster, &["reservation", "r1"]),
        0,
        "reservation r1: active (channel web)",
    );
    check(
        &stockctl(&cluster, &["order", "nope"]),
        1,
        "rejected: not_found: no order nope",
    );
    // A scripted retry: the same request id returns the original outcome, once.
    let first = stockctl(
        &cluster,
        &[
            "adjust",
            "CLOTH@wh1",
            "1.5",
            "--request-id",
            "abc123",
            "--json",
        ],
    );
    let again = stockctl(
        &cluster,
        &[
            "adjust",
            "CLOTH@wh1",
            "1.5",
            "--request-id",
            "abc123",
            "--json",
        ],
    );
    check(&first, 0, "{");
    let value: serde_json::Value = serde_json::from_str(first.stdout.trim()).expect("JSON");
    let replay: serde_json::Value = serde_json::from_str(again.stdout.trim()).expect("JSON");
    assert_eq!(
        replay["reply"], value["reply"],
        "a replay answers the original"
    );
    assert_eq!(replay["request_id"], value["request_id"]);
    assert_eq!(value["request_id"], "00000000000000000000000000abc123");
    assert_eq!(value["reply"]["Balance"]["on_hand"], 150);
    check(
        &stockctl(&cluster, &["adjust", "CLOTH@wh1", "-2"]),
        1,
        "rejected: insufficient_stock",
    );
    check(
        &stockctl(&cluster, &["status"]),
        0,
        &format!("{}: node 1 leader", cluster.addr()),
    );
    let status = stockctl(&cluster, &["status"]);
    let replies = "\n  replies: queued_bytes=0 connections_closed_unread=0 subscribers_cut=0 \
                   frames_shed=0";
    assert!(status.stdout.contains(replies), "{}", status.stdout);
    check(
        &stockctl(&cluster, &["digest"]),
        0,
        &format!("{}: applied=", cluster.addr()),
    );
    check(
        &stockctl(&cluster, &["changes", "--since", "1", "--max", "1"]),
        0,
        "#1 log=",
    );
    // Usage errors: status 2, nothing sent.
    let bad = stockctl(&cluster, &["sell", "CLOTH", "1"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    let bad = stockctl(&cluster, &["status", "--request-id", "1"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("only applies to writes"),
        "{}",
        bad.stderr
    );
}

#[test]
fn stockctl_case_runs_against_a_node() {
    let cluster = LedgerCluster::start("stockctl-case");
    let case = case_files()
        .into_iter()
        .find(|f| f.ends_with("06-retry-same-request.case"))
        .expect("the shared retry case");
    let run = stockctl(&cluster, &["case", case.to_str().expect("utf-8 path")]);
    check(&run, 0, "PASS 06-retry-same-request\n");
    let nobody = std::process::Command::new(env!("CARGO_BIN_EXE_stockctl"))
        .args(["--connect", "127.0.0.1:9", "--ca"])
        .arg(cluster.certs.ca_path())
        .args(["--timeout-ms", "300", "status"])
        .output()
        .expect("runs");
    assert_eq!(nobody.status.code(), Some(2), "unreachable node: status 2");
}

#[test]
fn stockctl_add_node_says_where_the_node_stands() {
    let cluster = LedgerCluster::start("add-node");
    check(
        &stockctl(&cluster, &["add-node", "4", "h:1"]),
        0,
        "ok: node 4 is a voter\n",
    );
    check(
        &stockctl(&cluster, &["add-node", "5", "h:1"]),
        3,
        "node 5 is a learner, catching up (matched index 3 of 10): it does not vote yet; run \
         `stockctl add-node 5 h:1` again to promote it once caught up\n",
    );
    check(
        &stockctl(&cluster, &["add-node", "6", "h:1"]),
        3,
        "node 6 is a learner, unreachable (it answers neither replication nor status): it does \
         not vote; start it and run `stockctl add-node 6 h:1` again, or `stockctl remove-node 6`",
    );
    check(
        &stockctl(&cluster, &["add-node", "7", "h:1"]),
        2,
        "node 7 not added (the membership is unchanged): nothing answered at h:1\n",
    );
    let json = stockctl(&cluster, &["add-node", "5", "h:1", "--json"]);
    check(&json, 3, "{");
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({"node": 5, "state": "catching_up", "matched_index": 3,
                           "target_index": 10})
    );
    check(
        &stockctl(&cluster, &["members"]),
        0,
        "leader: node 1 term=3 last_log=0\n  node 1 node-1:7400 voter, leader matched=0 lag=0\n",
    );
    let json = stockctl(&cluster, &["members", "--json"]);
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({"leader": 1, "term": 3, "last_log_index": 0, "members": [
            {"node": {"id": 1, "addr": "node-1:7400"}, "voter": true, "matched_index": 0}]})
    );
}

/// A node that was stopped (its UDP port silent) first in `--connect`: stockctl asks every node
/// at once and goes on with the first answers. Before, it dialed the seeds one by one and
/// waited the whole connect timeout (here 20 s) on the silent one.
#[test]
fn stockctl_does_not_wait_for_a_silent_node_first_in_its_list() {
    let cluster = LedgerCluster::start("silent-first");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let connect = format!("{},{}", silent.local_addr().expect("addr"), cluster.addr());
    let started = std::time::Instant::now();
    let run = stockctl_at(
        &cluster,
        &connect,
        &[
            "--timeout-ms",
            "20000",
            "define-location",
            "wh1",
            "warehouse",
        ],
    );
    let took = started.elapsed();
    check(&run, 0, "ok\n");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

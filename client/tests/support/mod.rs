//! Mock stockd nodes on 127.0.0.1:0 for the client's and stockctl's network tests: scripted
//! nodes that answer frames with a handler, and a node wrapping an in-process engine.
//!
//! Shared by two test crates (`client/tests/network.rs` and `client/stockctl/tests/network.rs`,
//! the latter through `#[path]`); each uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::ClientConfig;
use engine::query::LedgerStatus;
use engine::{Answer, Command, Query, Reply, Request, RequestId, ReservationId};
use pki::Trust;
use protocol::{BatchStats, ClientFrame, NodeAddr, NodeStatus, Op, OpResult, Role, ServerMessage};
use tokio::sync::Mutex as AsyncMutex;

// ---------------------------------------------------------------------------------------------
// Mock nodes

/// What a mock node does with a frame.
pub enum Action {
    Reply(Vec<OpResult>),
    /// Close the whole connection without answering.
    Close,
}

pub type Handler = Arc<dyn Fn(&ClientFrame) -> Action + Send + Sync>;
/// Events from a sequence number on, for subscriptions.
pub type Feed = Arc<dyn Fn(u64) -> Vec<engine::query::ChangeEvent> + Send + Sync>;

/// A cluster CA and a node certificate in a fresh temporary directory.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn new(name: &str) -> Certs {
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
        pki::ensure_admin(&dir).expect("client identity");
        Certs { dir }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn trust(&self) -> Trust {
        Trust::Ca(pki::load_certs(&self.ca_path()).expect("CA certificate"))
    }

    pub fn server_config(&self) -> quinn::ServerConfig {
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
pub struct MockNode {
    pub addr: String,
    pub frames: Arc<Mutex<Vec<ClientFrame>>>,
    pub conns: Arc<Mutex<Vec<quinn::Connection>>>,
    pub endpoint: quinn::Endpoint,
}

impl MockNode {
    /// Must be called inside a tokio runtime (the node's tasks run there).
    pub fn start(certs: &Certs, handler: Handler, feed: Option<Feed>) -> MockNode {
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
    pub fn drop_connections(&self) {
        for conn in self.conns.lock().expect("lock").drain(..) {
            conn.close(2u32.into(), b"dropped by the test");
        }
    }

    pub fn frames(&self) -> Vec<ClientFrame> {
        self.frames.lock().expect("lock").clone()
    }

    /// Request ids of every write this node received, in order.
    pub fn write_ids(&self) -> Vec<RequestId> {
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

pub async fn send(out: &AsyncMutex<quinn::SendStream>, message: &ServerMessage) -> bool {
    let bytes = protocol::encode(message).expect("encodes");
    protocol::write_frame(&mut *out.lock().await, &bytes)
        .await
        .is_ok()
}

pub async fn serve_stream(
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

pub fn status(id: u64, role: Role, leader: Option<NodeAddr>) -> Box<NodeStatus> {
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
        access: protocol::AccessStats::default(),
        not_ready: None,
        pauses: Default::default(),
        snapshots: Default::default(),
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
pub fn per_op(f: impl Fn(&Op) -> OpResult + Send + Sync + 'static) -> Handler {
    Arc::new(move |frame: &ClientFrame| Action::Reply(frame.ops.iter().map(&f).collect()))
}

pub fn config(certs: &Certs, nodes: Vec<String>) -> ClientConfig {
    let mut config = ClientConfig::admin_of(nodes, &certs.dir).expect("CA and admin identity");
    config.timeout_ms = 2_000;
    config.backoff_ms_min = 5;
    config.backoff_ms_max = 20;
    config
}

pub fn release(id: u128) -> Request {
    Request {
        request_id: RequestId(id),
        command: Command::Release {
            reservation: ReservationId::from("r1"),
        },
    }
}

pub fn done(log_index: u64) -> OpResult {
    OpResult::Written {
        outcome: Ok(Reply::Done),
        log_index,
    }
}

// ---------------------------------------------------------------------------------------------
// A node around an in-process engine

/// One engine behind a mock node: every write is a batch, stamped with the wall clock plus a
/// test-controlled offset (so `advance` in cases moves time without sleeping).
pub struct LedgerNode {
    pub state: Mutex<(engine::Ledger, u64, u64)>,
    pub offset_ms: AtomicU64,
}

impl LedgerNode {
    pub fn now(&self, last: u64) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (wall + self.offset_ms.load(Ordering::SeqCst)).max(last)
    }

    pub fn handle(&self, op: &Op) -> OpResult {
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
            Op::Subscribe { .. } | Op::SubscribeAt { .. } => OpResult::Subscribed,
            Op::Admin(protocol::AdminOp::AddNode(node)) => OpResult::NodeAdded(added(node.id)),
            Op::Admin(_) => OpResult::AdminDone,
        }
    }

    pub fn feed(&self, since: u64) -> Vec<engine::query::ChangeEvent> {
        let guard = self.state.lock().expect("lock");
        match guard.0.query(&Query::Changes { since, max: 100 }, guard.2) {
            Ok(Answer::Changes(page)) => page.events,
            _ => vec![],
        }
    }
}

/// What the ledger node answers to `add-node` of node `id` (one state per id, for stockctl's
/// output tests).
pub fn added(id: u64) -> protocol::MemberState {
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
pub struct LedgerCluster {
    pub certs: Certs,
    pub node: Arc<LedgerNode>,
    pub mock: Option<MockNode>,
    pub runtime: tokio::runtime::Runtime,
}

impl LedgerCluster {
    pub fn start(name: &str) -> LedgerCluster {
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

    pub fn addr(&self) -> String {
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

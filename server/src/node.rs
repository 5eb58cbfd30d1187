//! A stockd node: TLS, storage, Raft, the QUIC endpoint, and their lifecycle.
//!
//! One UDP port per node serves both ALPNs: clients (`stockd/1`) and peers (`stockd-raft/1`,
//! which must present a certificate of the cluster CA). [`Node::start`] brings everything up;
//! [`Node::shutdown`] stops accepting, stops Raft (flushing the log) and closes the endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use tokio::sync::{watch, Semaphore};

use protocol::NodeAddr;

use crate::clock::Clock;
use crate::raft::proposer::{Proposer, ReadBarrier};
use crate::raft::election::{Election, ElectionTimings};
use crate::raft::log_store::{Durability, LogStore};
use crate::raft::network::{serve_peer, Faults, Network};
use crate::raft::state_machine::{Shared, StateMachine};
use crate::raft::{NodeId, Raft};

/// Client and peer connections a node accepts at once; more are refused.
pub const CONNECTIONS_MAX: usize = 4_096;
/// Raft entries between snapshots (node 1; nodes 2 and 3 wait 25% and 50% longer, so that the
/// replicas do not all stall at once); the log is purged behind each snapshot.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 100_000;
/// Encoded bytes of unpurged log that also trigger a snapshot (the log is kept in memory until
/// purged), staggered like the entry count.
pub const SNAPSHOT_LOG_BYTES_MAX: u64 = 256 << 20;
/// How often a node checks whether it should snapshot, ms.
pub const SNAPSHOT_CHECK_MS: u64 = 250;
/// Entries kept in the log behind a snapshot, so slightly lagging followers catch up from the
/// log rather than a snapshot.
pub const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 2_000;
/// Entries in one AppendEntries RPC (each entry is one batch of up to 1 MiB).
pub const ENTRIES_PER_APPEND_MAX: u64 = 16;
/// Longest wait for Raft to stop at shutdown, ms (its last log writes included).
pub const RAFT_SHUTDOWN_MS_MAX: u64 = 15_000;
/// Bytes of one snapshot chunk sent to a follower.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(
    (ENTRIES_PER_APPEND_MAX as usize) * 2 * crate::raft::proposer::BATCH_BYTES_MAX
        < protocol::PEER_FRAME_BYTES_MAX
);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES * 2 < protocol::PEER_FRAME_BYTES_MAX);

/// Raft timing, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimings {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
    /// Entries between snapshots.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot.
    pub log_kept: u64,
    /// How long `add-node` waits for a learner to catch up before answering with its state
    /// (it promotes the learner if it caught up meanwhile).
    pub add_node_catch_up_ms: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
            snapshot_every: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            log_kept: LOG_KEPT_BEHIND_SNAPSHOT,
            add_node_catch_up_ms: crate::raft::membership::ADD_NODE_WAIT_MS_DEFAULT,
        }
    }
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft node id (> 0).
    pub id: NodeId,
    /// UDP address to bind (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Address peers and clients use to reach this node (default: the bound address).
    pub advertise: Option<String>,
    /// Where the log, snapshots and (by default) TLS files live.
    pub data_dir: PathBuf,
    /// Log durability.
    pub durability: Durability,
    /// Directory with `node.pem`, `node.key`, `ca.pem` (default: `data_dir`).
    pub tls_dir: Option<PathBuf>,
    /// Directory of the cluster CA (`ca.pem`, `ca.key`) used to issue this node's certificate
    /// when `tls_dir` has none; a CA is created there if it has none either (default: the
    /// TLS directory).
    pub ca_dir: Option<PathBuf>,
    /// Initialise a new cluster with these voters if this node is pristine (empty = don't).
    pub initial_members: Vec<NodeAddr>,
    /// Raft timing.
    pub timings: RaftTimings,
    /// The clock stamping batches and reads (tests share one among a cluster's nodes).
    pub clock: Arc<Clock>,
}

/// What a node's tasks share.
pub struct NodeCtx {
    /// This node's id.
    pub id: NodeId,
    /// Its advertised address.
    pub addr: String,
    /// The Raft handle.
    pub raft: Raft,
    /// The ledger and apply progress.
    pub shared: Arc<Shared>,
    /// Write batching.
    pub proposer: Proposer,
    /// Linearizable read barrier.
    pub reads: ReadBarrier,
    /// `replicated` or `fsync`.
    pub durability: String,
    /// Fault injection.
    pub faults: Arc<Faults>,
    /// The leader's clock.
    pub clock: Arc<Clock>,
    /// Raft timing.
    pub timings: RaftTimings,
    /// Bytes of client frames being received, node-wide, in KiB (see `api::NODE_FRAME_KIB_MAX`).
    pub frame_budget: Arc<Semaphore>,
    /// Replies queued for clients, node-wide, and what their budgets did (`replies` module).
    pub replies: Arc<crate::replies::NodeReplies>,
    /// The Raft log (for its health and recovery state).
    pub log: LogStore,
    /// Election and recovery state.
    pub election: Arc<Election>,
    /// Admin operations and whether this node was removed.
    pub membership: crate::raft::membership::Membership,
}

impl NodeCtx {
    /// Whether the node may answer reads and calls itself ready: its state is rebuilt and its
    /// log can be written (a node whose disk fails acknowledges nothing).
    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
            && self.log.io_error().is_none()
            && self.shared.snapshot_error().is_none()
    }
}

/// A running node.
pub struct Node {
    ctx: Arc<NodeCtx>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    ca_fingerprint: String,
    ca_path: PathBuf,
}

/// Why a node could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn start_err(context: &str, e: impl std::fmt::Display) -> StartError {
    StartError(format!("{context}: {e}"))
}

impl Node {
    /// Starts a node: TLS files (created if missing), state machine from the newest snapshot,
    /// log store, QUIC endpoint, Raft, and, if `initial_members` is set and the node is pristine,
    /// a new cluster.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        if config.id == 0 {
            return Err(StartError("node id must be > 0".to_owned()));
        }
        // Check the address first, so that a taken port fails before any file is created.
        std::net::UdpSocket::bind(config.listen)
            .map_err(|e| start_err(&format!("binding {}", config.listen), e))?;
        if let (Some(tls_dir), None) = (&config.tls_dir, &config.ca_dir) {
            // An explicit TLS directory must hold the node's certificate: creating a new CA
            // there (a typo in the path) would make a node no peer trusts.
            if !pki::TlsFiles::in_dir(tls_dir).node_pem.exists() {
                return Err(StartError(format!(
                    "{}: no node.pem (give --ca-dir to issue one from the cluster CA, or run \
                     `stockd certs`)",
                    tls_dir.display()
                )));
            }
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|e| start_err("data directory", e))?;
        let tls_dir = config
            .tls_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.clone());
        let ca_dir = config.ca_dir.clone().unwrap_or_else(|| tls_dir.clone());
        let node_pem = pki::TlsFiles::in_dir(&tls_dir).node_pem;
        if !node_pem.exists() {
            if !ca_dir.join("ca.pem").exists() {
                pki::ensure_ca(&ca_dir).map_err(|e| start_err("creating the cluster CA", e))?;
            }
            let names = vec![config.listen.ip().to_string()];
            pki::ensure_node(&ca_dir, &tls_dir, &names)
                .map_err(|e| start_err("issuing the node certificate", e))?;
        }
        let identity =
            pki::load_identity(&tls_dir).map_err(|e| start_err("node certificate", e))?;
        // The CA file to show clients: the cluster CA's own, else this node's copy.
        let ca_path = if ca_dir.join("ca.pem").exists() {
            ca_dir.join("ca.pem")
        } else {
            tls_dir.join("ca.pem")
        };
        let ca = pki::load_certs(&ca_path).map_err(|e| start_err("CA certificate", e))?;
        let ca_fingerprint = pki::fingerprint(&ca[0]);

        let sm = StateMachine::open(&config.data_dir.join("snapshots"))
            .map_err(|e| start_err("snapshots", e))?;
        let shared = sm.shared();
        let mut log = LogStore::open(&config.data_dir.join("log"), config.durability)
            .map_err(|e| start_err("raft log", e))?;
        let committed = log
            .read_committed()
            .await
            .map_err(|e| start_err("raft log", e))?
            .map_or(0, |l| l.index);

        let server = pki::server_config(&identity, &ca).map_err(|e| start_err("TLS", e))?;
        let endpoint = quinn::Endpoint::server(server, config.listen)
            .map_err(|e| start_err(&format!("binding {}", config.listen), e))?;
        let local_addr = endpoint.local_addr().map_err(|e| start_err("binding", e))?;
        let addr = config
            .advertise
            .clone()
            .unwrap_or_else(|| local_addr.to_string());
        let faults = Arc::new(Faults::default());
        let peer = pki::peer_client_config(&identity, &ca).map_err(|e| start_err("TLS", e))?;
        let network = Network::new(endpoint.clone(), peer, faults.clone());
        let election = Election::new(
            config.id,
            log.clone(),
            ElectionTimings {
                min_ms: config.timings.election_min_ms,
                max_ms: config.timings.election_max_ms,
            },
        );
        let client_tls =
            pki::client_config(&pki::Trust::Ca(ca.clone())).map_err(|e| start_err("TLS", e))?;

        let t = config.timings;
        let raft_config = openraft::Config {
            cluster_name: "stockd".to_owned(),
            heartbeat_interval: t.heartbeat_ms,
            election_timeout_min: t.election_min_ms,
            election_timeout_max: t.election_max_ms,
            max_payload_entries: ENTRIES_PER_APPEND_MAX,
            // Snapshots are triggered by this node's own policy (entries and log bytes,
            // staggered across nodes): see `snapshot_policy`.
            snapshot_policy: openraft::SnapshotPolicy::Never,
            // Elections are started by `raft::election` (pre-vote, recovery rules).
            enable_elect: false,
            max_in_snapshot_log_to_keep: t.log_kept,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| start_err("raft config", e))?,
        );
        let log_handle = log.clone();
        let raft = Raft::new(config.id, raft_config, network.clone(), log, sm)
            .await
            .map_err(|e| start_err("raft", e))?;

        if !config.initial_members.is_empty() {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| start_err("raft", e))?;
            if !initialized {
                let members = config
                    .initial_members
                    .iter()
                    .map(|m| {
                        (
                            m.id,
                            openraft::BasicNode {
                                addr: m.addr.clone(),
                            },
                        )
                    })
                    .collect::<std::collections::BTreeMap<_, _>>();
                raft.initialize(members)
                    .await
                    .map_err(|e| start_err("initialising the cluster", e))?;
            }
        }

        // Ready once everything committed before the restart is applied again.
        if shared.applied_index() >= committed {
            shared.set_ready(true);
        } else {
            let waiting = shared.clone();
            tokio::spawn(async move {
                let mut applied = waiting.applied();
                if applied.wait_for(|a| *a >= committed).await.is_ok() {
                    waiting.set_ready(true);
                    tracing::info!(index = committed, "state rebuilt; serving reads");
                }
            });
        }

        let ctx = Arc::new(NodeCtx {
            id: config.id,
            addr,
            proposer: Proposer::start(
                config.id,
                raft.clone(),
                shared.clone(),
                config.clock.clone(),
            ),
            reads: ReadBarrier::start(raft.clone()),
            raft,
            shared,
            durability: match config.durability {
                Durability::Fsync => "fsync".to_owned(),
                Durability::Replicated { .. } => "replicated".to_owned(),
            },
            faults,
            clock: config.clock.clone(),
            timings: config.timings,
            frame_budget: Arc::new(Semaphore::new(crate::api::NODE_FRAME_KIB_MAX)),
            replies: Arc::default(),
            log: log_handle.clone(),
            election: election.clone(),
            membership: crate::raft::membership::Membership::new(endpoint.clone(), client_tls),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(election.run(ctx.raft.clone(), network, shutdown_rx.clone()));
        tokio::spawn(snapshot_policy(
            ctx.clone(),
            log_handle,
            t.snapshot_every,
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::raft::membership::watch(ctx.clone(), shutdown_rx.clone()));
        let accept = tokio::spawn(accept_loop(endpoint.clone(), ctx.clone(), shutdown_rx));
        tracing::info!(id = config.id, addr = %local_addr, "node started");
        Ok(Node {
            ctx,
            endpoint,
            local_addr,
            shutdown,
            accept,
            ca_fingerprint,
            ca_path,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.ctx.id
    }

    /// The advertised address.
    pub fn addr(&self) -> &str {
        &self.ctx.addr
    }

    /// SHA-256 fingerprint of the cluster CA certificate (what clients may pin).
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// Path of the cluster CA certificate (what clients may trust with `--ca`).
    pub fn ca_path(&self) -> &std::path::Path {
        &self.ca_path
    }

    /// Fault injection (tests).
    pub fn faults(&self) -> Arc<Faults> {
        self.ctx.faults.clone()
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.ctx.raft
    }

    /// This node's status.
    pub fn status(&self) -> protocol::NodeStatus {
        crate::api::status(&self.ctx)
    }

    /// The digest of this node's ledger and the index it reflects.
    pub fn digest(&self) -> (u64, String) {
        let ledger = self.ctx.shared.ledger.read().expect("ledger lock poisoned");
        (self.ctx.shared.applied_index(), ledger.digest())
    }

    /// Initialises a new cluster with these voters (this node must be pristine).
    pub async fn initialize(&self, members: &[NodeAddr]) -> Result<(), String> {
        let members = members
            .iter()
            .map(|m| {
                (
                    m.id,
                    openraft::BasicNode {
                        addr: m.addr.clone(),
                    },
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>();
        self.ctx
            .raft
            .initialize(members)
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops the node: no new connections, Raft stopped (the log store flushes), endpoint
    /// closed. Waits at most a few seconds for connections to drain.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept.await;
        // Raft waits for its log writes; on a disk that keeps failing they never end.
        let limit = Duration::from_millis(RAFT_SHUTDOWN_MS_MAX);
        match tokio::time::timeout(limit, self.ctx.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "raft shutdown"),
            Err(_) => tracing::error!(
                storage_error = ?self.ctx.log.io_error(),
                "raft did not stop within {RAFT_SHUTDOWN_MS_MAX} ms (its log cannot be written); stopping anyway"
            ),
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!(id = self.ctx.id, "node stopped");
    }
}

/// Triggers a snapshot when the entries applied since the last one, or the bytes of unpurged
/// log, pass this node's thresholds. Thresholds grow with the node id (x1, x1.25, x1.5, ...) so
/// the replicas of a cluster snapshot at different times: building one stops that node's apply
/// for a moment, and a majority keeps going meanwhile; the leader's are doubled.
async fn snapshot_policy(
    ctx: Arc<NodeCtx>,
    log: LogStore,
    every: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let stagger = 4 + (ctx.id.saturating_sub(1) % 3);
    let entries_max = every.saturating_mul(stagger) / 4;
    let bytes_max = SNAPSHOT_LOG_BYTES_MAX.saturating_mul(stagger) / 4;
    let mut requested_at: Option<(u64, std::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(SNAPSHOT_CHECK_MS)) => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = ctx.shared.snapshot_index();
        // The leader waits twice as long: its pause would hold every client's answer, a
        // follower's only that follower (the other replicas still make a majority).
        let leading = ctx.raft.metrics().borrow().current_leader == Some(ctx.id);
        let factor = if leading { 2 } else { 1 };
        let due = ctx.shared.applied_index().saturating_sub(snapshot) >= entries_max * factor
            || log.memory_bytes() >= bytes_max * factor;
        // One request at a time: wait for the snapshot to land (or 60 s) before asking again.
        let waiting = requested_at
            .is_some_and(|(at, when)| at == snapshot && when.elapsed() < Duration::from_secs(60));
        if due && !waiting {
            requested_at = Some((snapshot, std::time::Instant::now()));
            if ctx.raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    ctx: Arc<NodeCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("connection limit reached; refusing");
            incoming.refuse();
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(conn) = incoming.await else { return };
            let alpn = conn
                .handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.protocol);
            match alpn.as_deref() {
                Some(p) if p == protocol::ALPN_CLIENT => crate::api::serve_client(conn, ctx).await,
                Some(p) if p == protocol::ALPN_PEER => {
                    if conn.peer_identity().is_none() {
                        conn.close(1u32.into(), b"peers must present a cluster certificate");
                        return;
                    }
                    serve_peer(
                        conn,
                        ctx.raft.clone(),
                        ctx.faults.clone(),
                        ctx.election.clone(),
                    )
                    .await;
                }
                _ => conn.close(1u32.into(), b"unknown protocol"),
            }
        });
    }
}

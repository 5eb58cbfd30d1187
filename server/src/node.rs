//! A stockd node: TLS, storage, Raft, the QUIC endpoint, and their lifecycle.
//!
//! One UDP port per node serves both ALPNs: clients (`stockd/1`) and peers (`stockd-raft/1`,
//! which must present a certificate of the cluster CA). [`Node::start`] brings everything up;
//! [`Node::shutdown`] stops accepting, stops Raft (flushing the log) and closes the endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use protocol::{NodeAddr, NotReady};

use crate::clock::Clock;
use crate::memory::MemoryBudget;
use crate::metrics::Metrics;
use crate::raft::consensus::{Consensus, ConsensusParts};
use crate::raft::election::{Election, ElectionTimings};
use crate::raft::log_store::{Durability, LogStore};
use crate::raft::network::{Faults, Network};
use crate::raft::proposer::{Proposer, ReadBarrier};
use crate::raft::snapshots::{SnapshotPolicy, SnapshotThresholds};
use crate::raft::state_machine::{Shared, StateMachine};
use crate::raft::NodeId;

/// Longest wait for Raft to stop at shutdown, ms (its last log writes included).
pub const RAFT_SHUTDOWN_MS_MAX: u64 = 15_000;
/// How long a stopping node lets HTTP requests in progress finish, s.
pub const HTTP_DRAIN_S: u64 = 2;

pub use crate::raft::consensus::RaftTimings;

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
    /// TCP address of the HTTP/JSON front (port 0 picks a free one); `None`: no HTTP.
    pub http: Option<SocketAddr>,
    /// Resident memory above which new reservations and direct orders are refused `busy`,
    /// MiB ([`crate::memory`]);
    /// `Some(0)`: no budget; `None`: a share of the host's memory.
    pub memory_limit_mib: Option<u64>,
}

/// What a node's tasks share.
pub struct NodeCtx {
    /// This node's id.
    pub id: NodeId,
    /// Its advertised address.
    pub addr: String,
    /// Raft, in stockd's words.
    pub consensus: Consensus,
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
    /// What was refused for identity or role (SPEC section 7).
    pub refusals: crate::auth::access::Refusals,
    /// The memory budget and what it refused.
    pub memory: Arc<crate::memory::MemoryBudget>,
    /// The node's metrics (`/metrics`): every front records its requests here.
    pub metrics: Arc<Metrics>,
    /// Sends operations that only the leader runs to it (the HTTP front on a follower).
    pub forwarder: crate::raft::forward::Forwarder,
}

impl NodeCtx {
    /// Whether the node may answer reads and calls itself ready: its state is rebuilt and its
    /// log can be written (a node whose disk fails acknowledges nothing).
    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
            && self.log.io_error().is_none()
            && self.shared.snapshot_error().is_none()
    }

    /// Whether the node is ready (SPEC section 6, `/readyz`): not removed, its state rebuilt,
    /// its storage working, and a live leader known: itself with a majority heard within two
    /// election timeouts, or a leader it heard from within the lease. Else the first reason
    /// in [`NotReady`]'s order. Reads of `local` consistency do not need all this (they need
    /// [`NodeCtx::is_ready`]); a load balancer does.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.membership.removal().is_some() {
            return Err(NotReady::Removed);
        }
        if !self.shared.is_ready() {
            return Err(NotReady::Rebuilding);
        }
        if self.log.io_error().is_some() || self.shared.snapshot_error().is_some() {
            return Err(NotReady::StorageFailing);
        }
        let leader_live = match self.consensus.leader() {
            None => false,
            Some(leader) if leader == self.id => self.quorum_lost_ms().is_none(),
            Some(_) => self.election.leader_is_live(),
        };
        if !leader_live {
            return Err(NotReady::NoLeader);
        }
        Ok(())
    }

    /// If this node leads but has heard from no majority for longer than two election
    /// timeouts, for how long (ms): a write could not commit, so it is answered `unavailable`
    /// at once instead of waiting out the write timeout.
    pub fn quorum_lost_ms(&self) -> Option<u64> {
        self.consensus
            .quorum_lost_ms(2 * self.timings.election_max_ms)
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
    /// The HTTP/JSON front, if configured.
    http: Option<crate::http::HttpServer>,
    /// Held for the node's life: see [`LOCK_FILE`].
    _data_dir_lock: std::fs::File,
}

/// Why a node could not start. Each variant names the part that failed; the text says what
/// to do where the fix is not obvious.
#[derive(Debug)]
pub enum StartError {
    /// The configuration cannot work (e.g. node id 0, an explicit TLS directory without a
    /// certificate).
    Config(String),
    /// The listen address cannot be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// A file or directory of the node could not be read or written.
    Files {
        /// Which (e.g. "data directory", "node certificate").
        what: &'static str,
        /// Why.
        error: String,
    },
    /// The snapshots or the Raft log could not be opened (the log refuses to open when
    /// committed entries are missing; its message says how to recover).
    Storage {
        /// "snapshots" or "raft log".
        what: &'static str,
        /// Why.
        error: String,
    },
    /// Raft could not start or initialise the cluster.
    Consensus(crate::raft::consensus::ConsensusError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => f.write_str(e),
            StartError::Bind { addr, error } => write!(f, "binding {addr}: {error}"),
            StartError::Files { what, error } | StartError::Storage { what, error } => {
                write!(f, "{what}: {error}")
            }
            StartError::Consensus(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

fn files_err(what: &'static str) -> impl Fn(pki::TlsError) -> StartError {
    move |e| StartError::Files {
        what,
        error: e.to_string(),
    }
}

/// A node's TLS material, loaded (and created where missing) before anything else starts.
struct NodeTls {
    identity: pki::Identity,
    ca: Vec<pki::CertificateDer<'static>>,
    ca_path: PathBuf,
    /// The administrator token written next to the CA, if this node has the CA's key.
    admin_token: Option<pki::Token>,
}

impl NodeTls {
    /// Loads the node's certificate from its TLS directory, issuing one from the cluster CA
    /// (created if missing) when there is none.
    fn load_or_issue(config: &NodeConfig) -> Result<NodeTls, StartError> {
        let tls_dir = config
            .tls_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.clone());
        let ca_dir = config.ca_dir.clone().unwrap_or_else(|| tls_dir.clone());
        if !pki::TlsFiles::in_dir(&tls_dir).node_pem.exists() {
            if !ca_dir.join("ca.pem").exists() {
                pki::ensure_ca(&ca_dir).map_err(files_err("creating the cluster CA"))?;
            }
            let names = vec![config.listen.ip().to_string()];
            pki::ensure_node(&ca_dir, &tls_dir, &names)
                .map_err(files_err("issuing the node certificate"))?;
        }
        if pki::TlsFiles::in_dir(&ca_dir).ca_key.exists() {
            // Where certificates are issued, so is an administrator's identity: stockctl and
            // the demo use it by default (SPEC section 7).
            pki::ensure_admin(&ca_dir).map_err(files_err("issuing the admin identity"))?;
        }
        // And an administrator's bearer token for HTTP (the node proposes its grant).
        let admin_token = if pki::TlsFiles::in_dir(&ca_dir).ca_key.exists() {
            let (_, token) =
                pki::ensure_admin_token(&ca_dir).map_err(files_err("writing the admin token"))?;
            Some(token)
        } else {
            None
        };
        let identity = pki::load_identity(&tls_dir).map_err(files_err("node certificate"))?;
        // The CA file to show clients: the cluster CA's own, else this node's copy.
        let ca_path = if ca_dir.join("ca.pem").exists() {
            ca_dir.join("ca.pem")
        } else {
            tls_dir.join("ca.pem")
        };
        let ca = pki::load_certs(&ca_path).map_err(files_err("CA certificate"))?;
        Ok(NodeTls {
            identity,
            ca,
            ca_path,
            admin_token,
        })
    }
}

/// Refuses configurations that cannot work before any file is created.
fn check_config(config: &NodeConfig) -> Result<(), StartError> {
    if config.id == 0 {
        return Err(StartError::Config("node id must be > 0".to_owned()));
    }
    // Check the address first, so that a taken port fails before any file is created.
    std::net::UdpSocket::bind(config.listen).map_err(|error| StartError::Bind {
        addr: config.listen,
        error,
    })?;
    if let (Some(tls_dir), None) = (&config.tls_dir, &config.ca_dir) {
        // An explicit TLS directory must hold the node's certificate: creating a new CA
        // there (a typo in the path) would make a node no peer trusts.
        if !pki::TlsFiles::in_dir(tls_dir).node_pem.exists() {
            return Err(StartError::Config(format!(
                "{}: no node.pem (give --ca-dir to issue one from the cluster CA, or run \
                 `stockd certs`)",
                tls_dir.display()
            )));
        }
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| StartError::Files {
        what: "data directory",
        error: e.to_string(),
    })?;
    claim_data_dir(&config.data_dir, config.id)
}

/// The file in a data directory naming the node it belongs to.
pub const NODE_ID_FILE: &str = "node-id";

/// The file a running node holds an exclusive lock on, so that a second `stockd` on the same
/// data directory refuses to start instead of writing the same log.
pub const LOCK_FILE: &str = "lock";

/// Locks `dir` for this process (held while the returned file is open).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join(LOCK_FILE);
    let files_err = |e: std::io::Error| StartError::Files {
        what: "data directory lock",
        error: format!("{}: {e}", path.display()),
    };
    let file = std::fs::File::create(&path).map_err(files_err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Config(format!(
            "{} is in use by another stockd process: one node per data directory",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(files_err(e)),
    }
}

/// Refuses a data directory written by another node id (a node started on its neighbour's
/// directory would vote with a log that is not its own); a new directory is claimed.
fn claim_data_dir(dir: &std::path::Path, id: NodeId) -> Result<(), StartError> {
    let path = dir.join(NODE_ID_FILE);
    let files_err = |e: std::io::Error| StartError::Files {
        what: "node id file",
        error: format!("{}: {e}", path.display()),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == id.to_string() => Ok(()),
        Ok(text) => Err(StartError::Config(format!(
            "{} belongs to node {} (its {NODE_ID_FILE} file), not node {id}: start node {} \
             there, or give this node its own --data-dir",
            dir.display(),
            text.trim(),
            text.trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, format!("{id}\n")).map_err(files_err)
        }
        Err(e) => Err(files_err(e)),
    }
}

/// The node's QUIC endpoint on `listen`, and the address it bound.
fn bind(tls: &NodeTls, listen: SocketAddr) -> Result<(quinn::Endpoint, SocketAddr), StartError> {
    let server = pki::server_config(&tls.identity, &tls.ca).map_err(files_err("TLS"))?;
    let bind_err = |error| StartError::Bind {
        addr: listen,
        error,
    };
    let (endpoint, buffers) = pki::endpoint(listen, Some(server)).map_err(bind_err)?;
    if buffers.recv_capped() {
        tracing::warn!(
            granted = buffers.recv,
            asked = pki::UDP_BUFFER_BYTES,
            "the host caps UDP receive buffers (net.core.rmem_max): bursts of replication \
             and client frames may be dropped and resent late (docs/OPERATIONS.md, \
             \"Network buffers\")"
        );
    }
    let local_addr = endpoint.local_addr().map_err(bind_err)?;
    Ok((endpoint, local_addr))
}

/// The state machine and the log, opened.
struct Storage {
    state_machine: StateMachine,
    log: LogStore,
    /// Index of the last entry known committed before this start (0 if none).
    committed: u64,
}

impl Storage {
    /// Starts Raft on this storage, forms the cluster of `config.initial_members` if the node
    /// is pristine, and has the node become ready once it applied what was committed before
    /// this start (`ready_after`).
    async fn start_raft(
        self,
        config: &NodeConfig,
        network: Network,
    ) -> Result<Consensus, StartError> {
        let shared = self.state_machine.shared();
        let consensus = Consensus::start(ConsensusParts {
            id: config.id,
            timings: config.timings,
            network,
            log: self.log,
            state_machine: self.state_machine,
        })
        .await
        .map_err(StartError::Consensus)?;
        consensus
            .initialize_if_pristine(&config.initial_members)
            .await
            .map_err(StartError::Consensus)?;
        ready_after(&shared, self.committed);
        Ok(consensus)
    }

    async fn open(
        config: &NodeConfig,
        faults: Arc<Faults>,
        metrics: Arc<Metrics>,
    ) -> Result<Storage, StartError> {
        let storage_err = |what| {
            move |e: &dyn std::fmt::Display| StartError::Storage {
                what,
                error: e.to_string(),
            }
        };
        let state_machine = StateMachine::open(&config.data_dir.join("snapshots"), faults, metrics)
            .map_err(|e| storage_err("snapshots")(&e))?;
        let log_dir = config.data_dir.join("log");
        let log = if config.initial_members.is_empty() {
            LogStore::open(&log_dir, config.durability)
        } else {
            LogStore::open_as_member(&log_dir, config.durability)
        }
        .map_err(|e| storage_err("raft log")(&e))?;
        let committed = log.committed_index();
        log.follow_applied(state_machine.shared().applied());
        Ok(Storage {
            state_machine,
            log,
            committed,
        })
    }
}

/// Marks the node ready once everything committed before the restart is applied again: until
/// then reads answer `not_ready` rather than show a partial ledger (SPEC section 4).
fn ready_after(shared: &Arc<Shared>, committed: u64) {
    if shared.applied_index() >= committed {
        shared.set_ready(true);
        return;
    }
    let waiting = shared.clone();
    tokio::spawn(async move {
        let mut applied = waiting.applied();
        if applied.wait_for(|a| *a >= committed).await.is_ok() {
            waiting.set_ready(true);
            tracing::info!(index = committed, "state rebuilt; serving reads");
        }
    });
}

/// The election timeouts of `timings`.
fn election_timings(timings: &RaftTimings) -> ElectionTimings {
    ElectionTimings {
        min_ms: timings.election_min_ms,
        max_ms: timings.election_max_ms,
    }
}

/// The ledger's digest on one node, and the log index it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDigest {
    /// Last applied log index.
    pub applied_index: u64,
    /// The ledger's digest (hex).
    pub digest: String,
}

impl Node {
    /// Starts a node: TLS files (created if missing), state machine from the newest snapshot,
    /// log store, QUIC endpoint, Raft, and, if `initial_members` is set and the node is pristine,
    /// a new cluster.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        check_config(&config)?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let tls = NodeTls::load_or_issue(&config)?;
        let faults = Arc::new(Faults::default());
        let metrics = Arc::new(Metrics::new());
        let storage = Storage::open(&config, faults.clone(), metrics.clone()).await?;
        let shared = storage.state_machine.shared();
        let (endpoint, local_addr) = bind(&tls, config.listen)?;
        let peer = pki::peer_client_config(&tls.identity, &tls.ca).map_err(files_err("TLS"))?;
        let network = Network::new(endpoint.clone(), peer.clone(), faults.clone());
        let log = storage.log.clone();
        let consensus = storage.start_raft(&config, network.clone()).await?;

        let election = Election::new(config.id, log.clone(), election_timings(&config.timings));
        let memory = Arc::new(MemoryBudget::for_config(config.memory_limit_mib));
        crate::memory::start_sampler(&memory);
        let ctx = Arc::new(NodeCtx {
            id: config.id,
            addr: config
                .advertise
                .clone()
                .unwrap_or_else(|| local_addr.to_string()),
            proposer: Proposer::start(
                config.id,
                &consensus,
                shared.clone(),
                config.clock.clone(),
                memory.clone(),
            ),
            reads: ReadBarrier::start(&consensus),
            consensus,
            shared,
            durability: config.durability.name().to_owned(),
            faults,
            clock: config.clock.clone(),
            timings: config.timings,
            frame_budget: Arc::new(Semaphore::new(crate::api::NODE_FRAME_KIB_MAX)),
            replies: Arc::default(),
            log,
            election,
            membership: crate::raft::membership::Membership::new(endpoint.clone(), peer.clone()),
            forwarder: crate::raft::forward::Forwarder::new(endpoint.clone(), peer),
            refusals: crate::auth::access::Refusals::default(),
            memory,
            metrics,
        });
        ctx.metrics.attach(&ctx);
        let (shutdown, shutdown_rx) = watch::channel(false);
        spawn_tasks(&ctx, network, &shutdown_rx);
        let accept = tokio::spawn(crate::accept::accept_loop(
            endpoint.clone(),
            ctx.clone(),
            shutdown_rx.clone(),
        ));
        let http = start_http(&config, &tls, &ctx, &shutdown_rx).await?;
        tracing::info!(id = config.id, addr = %local_addr, "node started");
        Ok(Node {
            http,
            ctx,
            endpoint,
            local_addr,
            shutdown,
            accept,
            ca_fingerprint: pki::fingerprint(&tls.ca[0]),
            ca_path: tls.ca_path,
            _data_dir_lock: data_dir_lock,
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

    /// The bound HTTP address, if the node serves HTTP.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(crate::http::HttpServer::local_addr)
    }

    /// Fault injection (tests).
    pub fn faults(&self) -> Arc<Faults> {
        self.ctx.faults.clone()
    }

    /// This node's status.
    pub fn status(&self) -> protocol::NodeStatus {
        crate::api::status(&self.ctx)
    }

    /// Whether this node is ready, or why not ([`NodeCtx::readiness`]).
    pub fn readiness(&self) -> Result<(), NotReady> {
        self.ctx.readiness()
    }

    /// Whether this node's ledger holds the bearer token `id` (a `CreateToken` it applied and
    /// that has not expired): what it checks on each HTTP request.
    pub fn holds_token(&self, id: &str) -> bool {
        self.ctx.shared.credentials.load().token(id).is_some()
    }

    /// This node's metrics (render them with [`Metrics::render`]).
    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// The digest of this node's ledger and the index it reflects (the ledger is frozen under
    /// its lock and encoded outside it).
    pub fn digest(&self) -> LedgerDigest {
        let (frozen, applied_index) = {
            let ledger = self.ctx.shared.ledger.read().expect("ledger lock poisoned");
            (ledger.freeze(), self.ctx.shared.applied_index())
        };
        LedgerDigest {
            applied_index,
            digest: frozen.digest(),
        }
    }

    /// Asks Raft to build a snapshot now, whatever the snapshot policy says (tests,
    /// benchmarks); `false` if Raft has stopped. Raft ignores the request while a build is in
    /// progress; when this returns, Raft has taken it (started a build or ignored it).
    pub async fn trigger_snapshot(&self) -> bool {
        self.ctx.consensus.trigger_snapshot().await
    }

    /// Initialises a new cluster with these voters (this node must be pristine).
    pub async fn initialize(
        &self,
        members: &[NodeAddr],
    ) -> Result<(), crate::raft::consensus::ConsensusError> {
        self.ctx.consensus.initialize(members).await
    }

    /// Stops the node: no new connections, Raft stopped (the log store flushes), endpoint
    /// closed. Waits at most a few seconds for connections to drain.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.ctx.shared.stop();
        if let Some(http) = self.http {
            http.stop(Duration::from_secs(HTTP_DRAIN_S)).await;
        }
        let _ = self.accept.await;
        let limit = Duration::from_millis(RAFT_SHUTDOWN_MS_MAX);
        self.ctx
            .consensus
            .shutdown(limit, self.ctx.log.io_error())
            .await;
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!(id = self.ctx.id, "node stopped");
    }
}

/// Starts the HTTP front if configured, and the admin token's bootstrap if this node wrote
/// one.
async fn start_http(
    config: &NodeConfig,
    tls: &NodeTls,
    ctx: &Arc<NodeCtx>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<crate::http::HttpServer>, StartError> {
    if let Some(token) = tls.admin_token.clone() {
        let task = crate::http::bootstrap_admin_token(ctx.clone(), token, shutdown.clone());
        tokio::spawn(task);
    }
    let Some(listen) = config.http else {
        return Ok(None);
    };
    let probes = Arc::new(crate::http::NodeProbes::new(ctx.clone()));
    let server = crate::http::HttpServer::start(listen, ctx.clone(), probes).await;
    let server = server.map_err(|e| StartError::Config(format!("HTTP on {listen}: {e}")))?;
    Ok(Some(server))
}

/// Starts a node's background tasks: elections, the snapshot policy and the removal watch.
fn spawn_tasks(ctx: &Arc<NodeCtx>, network: Network, shutdown: &watch::Receiver<bool>) {
    ctx.consensus
        .spawn_elections(ctx.election.clone(), network, shutdown.clone());
    let policy = SnapshotPolicy {
        id: ctx.id,
        thresholds: SnapshotThresholds {
            entries: ctx.timings.snapshot_every,
            log_bytes: ctx.timings.snapshot_log_bytes,
            interval_ms: ctx.timings.snapshot_interval_ms,
        },
        consensus: ctx.consensus.clone(),
        shared: ctx.shared.clone(),
        log: ctx.log.clone(),
    };
    tokio::spawn(policy.run(shutdown.clone()));
    tokio::spawn(crate::raft::membership::watch(
        ctx.clone(),
        shutdown.clone(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_belongs_to_one_node_id() {
        let dir = std::env::temp_dir().join(format!("stockd-node-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        claim_data_dir(&dir, 2).expect("a new directory is claimed");
        claim_data_dir(&dir, 2).expect("and is its own afterwards");
        match claim_data_dir(&dir, 3) {
            Err(StartError::Config(why)) => assert!(why.contains("belongs to node 2"), "{why}"),
            other => panic!("node 3 on node 2's directory: {other:?}"),
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_data_directory_is_locked_by_one_process_at_a_time() {
        let dir = std::env::temp_dir().join(format!("stockd-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let held = lock_data_dir(&dir).expect("the first one locks");
        match lock_data_dir(&dir) {
            Err(StartError::Config(why)) => assert!(why.contains("in use"), "{why}"),
            other => panic!("a second lock: {other:?}"),
        }
        drop(held);
        lock_data_dir(&dir).expect("free again");
        std::fs::remove_dir_all(&dir).ok();
    }
}

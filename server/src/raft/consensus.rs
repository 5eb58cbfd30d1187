//! The node's view of Raft: the one handle the rest of the server holds.
//!
//! Everything outside `raft/` asks [`Consensus`] questions in stockd's words (who leads, is
//! this node leading, what is its role) and never sees an openraft type: a move to another
//! openraft version, or another Raft, stays inside this module tree.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ServerState};
use tokio::sync::watch;

use protocol::{NodeAddr, Role, ServerError};

use super::election::Election;
use super::log_store::LogStore;
use super::network::{Faults, Network};
use super::state_machine::StateMachine;
use super::{NodeId, Raft};

/// Raft entries in one AppendEntries RPC (each entry is one batch of up to 1 MiB).
pub const ENTRIES_PER_APPEND_MAX: u64 = 16;
/// Bytes of one snapshot chunk sent to a follower.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// How long one snapshot chunk may take to be sent and written by the follower, ms. openraft
/// 0.9 allows 200 ms by default; a chunk that takes longer is sent again, and after five
/// failures in a row the whole transfer starts again from its first byte: a follower slower
/// than that for a megabyte (a busy host, a slow disk or link) would never install a snapshot.
/// A follower that is down holds its own transfer this long per attempt (the peer connection's
/// idle timeout usually ends it sooner); nothing else waits for it.
pub const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 10_000;

const _: () = assert!(
    (ENTRIES_PER_APPEND_MAX as usize) * 2 * super::proposer::BATCH_BYTES_MAX
        < protocol::PEER_FRAME_BYTES_MAX
);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES * 2 < protocol::PEER_FRAME_BYTES_MAX);

/// Raft timing, ms, and the snapshot and membership thresholds that go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimings {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
    /// Entries between snapshots (before the stagger of `raft::snapshots::due`).
    pub snapshot_every: u64,
    /// Bytes of unpurged log that trigger a snapshot (before stagger).
    pub snapshot_log_bytes: u64,
    /// Time since the last snapshot that triggers one if anything was applied, ms (before
    /// stagger).
    pub snapshot_interval_ms: u64,
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
            snapshot_every: super::snapshots::SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            snapshot_log_bytes: super::snapshots::SNAPSHOT_LOG_BYTES_DEFAULT,
            snapshot_interval_ms: super::snapshots::SNAPSHOT_INTERVAL_MS_DEFAULT,
            log_kept: super::snapshots::LOG_KEPT_BEHIND_SNAPSHOT,
            add_node_catch_up_ms: super::membership::ADD_NODE_WAIT_MS_DEFAULT,
        }
    }
}

/// What Raft is built from.
pub struct ConsensusParts {
    /// This node's id (> 0).
    pub id: NodeId,
    /// Raft timing.
    pub timings: RaftTimings,
    /// The QUIC network to the other nodes.
    pub network: Network,
    /// The log on disk.
    pub log: LogStore,
    /// The state machine, restored from the newest snapshot.
    pub state_machine: StateMachine,
}

/// Why Raft could not start or a cluster could not be initialised.
#[derive(Debug)]
pub enum ConsensusError {
    /// The timings are inconsistent (e.g. heartbeat not below the election timeout).
    Config(String),
    /// Raft failed to start (its storage could not be read).
    Start(String),
    /// `initialize` failed: the node is not pristine, or its storage failed.
    Initialize(String),
}

impl std::fmt::Display for ConsensusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsensusError::Config(e) => write!(f, "raft configuration: {e}"),
            ConsensusError::Start(e) => write!(f, "starting raft: {e}"),
            ConsensusError::Initialize(e) => write!(f, "initialising the cluster: {e}"),
        }
    }
}

impl std::error::Error for ConsensusError {}

/// Raft as this node sees it now: what `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsensusView {
    /// Leader, follower, candidate, learner or shutdown (never `Removed`: the membership
    /// module decides that).
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader this node knows, with its address.
    pub leader: Option<NodeAddr>,
    /// Voters and learners of the membership in effect.
    pub members: Vec<NodeAddr>,
    /// Index of the last entry in this node's log (0 if none).
    pub last_log_index: u64,
    /// Log index of the membership in effect (0 if none).
    pub membership_index: u64,
}

/// How far behind the leader's log one follower or learner is, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerLag {
    /// The follower's node id.
    pub id: NodeId,
    /// Entries of the leader's log it is not known to hold: the leader's last log index minus
    /// the last index it acknowledged (all of them if it acknowledged none).
    pub entries: u64,
}

/// The Raft handle of a node.
#[derive(Clone)]
pub struct Consensus {
    id: NodeId,
    raft: Raft,
    /// The log, for its health: a leader whose log cannot be written does not lead.
    log: LogStore,
    /// The network Raft sends through (shared state), for its AppendEntries budgets.
    network: Network,
}

impl Consensus {
    /// Starts Raft with stockd's settings: elections are left to [`Election`] (pre-vote and
    /// the recovery rules of ARCHITECTURE.md) and snapshots to [`super::snapshots`] (entries
    /// and log bytes, staggered across nodes), so openraft's own are off.
    pub async fn start(parts: ConsensusParts) -> Result<Consensus, ConsensusError> {
        let t = parts.timings;
        let config = openraft::Config {
            cluster_name: "stockd".to_owned(),
            heartbeat_interval: t.heartbeat_ms,
            election_timeout_min: t.election_min_ms,
            election_timeout_max: t.election_max_ms,
            max_payload_entries: ENTRIES_PER_APPEND_MAX,
            snapshot_policy: openraft::SnapshotPolicy::Never,
            enable_elect: false,
            max_in_snapshot_log_to_keep: t.log_kept,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
            install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT_MS,
            ..Default::default()
        };
        let config = config
            .validate()
            .map_err(|e| ConsensusError::Config(e.to_string()))?;
        let log = parts.log.clone();
        let raft = Raft::new(
            parts.id,
            Arc::new(config),
            parts.network.clone(),
            parts.log,
            parts.state_machine,
        )
        .await
        .map_err(|e| ConsensusError::Start(e.to_string()))?;
        Ok(Consensus {
            id: parts.id,
            raft,
            log,
            network: parts.network,
        })
    }

    /// Initialises a new cluster with these voters if this node has never been part of one
    /// (a restarted node ignores its `--peer` list: its log knows the members).
    pub async fn initialize_if_pristine(&self, voters: &[NodeAddr]) -> Result<(), ConsensusError> {
        if voters.is_empty() {
            return Ok(());
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ConsensusError::Initialize(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        self.initialize(voters).await
    }

    /// Initialises a new cluster with these voters; this node must be pristine.
    pub async fn initialize(&self, voters: &[NodeAddr]) -> Result<(), ConsensusError> {
        self.raft
            .initialize(basic_nodes(voters))
            .await
            .map_err(|e| ConsensusError::Initialize(e.to_string()))
    }

    /// Runs the election loop until `shutdown` (see [`Election::run`]).
    pub fn spawn_elections(
        &self,
        election: Arc<Election>,
        network: Network,
        shutdown: watch::Receiver<bool>,
    ) {
        tokio::spawn(election.run(self.raft.clone(), network, shutdown));
    }

    /// Serves a peer connection (Raft RPCs, pre-votes) until it closes.
    pub async fn serve_peer(
        &self,
        conn: quinn::Connection,
        faults: Arc<Faults>,
        election: Arc<Election>,
        status: super::network::StatusFn,
        forward: super::forward::ForwardFn,
    ) {
        let raft = self.raft.clone();
        super::network::serve_peer(conn, raft, faults, election, status, forward).await;
    }

    /// The leader this node knows, if any. Never this node while its log cannot be written:
    /// it stops leading then (see `election`), even while openraft still holds it leader
    /// (its core may wait on the disk to save the next term).
    pub fn leader(&self) -> Option<NodeId> {
        let leader = self.raft.metrics().borrow().current_leader;
        leader.filter(|l| *l != self.id || !self.log.disk_failing())
    }

    /// Whether this node believes it leads (a deposed leader may still think so: reads that
    /// must be linearizable also pass the read barrier).
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    /// `not_leader`, naming the leader this node knows (with its address) so that the client
    /// goes there.
    pub fn not_leader(&self) -> ServerError {
        super::proposer::not_leader(&self.raft, self.leader())
    }

    /// If this node leads but has heard from no majority for longer than `limit_ms`, for how
    /// long (ms).
    pub fn quorum_lost_ms(&self, limit_ms: u64) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let since = metrics.millis_since_quorum_ack?;
        (since > limit_ms).then_some(since)
    }

    /// Role, term, leader, members and log position now.
    pub fn view(&self) -> ConsensusView {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let addr = |id: NodeId, n: &BasicNode| NodeAddr {
            id,
            addr: n.addr.clone(),
        };
        // A leader that cannot write its log leads nothing (see `leader`): it says follower,
        // of no known leader, until it hears of the next one.
        let stepped_aside = metrics.state == ServerState::Leader && self.log.disk_failing();
        let (state, leader) = if stepped_aside {
            (ServerState::Follower, None)
        } else {
            (metrics.state, metrics.current_leader)
        };
        ConsensusView {
            role: role(state),
            term: metrics.current_term,
            leader: leader.and_then(|id| membership.get_node(&id).map(|n| addr(id, n))),
            members: membership.nodes().map(|(id, n)| addr(*id, n)).collect(),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            membership_index: metrics.membership_config.log_id().map_or(0, |l| l.index),
        }
    }

    /// On the leader, each peer's AppendEntries budget and the AppendEntries openraft dropped
    /// unanswered (`network::AppendBudget`), for peers whose budget ever changed; empty on
    /// other nodes (a node that stepped down would otherwise show its last budgets forever).
    pub fn append_stats(&self) -> Vec<(NodeId, super::network::AppendStats)> {
        if self.is_leader() {
            self.network.append_stats()
        } else {
            Vec::new()
        }
    }

    /// On the leader, each other member's lag behind its log (empty on other nodes).
    pub fn replication_lag(&self) -> Vec<FollowerLag> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let Some(replication) = metrics.replication.as_ref() else {
            return Vec::new();
        };
        let last = metrics.last_log_index.unwrap_or(0);
        replication
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, matched)| FollowerLag {
                id: *id,
                entries: last.saturating_sub(matched.map_or(0, |m| m.index)),
            })
            .collect()
    }

    /// Whether openraft holds this node leader although its log cannot be written: it
    /// proposes nothing then (see `election`: it stops leading).
    pub(in crate::raft) fn stepped_aside(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader && self.log.disk_failing()
    }

    /// Asks Raft to build a snapshot now; `false` if Raft has stopped. Returns once Raft's core
    /// has taken the request: it has then started a build, or ignored the request because one
    /// was in progress. openraft only queues the request; without the wait, a request made
    /// during a build could be taken after that build ended and start a second one, later.
    pub async fn trigger_snapshot(&self) -> bool {
        if self.raft.trigger().snapshot().await.is_err() {
            return false;
        }
        // Requests to the core are taken in order: once this one is answered, so was the
        // trigger.
        self.raft.with_raft_state(|_| ()).await.is_ok()
    }

    /// Stops Raft, waiting at most `limit` for its last log writes (on a disk that keeps
    /// failing they never end; the node stops anyway and says so).
    pub async fn shutdown(&self, limit: Duration, storage_error: Option<String>) {
        match tokio::time::timeout(limit, self.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "raft shutdown"),
            Err(_) => tracing::error!(
                storage_error = ?storage_error,
                "raft did not stop within {} ms (its log cannot be written); stopping anyway",
                limit.as_millis()
            ),
        }
    }

    /// The openraft handle, for the modules of `raft/` only.
    pub(in crate::raft) fn raft(&self) -> &Raft {
        &self.raft
    }
}

fn basic_nodes(members: &[NodeAddr]) -> BTreeMap<NodeId, BasicNode> {
    members
        .iter()
        .map(|m| {
            let node = BasicNode {
                addr: m.addr.clone(),
            };
            (m.id, node)
        })
        .collect()
}

fn role(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

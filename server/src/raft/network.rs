//! Node-to-node Raft RPC over QUIC (ALPN `stockd-raft/1`, mutual TLS).
//!
//! Each RPC is one bidirectional stream on a pooled connection to the target: the caller writes
//! one [`PeerRequest`] frame and finishes its side; the target answers one [`PeerReply`] frame.
//! Frames use the protocol's codec with [`protocol::PEER_FRAME_BYTES_MAX`].
//!
//! [`Faults`] lets tests cut a node off: an isolated node sends no RPC and answers none, which
//! is what a network partition looks like to Raft.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use super::election::{AppendSummary, Election, PreVoteRequest, PreVoteResponse};
use super::{NodeId, Raft, TypeConfig};
use crate::hops::{self, Hop};

/// A Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// AppendEntries (and heartbeats).
    Append(AppendEntriesRequest<TypeConfig>),
    /// RequestVote.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A pre-vote (see `election`).
    PreVote(PreVoteRequest),
    /// The node's status: how `add-node` checks a newcomer and how a node asks its peers
    /// whether it was removed (answered even while isolated: it is not Raft traffic).
    Status,
    /// Client operations a follower forwards to the leader (`forward`).
    Forward(super::forward::Forwarded),
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerReply {
    /// AppendEntries result.
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// RequestVote result.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// InstallSnapshot result.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// PreVote answer.
    PreVote(PreVoteResponse),
    /// The node's status.
    Status(Box<protocol::NodeStatus>),
    /// The results of forwarded operations, one per operation.
    Forwarded(Vec<protocol::OpResult>),
}

/// How a node reports its status to a peer that asks.
pub type StatusFn = Arc<dyn Fn() -> protocol::NodeStatus + Send + Sync>;

/// Fault injection for tests (and for operators draining a node): while `isolated`, the node
/// neither sends nor answers Raft RPCs; while snapshots are held, a snapshot build waits after
/// its freeze, before encoding; with a replication delay, each AppendEntries and snapshot chunk
/// it receives waits in proportion to its size first (a slow link or a busy follower).
#[derive(Debug, Default)]
pub struct Faults {
    isolated: AtomicBool,
    /// Microseconds an AppendEntries or snapshot chunk waits per KiB of its frame before it is
    /// handled.
    replication_us_per_kib: AtomicU64,
    snapshots_held: std::sync::Mutex<bool>,
    snapshots_released: std::sync::Condvar,
}

/// How often a held snapshot build looks whether its node stops, ms.
const SNAPSHOT_HOLD_CHECK_MS: u64 = 100;

impl Faults {
    /// Cuts the node off from its peers, or reconnects it.
    pub fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::SeqCst);
    }

    /// Whether the node is cut off.
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }

    /// Makes every AppendEntries and snapshot chunk this node receives wait `us_per_kib`
    /// microseconds per KiB of its frame before it is handled (0: no wait).
    pub fn set_replication_delay(&self, us_per_kib: u64) {
        self.replication_us_per_kib
            .store(us_per_kib, Ordering::SeqCst);
    }

    /// Waits as [`Faults::set_replication_delay`] says for a received frame of `bytes`.
    async fn replication_delay(&self, bytes: usize) {
        let per_kib = self.replication_us_per_kib.load(Ordering::SeqCst);
        if per_kib > 0 {
            let delay = Duration::from_micros(per_kib.saturating_mul(bytes as u64 / 1024));
            tokio::time::sleep(delay).await;
        }
    }

    /// Holds every snapshot build of this node between its freeze and its encoding (a test
    /// shows that nothing else waits for an encoder), or lets them go on. A node that stops
    /// lets its held build go (and the build gives up).
    pub fn hold_snapshots(&self, held: bool) {
        *self
            .snapshots_held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = held;
        self.snapshots_released.notify_all();
    }

    /// Blocks the calling (blocking) thread while snapshots are held and `stopping()` is false.
    pub(crate) fn wait_while_snapshots_held(&self, stopping: impl Fn() -> bool) {
        let mut held = self
            .snapshots_held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *held && !stopping() {
            held = self
                .snapshots_released
                .wait_timeout(held, Duration::from_millis(SNAPSHOT_HOLD_CHECK_MS))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// A simple error for the RPC error wrappers.
#[derive(Debug)]
struct PeerError(String);

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerError {}

/// Connections to peers, shared by every [`PeerClient`] of a node.
#[derive(Clone)]
pub struct Network {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    faults: Arc<Faults>,
    /// The open connection to each peer, read by every RPC of every replication, vote and
    /// status task of this node: a concurrent map (one shard lock per entry's shard, never
    /// held across an await) instead of one mutex over the whole table.
    connections: Arc<DashMap<NodeId, quinn::Connection>>,
    /// Peers whose last RPC got no answer: a peer that stops answering is logged once (a
    /// warning), and once more when it answers again. openraft's own error per failed RPC is
    /// not logged (`crate::logging`): a leader would log ten a second per dead follower.
    silent: Arc<Mutex<HashSet<NodeId>>>,
    /// Each peer's AppendEntries budget and how many of its AppendEntries openraft dropped
    /// unanswered over every replication session (`/metrics`), written only when they change.
    appends: Arc<DashMap<NodeId, PeerAppends>>,
}

/// What the network keeps of one peer's AppendEntries across replication sessions.
#[derive(Debug, Clone, Copy)]
struct PeerAppends {
    stats: AppendStats,
    /// When a shrunk budget was last logged (at most once per [`APPEND_WARN_EVERY`]).
    warned_at: Option<Instant>,
}

/// How often a follower's shrinking budget is logged at most.
const APPEND_WARN_EVERY: Duration = Duration::from_secs(60);

/// What `/metrics` shows of one peer's [`AppendBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendStats {
    /// Bytes of entries the next AppendEntries may carry.
    pub budget_bytes: u64,
    /// AppendEntries with entries that openraft dropped unanswered (its one-heartbeat timeout).
    pub dropped: u64,
}

impl Network {
    /// A network sending through `endpoint` with the peer TLS configuration `config`.
    pub fn new(
        endpoint: quinn::Endpoint,
        config: quinn::ClientConfig,
        faults: Arc<Faults>,
    ) -> Self {
        Network {
            endpoint,
            config,
            faults,
            connections: Arc::default(),
            silent: Arc::default(),
            appends: Arc::default(),
        }
    }

    /// Notes whether `target` answered an RPC, logging when that changes.
    fn heard<T, E: std::fmt::Display>(&self, target: NodeId, addr: &str, result: &Result<T, E>) {
        let mut silent = self.silent.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(_) if silent.remove(&target) => {
                tracing::info!(peer = target, addr, "node {target} answers again");
            }
            Err(e) if silent.insert(target) => tracing::warn!(
                peer = target,
                addr,
                error = %e,
                "node {target} does not answer raft messages (logged again once it answers)"
            ),
            _ => {}
        }
    }
}

impl Network {
    /// Each peer's AppendEntries budget and dropped count, by peer id: only peers whose budget
    /// ever changed (the others are at [`APPEND_BYTES_MAX`] with none dropped).
    pub fn append_stats(&self) -> Vec<(NodeId, AppendStats)> {
        let mut stats: Vec<_> = self
            .appends
            .iter()
            .map(|e| (*e.key(), e.value().stats))
            .collect();
        stats.sort_unstable_by_key(|(id, _)| *id);
        stats
    }

    /// Asks node `target` at `addr` for a pre-vote, waiting at most `wait`.
    pub async fn pre_vote(
        &self,
        target: NodeId,
        addr: &str,
        request: PreVoteRequest,
        wait: Duration,
    ) -> Result<PreVoteResponse, String> {
        let client = PeerClient {
            network: self.clone(),
            target,
            addr: addr.to_owned(),
            append_budget: AppendBudget::default(),
        };
        let option = RPCOption::new(wait);
        match client
            .send::<PeerError>(PeerRequest::PreVote(request), &option)
            .await
        {
            Ok(PeerReply::PreVote(answer)) => Ok(answer),
            Ok(_) => Err("unexpected reply kind".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        // A new replication session starts at the maximum; the dropped count goes on.
        if let Some(mut peer) = self.appends.get_mut(&target) {
            peer.stats.budget_bytes = APPEND_BYTES_MAX as u64;
        }
        PeerClient {
            network: self.clone(),
            target,
            addr: node.addr.clone(),
            append_budget: AppendBudget::default(),
        }
    }
}

/// The RPC client towards one peer.
pub struct PeerClient {
    network: Network,
    target: NodeId,
    addr: String,
    /// Bytes of entries the next AppendEntries to this peer may carry.
    append_budget: AppendBudget,
}

/// Why an RPC did not get an answer.
enum SendError {
    /// The peer could not be reached (connect failed, isolated): openraft backs off.
    Unreachable(String),
    /// The exchange failed midway.
    Network(String),
}

impl PeerClient {
    async fn connection(&self) -> Result<quinn::Connection, SendError> {
        let cached = self
            .network
            .connections
            .get(&self.target)
            .map(|conn| conn.value().clone());
        if let Some(conn) = cached {
            if conn.close_reason().is_none() {
                return Ok(conn);
            }
        }
        let addr: SocketAddr = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|e| SendError::Unreachable(format!("resolve {}: {e}", self.addr)))?
            .next()
            .ok_or_else(|| SendError::Unreachable(format!("no address for {}", self.addr)))?;
        let connecting = self
            .network
            .endpoint
            .connect_with(self.network.config.clone(), addr, pki::SERVER_NAME)
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        let conn = connecting
            .await
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        self.network.connections.insert(self.target, conn.clone());
        Ok(conn)
    }

    async fn exchange(&self, request: &PeerRequest) -> Result<PeerReply, SendError> {
        if self.network.faults.is_isolated() {
            return Err(SendError::Unreachable("this node is isolated".to_owned()));
        }
        let conn = self.connection().await?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| SendError::Network(e.to_string()))?;
        let frame = protocol::encode_limit(request, protocol::PEER_FRAME_BYTES_MAX)
            .map_err(|e| SendError::Network(e.to_string()))?;
        protocol::write_frame(&mut send, &frame)
            .await
            .map_err(|e| SendError::Network(e.to_string()))?;
        send.finish()
            .map_err(|e| SendError::Network(e.to_string()))?;
        let reply = protocol::read_frame_limit(&mut recv, protocol::PEER_FRAME_BYTES_MAX)
            .await
            .map_err(|e| SendError::Network(e.to_string()))?
            .ok_or_else(|| {
                SendError::Network("peer closed the stream without answering".to_owned())
            })?;
        protocol::parse_limit(&reply, protocol::PEER_FRAME_BYTES_MAX)
            .map_err(|e| SendError::Network(e.to_string()))
    }

    /// Sends `request` within the RPC's hard deadline; notes whether the peer answered.
    async fn send<E: std::error::Error>(
        &self,
        request: PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerReply, RPCError<NodeId, BasicNode, E>> {
        let result = self.send_once(request, option).await;
        self.network.heard(self.target, &self.addr, &result);
        result
    }

    async fn send_once<E: std::error::Error>(
        &self,
        request: PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerReply, RPCError<NodeId, BasicNode, E>> {
        match tokio::time::timeout(option.hard_ttl(), self.exchange(&request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(SendError::Unreachable(e))) => {
                Err(RPCError::Unreachable(Unreachable::new(&PeerError(e))))
            }
            Ok(Err(SendError::Network(e))) => {
                self.network.connections.remove(&self.target);
                Err(RPCError::Network(NetworkError::new(&PeerError(e))))
            }
            Err(_) => Err({
                // No answer in time: the peer may have died without closing (kill -9, power).
                // Drop the cached connection so the next RPC dials again instead of waiting for
                // the dead one's idle timeout: a restarted node would otherwise rejoin only
                // after it, pushing the term up with elections meanwhile.
                self.network.connections.remove(&self.target);
                RPCError::Network(NetworkError::new(&PeerError(format!(
                    "no answer from node {} within {:?}",
                    self.target,
                    option.hard_ttl()
                ))))
            }),
        }
    }

    /// Publishes this peer's budget if it changed from `before` (the dropped count adds to
    /// the earlier sessions'), and logs a shrink at most once per [`APPEND_WARN_EVERY`].
    fn publish_budget(&self, before: AppendStats) {
        let now = self.append_budget.stats();
        if now == before {
            return;
        }
        let mut peer = self
            .network
            .appends
            .entry(self.target)
            .or_insert(PeerAppends {
                stats: AppendStats {
                    budget_bytes: APPEND_BYTES_MAX as u64,
                    dropped: 0,
                },
                warned_at: None,
            });
        peer.stats.budget_bytes = now.budget_bytes;
        peer.stats.dropped += now.dropped - before.dropped;
        let shrunk = now.budget_bytes < before.budget_bytes;
        if shrunk
            && peer
                .warned_at
                .is_none_or(|at| at.elapsed() >= APPEND_WARN_EVERY)
        {
            peer.warned_at = Some(Instant::now());
            tracing::warn!(
                peer = self.target,
                budget_bytes = now.budget_bytes,
                dropped_total = peer.stats.dropped,
                "an AppendEntries to node {} got no answer within the heartbeat interval: \
                 sending fewer entries per request (logged at most once a minute; \
                 stockd_raft_appends_dropped_total counts them)",
                self.target
            );
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&PeerError(
            "unexpected reply kind".to_owned(),
        )))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// Sends at most this peer's [`AppendBudget`] of the entries (at least one) and answers a
    /// partial success for a cut request, so openraft sends the rest next.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let with_entries = !rpc.entries.is_empty();
        let cut_at = if with_entries {
            let before = self.append_budget.stats();
            let budget = self.append_budget.start();
            self.publish_budget(before);
            cap_entries(&mut rpc.entries, budget)
        } else {
            // A request without entries (a heartbeat, or the commit index openraft sends after
            // each commit) lets the runtime's queued tasks go first: after a commit those are
            // the apply and the replies that wait for it, which need not queue behind it.
            tokio::task::yield_now().await;
            None
        };
        let (first, last) = index_range(&rpc.entries);
        hops::mark(Hop::RpcSent, first, last);
        let option = if with_entries {
            // openraft's own timeout of the same length wraps this call: ours must fire later,
            // so that a request without an answer in time is always openraft's drop (seen by
            // the budget) and never our own error (which would look like a failure).
            RPCOption::new(option.hard_ttl() * APPEND_OWN_TIMEOUT_FACTOR)
        } else {
            option
        };
        let answer = self.send(PeerRequest::Append(rpc), &option).await;
        if with_entries {
            let before = self.append_budget.stats();
            self.append_budget.finished(answer.is_ok());
            self.publish_budget(before);
        }
        hops::mark(Hop::RpcAnswered, first, self.target);
        match answer? {
            PeerReply::Append(Ok(AppendEntriesResponse::Success)) if cut_at.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(cut_at))
            }
            PeerReply::Append(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .send(PeerRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            PeerReply::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.send(PeerRequest::Vote(rpc), &option).await? {
            PeerReply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }
}

/// The first and last log index of `entries` (0, 0 for none), for the hop trace.
fn index_range(entries: &[super::Entry]) -> (u64, u64) {
    let index = |e: Option<&super::Entry>| e.map_or(0, |e| e.log_id.index);
    (index(entries.first()), index(entries.last()))
}

/// Encoded bytes of entries sent in one AppendEntries at most (at least one entry is always
/// sent). openraft hands over up to `ENTRIES_PER_APPEND_MAX` entries of up to 1 MiB each.
pub const APPEND_BYTES_MAX: usize = 1 << 20;
/// The smallest [`AppendBudget`], bytes (one entry is sent even if it is larger).
pub const APPEND_BYTES_MIN: usize = 64 << 10;
/// The network's own timeout of an AppendEntries with entries, in multiples of the one openraft
/// wraps it in: a backstop that never fires first (see [`AppendBudget`]).
const APPEND_OWN_TIMEOUT_FACTOR: u32 = 2;

/// How many bytes of entries the next AppendEntries to one peer may carry.
///
/// Why it adapts: openraft 0.9 wraps every AppendEntries in a timeout of one heartbeat
/// interval (100 ms by default, 50 ms in the tests) that the network cannot extend, abandons
/// the request when it fires (the follower may get all, part or none of it; the leader never
/// learns which) and then sends the same entries again. On a busy host a megabyte of entries
/// can take longer than that to send, decode and append, every time: the follower never catches
/// up, and if it is the only other live voter the leader loses its majority. So a request still
/// unanswered when the next one starts (openraft gave up on it) cuts the budget to a quarter,
/// down to [`APPEND_BYTES_MIN`]; each answered one doubles it, up to [`APPEND_BYTES_MAX`]. The
/// network's own timeout of such a request is longer than openraft's, so a request without an
/// answer is always openraft's drop. A single entry is never split: a follower that cannot take
/// one entry (up to 1 MiB) within a heartbeat interval still does not catch up.
#[derive(Debug)]
struct AppendBudget {
    bytes: usize,
    /// A request was started and neither answered nor failed: dropped by openraft's timeout.
    unfinished: bool,
    /// Requests dropped so.
    dropped: u64,
}

impl Default for AppendBudget {
    fn default() -> Self {
        AppendBudget {
            bytes: APPEND_BYTES_MAX,
            unfinished: false,
            dropped: 0,
        }
    }
}

impl AppendBudget {
    /// The budget of a request with entries that starts now.
    fn start(&mut self) -> usize {
        if self.unfinished {
            self.bytes = (self.bytes / 4).max(APPEND_BYTES_MIN);
            self.dropped += 1;
        }
        self.unfinished = true;
        self.bytes
    }

    fn stats(&self) -> AppendStats {
        AppendStats {
            budget_bytes: self.bytes as u64,
            dropped: self.dropped,
        }
    }

    /// The request ended with an answer (`answered`), or failed (no change: a peer that is down
    /// says nothing about the size).
    fn finished(&mut self, answered: bool) {
        self.unfinished = false;
        if answered {
            self.bytes = (self.bytes * 2).min(APPEND_BYTES_MAX);
        }
    }
}

/// Keeps the longest prefix of `entries` within `budget` bytes (at least one entry); returns
/// the log id of the last kept entry if some were cut off.
fn cap_entries(entries: &mut Vec<super::Entry>, budget: usize) -> Option<super::LogId> {
    if entries.len() < 2 {
        return None;
    }
    let mut bytes = 0usize;
    let mut keep = entries.len();
    for (i, entry) in entries.iter().enumerate() {
        bytes += postcard::serialize_with_flavor(entry, postcard::ser_flavors::Size::default())
            .unwrap_or(usize::MAX);
        if i > 0 && bytes > budget {
            keep = i;
            break;
        }
    }
    if keep == entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
}

/// Serves Raft RPCs arriving on a peer connection until it closes. The caller has checked that
/// the peer presented a certificate of the cluster CA.
pub async fn serve_peer(
    conn: quinn::Connection,
    raft: Raft,
    faults: Arc<Faults>,
    election: Arc<Election>,
    status: StatusFn,
    forward: super::forward::ForwardFn,
) {
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(stream) => stream,
            Err(_) => return,
        };
        let raft = raft.clone();
        let faults = faults.clone();
        let election = election.clone();
        let status = status.clone();
        let forward = forward.clone();
        tokio::spawn(async move {
            let Ok(Some(frame)) =
                protocol::read_frame_limit(&mut recv, protocol::PEER_FRAME_BYTES_MAX).await
            else {
                return;
            };
            let request: PeerRequest =
                match protocol::parse_limit(&frame, protocol::PEER_FRAME_BYTES_MAX) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "bad peer frame");
                        let _ = send.reset(1u32.into());
                        return;
                    }
                };
            if faults.is_isolated() && !matches!(request, PeerRequest::Status) {
                // A partitioned node hears no Raft traffic.
                let _ = send.reset(0u32.into());
                return;
            }
            let reply = match request {
                PeerRequest::Status => PeerReply::Status(Box::new(status())),
                PeerRequest::Forward(forwarded) => PeerReply::Forwarded(forward(forwarded).await),
                PeerRequest::Append(rpc) => {
                    faults.replication_delay(frame.len()).await;
                    let summary = AppendSummary::of(&rpc);
                    let (first, last) = index_range(&rpc.entries);
                    hops::mark(Hop::PeerReceived, first, last);
                    let response = raft.append_entries(rpc).await;
                    hops::mark(Hop::PeerAnswered, first, last);
                    election.on_append(&summary, &response);
                    PeerReply::Append(response)
                }
                PeerRequest::Vote(rpc) => match election.vote(&raft, &rpc) {
                    Some(refused) => PeerReply::Vote(Ok(refused)),
                    None => PeerReply::Vote(raft.vote(rpc).await),
                },
                PeerRequest::InstallSnapshot(rpc) => {
                    faults.replication_delay(frame.len()).await;
                    PeerReply::InstallSnapshot(raft.install_snapshot(rpc).await)
                }
                PeerRequest::PreVote(rpc) => PeerReply::PreVote(election.pre_vote(&raft, &rpc)),
            };
            if let Ok(frame) = protocol::encode_limit(&reply, protocol::PEER_FRAME_BYTES_MAX) {
                let _ = protocol::write_frame(&mut send, &frame).await;
                let _ = send.finish();
            }
        });
    }
}

/// Asks the node at `addr` for its status over the peer protocol (mutual TLS with this node's
/// certificate), within `timeout_ms`. `Err` says what failed.
pub async fn ask_status(
    endpoint: &quinn::Endpoint,
    peer_tls: &quinn::ClientConfig,
    addr: &str,
    timeout_ms: u64,
) -> Result<protocol::NodeStatus, String> {
    let ask = async {
        let socket = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("the address does not resolve")?;
        let connection = endpoint
            .connect_with(peer_tls.clone(), socket, pki::SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let frame = protocol::encode_limit(&PeerRequest::Status, protocol::PEER_FRAME_BYTES_MAX)
            .map_err(|e| e.to_string())?;
        protocol::write_frame(&mut send, &frame)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        let reply = protocol::read_frame_limit(&mut recv, protocol::PEER_FRAME_BYTES_MAX)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the stream ended without an answer")?;
        connection.close(0u32.into(), b"done");
        match protocol::parse_limit(&reply, protocol::PEER_FRAME_BYTES_MAX) {
            Ok(PeerReply::Status(status)) => Ok(*status),
            Ok(_) => Err("unexpected reply kind".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), ask).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {timeout_ms} ms")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Batch, Entry};
    use engine::{Command, LocationId, Reason, Request, RequestId, SkuId};

    /// An entry of about `bytes` encoded bytes.
    fn entry(index: u64, bytes: usize) -> Entry {
        let request = Request {
            request_id: RequestId(u128::from(index)),
            command: Command::Adjust {
                sku: SkuId::from("A"),
                location: LocationId::from("wh"),
                delta: 1,
                reason: Reason::from("x".repeat(bytes).as_str()),
            },
        };
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(Batch {
                timestamp_ms: 0,
                requests: Arc::new(vec![request]),
                authors: Default::default(),
            }),
        }
    }

    #[test]
    fn appends_are_cut_at_the_byte_cap_but_always_carry_an_entry() {
        let mut small: Vec<Entry> = (1..=16).map(|i| entry(i, 100)).collect();
        assert_eq!(cap_entries(&mut small, APPEND_BYTES_MAX), None);
        assert_eq!(small.len(), 16);

        let quarter = APPEND_BYTES_MAX / 4;
        let mut big: Vec<Entry> = (1..=16).map(|i| entry(i, quarter)).collect();
        let cut = cap_entries(&mut big, APPEND_BYTES_MAX).expect("cut");
        assert_eq!(
            big.len(),
            3,
            "three quarters fit, the fourth passes the cap"
        );
        assert_eq!(cut.index, 3);

        let mut huge = vec![entry(1, APPEND_BYTES_MAX * 2), entry(2, 10)];
        assert_eq!(
            cap_entries(&mut huge, APPEND_BYTES_MAX).map(|l| l.index),
            Some(1)
        );
        assert_eq!(huge.len(), 1, "one entry goes even above the cap");
    }

    #[test]
    fn an_append_dropped_unanswered_shrinks_the_next_and_answers_grow_it_back() {
        let mut budget = AppendBudget::default();
        assert_eq!(budget.start(), APPEND_BYTES_MAX);
        budget.finished(true);
        assert_eq!(
            budget.start(),
            APPEND_BYTES_MAX,
            "answered: unchanged at the maximum"
        );
        // openraft's timeout dropped that request: `finished` was never called.
        assert_eq!(budget.start(), APPEND_BYTES_MAX / 4);
        assert_eq!(budget.start(), APPEND_BYTES_MAX / 16);
        assert_eq!(budget.start(), APPEND_BYTES_MIN, "never below the minimum");
        assert_eq!(budget.start(), APPEND_BYTES_MIN);
        budget.finished(false);
        assert_eq!(
            budget.start(),
            APPEND_BYTES_MIN,
            "a failure says nothing about size"
        );
        budget.finished(true);
        assert_eq!(budget.start(), 2 * APPEND_BYTES_MIN);
        for _ in 0..8 {
            budget.finished(true);
            budget.start();
        }
        budget.finished(true);
        assert_eq!(
            budget.start(),
            APPEND_BYTES_MAX,
            "grows back, never above the maximum"
        );
    }

    #[test]
    fn a_small_budget_sends_fewer_entries() {
        let mut entries: Vec<Entry> = (1..=16).map(|i| entry(i, 1_000)).collect();
        let cut = cap_entries(&mut entries, 4_500).expect("cut");
        assert_eq!(entries.len(), 4);
        assert_eq!(cut.index, 4);
    }

    /// A peer that accepts connections and streams but never answers.
    async fn a_peer_that_never_answers() -> (Network, std::net::SocketAddr, quinn::Endpoint) {
        let dir = std::env::temp_dir().join(format!(
            "stockd-budget-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        pki::ensure_ca(&dir).expect("CA");
        pki::ensure_node(&dir, &dir, &[]).expect("node certificate");
        let identity = pki::load_identity(&dir).expect("identity");
        let ca = pki::load_certs(&dir.join("ca.pem")).expect("CA certificate");
        let _ = std::fs::remove_dir_all(&dir);
        let server_tls = pki::server_config(&identity, &ca).expect("server TLS");
        let (server, _) = pki::endpoint("127.0.0.1:0".parse().expect("addr"), Some(server_tls))
            .expect("server endpoint");
        let addr = server.local_addr().expect("server address");
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let mut held = Vec::new();
                    while let Ok(stream) = conn.accept_bi().await {
                        held.push(stream);
                    }
                });
            }
        });
        let (client, _) =
            pki::endpoint("127.0.0.1:0".parse().expect("addr"), None).expect("client endpoint");
        let tls = pki::peer_client_config(&identity, &ca).expect("peer TLS");
        (Network::new(client, tls, Arc::default()), addr, server)
    }

    /// openraft 0.9.25 (`send_log_entries`) wraps each AppendEntries in a timeout of the same
    /// length as the `RPCOption` it passes: every one of these requests goes unanswered, so
    /// the budget must count them dropped, whichever timer fires first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_openraft_times_out_shrink_the_budget() {
        let (mut network, addr, _server) = a_peer_that_never_answers().await;
        let node = BasicNode {
            addr: addr.to_string(),
        };
        let mut peer = network.new_client(2, &node).await;
        let heartbeat = Duration::from_millis(50);
        for _ in 0..8 {
            let rpc = AppendEntriesRequest {
                vote: openraft::Vote::new_committed(1, 1),
                prev_log_id: None,
                leader_commit: None,
                entries: (1..=8).map(|i| entry(i, 200_000)).collect(),
            };
            let sent = peer.append_entries(rpc, RPCOption::new(heartbeat));
            let answer = tokio::time::timeout(heartbeat, sent).await;
            assert!(
                !matches!(answer, Ok(Ok(_))),
                "a peer that never answers answered"
            );
        }
        assert!(
            peer.append_budget.dropped >= 7,
            "8 AppendEntries went unanswered, the budget counted {:?}",
            peer.append_budget.stats()
        );
        assert_eq!(peer.append_budget.bytes, APPEND_BYTES_MIN);
    }

    /// openraft makes a new client for every replication session (each term, each membership
    /// change): the counter of dropped requests must not go back, nor a new session start
    /// from the old one's budget.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dropped_counter_never_goes_backwards_across_replication_sessions() {
        let (mut network, addr, _server) = a_peer_that_never_answers().await;
        let node = BasicNode {
            addr: addr.to_string(),
        };
        let drop_one = |peer: &mut PeerClient| {
            let before = peer.append_budget.stats();
            peer.append_budget.start();
            peer.publish_budget(before);
        };
        let mut first = network.new_client(2, &node).await;
        for _ in 0..4 {
            drop_one(&mut first);
        }
        assert_eq!(network.append_stats()[0].1.dropped, 3);
        drop(first);
        let mut second = network.new_client(2, &node).await;
        assert_eq!(
            network.append_stats()[0].1.budget_bytes,
            APPEND_BYTES_MAX as u64,
            "a new session starts at the maximum"
        );
        drop_one(&mut second);
        drop_one(&mut second);
        assert_eq!(network.append_stats()[0].1.dropped, 4, "3 + 1, never back");
    }
}

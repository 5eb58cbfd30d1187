//! Messages of the client protocol (docs/PROTOCOL.md).
//!
//! A client opens long-lived bidirectional QUIC streams and sends [`ClientFrame`]s on them; the
//! node answers each with one [`ServerMessage::Reply`] carrying the frame's `id`, one result per
//! operation, in order. Frames on one stream may be pipelined; replies can come back in any
//! order (match them by `id`). Several operations per frame are allowed and are batched into
//! the same Raft entry when they are writes.

use serde::{Deserialize, Serialize};

use engine::query::{ChangeEvent, LedgerStatus};
use engine::{Answer, Outcome, Query, Rejection, Request};

/// A request frame: up to [`crate::OPS_PER_FRAME_MAX`] operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the reply. Unique among the frames in flight on a
    /// stream.
    pub id: u64,
    /// The operations.
    pub ops: Vec<Op>,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A write through the Raft log (SPEC section 3). Retrying with the same request id is
    /// safe: the original outcome comes back.
    Write(Request),
    /// A read.
    Read {
        /// What to read.
        query: Query,
        /// How fresh it must be.
        consistency: Consistency,
    },
    /// This node's status.
    Status,
    /// The digest of this node's ledger snapshot (for comparing replicas), with its applied
    /// index.
    Digest,
    /// Cluster membership.
    Admin(AdminOp),
    /// Stream change-feed events from `since` on this stream until it is closed: the reply
    /// acknowledges, then [`ServerMessage::Events`] frames follow.
    Subscribe {
        /// First feed sequence number wanted.
        since: u64,
    },
    /// [`Op::Subscribe`] to the events of balances at `locations` only (SPEC section 3,
    /// `changes(since, locations)`: a store's live alerts); 1..=64 locations, each known.
    SubscribeAt {
        /// First feed sequence number wanted.
        since: u64,
        /// The locations whose events are wanted.
        locations: Vec<engine::LocationId>,
    },
}

/// Read consistency (SPEC section 4, Reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Checked with a quorum by the leader: sees every write acknowledged before it began.
    /// Only the leader answers; others reply [`ServerError::NotLeader`].
    Linearizable,
    /// This node's state, whatever it has applied (the reply carries the applied index).
    Local,
    /// This node's state once it has applied at least this log index (read-your-writes); times
    /// out with [`ServerError::Timeout`].
    AtLeast(u64),
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Raft node id.
    pub id: u64,
    /// Its QUIC address (`host:port`), for clients and peers alike.
    pub addr: String,
}

/// Cluster membership changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminOp {
    /// Initialise a new cluster with these voters (once, on one node).
    Init {
        /// The voters, this node included.
        members: Vec<NodeAddr>,
    },
    /// Add a node: it catches up as a learner, then becomes a voter. Answered with
    /// [`OpResult::NodeAdded`] within [`crate::ADMIN_REPLY_MS_MAX`]; sending it again later
    /// promotes a learner that has caught up meanwhile.
    AddNode(NodeAddr),
    /// Remove a voter or learner.
    RemoveNode {
        /// Its id.
        id: u64,
    },
}

/// Messages from a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to a [`ClientFrame`].
    Reply {
        /// The frame's id.
        id: u64,
        /// One result per operation, in order.
        results: Vec<OpResult>,
    },
    /// Change-feed events for a subscription on this stream.
    Events(Vec<ChangeEvent>),
    /// The stream's input was not a valid frame; the node closes the stream after this (the
    /// connection and its other streams go on).
    ProtocolError {
        /// What was wrong.
        code: ProtocolErrorCode,
        /// Details for humans.
        message: String,
        /// Versions the node speaks.
        supported_versions: Vec<u16>,
    },
    /// The node ended this stream's subscription because its events were not read: its queue
    /// of events on the node (or its stream's or connection's reply budget) had no room for the
    /// next message for 5 s, or the node's reply budget is full. Every event before
    /// `resume_from` was sent on this stream before this message, none after; subscribe again
    /// with `since = resume_from` to go on without a gap. The node ends the stream after it.
    SubscriptionCut {
        /// Feed sequence number of the first event not sent.
        resume_from: u64,
        /// Why, for humans (which budget was full).
        reason: String,
    },
}

/// Why a stream's input was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolErrorCode {
    /// The frame's version is not spoken here.
    UnsupportedVersion,
    /// The length prefix exceeds [`crate::FRAME_BYTES_MAX`].
    FrameTooLarge,
    /// The stream ended inside a frame.
    Truncated,
    /// The body did not decode, or broke a limit (e.g. too many operations).
    Malformed,
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A write was applied (or a replay answered): its outcome and the log index of the entry
    /// that applied it (use it for `AtLeast` reads).
    Written {
        /// The ledger's outcome: a reply or a typed rejection.
        outcome: Outcome,
        /// Log index of the applying entry.
        log_index: u64,
    },
    /// A read's answer, and the log index it reflects.
    Read {
        /// The answer or a typed rejection (`not_found`, `invalid`).
        answer: Result<Answer, Rejection>,
        /// Applied log index of the node that answered.
        applied_index: u64,
    },
    /// A node's status (boxed: it is by far the largest result, and every result of a frame
    /// would otherwise take its size; the wire form is the same).
    Status(Box<NodeStatus>),
    /// A node's snapshot digest.
    Digest {
        /// Log index the digest reflects.
        applied_index: u64,
        /// BLAKE3 of the ledger snapshot, hex.
        digest: String,
    },
    /// An admin operation succeeded.
    AdminDone,
    /// A subscription started.
    Subscribed,
    /// The operation was not performed (or, for a timed-out write, may or may not have been:
    /// retry it with the same request id).
    Failed(ServerError),
    /// The answer to [`AdminOp::AddNode`]: the state the node is in now.
    NodeAdded(MemberState),
}

/// Where a node stands after `add-node` (the answer to [`AdminOp::AddNode`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Nothing changed: the node is not a member. Before adding a node, the leader asks the
    /// address for its status; nothing answered in time, or another node answered.
    NotAdded {
        /// Why, for humans (what answered, or that nothing did).
        reason: String,
    },
    /// A learner that has not answered the leader's replication yet (it answered the status
    /// request before it was added, then went silent). It does not vote; it stays a learner
    /// until it catches up and `add-node` is sent again, or `remove-node` removes it.
    Unreachable,
    /// A learner receiving the log; it does not vote yet. Send `add-node` again once
    /// `matched_index` reaches `target_index` to make it a voter.
    CatchingUp {
        /// Last log index the node is known to hold, if it answered at all.
        matched_index: Option<u64>,
        /// Log index it must hold to be promoted.
        target_index: u64,
    },
    /// A voter: it holds the log and counts toward the quorum.
    Voter,
}

/// Why a node could not perform an operation. Stable codes: `not_leader`, `busy`,
/// `not_ready`, `timeout`, `unavailable`, `invalid_op`, `internal`, `removed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerError {
    /// Only the leader does this; here is who it is, if known.
    NotLeader {
        /// The current leader.
        leader: Option<NodeAddr>,
    },
    /// Queues are full, or another membership change is in progress: retry later (with the
    /// same request id for writes).
    Busy,
    /// The node is still rebuilding its state (snapshot + log replay).
    NotReady,
    /// No answer within the node's deadline. A write may still be applied: retry it with the
    /// same request id to learn its outcome.
    Timeout,
    /// The cluster cannot make progress (no quorum), or the node is shutting down.
    Unavailable {
        /// Details.
        message: String,
    },
    /// The operation is not allowed here (e.g. a second subscription on a stream).
    InvalidOp {
        /// Details.
        message: String,
    },
    /// A bug or an IO failure on the node.
    Internal {
        /// Details.
        message: String,
    },
    /// This node was removed from the cluster: it serves no client request but `Status`.
    /// Go to one of `members` instead.
    Removed {
        /// The cluster's members, as the node last learned them.
        members: Vec<NodeAddr>,
    },
    /// The connection's principal may not do this (SPEC section 7), or its credential was
    /// revoked or has expired. Nothing changed; retrying does not help.
    Forbidden {
        /// Who asked, what was refused and why.
        message: String,
    },
}

impl ServerError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::NotLeader { .. } => "not_leader",
            ServerError::Busy => "busy",
            ServerError::NotReady => "not_ready",
            ServerError::Timeout => "timeout",
            ServerError::Unavailable { .. } => "unavailable",
            ServerError::InvalidOp { .. } => "invalid_op",
            ServerError::Internal { .. } => "internal",
            ServerError::Removed { .. } => "removed",
            ServerError::Forbidden { .. } => "forbidden",
        }
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::NotLeader { leader: Some(l) } => {
                write!(f, "not_leader: leader is node {} at {}", l.id, l.addr)
            }
            ServerError::NotLeader { leader: None } => f.write_str("not_leader: no leader known"),
            ServerError::Removed { members } => {
                let members: Vec<String> = members
                    .iter()
                    .map(|m| format!("{}={}", m.id, m.addr))
                    .collect();
                write!(
                    f,
                    "removed: this node is no longer a member of the cluster (members: {})",
                    members.join(",")
                )
            }
            ServerError::Unavailable { message }
            | ServerError::InvalidOp { message }
            | ServerError::Internal { message }
            | ServerError::Forbidden { message } => write!(f, "{}: {message}", self.code()),
            _ => f.write_str(self.code()),
        }
    }
}

impl std::error::Error for ServerError {}

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Accepts writes.
    Leader,
    /// Replicates the leader.
    Follower,
    /// Running an election.
    Candidate,
    /// Replicates without voting.
    Learner,
    /// Stopped.
    Shutdown,
    /// No longer a member: the node learned that the cluster removed it. It answers only
    /// `Status`; every other request gets [`ServerError::Removed`].
    Removed,
}

/// Statistics of the leader's write batching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStats {
    /// Raft entries proposed with client writes.
    pub entries: u64,
    /// Client writes in them.
    pub writes: u64,
    /// Most writes in one entry.
    pub writes_max: u64,
    /// Writes answered `busy` because the queue was full.
    pub shed: u64,
    /// Empty entries proposed to fire deadlines.
    pub ticks: u64,
}

/// A node's status (`stockctl status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node.
    pub node: NodeAddr,
    /// Its role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<NodeAddr>,
    /// Voters and learners.
    pub members: Vec<NodeAddr>,
    /// Last log index applied to the ledger.
    pub applied_index: u64,
    /// Last log index in this node's log.
    pub last_log_index: u64,
    /// Index of the latest snapshot.
    pub snapshot_index: u64,
    /// Whether the node has rebuilt its state and serves reads.
    pub ready: bool,
    /// `replicated` or `fsync`.
    pub durability: String,
    /// Write batching statistics (meaningful on the leader).
    pub batches: BatchStats,
    /// Ledger counters.
    pub ledger: LedgerStatus,
    /// Storage and recovery state.
    pub health: NodeHealth,
    /// Log index of the membership configuration this node follows (0: none yet). It is
    /// committed when it is at most `applied_index`.
    pub membership_index: u64,
    /// Every member with its role in the configuration and, on the leader, how far its log
    /// goes (`stockctl members`).
    pub membership: Vec<Member>,
    /// Replies queued for clients and what their budgets did (docs/PROTOCOL.md, "Reply
    /// budgets").
    pub replies: ReplyStats,
    /// Requests refused for their principal and connections refused for their identity
    /// (SPEC section 7).
    pub access: AccessStats,
    /// Why the node is not ready (`None` when `ready`): the first reason that holds, in the
    /// order of [`NotReady`]'s variants.
    pub not_ready: Option<NotReady>,
    /// How long the ledger stopped applying or reading, since the node started (SPEC section
    /// 4, "No stalls").
    pub pauses: PauseStats,
    /// The snapshot being built, the last one built, and failures writing them.
    pub snapshots: SnapshotStats,
}

/// Why a node is not ready (SPEC section 6, `/readyz`: ready means its state is rebuilt and a
/// leader is known). Checked in this order; the first that holds is the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotReady {
    /// The cluster removed this node: it serves nothing but its status.
    Removed,
    /// The node is rebuilding its state (replaying its log after a start, installing a
    /// snapshot): reads answer `not_ready`.
    Rebuilding,
    /// The node's Raft log or snapshot cannot be written (`health.storage_error` says why): it
    /// acknowledges nothing until the disk works again.
    StorageFailing,
    /// The node knows no live leader: none elected yet, no AppendEntries from it within the
    /// leader lease (a follower cut off or whose leader died), or, on a leader, no majority
    /// heard for two election timeouts. Writes sent here cannot commit.
    NoLeader,
}

impl NotReady {
    /// The reason's stable name (what `/readyz` and `stockctl status --json` say).
    pub fn code(self) -> &'static str {
        match self {
            NotReady::Removed => "removed",
            NotReady::Rebuilding => "rebuilding",
            NotReady::StorageFailing => "storage_failing",
            NotReady::NoLeader => "no_leader",
        }
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotReady::Removed => "removed from the cluster",
            NotReady::Rebuilding => "rebuilding its state (log replay or snapshot install)",
            NotReady::StorageFailing => "its raft log or snapshot cannot be written",
            NotReady::NoLeader => "no live leader known",
        })
    }
}

/// The node's own measurement of its ledger's pauses (SPEC section 4, "No stalls": at most 5
/// ms). Maxima in microseconds, since the node started, and per second for the last
/// [`crate::PAUSE_SECONDS_REPORTED`] seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseStats {
    /// Longest time the ledger was write-locked, counted from the moment the lock was asked
    /// for until it was released: one batch's apply or a snapshot install, including any wait
    /// for reads or a snapshot's freeze to let go. µs.
    pub apply_pause_max_us: u64,
    /// Longest time a read of the ledger (a query, an authorization lookup, a status, a
    /// snapshot's freeze) waited for the ledger, µs.
    pub read_wait_max_us: u64,
    /// Longest CPU time the applying thread spent from asking for the write lock until it
    /// released it (`CLOCK_THREAD_CPUTIME_ID`), µs: the work in a pause. What
    /// [`PauseStats::apply_pause_max_us`] has beyond it is waiting, for the lock or for a core
    /// (a node that shares its cores is descheduled while it holds the lock).
    pub apply_cpu_max_us: u64,
    /// The same maxima per second of the node's clock, oldest first, for the seconds in
    /// the last [`crate::PAUSE_SECONDS_REPORTED`] in which the ledger was locked at all; a benchmark
    /// that asks at least that often sees the longest pause of each of its phases.
    pub recent: Vec<PauseSecond>,
}

/// The longest pauses within one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseSecond {
    /// Start of the second, ms since the Unix epoch (the node's clock).
    pub start_ms: u64,
    /// As [`PauseStats::apply_pause_max_us`], within this second (0: none). µs.
    pub apply_pause_max_us: u64,
    /// As [`PauseStats::read_wait_max_us`], within this second (0: none waited). µs.
    pub read_wait_max_us: u64,
    /// As [`PauseStats::apply_cpu_max_us`], within this second. µs.
    pub apply_cpu_max_us: u64,
}

/// Snapshots this node built since it started. A build freezes the ledger (the only step
/// that holds its lock: pointer copies), then encodes, checksums and writes the file on a
/// background thread while apply and reads go on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// The build in progress, if any.
    pub building: Option<SnapshotBuilding>,
    /// The last build that finished.
    pub last: Option<SnapshotBuilt>,
    /// Builds finished since the node started.
    pub built_total: u64,
    /// The error writing the snapshot being built, while it is retried (the node keeps
    /// serving; its log is not compacted meanwhile).
    pub write_error: Option<String>,
    /// Failed attempts to write a built snapshot since the node started (each retried).
    pub write_failures_total: u64,
}

/// A snapshot build in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBuilding {
    /// Log index of the frozen state it encodes.
    pub index: u64,
    /// Time since the freeze, ms.
    pub elapsed_ms: u64,
}

/// A finished snapshot build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBuilt {
    /// Log index of the snapshot.
    pub index: u64,
    /// Time the freeze held the ledger, µs.
    pub freeze_us: u64,
    /// Freeze to durable file (encoding, checksum, write, fsync, retries), ms.
    pub build_ms: u64,
    /// Bytes of the ledger's encoding in the file.
    pub bytes: u64,
}

/// What a node refused for identity or role since it started (SPEC section 7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessStats {
    /// Operations answered `forbidden`.
    pub denied_total: u64,
    /// The same, per principal name (at most a bounded number of names; the rest are
    /// counted under `*`), most denied first.
    pub denied_by_principal: Vec<PrincipalCount>,
    /// Connections closed with [`crate::CLOSE_IDENTITY_REFUSED`] (no certificate, the wrong
    /// kind, another CA's, revoked or expired).
    pub refused_connections_total: u64,
    /// Connection attempts refused because their address had too many connections, or
    /// asked to prove their address first (QUIC retry) while the node was under load.
    pub connection_limit_total: u64,
}

/// A count for one principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalCount {
    /// The principal's name.
    pub name: String,
    /// How many.
    pub count: u64,
}

/// What keeps a node from doing its whole job, if anything (docs/OPERATIONS.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// The node may still lack entries it acknowledged before it restarted (a crash in
    /// `replicated` mode, a torn log tail): it backs no other node's election until it holds
    /// the leader's committed log again.
    pub recovering: bool,
    /// Why it started recovering, if it did since it started.
    pub recovery_reason: Option<String>,
    /// The storage error (log or snapshot) the node is retrying right now: it acknowledges
    /// nothing and is not ready until the disk works again.
    pub storage_error: Option<String>,
    /// Storage IO steps that failed (and were retried) since the node started.
    pub storage_errors_total: u64,
}

/// A member of the cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node.
    pub node: NodeAddr,
    /// A voter (counts toward the quorum), else a learner.
    pub voter: bool,
    /// Last log index the leader knows the member holds (the leader's own last log index for
    /// itself). Only the leader knows this: `None` on other nodes, and for a member that has
    /// not answered the leader yet.
    pub matched_index: Option<u64>,
}

/// A node's replies to clients under their budgets (docs/PROTOCOL.md, "Reply budgets").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyStats {
    /// Bytes of replies and change-feed events built for clients and not yet handed to QUIC,
    /// all connections together.
    pub queued_bytes: u64,
    /// Client connections closed (code [`crate::CLOSE_REPLIES_NOT_READ`]) because they did
    /// not read their replies, since the node started.
    pub connections_closed: u64,
    /// Subscriptions cut ([`ServerMessage::SubscriptionCut`]) since the node started.
    pub subscribers_cut: u64,
    /// Frames answered `busy` without being processed because the node's reply budget was
    /// full, since the node started.
    pub frames_shed: u64,
}

//! Everything openraft: the type configuration, the state machine, the log store and the
//! network. openraft (0.9, `storage-v2`) stays behind this module so that a move to 0.10 stays
//! local.
//!
//! One Raft entry carries a [`Batch`] of client requests stamped with the leader's clock; the
//! state machine decodes it and hands it to [`engine::Ledger::apply`], nothing more.

pub mod consensus;
pub mod election;
pub mod forward;
pub mod ledger_lock;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod proposer;
pub mod quiet;
pub mod snapshot_data;
pub mod snapshot_file;
pub mod snapshots;
pub mod state_machine;

pub use log_store::{Durability, LogStore};

use serde::{Deserialize, Serialize};

use engine::{Outcome, Request};

/// Raft node id.
pub type NodeId = u64;

/// A batch of client writes, stamped by the leader: the payload of one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The leader's clock when it proposed the batch, ms since the epoch. The ledger uses the
    /// larger of this and the previous batch's time (SPEC section 4: time never goes backwards).
    pub timestamp_ms: u64,
    /// The writes, at most [`engine::limits::BATCH_REQUESTS_MAX`]; empty for a tick that only
    /// moves time (to fire deadlines). Shared: openraft clones an entry for every follower it
    /// replicates to, and a shared batch makes that clone a reference count, not a copy.
    pub requests: std::sync::Arc<Vec<Request>>,
    /// Who made each request (the principals the server authenticated), for the change
    /// feed's audit trail (SPEC section 7).
    pub authors: std::sync::Arc<engine::Authors>,
}

/// What applying a [`Batch`] returned: one outcome per request, and where it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply {
    /// Log index of the entry.
    pub log_index: u64,
    /// One outcome per request, in order (empty for blank and membership entries).
    pub outcomes: Vec<Outcome>,
}

openraft::declare_raft_types!(
    /// stockd's Raft types: batches in, outcomes out, u64 node ids, nodes addressed by
    /// `host:port`, snapshots as shared bytes.
    pub TypeConfig:
        D = Batch,
        R = BatchReply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot_data::SnapshotBytes,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// Wraps an IO error as a storage error about `subject`.
pub(crate) fn io_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

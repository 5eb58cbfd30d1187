//! Cluster membership on a node: the admin operations (`init`, `add-node`, `remove-node`) and
//! the watch through which a removed node learns that it was removed.
//!
//! `add-node` answers within [`protocol::ADMIN_REPLY_MS_MAX`] with the state the node is in
//! ([`MemberState`]), never an error once the node is in the membership:
//! 1. A node that is not a member yet is asked for its status first (client protocol, at most
//!    [`ADD_NODE_PROBE_MS`]). If nothing answers, or another node id answers, nothing changes
//!    and the answer is `NotAdded` (a typo or a node not started yet must not leave a member
//!    behind).
//! 2. Otherwise it becomes a learner, and the leader waits up to
//!    [`RaftTimings::add_node_catch_up_ms`](crate::raft::consensus::RaftTimings) for its log to reach the
//!    target (see [`catch_up_target`]); then it is promoted to voter.
//! 3. A learner that has not caught up stays a learner (`CatchingUp`, or `Unreachable` if it
//!    answers neither replication nor status): a learner never counts toward the quorum, so it
//!    cannot cost availability, and sending `add-node` again later promotes it.
//!
//! Raft does not tell a removed node: the leader stops replicating to it with the entry that
//! removes it, so the node never receives that entry. It just hears nothing more (its
//! pre-votes fail, so its role does not change either), and it kept answering `local` reads
//! from a frozen ledger. [`watch`] closes the gap: a node that no leader has talked to for the
//! leader lease asks its peers for their status; a peer whose COMMITTED membership is newer
//! than this node's and leaves it out proves the removal (see [`removal_from`]). From then on the node answers every client request but
//! `Status` with [`ServerError::Removed`], and its status says `removed`, until a newer
//! configuration names it again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tokio::sync::watch;

use protocol::{AdminOp, Member, MemberState, NodeAddr, NodeStatus, OpResult, Role, ServerError};

use crate::node::NodeCtx;
use crate::raft::NodeId;

/// Longest wait for a node's answer to a status request (before adding it, and when a node
/// checks whether it was removed), ms: a QUIC handshake and one round trip.
pub const ADD_NODE_PROBE_MS: u64 = 750;
/// Default of how long `add-node` waits for a new learner to catch up before answering with
/// its state, ms.
pub const ADD_NODE_WAIT_MS_DEFAULT: u64 = 1_500;
/// Longest wait for one membership change to commit before answering `timeout`, ms (the change
/// goes on: Raft's joint consensus must not be cut in the middle).
pub const MEMBERSHIP_CHANGE_MS_MAX: u64 = 500;
/// A learner is promoted once it holds the log up to the leader's last index minus at most this
/// many entries (and at least up to the configuration that added it): close enough that it
/// votes and acknowledges like the others, without chasing a moving target under load.
pub const CATCH_UP_LAG_ENTRIES_MAX: u64 = 64;
/// How often a node that no leader talks to checks whether it was removed, ms.
pub const REMOVAL_CHECK_MS: u64 = 1_000;

// add-node: probe, add, wait, then a probe (nothing acknowledged) or a promotion.
const _: () = assert!(
    ADD_NODE_PROBE_MS * 2 + MEMBERSHIP_CHANGE_MS_MAX + ADD_NODE_WAIT_MS_DEFAULT
        <= protocol::ADMIN_REPLY_MS_MAX
);

/// A node's membership state besides Raft's: whether it was removed, and the lock that makes
/// admin operations one at a time.
pub struct Membership {
    /// Set once this node learned it was removed; cleared if a newer configuration names it.
    removal: Mutex<Option<Removal>>,
    /// Held by the admin operation in progress: a second one (a client retrying a slow
    /// attempt, or two operators) gets `busy` instead of racing the first into Raft's "change
    /// in progress" error.
    admin: tokio::sync::Mutex<()>,
    /// Dials other nodes with the client protocol.
    endpoint: quinn::Endpoint,
    /// Client configuration trusting the cluster CA.
    peer_tls: quinn::ClientConfig,
}

/// Proof that this node was removed: a committed configuration without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Log index of that configuration.
    pub membership_index: u64,
    /// Its members (where clients should go instead).
    pub members: Vec<NodeAddr>,
}

impl Membership {
    /// Membership state of a node that dials peers from `endpoint` with `peer_tls` (the
    /// client ALPN, trusting the cluster CA).
    pub fn new(endpoint: quinn::Endpoint, peer_tls: quinn::ClientConfig) -> Membership {
        Membership {
            removal: Mutex::new(None),
            admin: tokio::sync::Mutex::new(()),
            endpoint,
            peer_tls,
        }
    }

    /// The removal, if this node learned it was removed.
    pub fn removal(&self) -> Option<Removal> {
        lock(&self.removal).clone()
    }

    /// The error for client requests while removed.
    pub fn removed_error(&self) -> Option<ServerError> {
        self.removal()
            .map(|r| ServerError::Removed { members: r.members })
    }

    fn set_removal(&self, removal: Option<Removal>) {
        *lock(&self.removal) = removal;
    }

    /// One `Status` request to `addr` over the peer protocol, within `timeout_ms`.
    async fn status_of(&self, addr: &str, timeout_ms: u64) -> Result<NodeStatus, String> {
        super::network::ask_status(&self.endpoint, &self.peer_tls, addr, timeout_ms).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `answer` (a peer's status) proves that node `me`, whose own configuration is at
/// log index `own_index`, was removed: the peer's configuration is committed there (at most
/// its applied index), newer than ours, and leaves us out. A newer configuration that names us
/// again (a re-add) has a higher index still, so the proof is never wrong for long: [`watch`]
/// clears it when our own configuration passes the removal.
pub fn removal_from(me: NodeId, own_index: u64, answer: &NodeStatus) -> Option<Removal> {
    let committed = answer.membership_index <= answer.applied_index;
    let newer = answer.membership_index > own_index;
    let names_us = answer.members.iter().any(|m| m.id == me);
    let usable = answer.role != Role::Removed && answer.node.id != me;
    (usable && committed && newer && !names_us).then(|| Removal {
        membership_index: answer.membership_index,
        members: answer.members.clone(),
    })
}

/// Checks every [`REMOVAL_CHECK_MS`] whether this node was removed (see the module
/// documentation), until `shutdown`.
pub async fn watch(ctx: Arc<NodeCtx>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(REMOVAL_CHECK_MS)) => {}
            _ = shutdown.changed() => return,
        }
        check_removal(&ctx).await;
    }
}

async fn check_removal(ctx: &NodeCtx) {
    let metrics = ctx.consensus.raft().metrics().borrow().clone();
    let own_index = metrics.membership_config.log_id().map_or(0, |l| l.index);
    let membership = metrics.membership_config.membership();
    let named = membership.get_node(&ctx.id).is_some();
    if let Some(removal) = ctx.membership.removal() {
        if named && own_index > removal.membership_index {
            tracing::info!(
                membership_index = own_index,
                "a member again; serving clients"
            );
            ctx.membership.set_removal(None);
        }
        return;
    }
    let members = node_addrs(membership.nodes());
    if own_index > 0 && !named {
        // This node holds the configuration that removed it (e.g. a leader removing itself).
        mark_removed(
            ctx,
            Removal {
                membership_index: own_index,
                members,
            },
        );
        return;
    }
    // A node a leader talks to is a member (learners included); only a node that no leader
    // has talked to for the lease asks further. Pre-votes keep a removed voter from ever
    // standing, so its Raft role and leader do not change: the silence is the signal.
    let lost = metrics.state != openraft::ServerState::Leader && !ctx.election.leader_is_live();
    if own_index == 0 || !lost || ctx.faults.is_isolated() {
        return;
    }
    let asks = members
        .iter()
        .filter(|m| m.id != ctx.id)
        .map(|m| ctx.membership.status_of(&m.addr, ADD_NODE_PROBE_MS));
    for answer in futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
    {
        if let Some(removal) = removal_from(ctx.id, own_index, &answer) {
            mark_removed(ctx, removal);
            return;
        }
    }
}

fn mark_removed(ctx: &NodeCtx, removal: Removal) {
    tracing::warn!(
        membership_index = removal.membership_index,
        "this node was removed from the cluster: it no longer serves clients"
    );
    ctx.membership.set_removal(Some(removal));
}

fn node_addrs<'a>(nodes: impl Iterator<Item = (&'a NodeId, &'a BasicNode)>) -> Vec<NodeAddr> {
    nodes
        .map(|(id, n)| NodeAddr {
            id: *id,
            addr: n.addr.clone(),
        })
        .collect()
}

/// Every member as this node sees it, with the leader's replication progress when it leads.
pub fn members(ctx: &NodeCtx) -> Vec<Member> {
    let metrics = ctx.consensus.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let leading = metrics.state == openraft::ServerState::Leader;
    membership
        .nodes()
        .map(|(id, n)| {
            let matched_index = match (leading, *id == ctx.id) {
                (false, _) => None,
                (true, true) => metrics.last_log_index,
                (true, false) => matched(&metrics, *id),
            };
            Member {
                node: NodeAddr {
                    id: *id,
                    addr: n.addr.clone(),
                },
                voter: voters.contains(id),
                matched_index,
            }
        })
        .collect()
}

type Metrics = openraft::RaftMetrics<NodeId, BasicNode>;

/// The last log index the leader knows node `id` holds.
fn matched(metrics: &Metrics, id: NodeId) -> Option<u64> {
    let replication = metrics.replication.as_ref()?;
    replication.get(&id).copied().flatten().map(|l| l.index)
}

/// The log index a learner must hold to be promoted: the configuration that names it (so it
/// knows it is a member), and the leader's last index minus [`CATCH_UP_LAG_ENTRIES_MAX`].
pub fn catch_up_target(membership_index: u64, last_log_index: u64) -> u64 {
    membership_index.max(last_log_index.saturating_sub(CATCH_UP_LAG_ENTRIES_MAX))
}

/// Runs an admin operation (one at a time on this node).
pub async fn admin(ctx: &NodeCtx, op: AdminOp) -> OpResult {
    let Ok(_one_at_a_time) = ctx.membership.admin.try_lock() else {
        return OpResult::Failed(ServerError::Busy);
    };
    let result = match op {
        AdminOp::Init { members } => init(ctx, members).await.map(|()| OpResult::AdminDone),
        AdminOp::AddNode(node) => add_node(ctx, node).await.map(OpResult::NodeAdded),
        AdminOp::RemoveNode { id } => remove_node(ctx, id).await.map(|()| OpResult::AdminDone),
    };
    result.unwrap_or_else(OpResult::Failed)
}

async fn init(ctx: &NodeCtx, members: Vec<NodeAddr>) -> Result<(), ServerError> {
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .into_iter()
        .map(|m| (m.id, BasicNode { addr: m.addr }))
        .collect();
    let wanted: BTreeSet<NodeId> = nodes.keys().copied().collect();
    match ctx.consensus.raft().initialize(nodes).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            // Idempotent: a retried init of the same voters succeeds.
            if voters(ctx) == wanted {
                Ok(())
            } else {
                Err(ServerError::InvalidOp {
                    message: "cluster already initialised with other members".to_owned(),
                })
            }
        }
        Err(e) => Err(ServerError::Internal {
            message: e.to_string(),
        }),
    }
}

/// `add-node` on the leader: see the module documentation for the steps.
async fn add_node(ctx: &NodeCtx, node: NodeAddr) -> Result<MemberState, ServerError> {
    let metrics = ctx.consensus.raft().metrics().borrow().clone();
    if metrics.current_leader != Some(ctx.id) {
        return Err(crate::raft::proposer::not_leader(
            ctx.consensus.raft(),
            metrics.current_leader,
        ));
    }
    let membership = metrics.membership_config.membership();
    match membership.get_node(&node.id) {
        Some(known) if known.addr != node.addr => {
            return Err(ServerError::InvalidOp {
                message: format!(
                    "node {} is already a member at {}: remove-node {} first to move it",
                    node.id, known.addr, node.id
                ),
            })
        }
        Some(_) => {}
        None => {
            if let Some((other, _)) = membership.nodes().find(|(_, n)| n.addr == node.addr) {
                return Err(ServerError::InvalidOp {
                    message: format!("{} is the address of node {other}", node.addr),
                });
            }
            if let Err(reason) = check_newcomer(ctx, &node).await {
                return Ok(MemberState::NotAdded { reason });
            }
            let learner = BTreeMap::from([(node.id, BasicNode { addr: node.addr })]);
            change(ctx, ChangeMembers::AddNodes(learner)).await?;
        }
    }
    if voters(ctx).contains(&node.id) {
        return Ok(MemberState::Voter);
    }
    promote_when_caught_up(ctx, node.id).await
}

/// Asks the address for its status before adding it: it must answer, as node `node.id`.
async fn check_newcomer(ctx: &NodeCtx, node: &NodeAddr) -> Result<(), String> {
    let status = ctx
        .membership
        .status_of(&node.addr, ADD_NODE_PROBE_MS)
        .await
        .map_err(|e| format!("nothing answered at {}: {e}", node.addr))?;
    if status.node.id != node.id {
        return Err(format!(
            "the node at {} is node {}, not node {}",
            node.addr, status.node.id, node.id
        ));
    }
    Ok(())
}

/// Waits for learner `id` to catch up (up to the configured wait), then promotes it, or says
/// how far it is.
async fn promote_when_caught_up(ctx: &NodeCtx, id: NodeId) -> Result<MemberState, ServerError> {
    let target = {
        let metrics = ctx.consensus.raft().metrics().borrow().clone();
        let membership_index = metrics.membership_config.log_id().map_or(0, |l| l.index);
        catch_up_target(membership_index, metrics.last_log_index.unwrap_or(0))
    };
    let wait = Duration::from_millis(ctx.timings.add_node_catch_up_ms);
    let reached = ctx
        .consensus
        .raft()
        .wait(Some(wait))
        .metrics(
            |m| matched(m, id).is_some_and(|i| i >= target),
            "learner caught up",
        )
        .await;
    if reached.is_ok() {
        change(ctx, ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await?;
        return Ok(MemberState::Voter);
    }
    let matched_index = matched(&ctx.consensus.raft().metrics().borrow(), id);
    if matched_index.is_none() {
        let addr = ctx
            .consensus
            .raft()
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        if ctx
            .membership
            .status_of(&addr, ADD_NODE_PROBE_MS)
            .await
            .is_err()
        {
            return Ok(MemberState::Unreachable);
        }
    }
    Ok(MemberState::CatchingUp {
        matched_index,
        target_index: target,
    })
}

async fn remove_node(ctx: &NodeCtx, id: NodeId) -> Result<(), ServerError> {
    let metrics = ctx.consensus.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    // Idempotent: removing a node that is not a member changes nothing.
    if membership.get_node(&id).is_none() {
        return Ok(());
    }
    let change_members = if membership.voter_ids().any(|v| v == id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    change(ctx, change_members).await
}

/// One membership change through Raft, waited for at most [`MEMBERSHIP_CHANGE_MS_MAX`].
async fn change(
    ctx: &NodeCtx,
    change: ChangeMembers<NodeId, BasicNode>,
) -> Result<(), ServerError> {
    if let Some(ms) = ctx.quorum_lost_ms() {
        return Err(ServerError::Unavailable {
            message: format!("this leader has heard from no majority for {ms} ms"),
        });
    }
    let raft = ctx.consensus.raft().clone();
    // A task of its own: a change is two entries (joint consensus, then the new
    // configuration), and dropping it between them would leave the cluster in the joint
    // configuration. It ends when the change commits or when Raft stops.
    let task = tokio::spawn(async move { raft.change_membership(change, false).await });
    let joined = tokio::time::timeout(Duration::from_millis(MEMBERSHIP_CHANGE_MS_MAX), task).await;
    match joined {
        Err(_) => Err(ServerError::Timeout),
        Ok(Err(e)) => Err(ServerError::Internal {
            message: format!("membership change task: {e}"),
        }),
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(change_error(ctx, e)),
    }
}

fn change_error(
    ctx: &NodeCtx,
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> ServerError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            crate::raft::proposer::not_leader(ctx.consensus.raft(), f.leader_id)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
            ChangeMembershipError::InProgress(_) => ServerError::Busy,
            ChangeMembershipError::EmptyMembership(_) => ServerError::InvalidOp {
                message: "the cluster cannot lose its last voter".to_owned(),
            },
            ChangeMembershipError::LearnerNotFound(e) => ServerError::InvalidOp {
                message: e.to_string(),
            },
        },
        other => ServerError::Internal {
            message: other.to_string(),
        },
    }
}

/// The current voters.
fn voters(ctx: &NodeCtx) -> BTreeSet<NodeId> {
    let metrics = ctx.consensus.raft().metrics();
    let voters = metrics
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        id: NodeId,
        role: Role,
        members: &[NodeId],
        membership: u64,
        applied: u64,
    ) -> NodeStatus {
        NodeStatus {
            node: NodeAddr {
                id,
                addr: format!("n{id}:1"),
            },
            role,
            term: 3,
            leader: None,
            members: members
                .iter()
                .map(|m| NodeAddr {
                    id: *m,
                    addr: format!("n{m}:1"),
                })
                .collect(),
            applied_index: applied,
            last_log_index: applied,
            snapshot_index: 0,
            ready: true,
            durability: "replicated".to_owned(),
            batches: Default::default(),
            ledger: engine::query::LedgerStatus {
                applied_index: applied,
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
            membership_index: membership,
            membership: Vec::new(),
            replies: protocol::ReplyStats::default(),
            access: protocol::AccessStats::default(),
            not_ready: None,
            pauses: Default::default(),
            snapshots: Default::default(),
        }
    }

    #[track_caller]
    fn check(own_index: u64, answer: &NodeStatus, removed: Option<u64>) {
        let got = removal_from(3, own_index, answer).map(|r| r.membership_index);
        assert_eq!(got, removed);
    }

    #[test]
    fn only_a_newer_committed_configuration_without_us_proves_a_removal() {
        // The leader committed {1, 2} at 9; we know {1, 2, 3} from 7.
        check(7, &answer(1, Role::Leader, &[1, 2], 9, 12), Some(9));
        // A follower's committed view counts as well.
        check(7, &answer(2, Role::Follower, &[1, 2], 9, 9), Some(9));
        // Not committed there yet (beyond its applied index): no proof.
        check(7, &answer(1, Role::Leader, &[1, 2], 9, 8), None);
        // Older than what we know (we were added after it): no proof.
        check(10, &answer(1, Role::Leader, &[1, 2], 9, 12), None);
        // Names us: we are a member.
        check(7, &answer(1, Role::Leader, &[1, 2, 3], 9, 12), None);
        // A removed node's view, or our own, proves nothing.
        check(7, &answer(2, Role::Removed, &[1, 2], 9, 12), None);
        check(7, &answer(3, Role::Follower, &[1, 2], 9, 12), None);
    }

    #[test]
    fn catch_up_target_is_the_configuration_or_close_to_the_leader() {
        assert_eq!(catch_up_target(5, 10), 5);
        assert_eq!(catch_up_target(5, 5 + CATCH_UP_LAG_ENTRIES_MAX + 100), 105);
        assert_eq!(catch_up_target(0, 0), 0);
    }
}

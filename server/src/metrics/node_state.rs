//! The series read from the node at scrape time: what it is now (Raft role, term and indexes,
//! replication lag, queue depths, readiness) and the counters it keeps for `status` anyway
//! (batching, reply budgets, refused connections, storage errors). Reading them costs the
//! scrape, never a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use protocol::Role;

use crate::node::NodeCtx;
use crate::raft::consensus::FollowerLag;

/// Every role, for the `stockd_raft_role` state set (one series per role, 1 for the current).
const ROLES: [Role; 6] = [
    Role::Leader,
    Role::Follower,
    Role::Candidate,
    Role::Learner,
    Role::Shutdown,
    Role::Removed,
];

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown => "shutdown",
        Role::Removed => "removed",
    }
}

/// The collector registered by `Metrics::new`; the node is set by `Metrics::attach`.
pub(super) struct NodeState {
    pub(super) node: Arc<OnceLock<Weak<NodeCtx>>>,
    pub(super) pause_max_ns: Arc<AtomicU64>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState").finish_non_exhaustive()
    }
}

/// A gauge or counter read from the node: name (without prefix and unit), help, unit, value.
struct Scalar {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    value: u64,
}

fn gauge(name: &'static str, help: &'static str, value: u64) -> Scalar {
    Scalar {
        name,
        help,
        unit: None,
        kind: MetricType::Gauge,
        value,
    }
}

fn bytes(name: &'static str, help: &'static str, value: u64) -> Scalar {
    Scalar {
        unit: Some(Unit::Bytes),
        ..gauge(name, help, value)
    }
}

fn counter(name: &'static str, help: &'static str, value: u64) -> Scalar {
    Scalar {
        kind: MetricType::Counter,
        ..gauge(name, help, value)
    }
}

/// The node's Raft position and health.
fn raft_scalars(ctx: &NodeCtx) -> Vec<Scalar> {
    let view = ctx.consensus.view();
    vec![
        gauge("raft_term", "Current Raft term.", view.term),
        gauge(
            "raft_last_log_index",
            "Index of the last entry in this node's Raft log.",
            view.last_log_index,
        ),
        gauge(
            "raft_commit_index",
            "Index of the last entry this node knows committed.",
            ctx.log.committed_index(),
        ),
        gauge(
            "raft_applied_index",
            "Index of the last entry applied to this node's ledger.",
            ctx.shared.applied_index(),
        ),
        gauge(
            "raft_snapshot_index",
            "Index of the last entry in this node's newest snapshot (0: none).",
            ctx.shared.snapshot_index(),
        ),
        bytes(
            "raft_log",
            "Encoded bytes of Raft log entries after the purge point (on disk until a snapshot purges them).",
            ctx.log.log_bytes(),
        ),
        bytes(
            "raft_log_memory",
            "Encoded bytes of the Raft log entries kept in memory: the ones not yet applied, and the newest applied ones up to LOG_CACHE_BYTES_MAX.",
            ctx.log.cached_bytes(),
        ),
        counter(
            "storage_errors",
            "Raft log and snapshot IO steps that failed and were retried.",
            ctx.log.io_errors_total(),
        ),
        gauge(
            "ready",
            "1 if the node's state is rebuilt, its storage works and it knows a live leader (what /readyz says), else 0.",
            u64::from(ctx.readiness().is_ok()),
        ),
    ]
}

/// Queues, budgets and the counters the proposer, the reply budgets and the accept loop keep.
fn queue_scalars(ctx: &NodeCtx) -> Vec<Scalar> {
    let batches = ctx.proposer.stats();
    let replies = ctx.replies.stats();
    let access = ctx.refusals.stats();
    let frame_kib = crate::api::NODE_FRAME_KIB_MAX - ctx.frame_budget.available_permits();
    vec![
        gauge("proposer_queue_writes", "Writes waiting for the proposer to batch them.", ctx.proposer.queued() as u64),
        gauge("proposer_entries_in_flight", "Raft entries proposed and not yet applied.", ctx.proposer.in_flight() as u64),
        gauge("read_barrier_queue_reads", "Linearizable reads waiting for a leadership round.", ctx.reads.queued() as u64),
        bytes("reply_queued", "Bytes of replies built and not yet handed to QUIC, all clients (the node-wide reply budget).", replies.queued_bytes),
        bytes("frames_receiving", "Bytes of large client frames being received, all connections (the node-wide frame budget).", (frame_kib as u64) << 10),
        counter("proposer_entries", "Raft entries of client writes proposed by this node.", batches.entries),
        counter("proposer_writes", "Client writes proposed by this node.", batches.writes),
        counter("proposer_ticks", "Empty entries proposed to move time for a passed deadline.", batches.ticks),
        counter("proposer_shed", "Writes answered busy because the proposer queue was full.", batches.shed),
        counter("reply_frames_shed", "Frames answered busy because the node-wide reply budget was full.", replies.frames_shed),
        counter("reply_connections_closed", "Client connections closed for not reading their replies.", replies.connections_closed),
        counter("reply_subscribers_cut", "Change-feed subscriptions cut for not reading.", replies.subscribers_cut),
        counter("connections_refused_identity", "Connections closed for their identity (no, another CA's, revoked or expired certificate; the wrong kind).", access.refused_connections_total),
        counter("connections_refused_limit", "Connection attempts refused or retried by the connection bounds.", access.connection_limit_total),
        bytes("memory_resident", "Resident memory of the node's process, sampled every 100 ms.", ctx.memory.resident_bytes()),
        bytes("memory_limit", "Resident memory above which new reservations and direct orders are answered busy (0: no limit).", ctx.memory.limit_bytes()),
        counter("memory_shed", "Writes answered busy because the node was over its memory limit.", ctx.memory.refused()),
    ]
}

fn encode_scalar(encoder: &mut DescriptorEncoder, s: &Scalar) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(s.name, s.help, s.unit.as_ref(), s.kind)?;
    match s.kind {
        MetricType::Counter => metric.encode_counter::<NoLabelSet, _, u64>(&s.value, None),
        _ => metric.encode_gauge(&s.value),
    }
}

/// `stockd_raft_role`: one series per role, 1 for the node's.
fn encode_role(encoder: &mut DescriptorEncoder, ctx: &NodeCtx) -> Result<(), std::fmt::Error> {
    let role = if ctx.membership.removal().is_some() {
        Role::Removed
    } else {
        ctx.consensus.view().role
    };
    let mut family = encoder.encode_descriptor(
        "raft_role",
        "1 for this node's Raft role (a leader whose log cannot be written says follower), 0 for the others.",
        None,
        MetricType::Gauge,
    )?;
    for r in ROLES {
        let labels = [("role", role_name(r))];
        family
            .encode_family(&labels)?
            .encode_gauge(&u64::from(r == role))?;
    }
    Ok(())
}

/// `stockd_raft_replication_lag_entries`: on the leader, entries each follower lacks.
fn encode_lag(
    encoder: &mut DescriptorEncoder,
    lags: &[FollowerLag],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "raft_replication_lag_entries",
        "On the leader: entries of its log each follower or learner does not hold yet (its whole log if none acknowledged).",
        None,
        MetricType::Gauge,
    )?;
    for lag in lags {
        let id = lag.id.to_string();
        let labels = [("follower", id.as_str())];
        family.encode_family(&labels)?.encode_gauge(&lag.entries)?;
    }
    Ok(())
}

/// `stockd_raft_append_budget_bytes` and `stockd_raft_appends_dropped_total`: per peer whose
/// AppendEntries budget ever changed (the others are at 1 MiB with none dropped).
fn encode_appends(
    encoder: &mut DescriptorEncoder,
    stats: &[(u64, crate::raft::network::AppendStats)],
) -> Result<(), std::fmt::Error> {
    let mut budget = encoder.encode_descriptor(
        "raft_append_budget",
        "Bytes of entries the next AppendEntries to each peer may carry (1 MiB unless it fell behind: a request openraft dropped unanswered after a heartbeat interval quarters it, each answer doubles it).",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    for (id, s) in stats {
        let id = id.to_string();
        budget
            .encode_family(&[("follower", id.as_str())])?
            .encode_gauge(&s.budget_bytes)?;
    }
    let mut dropped = encoder.encode_descriptor(
        "raft_appends_dropped",
        "AppendEntries with entries to each peer that got no answer within openraft's heartbeat-long timeout and were sent again.",
        None,
        MetricType::Counter,
    )?;
    for (id, s) in stats {
        let id = id.to_string();
        dropped
            .encode_family(&[("follower", id.as_str())])?
            .encode_counter::<NoLabelSet, _, u64>(&s.dropped, None)?;
    }
    Ok(())
}

impl Collector for NodeState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = self.node.get().and_then(Weak::upgrade);
        // The node's own measurement (`status`'s `pauses`): the ledger write-locked or a read
        // waiting for it, whatever the cause; a recorded freeze counts too before it attaches.
        let measured_us = node.as_ref().map_or(0, |ctx| {
            let p = ctx.shared.ledger.pauses();
            p.apply_pause_max_us.max(p.read_wait_max_us)
        });
        let pause_ns = self
            .pause_max_ns
            .load(Ordering::Relaxed)
            .max(measured_us.saturating_mul(1_000));
        encoder
            .encode_descriptor(
                "pause_max",
                "Longest pause of the apply loop or of reads since the node started: the ledger write-locked (one batch's apply, a snapshot install) or a read waiting for it, and a snapshot's freeze; SPEC section 4 allows 5 ms.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?
            .encode_gauge(&(pause_ns as f64 * 1e-9))?;
        let Some(ctx) = node else {
            return Ok(());
        };
        for scalar in raft_scalars(&ctx).iter().chain(&queue_scalars(&ctx)) {
            encode_scalar(&mut encoder, scalar)?;
        }
        encode_role(&mut encoder, &ctx)?;
        encode_lag(&mut encoder, &ctx.consensus.replication_lag())?;
        encode_appends(&mut encoder, &ctx.consensus.append_stats())
    }
}

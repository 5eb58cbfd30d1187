//! A node's status: its role in the cluster, its log, its ledger and its health.

use engine::{Answer, Query};
use protocol::{NodeAddr, NodeStatus, Role};

use crate::node::NodeCtx;

/// This node's status.
pub fn status(ctx: &NodeCtx) -> NodeStatus {
    let view = ctx.consensus.view();
    let readiness = ctx.readiness();
    // A removed node may still run elections (Raft never told it): it leads nothing.
    let removed = ctx.membership.removal().is_some();
    let (role, leader) = if removed {
        (Role::Removed, None)
    } else {
        (view.role, view.leader)
    };
    let ledger = match ctx
        .shared
        .ledger
        .read()
        .expect("ledger lock poisoned")
        .query(&Query::Status, ctx.clock.now_ms())
    {
        Ok(Answer::Status(s)) => s,
        _ => unreachable!("status always answers"),
    };
    NodeStatus {
        node: NodeAddr {
            id: ctx.id,
            addr: ctx.addr.clone(),
        },
        role,
        term: view.term,
        leader,
        members: view.members,
        applied_index: ctx.shared.applied_index(),
        last_log_index: view.last_log_index,
        snapshot_index: ctx.shared.snapshot_index(),
        ready: readiness.is_ok(),
        durability: ctx.durability.clone(),
        batches: ctx.proposer.stats(),
        ledger,
        health: protocol::NodeHealth {
            recovering: ctx.log.recovering(),
            recovery_reason: ctx.log.recovery_reason().map(str::to_owned),
            storage_error: ctx.log.io_error().or_else(|| ctx.shared.snapshot_error()),
            storage_errors_total: ctx.log.io_errors_total(),
        },
        membership_index: view.membership_index,
        membership: crate::raft::membership::members(ctx),
        replies: ctx.replies.stats(),
        access: ctx.refusals.stats(),
        not_ready: readiness.err(),
        pauses: ctx.shared.ledger.pauses(),
        snapshots: ctx.shared.snapshot_stats(),
    }
}

//! Running a request's operations: here, through the client path (`api::run_ops`), and those
//! that only the leader runs (writes, linearizable reads) at the leader when this node is not
//! it (`raft::forward`: the leader authorizes them and records the caller as their author).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pki::Principal;
use protocol::{Op, OpResult, ServerError};

use crate::api::{run_ops, Caller};
use crate::metrics::{Operation, Outcome, Transport};
use crate::node::NodeCtx;
use crate::raft::forward::{Forwarded, ForwardedPrincipal};

/// Forwarding attempts for one request: a leader that stepped down meanwhile answers
/// `not_leader` with its successor, which gets the next attempt.
pub const FORWARD_ATTEMPTS_MAX: usize = 3;
/// Wait before another attempt when no leader is known (an election takes about a second), ms.
pub const NO_LEADER_WAIT_MS: u64 = 300;

/// The leader named by a `not_leader` answer among `results`, if any answered so.
fn leader_hint(results: &[OpResult]) -> Option<Option<protocol::NodeAddr>> {
    results.iter().find_map(|r| match r {
        OpResult::Failed(ServerError::NotLeader { leader }) => Some(leader.clone()),
        _ => None,
    })
}

fn not_leader_at(results: &[OpResult]) -> Vec<usize> {
    let not_leader = |r: &OpResult| matches!(r, OpResult::Failed(ServerError::NotLeader { .. }));
    (0..results.len())
        .filter(|&i| not_leader(&results[i]))
        .collect()
}

/// Runs `ops` for `principal`: one result per operation, in order. Each is recorded in the
/// node's metrics as an HTTP request taking the time until all were answered.
pub async fn run(ctx: &Arc<NodeCtx>, principal: &Principal, ops: Vec<Op>) -> Vec<OpResult> {
    let arrived = Instant::now();
    let operations: Vec<Operation> = ops.iter().map(Operation::of_op).collect();
    let results = here_or_at_leader(ctx, principal, ops).await;
    let answered = operations
        .into_iter()
        .zip(&results)
        .map(|(operation, result)| (operation, Outcome::of_result(result)));
    ctx.metrics
        .record_requests(Transport::Http, answered, arrived.elapsed());
    results
}

/// Runs `ops` here, and those answered `not_leader` at the leader (forwarded).
///
/// Running consumes the operations, so a copy to forward is kept, but only on a follower,
/// where `not_leader` answers are expected: on the leader (where a load balancer aware of
/// roles, or a client that found it, sends its writes) nothing is copied. A leader that
/// steps down while it runs them answers `not_leader` (503 with `Retry-After`; the client
/// retries with the same key), as it does to a QUIC frame.
async fn here_or_at_leader(
    ctx: &Arc<NodeCtx>,
    principal: &Principal,
    ops: Vec<Op>,
) -> Vec<OpResult> {
    let caller = Caller::new(principal.clone());
    let keep = (!ctx.consensus.is_leader()).then(|| ops.clone());
    let mut results = run_ops(ctx, &caller, ops).await;
    let Some(keep) = keep else {
        return results;
    };
    for _ in 0..FORWARD_ATTEMPTS_MAX {
        let Some(hint) = leader_hint(&results) else {
            break;
        };
        let leader = match hint {
            Some(leader) if leader.id != ctx.id => leader,
            _ => {
                // No leader known yet: ask again here after a moment (the election may end).
                tokio::time::sleep(Duration::from_millis(NO_LEADER_WAIT_MS)).await;
                let again: Vec<usize> = not_leader_at(&results);
                let ops = again.iter().map(|&i| keep[i].clone()).collect();
                let answers = run_ops(ctx, &caller, ops).await;
                for (i, answer) in again.into_iter().zip(answers) {
                    results[i] = answer;
                }
                continue;
            }
        };
        let pending = not_leader_at(&results);
        let forwarded = Forwarded {
            principal: ForwardedPrincipal::from(principal),
            ops: pending.iter().map(|&i| keep[i].clone()).collect(),
        };
        match ctx.forwarder.forward(&leader.addr, &forwarded).await {
            Ok(answers) => {
                for (i, answer) in pending.into_iter().zip(answers) {
                    results[i] = answer;
                }
            }
            Err(e) => {
                for i in pending {
                    results[i] = OpResult::Failed(e.clone());
                }
                break;
            }
        }
    }
    results
}

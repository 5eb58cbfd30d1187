//! Operations of a frame: writes to the proposer, reads once their consistency is met, admin
//! to the membership module.

use std::sync::Arc;
use std::time::Duration;

use engine::Query;
use protocol::{Consistency, Op, OpResult, ServerError};

use super::status::status;
use super::Caller;
use pki::Principal;

use crate::metrics::{Operation, Outcome};
use crate::node::NodeCtx;
use crate::raft::proposer::READ_TIMEOUT_MS;

/// An operation whose waiting is done: its result, or a query to answer from the ledger once
/// the reply has room.
// The large variant is the result every operation ends as anyway.
#[allow(clippy::large_enum_variant)]
pub(super) enum Ready {
    Done(OpResult),
    Query(Query),
}

impl Ready {
    /// The operation's result, reading the ledger now if it is a query.
    pub(super) fn answer(self, ctx: &NodeCtx) -> OpResult {
        match self {
            Ready::Done(result) => result,
            Ready::Query(query) => answer(ctx, &query),
        }
    }
}

/// An operation of a frame whose waiting is done, and what it was (for the metrics).
pub(super) struct Pending {
    /// What was asked.
    pub(super) operation: Operation,
    /// Its result, or its query.
    pub(super) ready: Ready,
}

impl Pending {
    /// Answers a query from the ledger now; afterwards the result is final.
    pub(super) fn answer(&mut self, ctx: &NodeCtx) {
        if let Ready::Query(query) = &self.ready {
            self.ready = Ready::Done(answer(ctx, query));
        }
    }

    /// How it ended, once answered (`None` for a query not answered yet).
    pub(super) fn outcome(&self) -> Option<Outcome> {
        match &self.ready {
            Ready::Done(result) => Some(Outcome::of_result(result)),
            Ready::Query(_) => None,
        }
    }

    /// The result (reading the ledger if it was not answered yet).
    pub(super) fn into_result(self, ctx: &NodeCtx) -> OpResult {
        self.ready.answer(ctx)
    }
}

/// Whether `principal` may run `op` now (`auth::decide`); a refusal is counted, logged (rate
/// limited) and answered `forbidden`.
pub(crate) fn allowed(ctx: &NodeCtx, principal: &Principal, op: &Op) -> Result<(), ServerError> {
    let shared = &ctx.shared;
    let now_ms = ctx.clock.now_ms();
    crate::auth::decide(principal, op, &shared.credentials, &shared.ledger, now_ms).map_err(
        |refused| {
            let message = refused.to_string();
            ctx.refusals.denied(&principal.name, &message);
            ctx.metrics.denied(principal.role);
            ServerError::Forbidden { message }
        },
    )
}

/// Runs a frame's operations concurrently: writes go to the proposer together (so they share
/// a batch), reads and the rest run concurrently. Results come back in operation order.
pub(super) async fn handle_ops(
    ctx: &Arc<NodeCtx>,
    caller: &Caller,
    ops: Vec<Op>,
    bytes_per_op: usize,
) -> Vec<Pending> {
    if let Some(removed) = ctx.membership.removed_error() {
        // Its ledger is frozen where the cluster left it: only its status still answers.
        return ops
            .iter()
            .map(|op| Pending {
                operation: Operation::of_op(op),
                ready: Ready::Done(match op {
                    Op::Status => OpResult::Status(Box::new(status(ctx))),
                    _ => OpResult::Failed(removed.clone()),
                }),
            })
            .collect();
    }
    let no_quorum = ctx.quorum_lost_ms();
    let slots: Vec<(Operation, Slot)> = ops
        .into_iter()
        .map(|op| {
            let operation = Operation::of_op(&op);
            (operation, slot(ctx, caller, op, no_quorum, bytes_per_op))
        })
        .collect();
    wait_all(ctx, slots).await
}

/// Where one operation of a frame stands once the frame is read.
enum Slot {
    /// Answered already (refused, status).
    Done(OpResult),
    /// Submitted to the proposer: its answer comes on this channel.
    Write(tokio::sync::oneshot::Receiver<crate::raft::proposer::WriteResult>),
    /// To be handled with the frame's other reads ([`handle_op`]).
    Later(Op),
}

/// Checks `op` and submits it if it is a write.
fn slot(
    ctx: &Arc<NodeCtx>,
    caller: &Caller,
    op: Op,
    no_quorum: Option<u64>,
    bytes_per_op: usize,
) -> Slot {
    match (allowed(ctx, &caller.principal, &op), op) {
        (Err(refused), _) => Slot::Done(OpResult::Failed(refused)),
        (Ok(()), Op::Write(_)) if no_quorum.is_some() => {
            Slot::Done(OpResult::Failed(ServerError::Unavailable {
                message: format!(
                    "this leader has heard from no majority for {} ms",
                    no_quorum.unwrap_or_default()
                ),
            }))
        }
        (Ok(()), Op::Write(request)) => Slot::Write(ctx.proposer.submit(
            request,
            caller.author.clone(),
            bytes_per_op,
        )),
        (Ok(()), Op::Status) => Slot::Done(OpResult::Status(Box::new(status(ctx)))),
        (Ok(()), other) => Slot::Later(other),
    }
}

/// Waits for every slot's answer; the answers keep the slots' order.
async fn wait_all(ctx: &Arc<NodeCtx>, slots: Vec<(Operation, Slot)>) -> Vec<Pending> {
    // Reads (and admin) all at once: a frame may carry many callers' operations (clients
    // coalesce), so its reads must share a leadership round rather than wait for each other.
    // Writes are already submitted: their answers are awaited in order in one future, not one
    // boxed future each (a gateway frame is 100 writes).
    enum Next {
        Done(OpResult),
        Written,
        Later,
    }
    let mut receivers = Vec::new();
    let mut later = Vec::new();
    let order: Vec<(Operation, Next)> = slots
        .into_iter()
        .map(|(operation, slot)| match slot {
            Slot::Done(result) => (operation, Next::Done(result)),
            Slot::Write(rx) => {
                receivers.push(rx);
                (operation, Next::Written)
            }
            Slot::Later(op) => {
                later.push(handle_op(ctx, op));
                (operation, Next::Later)
            }
        })
        .collect();
    let writes = async move {
        let mut written = Vec::with_capacity(receivers.len());
        for rx in receivers {
            written.push(match rx.await {
                Ok(Ok((outcome, log_index))) => OpResult::Written { outcome, log_index },
                Ok(Err(e)) => OpResult::Failed(e),
                Err(_) => OpResult::Failed(ServerError::Unavailable {
                    message: "node stopping".to_owned(),
                }),
            });
        }
        written
    };
    let (later, written) =
        futures_util::future::join(futures_util::future::join_all(later), writes).await;
    let (mut later, mut written) = (later.into_iter(), written.into_iter());
    order
        .into_iter()
        .map(|(operation, next)| {
            let ready = match next {
                Next::Done(result) => Some(Ready::Done(result)),
                Next::Written => written.next().map(Ready::Done),
                Next::Later => later.next(),
            };
            // Each list holds exactly one answer per operation of its kind, in order.
            let ready = ready.unwrap_or_else(|| {
                Ready::Done(OpResult::Failed(ServerError::Internal {
                    message: "an operation's answer went missing".to_owned(),
                }))
            });
            Pending { operation, ready }
        })
        .collect()
}

/// The waiting part of one operation; a read ends ready to query the ledger.
async fn handle_op(ctx: &Arc<NodeCtx>, op: Op) -> Ready {
    let failed = |e| Ready::Done(OpResult::Failed(e));
    match op {
        Op::Read { query, consistency } => match read_ready(ctx, consistency).await {
            Ok(()) => Ready::Query(query),
            Err(e) => failed(e),
        },
        Op::Digest => {
            if !ctx.is_ready() {
                return failed(ServerError::NotReady);
            }
            // The whole ledger is encoded for its digest: from a frozen view, on a blocking
            // thread, so that neither apply nor this runtime waits for it.
            let (frozen, applied_index) = {
                let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
                (ledger.freeze(), ctx.shared.applied_index())
            };
            match tokio::task::spawn_blocking(move || frozen.digest()).await {
                Ok(digest) => Ready::Done(OpResult::Digest {
                    applied_index,
                    digest,
                }),
                Err(e) => failed(ServerError::Internal {
                    message: format!("digest: {e}"),
                }),
            }
        }
        Op::Admin(admin) => Ready::Done(crate::raft::membership::admin(ctx, admin).await),
        Op::Write(_) | Op::Status | Op::Subscribe { .. } | Op::SubscribeAt { .. } => {
            failed(ServerError::Internal {
                message: "operation routed wrongly".to_owned(),
            })
        }
    }
}

/// Waits until this node may answer a read of `consistency`: ready, and leading with a
/// confirmed quorum (linearizable) or past the wanted index (at least).
async fn read_ready(ctx: &Arc<NodeCtx>, consistency: Consistency) -> Result<(), ServerError> {
    if !ctx.is_ready() {
        return Err(ServerError::NotReady);
    }
    match consistency {
        Consistency::Linearizable => {
            if !ctx.consensus.is_leader() {
                return Err(ctx.consensus.not_leader());
            }
            ctx.reads.wait().await
        }
        Consistency::Local => Ok(()),
        Consistency::AtLeast(index) => {
            let mut applied = ctx.shared.applied();
            let reached = tokio::time::timeout(Duration::from_millis(READ_TIMEOUT_MS), async {
                applied.wait_for(|a| *a >= index).await.is_ok()
            })
            .await;
            match reached {
                Ok(true) => Ok(()),
                Ok(false) => Err(ServerError::Unavailable {
                    message: "node stopping".to_owned(),
                }),
                Err(_) => Err(ServerError::Timeout),
            }
        }
    }
}

/// Answers a query from the ledger as it is now (at least as new as when the read became
/// ready: the applied state only moves forward). The read lock is held for the query only.
fn answer(ctx: &NodeCtx, query: &Query) -> OpResult {
    if !ctx.shared.is_ready() {
        return OpResult::Failed(ServerError::NotReady);
    }
    let answer = {
        let ledger = ctx.shared.ledger.read().expect("ledger lock poisoned");
        ledger.query(query, ctx.clock.now_ms())
    };
    OpResult::Read {
        answer,
        applied_index: ctx.shared.applied_index(),
    }
}

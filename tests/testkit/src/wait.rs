//! Waiting: one rule for "there is a leader", one for "the replicas agree", and one loop that
//! polls a rule until it holds or time runs out.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use protocol::{NodeStatus, Role};

/// What a wait was for, so a timeout says which promise the cluster broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Awaited {
    /// A ready leader that a majority of the members name as their leader.
    Leader,
    /// Node `id` being that leader.
    LeaderIs(u64),
    /// A leader other than node `old`.
    NewLeader {
        /// The leader that was stopped.
        old: u64,
    },
    /// Every replica at the same applied index with the same ledger digest.
    Convergence,
    /// Node `id` starting again on its old port (the port may take a moment to be freed).
    Restart(u64),
    /// Every running node holding the administrator's bearer token.
    AdminToken,
    /// Node `id`'s status showing `what`.
    Status {
        /// The node.
        id: u64,
        /// What its status should show, in words.
        what: String,
    },
}

impl std::fmt::Display for Awaited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Awaited::Leader => f.write_str("a leader"),
            Awaited::LeaderIs(id) => write!(f, "node {id} leading"),
            Awaited::NewLeader { old } => write!(f, "a leader other than node {old}"),
            Awaited::Convergence => f.write_str("replicas converging"),
            Awaited::Restart(id) => write!(f, "node {id} restarting"),
            Awaited::AdminToken => f.write_str("the admin token's grant on every node"),
            Awaited::Status { id, what } => write!(f, "node {id} {what}"),
        }
    }
}

/// A wait that ran out of time.
#[derive(Debug)]
pub struct WaitTimeout {
    /// What was awaited.
    pub awaited: Awaited,
    /// How long the wait lasted.
    pub within: Duration,
    /// The last state seen, formatted (statuses, digests or the last error).
    pub last_seen: String,
}

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no {} within {:?}; last seen: {}",
            self.awaited, self.within, self.last_seen
        )
    }
}

impl std::error::Error for WaitTimeout {}

/// A replica's ledger digest and the log index it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The last log index applied to the ledger.
    pub applied_index: u64,
    /// The ledger digest (hex).
    pub digest: String,
}

impl From<server::node::LedgerDigest> for Digest {
    fn from(d: server::node::LedgerDigest) -> Self {
        Digest {
            applied_index: d.applied_index,
            digest: d.digest,
        }
    }
}

/// The leader among `statuses` (one per member; `None`: stopped, cut off or not answering):
/// a ready node in role leader that more than half of `members` name as leader, the one of the
/// highest term if several claim it. Counting over all members, not the ones that answered,
/// keeps a leader cut off with a minority from counting.
pub fn leader_of(statuses: &[Option<NodeStatus>], members: usize) -> Option<u64> {
    let seen: Vec<&NodeStatus> = statuses.iter().flatten().collect();
    let mut claims: Vec<&NodeStatus> = seen
        .iter()
        .copied()
        .filter(|s| s.role == Role::Leader && s.ready)
        .collect();
    claims.sort_by_key(|s| std::cmp::Reverse(s.term));
    claims.into_iter().map(|s| s.node.id).find(|id| {
        let followers = seen
            .iter()
            .filter(|o| o.leader.as_ref().map(|l| l.id) == Some(*id))
            .count();
        followers * 2 > members
    })
}

/// The digest every replica in `digests` has, if they all answered and agree (same applied
/// index, same digest); `None` when one is missing or differs, or there are none.
pub fn agreed(digests: &[Option<Digest>]) -> Option<&Digest> {
    let first = digests.first()?.as_ref()?;
    digests
        .iter()
        .all(|d| d.as_ref() == Some(first))
        .then_some(first)
}

/// Calls `probe` every `every` until it returns `Ok`, or fails once `within` has passed,
/// with the last `Err` (the state seen) in the timeout.
///
/// `probe` returns a plain future rather than being an async closure: the futures of async
/// closures are not provably `Send`, and a cluster must be startable from a spawned task.
pub(crate) async fn poll<T, S: Debug, F: Future<Output = Result<T, S>>>(
    awaited: Awaited,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> F,
) -> Result<T, WaitTimeout> {
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(seen) if start.elapsed() >= within => {
                return Err(WaitTimeout {
                    awaited,
                    within,
                    last_seen: format!("{seen:?}"),
                })
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// What the waits need to see of a cluster, however it runs.
pub(crate) trait Observe {
    /// Members, running or not (the majority is counted over them).
    fn members(&self) -> usize;
    /// How often to look again for `awaited`: statuses are cheap in process, digests hash the
    /// ledger, and a process is asked over a new connection.
    fn every(&self, awaited: &Awaited) -> Duration;
    /// One status per member; `None` for a node that is stopped, cut off or silent.
    async fn statuses(&self) -> Vec<Option<NodeStatus>>;
    /// One digest per running node; `None` for one that did not answer.
    async fn digests(&self) -> Vec<Option<Digest>>;
}

/// A node's role as the timeout message shows it: enough to see why no leader counted.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug only
struct Seen {
    id: u64,
    role: Role,
    term: u64,
    ready: bool,
    leader: Option<u64>,
}

fn seen(statuses: &[Option<NodeStatus>]) -> Vec<Option<Seen>> {
    let one = |s: &NodeStatus| Seen {
        id: s.node.id,
        role: s.role,
        term: s.term,
        ready: s.ready,
        leader: s.leader.as_ref().map(|l| l.id),
    };
    statuses.iter().map(|s| s.as_ref().map(one)).collect()
}

/// Waits for [`leader_of`] to name a leader satisfying `accept`.
pub(crate) async fn wait_leader_where(
    cluster: &impl Observe,
    awaited: Awaited,
    within: Duration,
    accept: impl Fn(u64) -> bool,
) -> Result<u64, WaitTimeout> {
    let every = cluster.every(&awaited);
    let accept = &accept;
    poll(awaited, within, every, move || async move {
        let statuses = cluster.statuses().await;
        match leader_of(&statuses, cluster.members()) {
            Some(id) if accept(id) => Ok(id),
            _ => Err(seen(&statuses)),
        }
    })
    .await
}

/// Waits for [`agreed`] to hold; returns the agreed digest.
pub(crate) async fn wait_converged(
    cluster: &impl Observe,
    within: Duration,
) -> Result<Digest, WaitTimeout> {
    let every = cluster.every(&Awaited::Convergence);
    poll(Awaited::Convergence, within, every, move || async move {
        let digests = cluster.digests().await;
        agreed(&digests).cloned().ok_or(digests)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::NodeAddr;

    fn status(id: u64, role: Role, term: u64, ready: bool, leader: Option<u64>) -> NodeStatus {
        let addr = |id: u64| NodeAddr {
            id,
            addr: format!("127.0.0.1:{}", 7000 + id),
        };
        NodeStatus {
            node: addr(id),
            role,
            term,
            leader: leader.map(addr),
            members: Vec::new(),
            applied_index: 0,
            last_log_index: 0,
            snapshot_index: 0,
            ready,
            durability: "replicated".to_owned(),
            batches: Default::default(),
            ledger: engine::query::LedgerStatus {
                applied_index: 0,
                now_ms: 0,
                skus: 0,
                locations: 0,
                balances: 0,
                live_reservations: 0,
                open_orders: 0,
                dedup_entries: 0,
                feed_next_seq: 0,
            },
            health: Default::default(),
            membership_index: 0,
            membership: Vec::new(),
            replies: Default::default(),
            access: Default::default(),
            not_ready: None,
            pauses: Default::default(),
            snapshots: Default::default(),
        }
    }

    #[test]
    fn a_leader_counts_only_with_a_majority_of_all_members() {
        let leader = Some(status(1, Role::Leader, 2, true, Some(1)));
        let follower = Some(status(2, Role::Follower, 2, true, Some(1)));
        let lost = Some(status(2, Role::Follower, 2, true, None));
        assert_eq!(leader_of(&[leader.clone(), follower, None], 3), Some(1));
        // Itself alone of three: a leader cut off with a minority.
        assert_eq!(leader_of(&[leader.clone(), lost, None], 3), None);
        // Two of five is no majority either, even when the other three are silent.
        let follower = Some(status(2, Role::Follower, 2, true, Some(1)));
        assert_eq!(leader_of(&[leader, follower, None, None, None], 5), None);
    }

    #[test]
    fn a_leader_that_is_not_ready_does_not_count() {
        let leader = Some(status(1, Role::Leader, 2, false, Some(1)));
        let follower = Some(status(2, Role::Follower, 2, true, Some(1)));
        assert_eq!(leader_of(&[leader, follower, None], 3), None);
    }

    #[test]
    fn of_two_claimants_the_one_followed_by_a_majority_leads() {
        // Node 1 still thinks it leads term 2; nodes 2 and 3 moved on to node 3 in term 3.
        let stale = Some(status(1, Role::Leader, 2, true, Some(1)));
        let follower = Some(status(2, Role::Follower, 3, true, Some(3)));
        let leader = Some(status(3, Role::Leader, 3, true, Some(3)));
        assert_eq!(leader_of(&[stale, follower, leader], 3), Some(3));
    }

    #[test]
    fn replicas_agree_only_when_all_answered_the_same_index_and_digest() {
        let d = |applied_index: u64, digest: &str| {
            Some(Digest {
                applied_index,
                digest: digest.to_owned(),
            })
        };
        assert_eq!(agreed(&[]), None);
        assert_eq!(agreed(&[d(5, "ab"), d(5, "ab")]), d(5, "ab").as_ref());
        assert_eq!(agreed(&[d(5, "ab"), None]), None);
        assert_eq!(agreed(&[None, d(5, "ab")]), None);
        // Same digest at another index: the ledgers happen to match, the logs do not.
        assert_eq!(agreed(&[d(5, "ab"), d(6, "ab")]), None);
        assert_eq!(agreed(&[d(5, "ab"), d(5, "cd")]), None);
    }

    #[tokio::test]
    async fn poll_returns_the_first_success() {
        let mut calls = 0;
        let got = poll(
            Awaited::Leader,
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                calls += 1;
                let result = if calls < 3 { Err(calls) } else { Ok("done") };
                std::future::ready(result)
            },
        )
        .await;
        assert_eq!(got.ok(), Some("done"));
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn a_timeout_says_what_was_awaited_and_what_was_seen() {
        let within = Duration::from_millis(30);
        let every = Duration::from_millis(5);
        let failed = poll(Awaited::Convergence, within, every, || {
            std::future::ready(Err::<(), _>("digests differ"))
        })
        .await;
        let Err(timeout) = failed else {
            panic!("a probe that never succeeds timed out: {failed:?}")
        };
        assert_eq!(timeout.awaited, Awaited::Convergence);
        assert_eq!(timeout.last_seen, "\"digests differ\"");
        assert!(timeout
            .to_string()
            .starts_with("no replicas converging within 30ms"));
    }
}

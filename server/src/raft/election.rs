//! When a node stands for election, and when it backs another: a pre-vote, leader stickiness,
//! and the rules for a node that may have lost entries it acknowledged (ARCHITECTURE.md,
//! "Elections and recovery").
//!
//! openraft's own election timer is off (`enable_elect = false`): [`Election::run`] decides.
//! A follower that has heard nothing from a leader for a randomized timeout first asks every
//! voter for a *pre-vote* ([`PreVoteRequest`]), which changes no term. A voter backs it only if
//! it has not heard from a live leader for the leader lease itself (a node that was merely
//! paused or cut off cannot unseat a healthy leader) and the candidate's log is at least as
//! up-to-date as its own. Only with a majority of pre-votes does the node call openraft's
//! election, which then runs the real vote (terms, log check, lease) as usual. It stops waiting
//! for answers once a majority granted (a dead voter costs nothing), and stands only if, since
//! it asked, it heard from no leader or other candidate and its vote did not change:
//! otherwise two nodes that lost their leader together would stand in lockstep, or unseat the
//! leader one of them just elected.
//!
//! A node whose log cannot be written (`LogStore::disk_failing`) neither stands nor votes, and
//! if it leads it turns its heartbeats off so that the others elect a leader after its lease.
//!
//! A *recovering* node (its log may lack entries it acknowledged, see `log_store`) backs a
//! candidate, by pre-vote or by vote, and stands itself, only with the most up-to-date log it
//! has heard of from any voter since it started, and only once it has heard from every voter or
//! [`RECOVERY_HOLD_MS`] has passed. It stops recovering once it holds a leader's committed log
//! again (or leads). So a node that lost a committed entry cannot help elect a leader that
//! lacks it while a node that holds it is up and heard from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::log_store::LogStore;
use super::network::Network;
use super::{LogId, NodeId, Raft, TypeConfig};

/// How long a recovering node waits to hear from every voter before it backs the best log it
/// has heard of anyway (a voter that stays down must not block elections forever), ms.
pub const RECOVERY_HOLD_MS: u64 = 5_000;
/// How often the election loop looks at the node's state, ms.
pub const ELECTION_CHECK_MS: u64 = 20;

/// "Would you vote for me?", asked before an election; changes nothing on the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The node that would stand.
    pub candidate: NodeId,
    /// Its last log id.
    pub last_log_id: Option<LogId>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteResponse {
    /// Whether the receiver would vote for the candidate now.
    pub granted: bool,
    /// The receiver's last log id (candidates learn the best log around).
    pub last_log_id: Option<LogId>,
}

/// Raft timing the election loop uses, ms.
#[derive(Debug, Clone, Copy)]
pub struct ElectionTimings {
    /// Lower bound of the randomized election timeout.
    pub min_ms: u64,
    /// Upper bound; also the leader lease (openraft's: a voter that heard from its leader
    /// within it refuses votes).
    pub max_ms: u64,
}

/// A node's election state, shared by the peer service and the election loop.
pub struct Election {
    id: NodeId,
    log: LogStore,
    timings: ElectionTimings,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When this node last accepted an AppendEntries from a leader.
    leader_contact: Option<Instant>,
    /// When a vote request this node may grant last reached it (a newer term, a log at least
    /// as good as its own). Recorded before openraft sees it: openraft's metrics show the new
    /// vote only milliseconds later, and a pre-vote round ending in that gap stood anyway
    /// (a split vote, or a new leader unseated).
    candidate_seen: Option<Instant>,
    /// When this node last granted a pre-vote to a node that outranks it (a better log, or as
    /// good a log and a higher id): if both asked at once, only the higher one stands.
    rival: Option<Instant>,
    /// When this node last decided to stand: for an election timeout it grants no pre-vote
    /// (openraft saves its new vote before asking for votes, so others cannot see it yet).
    standing: Option<Instant>,
    /// The best last log id each peer reported since this process started.
    seen: BTreeMap<NodeId, Option<LogId>>,
}

impl Election {
    /// The election state of node `id`, whose log is `log`.
    pub fn new(id: NodeId, log: LogStore, timings: ElectionTimings) -> Arc<Election> {
        Arc::new(Election {
            id,
            log,
            timings,
            started: Instant::now(),
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes what a peer's log holds.
    fn saw(&self, peer: NodeId, last_log_id: Option<LogId>) {
        let mut state = self.state();
        let best = state.seen.entry(peer).or_insert(last_log_id);
        if last_log_id > *best {
            *best = last_log_id;
        }
    }

    /// Whether this node heard from a leader within the lease (also asked by the membership
    /// watch: a node no leader talks to may have been removed).
    pub fn leader_is_live(&self) -> bool {
        let lease = Duration::from_millis(self.timings.max_ms);
        self.state()
            .leader_contact
            .is_some_and(|at| at.elapsed() < lease)
    }

    /// Called with every AppendEntries this node answered: a leader this node follows is
    /// live; a recovering node that now holds the leader's committed log is caught up.
    pub fn on_append(
        &self,
        request: &AppendSummary,
        response: &Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>,
    ) {
        let matched = match response {
            Ok(AppendEntriesResponse::Success) => Some(request.last),
            Ok(AppendEntriesResponse::PartialSuccess(matching)) => Some(*matching),
            Ok(AppendEntriesResponse::Conflict) => None,
            Ok(AppendEntriesResponse::HigherVote(_)) | Err(_) => return,
        };
        self.state().leader_contact = Some(Instant::now());
        // While recovering, appends complete (and are answered) only once fsynced: a success
        // means the log is durably the leader's up to `matched`.
        if let Some(matched) = matched {
            if request
                .leader_commit
                .is_none_or(|c| Some(c.index) <= matched.map(|m| m.index))
            {
                self.log.caught_up();
            }
        }
    }

    /// Whether a recovering node may back (or be) a candidate with `candidate_log`: the best
    /// log heard of, once every voter was heard from or the hold has passed.
    fn recovering_may_back(&self, candidate_log: Option<LogId>, voters: &BTreeSet<NodeId>) -> bool {
        let state = self.state();
        let best_seen = state.seen.values().copied().max().flatten();
        let heard_all = voters
            .iter()
            .all(|v| *v == self.id || state.seen.contains_key(v));
        let held = self.started.elapsed() >= Duration::from_millis(RECOVERY_HOLD_MS);
        candidate_log >= best_seen && (heard_all || held)
    }

    /// Answers a pre-vote (see the module docs). A node whose disk fails grants none: it
    /// could not save the vote that follows; nor does one that stands itself.
    pub fn pre_vote(&self, raft: &Raft, request: &PreVoteRequest) -> PreVoteResponse {
        self.saw(request.candidate, request.last_log_id);
        let ours = self.log.last_log_id();
        let (leading, voters) = leading_and_voters(raft);
        let min = Duration::from_millis(self.timings.min_ms);
        let standing = self.state().standing.is_some_and(|at| at.elapsed() < min);
        let granted = !leading
            && !standing
            && !self.leader_is_live()
            && !self.log.disk_failing()
            && request.last_log_id >= ours
            && (!self.log.recovering() || self.recovering_may_back(request.last_log_id, &voters));
        if granted && (request.last_log_id, request.candidate) > (ours, self.id) {
            self.state().rival = Some(Instant::now());
        }
        PreVoteResponse {
            granted,
            last_log_id: ours,
        }
    }

    /// A vote request may reach openraft, or is refused here: by a recovering node backing a
    /// log that may lack what it lost, and by a node whose disk fails (openraft would wait on
    /// the vote's save for as long as the disk fails, and the candidate with it).
    pub fn vote(&self, raft: &Raft, request: &VoteRequest<NodeId>) -> Option<VoteResponse<NodeId>> {
        let candidate = request.vote.leader_id().voted_for()?;
        self.saw(candidate, request.last_log_id);
        let (_, voters) = leading_and_voters(raft);
        let disk_failing = self.log.disk_failing();
        if !disk_failing
            && (!self.log.recovering() || self.recovering_may_back(request.last_log_id, &voters))
        {
            let term = raft.metrics().borrow().current_term;
            if request.vote.leader_id().term > term && request.last_log_id >= self.log.last_log_id()
            {
                self.state().candidate_seen = Some(Instant::now());
            }
            return None;
        }
        let vote = raft.metrics().borrow().vote;
        Some(VoteResponse::new(vote, self.log.last_log_id(), false))
    }

    /// A randomized election timeout: nodes that lost their leader together stand at
    /// different times, so one usually wins before the other stands.
    fn timeout(&self) -> Duration {
        let spread = self.timings.max_ms.saturating_sub(self.timings.min_ms) + 1;
        Duration::from_millis(self.timings.min_ms + rand::random_range(0..spread))
    }

    /// The election loop: stands for election when a leader has been silent for a timeout and
    /// a majority grants a pre-vote; a leader whose disk fails stops leading (see
    /// [`Election::step_aside_while_disk_fails`]). Ends at shutdown.
    pub async fn run(
        self: Arc<Self>,
        raft: Raft,
        network: Network,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut timer = Timer {
            quiet_since: Instant::now(),
            timeout: self.timeout(),
            vote: raft.metrics().borrow().vote,
        };
        let mut heartbeats = true;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ELECTION_CHECK_MS)) => {}
                _ = shutdown.changed() => return,
            }
            let metrics = raft.metrics().borrow().clone();
            heartbeats = self.step_aside_while_disk_fails(&raft, heartbeats);
            match self.due(&metrics, &mut timer) {
                Due::Stop => return,
                Due::No => continue,
                Due::Yes => {}
            }
            let membership = metrics.membership_config.membership().clone();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            let asked_at = Instant::now();
            if !self.pre_vote_round(&network, &membership, &voters).await {
                continue;
            }
            // The round took time: a leader may have shown up, or this node voted for another
            // candidate meanwhile. Standing now would only unseat it (a new term).
            if !self.still_leaderless(&raft, &timer.vote, asked_at) {
                tracing::info!(
                    id = self.id,
                    "a leader or another candidate appeared during the pre-vote: not standing"
                );
                continue;
            }
            tracing::info!(
                id = self.id,
                "a majority backs this node: standing for election"
            );
            self.state().standing = Some(Instant::now());
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
    }

    /// Whether this node should ask for pre-votes now; keeps `timer` up to date: it restarts
    /// while this node leads, fails to write its log, or sees its vote change (it voted for a
    /// candidate, as in Raft), and after a leader's contact waits out its lease too.
    fn due(
        &self,
        metrics: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
        timer: &mut Timer,
    ) -> Due {
        let now = Instant::now();
        if metrics.vote != timer.vote {
            timer.vote = metrics.vote;
            timer.quiet_since = now;
        }
        match metrics.state {
            ServerState::Shutdown => return Due::Stop,
            ServerState::Leader => {
                self.log.caught_up();
                timer.quiet_since = now;
                return Due::No;
            }
            _ => {}
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&self.id) {
            return Due::No;
        }
        if self.log.disk_failing() {
            // It could not save its own vote: it stands once its disk works again.
            timer.quiet_since = now;
            return Due::No;
        }
        let (contact, candidate) = {
            let state = self.state();
            (state.leader_contact, state.candidate_seen)
        };
        if let Some(contact) = contact {
            // After a leader, wait out its lease too (as openraft's own timer does).
            let lease = Duration::from_millis(self.timings.max_ms);
            timer.quiet_since = timer.quiet_since.max(contact + lease);
        }
        if let Some(candidate) = candidate {
            // Another candidate stands: give it a timeout to win (as a vote change does).
            timer.quiet_since = timer.quiet_since.max(candidate);
        }
        let alone = voters.len() == 1;
        if !alone && timer.quiet_since.elapsed() < timer.timeout {
            return Due::No;
        }
        timer.quiet_since = now;
        timer.timeout = self.timeout();
        Due::Yes
    }

    /// After a pre-vote round that began at `asked_at` with this node's vote at `vote`: true
    /// if no leader was heard from since, no other candidate asked for this node's vote nor
    /// (outranking it) for its pre-vote, the vote (term, and whom this node backs) did not
    /// change, and this node's disk still works. Two nodes whose rounds overlap would
    /// otherwise both stand: a split vote, and a second election.
    fn still_leaderless(
        &self,
        raft: &Raft,
        vote: &openraft::Vote<NodeId>,
        asked_at: Instant,
    ) -> bool {
        let heard = {
            let state = self.state();
            let since = |at: Option<Instant>| at.is_some_and(|at| at >= asked_at);
            since(state.leader_contact) || since(state.candidate_seen) || since(state.rival)
        };
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        !heard
            && metrics.vote == *vote
            && metrics.state != ServerState::Leader
            && !self.log.disk_failing()
    }

    /// A leader whose log cannot be written stops sending heartbeats (the proposer stops
    /// proposing too: `Consensus::stepped_aside`), so the others stop hearing it and elect a leader
    /// after its lease; heartbeats resume once the disk works (if it still leads by then; a
    /// deposed leader becomes a follower as soon as it can save the new term). `enabled` is
    /// the current setting; returns the new one.
    fn step_aside_while_disk_fails(&self, raft: &Raft, enabled: bool) -> bool {
        let wanted = !self.log.disk_failing();
        if wanted == enabled {
            return wanted;
        }
        raft.runtime_config().heartbeat(wanted);
        let leading = raft.metrics().borrow().state == ServerState::Leader;
        let error = self.log.io_error();
        match (wanted, leading) {
            (true, _) => tracing::warn!(id = self.id, "the raft log is written again: this node sends heartbeats (if it still leads), stands and votes again"),
            (false, true) => tracing::error!(id = self.id, ?error, "the raft log cannot be written: this node stops leading (no heartbeats, no proposals) so that the others elect a leader; it stands and votes again once it can"),
            (false, false) => tracing::error!(id = self.id, ?error, "the raft log cannot be written: this node stands for no election and grants no vote until it can"),
        }
        wanted
    }

    /// Asks every other voter for a pre-vote; true if this node may stand and a majority (this
    /// node included) grants. It stops waiting as soon as a majority granted (or can no
    /// longer), so a voter that is down costs nothing; a recovering node instead waits for
    /// every answer up to the timeout: the answers tell it the logs of the others, which its
    /// rules need (so recovering nodes find the best log among them without waiting out
    /// [`RECOVERY_HOLD_MS`]). It asks even when it may not stand yet.
    async fn pre_vote_round(
        &self,
        network: &Network,
        membership: &openraft::Membership<NodeId, openraft::BasicNode>,
        voters: &BTreeSet<NodeId>,
    ) -> bool {
        use futures_util::StreamExt as _;
        let ours = self.log.last_log_id();
        let request = PreVoteRequest {
            candidate: self.id,
            last_log_id: ours,
        };
        let recovering = self.log.recovering();
        let wait = Duration::from_millis(self.timings.min_ms);
        let mut asks: futures_util::stream::FuturesUnordered<_> = voters
            .iter()
            .filter(|v| **v != self.id)
            .filter_map(|v| {
                let node = membership.get_node(v)?;
                let request = request.clone();
                Some(async move { (*v, network.pre_vote(*v, &node.addr, request, wait).await) })
            })
            .collect();
        let majority = voters.len() / 2 + 1;
        let (mut granted, mut refused) = (1, 0);
        while granted < majority || recovering {
            if voters.len() - refused < majority && !recovering {
                break;
            }
            let Some((peer, answer)) = asks.next().await else {
                break;
            };
            match answer {
                Ok(answer) => {
                    self.saw(peer, answer.last_log_id);
                    if answer.granted {
                        granted += 1;
                    } else {
                        refused += 1;
                    }
                }
                Err(_) => refused += 1,
            }
        }
        let may_stand = !recovering || self.recovering_may_back(ours, voters);
        may_stand && granted >= majority
    }
}

/// The election timer's state in [`Election::run`].
struct Timer {
    /// Since when this node has heard nothing that delays an election.
    quiet_since: Instant,
    /// The current randomized timeout.
    timeout: Duration,
    /// This node's vote when last looked at.
    vote: openraft::Vote<NodeId>,
}

/// Whether a pre-vote round is due.
enum Due {
    Yes,
    No,
    /// Raft has stopped.
    Stop,
}

/// What [`Election::on_append`] needs of an AppendEntries request (the request itself moves
/// into openraft).
#[derive(Debug, Clone, Copy)]
pub struct AppendSummary {
    /// The last log id the request carries (its last entry, else its `prev_log_id`).
    pub last: Option<LogId>,
    /// The leader's committed log id.
    pub leader_commit: Option<LogId>,
}

impl AppendSummary {
    /// Summarises `request`.
    pub fn of(request: &AppendEntriesRequest<TypeConfig>) -> AppendSummary {
        AppendSummary {
            last: request
                .entries
                .last()
                .map(|e| e.log_id)
                .or(request.prev_log_id),
            leader_commit: request.leader_commit,
        }
    }
}

/// Whether this node leads, and the current voters.
fn leading_and_voters(raft: &Raft) -> (bool, BTreeSet<NodeId>) {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let voters = metrics.membership_config.membership().voter_ids().collect();
    (metrics.state == ServerState::Leader, voters)
}

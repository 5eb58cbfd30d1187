//! The async client library (SPEC section 6): leader discovery, retries with the same request
//! id, pooled connections with pipelined streams.
//!
//! Routing: writes, `linearizable` reads and membership changes go to the leader (found with
//! `Op::Status` on the known nodes, then followed through `not_leader` hints); `local` and
//! `at_least` reads go to one node of the list, moving to the next one when it fails.
//!
//! Dead nodes cost nothing after the first failure: [`Client::connect`] dials every seed at
//! once and goes on with the first that answers; the leader, once found, is remembered across
//! calls; a leader search asks every node at once and stops as soon as a node says it leads
//! and a majority of its voters answered, without waiting for silent nodes; a node whose dial
//! failed is not dialed again for `pool::DIAL_RETRY_MS` (1 s); a node that answers
//! `removed` is dropped from the list.
//!
//! Retrying ([`crate::retry`]): every attempt re-sends the SAME operations, so a write keeps
//! its request id however often it is retried; in a batch, only the operations that failed
//! with a retryable node error are sent again. Ledger rejections are final outcomes.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::query::ChangeEvent;
use engine::{Answer, Command, Outcome, Query, Rejection, Request, RequestId};
use pki::Trust;
use protocol::{
    AdminOp, Consistency, MemberState, NodeAddr, NodeStatus, Op, OpResult, Role, ServerError,
};
use tokio::sync::mpsc;

use crate::channel::{CallError, Channel, Feed};
use crate::error::ClientError;
use crate::pool::{lock, Pool};
use crate::retry::{jittered, retryable, Decision, Failure, RetryPolicy};

/// How a [`Client`] connects and retries. Build it with [`ClientConfig::new`] and adjust the
/// public fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Seed nodes, `host:port`; more are learned from the cluster's membership.
    pub nodes: Vec<String>,
    /// What the client trusts: the cluster CA, or a pinned certificate fingerprint.
    pub trust: Trust,
    /// The client's identity (a client certificate of the cluster CA and its key), which
    /// nodes require (SPEC section 7); see [`pki::load_client_identity`].
    pub identity: Option<pki::Identity>,
    /// Longest wait for one attempt's reply, ms (connecting included).
    pub timeout_ms: u64,
    /// Longest time for a whole call, retries included, ms.
    pub deadline_ms: u64,
    /// Retries after the first attempt.
    pub retries: u32,
    /// First retry backoff, ms (doubled at each retry, with jitter).
    pub backoff_ms_min: u64,
    /// Largest retry backoff, ms.
    pub backoff_ms_max: u64,
    /// Long-lived request streams per node connection, 1..=[`STREAMS_PER_CONNECTION_MAX`]
    /// (subscriptions open streams of their own besides these).
    pub streams_per_connection: usize,
    /// Frames waiting for a reply on one stream,
    /// 1..=[`protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX`]; further calls wait for a slot.
    pub frames_in_flight_per_stream: usize,
    /// Longest QUIC handshake, ms.
    pub connect_timeout_ms: u64,
    /// Let calls queued on a stream at the same moment share one frame (see the `channel`
    /// module): fewer, fuller frames under load, no added wait when idle.
    pub coalesce_ops: bool,
}

/// Most request streams a client opens per connection: the node's limit
/// ([`protocol::STREAMS_PER_CONNECTION_MAX`]) minus room for subscriptions.
pub const STREAMS_PER_CONNECTION_MAX: usize = protocol::STREAMS_PER_CONNECTION_MAX as usize - 8;

/// Events batches buffered per subscription before the node is slowed down (flow control).
const SUBSCRIPTION_BUFFER_BATCHES: usize = 16;

/// Longest wait for a node's status while looking for the leader, ms.
const PROBE_TIMEOUT_MS_MAX: u64 = 2_000;

/// Shortest wait for one attempt of an admin operation, ms: what a node may take to answer
/// ([`protocol::ADMIN_REPLY_MS_MAX`]) plus a margin for the round trip. A shorter wait would
/// retry an operation that is still running and report a failure for a change that happens.
pub const ADMIN_ATTEMPT_MS_MIN: u64 = protocol::ADMIN_REPLY_MS_MAX + 1_000;

/// Leaders asked in turn by [`Client::leader_status`] before it gives up (a leader can lose
/// its role between the search and the question).
const LEADER_STATUS_TRIES: usize = 3;

impl ClientConfig {
    /// Defaults: 5 s per attempt, 30 s per call, 20 retries with backoff from 10 ms to 1 s,
    /// 4 streams per connection, 256 frames in flight per stream, 2 s to connect.
    pub fn new(nodes: Vec<String>, trust: Trust) -> ClientConfig {
        ClientConfig {
            nodes,
            trust,
            timeout_ms: 5_000,
            deadline_ms: 30_000,
            retries: 20,
            backoff_ms_min: 10,
            backoff_ms_max: 1_000,
            streams_per_connection: 4,
            frames_in_flight_per_stream: protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX,
            connect_timeout_ms: 2_000,
            coalesce_ops: true,
            identity: None,
        }
    }

    /// The same configuration presenting `identity`.
    pub fn with_identity(mut self, identity: pki::Identity) -> ClientConfig {
        self.identity = Some(identity);
        self
    }

    /// A configuration for a cluster whose CA directory is `dir`: trusting `dir/ca.pem` and
    /// presenting the administrator identity written beside it (`dir/admin.pem`,
    /// `dir/admin.key`, see [`pki::DEFAULT_ADMIN`]), as the embedded default and `dev` do.
    pub fn admin_of(
        nodes: Vec<String>,
        dir: &std::path::Path,
    ) -> Result<ClientConfig, ClientError> {
        let config_err = |e: pki::TlsError| ClientError::Config(e.to_string());
        let ca = pki::load_certs(&dir.join("ca.pem")).map_err(config_err)?;
        let identity = pki::load_client_identity(
            &dir.join(format!("{}.pem", pki::DEFAULT_ADMIN)),
            &dir.join(format!("{}.key", pki::DEFAULT_ADMIN)),
        )
        .map_err(config_err)?;
        Ok(ClientConfig::new(nodes, Trust::Ca(ca)).with_identity(identity))
    }

    fn check(&self) -> Result<(), ClientError> {
        let bad = |what: String| Err(ClientError::Config(what));
        if self.nodes.is_empty() {
            return bad("no node address".into());
        }
        if let Some(node) = self.nodes.iter().find(|n| n.rsplit_once(':').is_none()) {
            return bad(format!("node address {node:?} is not host:port"));
        }
        if !(1..=STREAMS_PER_CONNECTION_MAX).contains(&self.streams_per_connection) {
            return bad(format!(
                "streams_per_connection must be 1..={STREAMS_PER_CONNECTION_MAX}"
            ));
        }
        let frames = protocol::FRAMES_IN_FLIGHT_PER_STREAM_MAX;
        if !(1..=frames).contains(&self.frames_in_flight_per_stream) {
            return bad(format!("frames_in_flight_per_stream must be 1..={frames}"));
        }
        if self.timeout_ms == 0 || self.deadline_ms == 0 || self.connect_timeout_ms == 0 {
            return bad("timeouts must be > 0 ms".into());
        }
        Ok(())
    }
}

/// A write's final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// The request id the write was sent (and possibly retried) with.
    pub request_id: RequestId,
    /// The ledger's outcome: a reply, or a typed rejection (final: never retried).
    pub outcome: Outcome,
    /// Log index of the entry that applied it (use it for `AtLeast` reads).
    pub log_index: u64,
}

/// A read's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// The answer, or a typed rejection (`not_found`, `invalid`).
    pub answer: Result<Answer, Rejection>,
    /// Applied log index of the node that answered.
    pub applied_index: u64,
}

/// One node's answer to a status request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The node, `host:port`.
    pub node: String,
    /// Its status, or why it did not answer.
    pub status: Result<NodeStatus, ClientError>,
}

/// A node's ledger digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Log index the digest reflects.
    pub applied_index: u64,
    /// BLAKE3 of the ledger snapshot, hex.
    pub digest: String,
}

/// A fresh random non-zero 128-bit request id (the ledger rejects zero).
pub fn new_request_id() -> RequestId {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return RequestId(id);
        }
    }
}

/// Where an operation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// The current leader.
    Leader,
    /// Exactly this node.
    Node(String),
    /// Any node of the list (the current one until it fails).
    Any,
}

struct Inner {
    policy: RetryPolicy,
    timeout: Duration,
    pool: Arc<Pool>,
    /// Dials to seeds still running after [`Client::connect`] returned with the first one that
    /// answered; dropping the client aborts them.
    seed_dials: Mutex<tokio::task::JoinSet<(usize, Result<(), CallError>)>>,
    /// Known nodes: the seeds, then members learned from status answers.
    nodes: Mutex<Vec<String>>,
    /// The leader, as last learned.
    leader: Mutex<Option<String>>,
    /// One leader search at a time; `searches` counts finished ones.
    searching: tokio::sync::Mutex<()>,
    searches: AtomicU64,
    /// Index into `nodes` of the node for [`Route::Any`] (and of the next guess for the leader).
    rotate: AtomicUsize,
    /// Nodes that recently failed to connect or answer, and when: a `not_leader` hint or a
    /// follower's idea of the leader naming one of them is not followed for
    /// [`SUSPECT_MS`] (during a failover, followers still name the dead leader until the
    /// election, and a connection attempt to a dead node only ends at its timeout).
    suspects: Mutex<std::collections::HashMap<String, Instant>>,
}

/// How long a node that failed at the transport level is not taken as the leader, ms.
const SUSPECT_MS: u64 = 2_000;

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.close();
    }
}

/// A connection to a stockd cluster. Cheap to clone (clones share the pool); use it from any
/// number of tasks. Must be created and used inside a tokio runtime.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.nodes())
            .field("leader", &*lock(&self.inner.leader))
            .finish()
    }
}

impl Client {
    /// Checks the configuration and dials every seed node at once; returns as soon as one
    /// answers (the other dials go on and leave their connections in the pool), so a dead
    /// seed does not delay it. Fails if no seed answers within the connect timeout.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.check()?;
        let quic = pki::client_config_with(&config.trust, config.identity.as_ref())
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let client = Client {
            inner: Arc::new(Inner {
                policy: RetryPolicy {
                    retries: config.retries,
                    deadline_ms: config.deadline_ms,
                    backoff_ms_min: config.backoff_ms_min,
                    backoff_ms_max: config.backoff_ms_max,
                },
                timeout: Duration::from_millis(config.timeout_ms),
                pool: Arc::new(Pool::new(
                    quic,
                    config.streams_per_connection,
                    config.frames_in_flight_per_stream,
                    config.coalesce_ops,
                    Duration::from_millis(config.connect_timeout_ms),
                )),
                seed_dials: Mutex::new(tokio::task::JoinSet::new()),
                nodes: Mutex::new(config.nodes.clone()),
                leader: Mutex::new(None),
                searching: tokio::sync::Mutex::new(()),
                searches: AtomicU64::new(0),
                rotate: AtomicUsize::new(0),
                suspects: Mutex::new(std::collections::HashMap::new()),
            }),
        };
        client.dial_seeds(&config.nodes).await?;
        Ok(client)
    }

    /// Dials every seed at once; returns when the first connects (it becomes the node for
    /// [`Route::Any`]), leaving the other dials running in [`Inner::seed_dials`].
    async fn dial_seeds(&self, seeds: &[String]) -> Result<(), ClientError> {
        let mut dials = tokio::task::JoinSet::new();
        for (i, node) in seeds.iter().cloned().enumerate() {
            let pool = self.inner.pool.clone();
            dials.spawn(async move { (i, pool.get(&node).await.map(|_| ())) });
        }
        let mut last = None;
        while let Some(joined) = dials.join_next().await {
            match joined {
                Ok((i, Ok(()))) => {
                    self.inner.rotate.store(i, Ordering::Relaxed);
                    *lock(&self.inner.seed_dials) = dials;
                    return Ok(());
                }
                Ok((i, Err(e))) => {
                    self.suspect(&seeds[i]);
                    last = Some(e);
                }
                Err(e) => last = Some(CallError::Closed(format!("dial task: {e}"))),
            }
        }
        Err(match last {
            Some(refused @ CallError::Refused(_)) => ClientError::from_call(refused),
            Some(CallError::Closed(why)) => ClientError::GaveUp {
                attempts: seeds.len() as u32,
                last: Failure::Transport(why),
            },
            _ => ClientError::GaveUp {
                attempts: seeds.len() as u32,
                last: Failure::NoReply,
            },
        })
    }

    /// Connection attempts this client started to `node` (`host:port`) so far: a dead node
    /// should be dialed once, not once per call.
    pub fn dial_attempts(&self, node: &str) -> u64 {
        self.inner.pool.dial_attempts(node)
    }

    /// The nodes this client knows: the seeds, then members learned from the cluster.
    pub fn nodes(&self) -> Vec<String> {
        lock(&self.inner.nodes).clone()
    }

    /// The leader as last learned (`host:port`), if any.
    pub fn leader_hint(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
    }

    /// Closes every connection; calls in progress fail.
    pub fn close(&self) {
        self.inner.pool.close();
    }

    /// Applies a write with a fresh random request id.
    pub async fn write(&self, command: Command) -> Result<WriteResult, ClientError> {
        self.write_with_id(Request {
            request_id: new_request_id(),
            command,
        })
        .await
    }

    /// Applies a write with the caller's request id (retrying a request id returns the
    /// original outcome).
    pub async fn write_with_id(&self, request: Request) -> Result<WriteResult, ClientError> {
        let request_id = request.request_id;
        let result = self.one(Route::Leader, Op::Write(request)).await?;
        written(request_id, result)
    }

    /// Applies many writes, [`protocol::OPS_PER_FRAME_MAX`] per frame (frames sent
    /// concurrently): one result per request, in order. The node batches a frame's writes into
    /// one log entry, but each write succeeds or is rejected on its own.
    pub async fn write_batch(
        &self,
        requests: Vec<Request>,
    ) -> Vec<Result<WriteResult, ClientError>> {
        let ids: Vec<RequestId> = requests.iter().map(|r| r.request_id).collect();
        let ops = requests.into_iter().map(Op::Write).collect();
        let results = self.chunked(Route::Leader, ops).await;
        ids.into_iter()
            .zip(results)
            .map(|(id, r)| r.and_then(|r| written(id, r)))
            .collect()
    }

    /// A read. `Linearizable` goes to the leader; `Local` and `AtLeast` to any node.
    pub async fn read(
        &self,
        query: Query,
        consistency: Consistency,
    ) -> Result<ReadResult, ClientError> {
        let route = read_route(consistency);
        read_result(self.one(route, Op::Read { query, consistency }).await?)
    }

    /// Many reads with one consistency, in as few frames as possible: one result each, in
    /// order.
    pub async fn read_batch(
        &self,
        queries: Vec<Query>,
        consistency: Consistency,
    ) -> Vec<Result<ReadResult, ClientError>> {
        let ops = queries
            .into_iter()
            .map(|query| Op::Read { query, consistency })
            .collect();
        self.chunked(read_route(consistency), ops)
            .await
            .into_iter()
            .map(|r| r.and_then(read_result))
            .collect()
    }

    /// The status of every known node (one attempt each, concurrently), after refreshing the
    /// membership from the cluster.
    pub async fn status(&self) -> Vec<NodeReport> {
        self.find_leader().await;
        let probes = self
            .nodes()
            .into_iter()
            .map(|node| {
                let client = self.clone();
                tokio::spawn(async move {
                    let status = client.probe(&node, client.inner.timeout).await;
                    NodeReport { node, status }
                })
            })
            .collect::<Vec<_>>();
        let mut reports = Vec::with_capacity(probes.len());
        for probe in probes {
            if let Ok(report) = probe.await {
                reports.push(report);
            }
        }
        reports
    }

    /// The status of one node (with retries).
    pub async fn status_of(&self, node: &str) -> Result<NodeStatus, ClientError> {
        match self.one(Route::Node(node.to_owned()), Op::Status).await? {
            OpResult::Status(status) => Ok(*status),
            other => Err(unexpected("a status", &other)),
        }
    }

    /// The digest of one node's ledger snapshot, to compare replicas.
    pub async fn digest_of(&self, node: &str) -> Result<Digest, ClientError> {
        match self.one(Route::Node(node.to_owned()), Op::Digest).await? {
            OpResult::Digest {
                applied_index,
                digest,
            } => Ok(Digest {
                applied_index,
                digest,
            }),
            other => Err(unexpected("a digest", &other)),
        }
    }

    /// A `Local` read answered by exactly `node` (with retries), from what that node has
    /// applied: to compare what each replica holds.
    pub async fn read_at(&self, node: &str, query: Query) -> Result<ReadResult, ClientError> {
        let consistency = Consistency::Local;
        let op = Op::Read { query, consistency };
        read_result(self.one(Route::Node(node.to_owned()), op).await?)
    }

    /// The retention settings in force, from the leader (a linearizable read): how long and
    /// how many request ids, change-feed events and finished objects the cluster keeps.
    pub async fn retention(&self) -> Result<engine::Config, ClientError> {
        let read = self
            .read(Query::Retention, Consistency::Linearizable)
            .await?;
        retention_of(read)
    }

    /// The retention settings as `node` has applied them ([`Client::read_at`]).
    pub async fn retention_at(&self, node: &str) -> Result<engine::Config, ClientError> {
        retention_of(self.read_at(node, Query::Retention).await?)
    }

    /// Replaces the retention settings (`set_retention`, a write with a fresh request id; the
    /// principal must be `admin`, else `forbidden`). Each value must lie in its range of
    /// `engine::limits` (`_MIN..=_DEFAULT`), else the outcome is an `invalid` rejection
    /// naming the field. To change some values only, read them first ([`Client::retention`]).
    pub async fn set_retention(&self, config: engine::Config) -> Result<WriteResult, ClientError> {
        self.write(Command::SetRetention(config)).await
    }

    /// The leader's status: its view of every member with how far each one's log goes
    /// ([`NodeStatus::membership`]). Fails if no node says it leads.
    pub async fn leader_status(&self) -> Result<NodeStatus, ClientError> {
        let mut last = ClientError::Unexpected("no node says it leads".into());
        for _ in 0..LEADER_STATUS_TRIES {
            let leader = self.pick(&Route::Leader).await;
            match self.probe(&leader, self.inner.timeout).await {
                Ok(status) if status.role == Role::Leader => return Ok(status),
                Ok(_) => {}
                Err(e) => last = e,
            }
            self.move_away(&Route::Leader, &leader);
        }
        Err(last)
    }

    /// Initialises a new cluster on `node` with these voters (once, on one node).
    pub async fn init(&self, node: &str, members: Vec<NodeAddr>) -> Result<(), ClientError> {
        let op = Op::Admin(AdminOp::Init { members });
        admin_done(self.admin(Route::Node(node.to_owned()), op).await?)
    }

    /// Adds a node through the leader and says where it stands: a voter, a learner still
    /// catching up or unreachable (call again later to promote it), or not added (nothing, or
    /// another node, answered at the address). A learner state is not an error: the node IS
    /// in the membership.
    pub async fn add_node(&self, node: NodeAddr) -> Result<MemberState, ClientError> {
        match self
            .admin(Route::Leader, Op::Admin(AdminOp::AddNode(node)))
            .await?
        {
            OpResult::NodeAdded(state) => Ok(state),
            other => Err(unexpected("node_added", &other)),
        }
    }

    /// Removes a voter or learner, through the leader.
    pub async fn remove_node(&self, id: u64) -> Result<(), ClientError> {
        admin_done(
            self.admin(Route::Leader, Op::Admin(AdminOp::RemoveNode { id }))
                .await?,
        )
    }

    /// One admin operation, each attempt waiting at least [`ADMIN_ATTEMPT_MS_MIN`].
    async fn admin(&self, route: Route, op: Op) -> Result<OpResult, ClientError> {
        let timeout = self
            .inner
            .timeout
            .max(Duration::from_millis(ADMIN_ATTEMPT_MS_MIN));
        let mut results = self.execute_within(&route, vec![op], timeout).await;
        results
            .pop()
            .unwrap_or_else(|| Err(ClientError::Unexpected("no result".into())))
    }

    /// Subscribes to the change feed from sequence number `since` (0: the oldest retained).
    /// The subscription resumes by itself after a broken connection, without duplicates.
    pub async fn subscribe(&self, since: u64) -> Result<Subscription, ClientError> {
        self.subscribe_at(since, Vec::new()).await
    }

    /// [`Client::subscribe`] to the events of balances at `locations` only (a store's live
    /// alerts; empty: every event). Unknown locations are refused (`invalid_op`).
    pub async fn subscribe_at(
        &self,
        since: u64,
        locations: Vec<engine::LocationId>,
    ) -> Result<Subscription, ClientError> {
        let (channel, events) = self.open_subscription(since, &locations).await?;
        Ok(Subscription {
            client: self.clone(),
            locations,
            next: since,
            buffer: VecDeque::new(),
            events,
            _channel: channel,
        })
    }

    /// One operation with retries.
    async fn one(&self, route: Route, op: Op) -> Result<OpResult, ClientError> {
        let mut results = self.execute(&route, vec![op]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(ClientError::Unexpected("no result".into())))
    }

    /// Many operations, [`protocol::OPS_PER_FRAME_MAX`] per frame, frames concurrently.
    async fn chunked(&self, route: Route, ops: Vec<Op>) -> Vec<Result<OpResult, ClientError>> {
        if ops.len() <= protocol::OPS_PER_FRAME_MAX {
            return self.execute(&route, ops).await;
        }
        let mut ops = ops.into_iter().peekable();
        let mut frames = Vec::new();
        while ops.peek().is_some() {
            let chunk: Vec<Op> = ops.by_ref().take(protocol::OPS_PER_FRAME_MAX).collect();
            let (client, route) = (self.clone(), route.clone());
            frames.push((
                chunk.len(),
                tokio::spawn(async move { client.execute(&route, chunk).await }),
            ));
        }
        let mut results = Vec::new();
        for (len, frame) in frames {
            match frame.await {
                Ok(r) => results.extend(r),
                Err(e) => results.extend(
                    (0..len).map(|_| Err(ClientError::Unexpected(format!("task failed: {e}")))),
                ),
            }
        }
        results
    }

    /// Sends `ops` in one frame along `route`, retrying the operations that fail with a
    /// retryable error (and all of them on a transport failure) as [`RetryPolicy::decide`]
    /// says, always with the same operations (the same request ids).
    async fn execute(&self, route: &Route, ops: Vec<Op>) -> Vec<Result<OpResult, ClientError>> {
        self.execute_within(route, ops, self.inner.timeout).await
    }

    /// [`Client::execute`] with another wait per attempt.
    async fn execute_within(
        &self,
        route: &Route,
        ops: Vec<Op>,
        attempt_timeout: Duration,
    ) -> Vec<Result<OpResult, ClientError>> {
        let start = Instant::now();
        let deadline = Duration::from_millis(self.inner.policy.deadline_ms);
        let mut batch = Batch::new(ops);
        let mut redirect: Option<String> = None;
        let mut attempt: u32 = 0;
        loop {
            let node = match redirect.take() {
                Some(node) => node,
                None => self.pick(route).await,
            };
            let timeout = attempt_timeout
                .min(deadline.saturating_sub(start.elapsed()))
                .max(Duration::from_millis(1));
            let queue_timeout = deadline.saturating_sub(start.elapsed());
            let sent = self.send(&node, batch.to_send(), timeout, queue_timeout);
            let failure = match sent.await {
                Ok(replies) => match batch.record(replies) {
                    None => break,
                    Some(first) => Failure::Server(first),
                },
                Err(CallError::Closed(why)) => self.transport_failure(&node, why),
                Err(CallError::NoReply) => Failure::NoReply,
                Err(other) => {
                    batch.fail(ClientError::from_call(other));
                    break;
                }
            };
            let elapsed_ms = start.elapsed().as_millis() as u64;
            match self.decide(route, &node, attempt, elapsed_ms, &failure) {
                Decision::Redirect { node, delay_ms } => {
                    *lock(&self.inner.leader) = Some(node.clone());
                    self.learn(std::slice::from_ref(&node));
                    redirect = Some(node);
                    sleep_ms(jittered(delay_ms)).await;
                }
                Decision::Retry {
                    delay_ms,
                    elsewhere,
                } => {
                    if elsewhere {
                        self.move_away(route, &node);
                    }
                    sleep_ms(jittered(delay_ms)).await;
                }
                Decision::GiveUp => {
                    batch.fail(gave_up(failure, attempt + 1));
                    break;
                }
            }
            attempt += 1;
        }
        batch.finish()
    }

    /// What a broken connection to `node` means: a refusal of this client's identity (final,
    /// as `forbidden`) if the node closed it for that, else a transport failure (retried).
    fn transport_failure(&self, node: &str, why: String) -> Failure {
        match self.inner.pool.refusal(node) {
            Some(reason) => Failure::Server(ServerError::Forbidden {
                message: format!("connection refused: {node}: {reason}"),
            }),
            None => Failure::Transport(why),
        }
    }

    /// The retry policy's decision after attempt `attempt` at `node` failed, adjusted to the
    /// route and to what the failure says about the node (which it records).
    fn decide(
        &self,
        route: &Route,
        node: &str,
        attempt: u32,
        elapsed_ms: u64,
        failure: &Failure,
    ) -> Decision {
        if matches!(failure, Failure::Transport(_) | Failure::NoReply) {
            self.suspect(node);
            self.inner.pool.forget(node);
        }
        let removed = match failure {
            Failure::Server(ServerError::Removed { members }) => {
                self.forget_removed(node, members);
                true
            }
            _ => false,
        };
        match self.inner.policy.decide(attempt, elapsed_ms, failure) {
            // Only the leader route follows hints; a node-bound operation stays put, and a
            // removed node will not answer it.
            Decision::Redirect { .. } if *route != Route::Leader => Decision::GiveUp,
            Decision::Retry { .. } if removed && matches!(route, Route::Node(_)) => {
                Decision::GiveUp
            }
            Decision::Redirect { node, delay_ms } if self.is_suspect(&node) => Decision::Retry {
                delay_ms: delay_ms.max(self.inner.policy.backoff_ms_min),
                elsewhere: true,
            },
            decision => decision,
        }
    }

    /// A node answered that it was removed from the cluster: learn the members it names and
    /// stop routing anything to it (unless it is the only node known).
    fn forget_removed(&self, node: &str, members: &[NodeAddr]) {
        let addrs: Vec<String> = members.iter().map(|m| m.addr.clone()).collect();
        self.learn(&addrs);
        {
            let mut leader = lock(&self.inner.leader);
            if leader.as_deref() == Some(node) {
                *leader = None;
            }
        }
        let mut nodes = lock(&self.inner.nodes);
        if nodes.len() > 1 {
            nodes.retain(|n| n != node);
        }
    }

    /// One attempt: a pooled stream to `node` (connecting within `timeout`), a free slot on it
    /// (within `queue_timeout`), one frame, its reply (within `timeout`).
    async fn send(
        &self,
        node: &str,
        ops: &[Op],
        timeout: Duration,
        queue_timeout: Duration,
    ) -> Result<Vec<OpResult>, CallError> {
        let started = Instant::now();
        let channel = tokio::time::timeout(timeout, async {
            let conn = self.inner.pool.get(node).await?;
            conn.channel().await
        })
        .await
        .map_err(|_| CallError::NoReply)??;
        channel
            .call_queued(
                ops,
                timeout.saturating_sub(started.elapsed()),
                queue_timeout,
            )
            .await
    }

    /// The node to try next for `route`.
    async fn pick(&self, route: &Route) -> String {
        match route {
            Route::Node(node) => node.clone(),
            Route::Any => self.current_node(),
            Route::Leader => {
                if let Some(leader) = self.leader_hint() {
                    return leader;
                }
                self.find_leader().await;
                self.leader_hint().unwrap_or_else(|| self.current_node())
            }
        }
    }

    fn current_node(&self) -> String {
        let nodes = lock(&self.inner.nodes);
        let i = self.inner.rotate.load(Ordering::Relaxed) % nodes.len().max(1);
        nodes.get(i).cloned().unwrap_or_default()
    }

    /// Marks `node` as failing at the transport level (see [`Inner::suspects`]).
    fn suspect(&self, node: &str) {
        lock(&self.inner.suspects).insert(node.to_owned(), Instant::now());
    }

    /// Whether `node` failed at the transport level within [`SUSPECT_MS`].
    fn is_suspect(&self, node: &str) -> bool {
        lock(&self.inner.suspects)
            .get(node)
            .is_some_and(|at| at.elapsed() < Duration::from_millis(SUSPECT_MS))
    }

    /// After a failure at `node`: forget it as the leader, and move on to the next node.
    fn move_away(&self, route: &Route, node: &str) {
        if *route == Route::Node(node.to_owned()) {
            return;
        }
        {
            let mut leader = lock(&self.inner.leader);
            if leader.as_deref() == Some(node) {
                *leader = None;
            }
        }
        if self.current_node() == node {
            self.inner.rotate.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds nodes to the known list (ignoring unspecified addresses such as `0.0.0.0:7400`).
    fn learn(&self, addrs: &[String]) {
        let mut nodes = lock(&self.inner.nodes);
        for addr in addrs {
            let unspecified = addr
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.ip().is_unspecified());
            if !unspecified && !addr.is_empty() && !nodes.contains(addr) {
                nodes.push(addr.clone());
            }
        }
    }

    /// Asks every known node for its status, concurrently (and every member the answers name),
    /// and takes as leader the node that says it leads in the highest term (else the leader
    /// named in the highest term): see [`LeaderSearch`]. Silent nodes do not delay it. Learns
    /// the members on the way. One search at a time: callers that waited for a search reuse
    /// its result.
    async fn find_leader(&self) {
        let seen = self.inner.searches.load(Ordering::Acquire);
        let _searching = self.inner.searching.lock().await;
        if self.inner.searches.load(Ordering::Acquire) != seen && self.leader_hint().is_some() {
            return;
        }
        let timeout = self
            .inner
            .timeout
            .min(Duration::from_millis(PROBE_TIMEOUT_MS_MAX));
        let mut probes = tokio::task::JoinSet::new();
        let mut asked = HashSet::new();
        let ask = |probes: &mut tokio::task::JoinSet<_>, node: String| {
            let client = self.clone();
            probes.spawn(async move {
                let status = client.probe(&node, timeout).await;
                (node, status)
            });
        };
        for node in self.nodes() {
            if asked.insert(node.clone()) {
                ask(&mut probes, node);
            }
        }
        let mut search = LeaderSearch::default();
        while let Some(joined) = probes.join_next().await {
            let Ok((node, Ok(status))) = joined else {
                continue;
            };
            let members: Vec<String> = status.members.iter().map(|m| m.addr.clone()).collect();
            self.learn(&members);
            // Members learned now are asked too (a list of seeds may name a dead node and
            // one live one: the other members then make the majority).
            for known in self.nodes() {
                if asked.insert(known.clone()) {
                    ask(&mut probes, known);
                }
            }
            // A follower's leader that just failed us is likely dead: not a candidate.
            let named_suspect = status
                .leader
                .as_ref()
                .is_some_and(|l| self.is_suspect(&l.addr));
            if search.answer(&node, &status, named_suspect) {
                break;
            }
        }
        if let Some(leader) = search.leader() {
            self.learn(std::slice::from_ref(&leader));
            *lock(&self.inner.leader) = Some(leader);
        }
        self.inner.searches.fetch_add(1, Ordering::Release);
    }

    /// One status request to one node, no retry.
    async fn probe(&self, node: &str, timeout: Duration) -> Result<NodeStatus, ClientError> {
        match self.send(node, &[Op::Status], timeout, timeout).await {
            Ok(mut results) => match results.pop() {
                Some(OpResult::Status(status)) => Ok(*status),
                Some(OpResult::Failed(e)) => Err(ClientError::Server(e)),
                Some(other) => Err(unexpected("a status", &other)),
                None => Err(ClientError::Unexpected("no result".into())),
            },
            Err(e) => Err(ClientError::from_call(e)),
        }
    }

    /// Opens a stream of its own on some node and subscribes from `since`, with retries.
    async fn open_subscription(
        &self,
        since: u64,
        locations: &[engine::LocationId],
    ) -> Result<(Arc<Channel>, mpsc::Receiver<Feed>), ClientError> {
        let op = if locations.is_empty() {
            Op::Subscribe { since }
        } else {
            Op::SubscribeAt {
                since,
                locations: locations.to_vec(),
            }
        };
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            let node = self.pick(&Route::Any).await;
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER_BATCHES);
            let opened = async {
                let conn = self.inner.pool.get(&node).await?;
                let channel = conn.subscription_channel(tx).await?;
                let results = channel
                    .call_queued(
                        std::slice::from_ref(&op),
                        self.inner.timeout,
                        self.inner.timeout,
                    )
                    .await?;
                Ok::<_, CallError>((channel, results))
            };
            let failure = match opened.await {
                Ok((channel, results)) => match results.first() {
                    Some(OpResult::Subscribed) => return Ok((channel, rx)),
                    Some(OpResult::Failed(e)) => Failure::Server(e.clone()),
                    Some(other) => return Err(unexpected("subscribed", other)),
                    None => return Err(ClientError::Unexpected("no result".into())),
                },
                Err(CallError::Closed(why)) => self.transport_failure(&node, why),
                Err(CallError::NoReply) => Failure::NoReply,
                Err(other) => return Err(ClientError::from_call(other)),
            };
            let elapsed_ms = start.elapsed().as_millis() as u64;
            match self.inner.policy.decide(attempt, elapsed_ms, &failure) {
                Decision::GiveUp => {
                    return Err(match failure {
                        Failure::Server(e) if !retryable(&e) => ClientError::Server(e),
                        last => ClientError::GaveUp {
                            attempts: attempt + 1,
                            last,
                        },
                    })
                }
                Decision::Redirect { delay_ms, .. } | Decision::Retry { delay_ms, .. } => {
                    self.move_away(&Route::Any, &node);
                    sleep_ms(jittered(delay_ms)).await;
                }
            }
            attempt += 1;
        }
    }
}

/// The leader search's decision, fed one status answer at a time (pure: no IO, no clock).
#[derive(Debug, Default)]
struct LeaderSearch {
    /// The best candidate so far: (term, it says itself that it leads, its address).
    best: Option<(u64, bool, String)>,
    /// The voters of the configuration of the node that says it leads (the best candidate).
    voters: BTreeSet<u64>,
    /// Ids of the nodes that answered.
    answered: BTreeSet<u64>,
}

impl LeaderSearch {
    /// Takes `node`'s status (`named_suspect`: the leader it names failed us recently).
    /// Returns true once the search can stop: a node says it leads in the highest term seen,
    /// and a majority of its voters answered (a deposed leader still claiming its old term
    /// is then outvoted by the higher term of a voter that moved on).
    fn answer(&mut self, node: &str, status: &NodeStatus, named_suspect: bool) -> bool {
        if status.role == Role::Removed {
            return false;
        }
        self.answered.insert(status.node.id);
        let candidate = if status.role == Role::Leader {
            Some((status.term, true, node.to_owned()))
        } else {
            status
                .leader
                .as_ref()
                .filter(|_| !named_suspect)
                .map(|l| (status.term, false, l.addr.clone()))
        };
        if let Some(c) = candidate {
            if self.best.as_ref().is_none_or(|b| (c.0, c.1) > (b.0, b.1)) {
                if c.1 {
                    self.voters = status
                        .membership
                        .iter()
                        .filter(|m| m.voter)
                        .map(|m| m.node.id)
                        .collect();
                }
                self.best = Some(c);
            }
        }
        let leads = self.best.as_ref().is_some_and(|b| b.1);
        let heard = self.voters.intersection(&self.answered).count();
        leads && heard > self.voters.len() / 2
    }

    /// The leader found, if any.
    fn leader(self) -> Option<String> {
        self.best.map(|(_, _, addr)| addr)
    }
}

/// A live change-feed subscription ([`Client::subscribe`]).
pub struct Subscription {
    client: Client,
    /// The locations followed (empty: all), asked again on every resubscription.
    locations: Vec<engine::LocationId>,
    /// Next sequence number wanted: events below it are duplicates after a resubscription.
    next: u64,
    buffer: VecDeque<ChangeEvent>,
    events: mpsc::Receiver<Feed>,
    /// Keeps the stream open (dropping the subscription closes it).
    _channel: Arc<Channel>,
}

impl Subscription {
    /// The next change event, in feed order. When the stream breaks, it subscribes again from
    /// the next sequence number (on any node), so events are neither lost nor repeated; it
    /// fails when that resubscription gives up, and once with
    /// [`ClientError::SubscriptionCut`] when the node cut the subscription because it was not
    /// read for seconds (the call after that resubscribes from [`Subscription::position`]).
    pub async fn next(&mut self) -> Result<ChangeEvent, ClientError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next = event.seq + 1;
                return Ok(event);
            }
            match self.events.recv().await {
                Some(Feed::Events(batch)) => {
                    let next = self.next;
                    self.buffer
                        .extend(batch.into_iter().filter(|e| e.seq >= next));
                }
                // The stream ends after the cut: the next call finds `events` closed and
                // subscribes again from `self.next`.
                Some(Feed::Cut {
                    resume_from,
                    reason,
                }) => {
                    return Err(ClientError::SubscriptionCut {
                        resume_from,
                        reason,
                    })
                }
                None => {
                    let (channel, events) = self
                        .client
                        .open_subscription(self.next, &self.locations)
                        .await?;
                    self._channel = channel;
                    self.events = events;
                }
            }
        }
    }

    /// The sequence number of the next event expected.
    pub fn position(&self) -> u64 {
        self.next
    }
}

fn read_route(consistency: Consistency) -> Route {
    match consistency {
        Consistency::Linearizable => Route::Leader,
        Consistency::Local | Consistency::AtLeast(_) => Route::Any,
    }
}

fn written(request_id: RequestId, result: OpResult) -> Result<WriteResult, ClientError> {
    match result {
        OpResult::Written { outcome, log_index } => Ok(WriteResult {
            request_id,
            outcome,
            log_index,
        }),
        other => Err(unexpected("a write result", &other)),
    }
}

fn read_result(result: OpResult) -> Result<ReadResult, ClientError> {
    match result {
        OpResult::Read {
            answer,
            applied_index,
        } => Ok(ReadResult {
            answer,
            applied_index,
        }),
        other => Err(unexpected("a read result", &other)),
    }
}

fn admin_done(result: OpResult) -> Result<(), ClientError> {
    match result {
        OpResult::AdminDone => Ok(()),
        other => Err(unexpected("admin_done", &other)),
    }
}

/// The settings a retention read answered (the query is never rejected).
fn retention_of(read: ReadResult) -> Result<engine::Config, ClientError> {
    match read.answer {
        Ok(Answer::Retention(config)) => Ok(config),
        other => Err(ClientError::Unexpected(format!(
            "wanted the retention settings, got {other:?}"
        ))),
    }
}

fn unexpected(wanted: &str, got: &OpResult) -> ClientError {
    ClientError::Unexpected(format!("wanted {wanted}, got {got:?}"))
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The operations of one call across its attempts: the final results so far, and which
/// operations are still to send (always with the same request ids).
struct Batch {
    ops: Vec<Op>,
    /// One slot per operation of `ops`, filled once its result is final.
    results: Vec<Option<Result<OpResult, ClientError>>>,
    /// Indexes into `ops` of the operations without a final result.
    todo: Vec<usize>,
    /// The operations still to send, when they are a strict subset of `ops`.
    subset: Option<Vec<Op>>,
}

impl Batch {
    fn new(ops: Vec<Op>) -> Batch {
        Batch {
            results: vec![None; ops.len()],
            todo: (0..ops.len()).collect(),
            ops,
            subset: None,
        }
    }

    /// What the next attempt sends.
    fn to_send(&self) -> &[Op] {
        self.subset.as_deref().unwrap_or(&self.ops)
    }

    /// Takes an attempt's replies (one per operation sent, in order): final ones are kept,
    /// those failed with a retryable node error are sent again. Returns the first such error,
    /// or `None` if every result is final.
    fn record(&mut self, replies: Vec<OpResult>) -> Option<ServerError> {
        let mut again = Vec::new();
        let mut first = None;
        for (&k, reply) in self.todo.iter().zip(replies) {
            match reply {
                OpResult::Failed(e) if retryable(&e) => {
                    again.push(k);
                    first.get_or_insert(e);
                }
                OpResult::Failed(e) => self.results[k] = Some(Err(ClientError::Server(e))),
                reply => self.results[k] = Some(Ok(reply)),
            }
        }
        if first.is_some() && again.len() != self.todo.len() {
            self.subset = Some(again.iter().map(|&k| self.ops[k].clone()).collect());
        }
        self.todo = again;
        first
    }

    /// Ends every operation still to send with `error`.
    fn fail(&mut self, error: ClientError) {
        for &k in &self.todo {
            self.results[k] = Some(Err(error.clone()));
        }
    }

    /// One result per operation, in order.
    fn finish(self) -> Vec<Result<OpResult, ClientError>> {
        self.results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ClientError::Unexpected("no result".into()))))
            .collect()
    }
}

/// The error of a call the retry policy gave up on after `attempts`: a final node error as
/// itself, anything else as [`ClientError::GaveUp`] with the last failure.
fn gave_up(last: Failure, attempts: u32) -> ClientError {
    match last {
        Failure::Server(e) if !retryable(&e) => ClientError::Server(e),
        last => ClientError::GaveUp { attempts, last },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_resends_only_its_retryable_failures_and_keeps_final_results() {
        let ops = vec![Op::Status, Op::Digest, Op::Status];
        let mut batch = Batch::new(ops.clone());
        assert_eq!(batch.to_send(), &ops[..]);
        let invalid = ServerError::InvalidOp {
            message: "no".into(),
        };
        let first = batch.record(vec![
            OpResult::AdminDone,
            OpResult::Failed(ServerError::Busy),
            OpResult::Failed(invalid.clone()),
        ]);
        assert_eq!(first, Some(ServerError::Busy));
        assert_eq!(batch.to_send(), &[Op::Digest], "only the busy one again");
        assert_eq!(
            batch.record(vec![OpResult::Failed(ServerError::Timeout)]),
            Some(ServerError::Timeout)
        );
        assert_eq!(batch.to_send(), &[Op::Digest]);
        batch.fail(ClientError::Unexpected("gave up".into()));
        assert_eq!(
            batch.finish(),
            vec![
                Ok(OpResult::AdminDone),
                Err(ClientError::Unexpected("gave up".into())),
                Err(ClientError::Server(invalid)),
            ]
        );
        let mut done = Batch::new(vec![Op::Status]);
        assert_eq!(done.record(vec![OpResult::AdminDone]), None);
        assert_eq!(done.finish(), vec![Ok(OpResult::AdminDone)]);
    }

    fn status(id: u64, role: Role, term: u64, leader: Option<u64>, voters: &[u64]) -> NodeStatus {
        let addr = |id: u64| NodeAddr {
            id,
            addr: format!("n{id}:1"),
        };
        NodeStatus {
            node: addr(id),
            role,
            term,
            leader: leader.map(addr),
            members: voters.iter().map(|v| addr(*v)).collect(),
            applied_index: 0,
            last_log_index: 0,
            snapshot_index: 0,
            ready: true,
            durability: "replicated".into(),
            batches: protocol::BatchStats::default(),
            ledger: engine::query::LedgerStatus {
                applied_index: 0,
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
            membership_index: 1,
            membership: voters
                .iter()
                .map(|v| protocol::Member {
                    node: addr(*v),
                    voter: true,
                    matched_index: None,
                })
                .collect(),
            replies: protocol::ReplyStats::default(),
            access: protocol::AccessStats::default(),
            not_ready: None,
            pauses: Default::default(),
            snapshots: Default::default(),
        }
    }

    /// Feeds the answers in order; returns after how many the search stopped (None: it
    /// waited for every probe) and the leader it chose.
    #[track_caller]
    fn check(answers: &[NodeStatus], stops_after: Option<usize>, leader: Option<&str>) {
        let mut search = LeaderSearch::default();
        let mut stopped = None;
        for (i, s) in answers.iter().enumerate() {
            if search.answer(&s.node.addr, s, false) {
                stopped = Some(i + 1);
                break;
            }
        }
        assert_eq!(stopped, stops_after);
        assert_eq!(search.leader().as_deref(), leader);
    }

    #[test]
    fn the_search_stops_once_a_leader_and_a_majority_of_its_voters_answered() {
        let v = [1, 2, 3];
        // The leader and one follower of three: done, the third (dead) is not waited for.
        check(
            &[
                status(2, Role::Follower, 5, Some(1), &v),
                status(1, Role::Leader, 5, Some(1), &v),
            ],
            Some(2),
            Some("n1:1"),
        );
        // The leader alone is not a majority of its three voters.
        check(
            &[status(1, Role::Leader, 5, Some(1), &v)],
            None,
            Some("n1:1"),
        );
        // A deposed leader (term 4) is outvoted by a voter that moved on to term 6.
        check(
            &[
                status(1, Role::Leader, 4, Some(1), &v),
                status(2, Role::Follower, 6, Some(3), &v),
                status(3, Role::Leader, 6, Some(3), &v),
            ],
            Some(3),
            Some("n3:1"),
        );
        // No node says it leads: the leader named in the highest term, after every answer.
        check(
            &[
                status(2, Role::Follower, 5, Some(1), &v),
                status(3, Role::Candidate, 6, None, &v),
            ],
            None,
            Some("n1:1"),
        );
        // A removed node's answer counts for nothing.
        check(
            &[
                status(4, Role::Removed, 9, Some(4), &v),
                status(1, Role::Leader, 5, Some(1), &v),
                status(2, Role::Follower, 5, Some(1), &v),
            ],
            Some(3),
            Some("n1:1"),
        );
    }
}

//! stockd over HTTP/JSON as a [`Target`] (`stockd-http`): the same scenarios as
//! [`crate::stockd::StockdTarget`], through the HTTP front every node serves (docs/HTTP.md),
//! so `compare --targets stockd,stockd-http` shows what HTTP costs against QUIC.
//!
//! - By default one `reqwest` client: HTTP/1.1 with keep-alive and a pool of idle
//!   connections per node (a request in flight holds one; the pool keeps up to `pool` idle
//!   ones for the next requests), as a checkout service in another language would call
//!   stockd. With `http2`, `connections` clients of one HTTP/2 (h2c) connection per node each,
//!   requests multiplexed on them as the QUIC client multiplexes its streams.
//! - Writes go to the node that led when the target connected (a follower would forward them
//!   to the leader: an extra hop the QUIC client does not take either); each has an
//!   `Idempotency-Key` of its own (32 hex digits, the request id), kept across its retries.
//!   Gateway frames are one `POST /v1/batch`.
//! - Availability reads (`GET /v1/availability`, one call per location run of up to
//!   [`engine::limits::QUERY_SKUS_MAX`] SKUs) are `local` and spread over every node, like the
//!   QUIC target's; totals are linearizable, at the writer.
//! - Answers map onto [`crate::target::code`] as the QUIC target's do: 200 is `ok`; a problem
//!   whose code is a ledger rejection (`insufficient_stock`, `not_found`, `expired`...) is that
//!   final answer; any other problem (`busy`, `timeout`, `unauthorized`...) or a transport
//!   failure is an [`OpError`] with the problem's code, after the retries a 503, a 504 or a
//!   transport failure get.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::retry::RetryPolicy;
use client::{Client, ClientConfig};
use reqwest::header::HeaderValue;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::target::{code, Key, Line, OpError, OpResult, Target};

/// How long [`StockdHttpTarget::connect`] waits for every node to accept the token (a node
/// knows a token once it has applied the grant the leader proposes after an election), ms.
pub const TOKEN_WAIT_MS: u64 = 20_000;
/// Pause between two checks of the token, ms.
const TOKEN_POLL_MS: u64 = 100;

/// How the generator talks to stockd over HTTP.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Idle keep-alive connections kept per node (more open while more requests are in
    /// flight; the extra ones close when idle).
    pub pool: usize,
    /// Retries of a request that got no final answer (503, 504, a transport failure), with
    /// the same idempotency key.
    pub retries: u32,
    /// Selling channel of reservations and of the ATS read.
    pub channel: String,
    /// HTTP/2 without TLS (h2c, prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// With `http2`: clients, each with one connection per node.
    pub connections: usize,
}

impl Default for HttpOptions {
    /// HTTP/1.1, 64 idle connections per node, 3 retries, channel `web`.
    fn default() -> Self {
        HttpOptions {
            pool: 64,
            retries: 3,
            channel: "web".to_owned(),
            http2: false,
            connections: 4,
        }
    }
}

/// Where the HTTP target finds the cluster.
#[derive(Debug, Clone)]
pub struct HttpCluster {
    /// The cluster's QUIC side (nodes, trust, identity): the leader's place at connect time,
    /// and the node statuses the reports read.
    pub quic: ClientConfig,
    /// Every node's HTTP base URL (`http://host:port`), in the order of `quic.nodes`.
    pub urls: Vec<String>,
    /// The bearer token (`stockd_<id>_<secret>`).
    pub token: String,
}

/// stockd through its HTTP/JSON front.
#[derive(Clone)]
pub struct StockdHttpTarget {
    /// One client (HTTP/1.1), or one per HTTP/2 connection, used in turn.
    clients: Arc<Vec<reqwest::Client>>,
    /// Every node's base URL.
    nodes: Arc<Vec<String>>,
    /// The base URL writes and linearizable reads go to (the leader when connected).
    writer: Arc<String>,
    /// `Bearer <token>`.
    authorization: HeaderValue,
    next: Arc<AtomicUsize>,
    channel: Arc<str>,
    policy: RetryPolicy,
    /// A QUIC client of the cluster, for statuses only (never on the measured path).
    status: Client,
}

/// A problem+json body (RFC 9457), the fields the target reads.
#[derive(Debug, Deserialize)]
struct ProblemBody {
    code: String,
    #[serde(default)]
    detail: String,
}

/// `POST /v1/batch`'s answer.
#[derive(Debug, Deserialize)]
struct BatchAnswer {
    results: Vec<BatchItem>,
}

#[derive(Debug, Deserialize)]
struct BatchItem {
    status: u16,
    problem: Option<ProblemBody>,
}

/// `GET /v1/availability`'s answer, the fields the target reads.
#[derive(Debug, Deserialize)]
struct AvailabilityAnswer {
    skus: Vec<SkuRows>,
}

#[derive(Debug, Deserialize)]
struct SkuRows {
    ats: Units,
    rows: Vec<LocationRow>,
}

#[derive(Debug, Deserialize)]
struct LocationRow {
    balance: BalanceUnits,
}

#[derive(Debug, Deserialize)]
struct BalanceUnits {
    on_hand: Units,
    reserved: Units,
}

/// A quantity as the front writes it; base units are what the ledger counts.
#[derive(Debug, Deserialize)]
struct Units {
    units: i64,
}

/// A fresh idempotency key: 32 hex digits, a new request id.
fn idempotency_key() -> String {
    format!("{:032x}", client::new_request_id().0)
}

/// The code of a problem: a ledger rejection is a final answer, anything else an error.
fn problem_result(status: StatusCode, problem: Option<ProblemBody>) -> OpResult {
    let Some(problem) = problem else {
        return Err(OpError::new(
            "http",
            format!("{status} without a problem body"),
        ));
    };
    match engine::Code::parse(&problem.code) {
        Some(code) => Ok(code.as_str()),
        None => Err(OpError::new(problem.code, problem.detail)),
    }
}

/// Whether an answer may change if asked again (with the same key): the node was busy,
/// leaderless or timed out.
fn retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

fn transport(e: &reqwest::Error) -> OpError {
    let code = if e.is_timeout() {
        "timeout"
    } else {
        "transport"
    };
    OpError::new(code, e.to_string())
}

impl StockdHttpTarget {
    /// Connects: finds the leader through the QUIC side, builds the HTTP client, and waits
    /// (up to [`TOKEN_WAIT_MS`]) until every node accepts the token.
    pub async fn connect(
        cluster: HttpCluster,
        options: &HttpOptions,
    ) -> Result<StockdHttpTarget, OpError> {
        if cluster.urls.is_empty() {
            return Err(OpError::new("config", "no HTTP address of any node"));
        }
        let status = Client::connect(cluster.quic.clone())
            .await
            .map_err(crate::stockd::client_error)?;
        let writer = leader_url(&status, &cluster).await;
        let config = &cluster.quic;
        let clients = http_clients(options, Duration::from_millis(config.timeout_ms))?;
        let authorization = HeaderValue::from_str(&format!("Bearer {}", cluster.token.trim()))
            .map_err(|_| OpError::new("config", "the token is not header text"))?;
        let target = StockdHttpTarget {
            clients: Arc::new(clients),
            nodes: Arc::new(cluster.urls),
            writer: Arc::new(writer),
            authorization,
            next: Arc::new(AtomicUsize::new(0)),
            channel: Arc::from(options.channel.as_str()),
            policy: RetryPolicy {
                retries: options.retries,
                deadline_ms: config.deadline_ms,
                backoff_ms_min: config.backoff_ms_min,
                backoff_ms_max: config.backoff_ms_max,
            },
            status,
        };
        target.await_token().await?;
        Ok(target)
    }

    /// A QUIC client of the cluster for statuses (batching counters, pauses).
    pub fn client(&self) -> &Client {
        &self.status
    }

    /// The base URL writes go to.
    pub fn writer_url(&self) -> &str {
        &self.writer
    }

    /// Waits until every node answers a token-protected route with 200.
    async fn await_token(&self) -> Result<(), OpError> {
        let start = Instant::now();
        for base in self.nodes.iter() {
            loop {
                let url = format!("{base}/v1/changes?consistency=local&max=1");
                let sent = self.authorized(self.http().get(&url)).send().await;
                let seen = match sent {
                    Ok(r) if r.status() == StatusCode::OK => break,
                    Ok(r) => format!("{} at {url}", r.status()),
                    Err(e) => format!("{e} at {url}"),
                };
                if start.elapsed() >= Duration::from_millis(TOKEN_WAIT_MS) {
                    let detail =
                        format!("the token was not accepted within {TOKEN_WAIT_MS} ms: {seen}");
                    return Err(OpError::new("unauthorized", detail));
                }
                tokio::time::sleep(Duration::from_millis(TOKEN_POLL_MS)).await;
            }
        }
        Ok(())
    }

    /// The next client, in turn.
    fn http(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header(reqwest::header::AUTHORIZATION, self.authorization.clone())
    }

    /// The next node for a `local` read, in turn.
    fn reader(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.nodes[i % self.nodes.len()]
    }

    /// Sends `build()`'s request until it gets a final status (not 503/504, no transport
    /// failure) or the retries or the deadline run out; returns the status and the body.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), OpError> {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            let failure = match self.authorized(build()).send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.bytes().await.map_err(|e| transport(&e))?;
                    if !retryable(status) {
                        return Ok((status, body.to_vec()));
                    }
                    problem_error(status, &body)
                }
                Err(e) => transport(&e),
            };
            let elapsed_ms = start.elapsed().as_millis() as u64;
            if attempt >= self.policy.retries || elapsed_ms >= self.policy.deadline_ms {
                return Err(failure);
            }
            let wait = self.policy.backoff_ms(attempt);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            attempt += 1;
        }
    }

    /// One write at the writer: `ok`, a ledger rejection's code, or an error.
    async fn write(&self, path: &str, body: Value) -> OpResult {
        let url = format!("{}{path}", self.writer);
        let key = idempotency_key();
        let (status, bytes) = self
            .send(|| {
                self.http()
                    .post(&url)
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await?;
        if status == StatusCode::OK {
            return Ok(code::OK);
        }
        problem_result(status, serde_json::from_slice(&bytes).ok())
    }

    /// `operations` in one `POST /v1/batch` (at most a frame's worth): one answer each.
    async fn batch(&self, operations: Vec<Value>) -> Vec<OpResult> {
        let n = operations.len();
        let url = format!("{}/v1/batch", self.writer);
        let key = idempotency_key();
        let body = json!({ "operations": operations });
        let answered = self
            .send(|| {
                self.http()
                    .post(&url)
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await;
        let (status, bytes) = match answered {
            Ok(answer) => answer,
            Err(e) => return vec![Err(e); n],
        };
        if status != StatusCode::OK {
            let whole = problem_result(status, serde_json::from_slice(&bytes).ok());
            return vec![whole; n];
        }
        let parsed: BatchAnswer = match serde_json::from_slice(&bytes) {
            Ok(parsed) => parsed,
            Err(e) => return vec![Err(OpError::new("unexpected", e.to_string())); n],
        };
        let mut out: Vec<OpResult> = parsed
            .results
            .into_iter()
            .map(|item| match item.status {
                200 => Ok(code::OK),
                other => problem_result(
                    StatusCode::from_u16(other).unwrap_or(StatusCode::OK),
                    item.problem,
                ),
            })
            .collect();
        out.resize(
            n,
            Err(OpError::new("unexpected", "fewer answers than operations")),
        );
        out
    }

    /// Availability of `keys`, one entry per key in order, read with `consistency` (the
    /// query parameter) at the writer when `linearizable`, else at the next node in turn.
    async fn read(
        &self,
        keys: Vec<Key>,
        consistency: &str,
        linearizable: bool,
    ) -> Result<Vec<SkuRows>, OpError> {
        let mut out = Vec::with_capacity(keys.len());
        for (location, skus) in crate::target::location_runs(keys) {
            let base = if linearizable {
                self.writer.as_str()
            } else {
                self.reader()
            };
            let url = format!("{base}/v1/availability");
            let sku = skus.join(",");
            let params = [
                ("sku", sku.as_str()),
                ("at", location.as_str()),
                ("channel", &*self.channel),
                ("consistency", consistency),
            ];
            let (status, bytes) = self.send(|| self.http().get(&url).query(&params)).await?;
            if status != StatusCode::OK {
                return Err(problem_error(status, &bytes));
            }
            let answer: AvailabilityAnswer = serde_json::from_slice(&bytes)
                .map_err(|e| OpError::new("unexpected", e.to_string()))?;
            out.extend(answer.skus);
        }
        Ok(out)
    }
}

/// The error of a failed answer: the problem+json body's stable code and detail, or `http`
/// with the status when the body is not a problem.
fn problem_error(status: StatusCode, body: &[u8]) -> OpError {
    match serde_json::from_slice::<ProblemBody>(body) {
        Ok(p) => OpError::new(p.code, p.detail),
        Err(_) => OpError::new("http", status.to_string()),
    }
}

/// The HTTP clients `options` ask for; every request times out after `timeout`.
fn http_clients(options: &HttpOptions, timeout: Duration) -> Result<Vec<reqwest::Client>, OpError> {
    let count = if options.http2 {
        options.connections.max(1)
    } else {
        1
    };
    (0..count)
        .map(|_| {
            let builder = reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(timeout)
                .pool_max_idle_per_host(options.pool.max(1));
            let builder = if options.http2 {
                builder.http2_prior_knowledge()
            } else {
                builder.http1_only()
            };
            builder
                .build()
                .map_err(|e| OpError::new("config", e.to_string()))
        })
        .collect()
}

/// The leader's HTTP URL: the QUIC side's leader, at the same place in `cluster.urls` as in
/// `cluster.quic.nodes`; the first node when no leader is known (followers forward).
async fn leader_url(status: &Client, cluster: &HttpCluster) -> String {
    let reports = status.status().await;
    let leader = reports
        .iter()
        .find_map(|r| r.status.as_ref().ok().and_then(|s| s.leader.clone()));
    let place = leader.and_then(|l| cluster.quic.nodes.iter().position(|n| *n == l.addr));
    let place = place.filter(|&i| i < cluster.urls.len()).unwrap_or(0);
    cluster.urls[place].clone()
}

/// A `reserve` body (`POST /v1/reservations`); with `op` it is a batch operation.
fn reserve_body(channel: &str, id: &str, lines: &[Line], ttl_ms: u64) -> Value {
    json!({
        "reservation": id,
        "channel": channel,
        "lines": lines
            .iter()
            .map(|l| json!({"sku": l.sku, "location": l.location, "qty": l.qty}))
            .collect::<Vec<_>>(),
        "ttl_ms": ttl_ms,
    })
}

impl Target for StockdHttpTarget {
    fn name(&self) -> String {
        "stockd-http".to_owned()
    }

    async fn load_stock(&self, stock: Vec<(String, String, i64)>) -> Result<(), OpError> {
        let mut locations: Vec<&String> = stock.iter().map(|(_, l, _)| l).collect();
        locations.sort();
        locations.dedup();
        let defines: Vec<Value> = locations
            .into_iter()
            .map(|l| json!({"op": "define_location", "location": l, "kind": "warehouse"}))
            .collect();
        let counts: Vec<Value> = stock
            .iter()
            .map(|(sku, location, qty)| {
                json!({"op": "set_on_hand", "sku": sku, "location": location, "qty": qty,
                       "reason": "load-test"})
            })
            .collect();
        // Locations first (a count needs its location), then the counts.
        for ops in [defines, counts] {
            for chunk in ops.chunks(protocol::OPS_PER_FRAME_MAX) {
                for answer in self.batch(chunk.to_vec()).await {
                    match answer? {
                        code::OK => {}
                        other => {
                            return Err(OpError::new(other, "loading stock over HTTP"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn reserve(&self, id: String, lines: Vec<Line>, ttl_ms: u64) -> OpResult {
        let body = reserve_body(&self.channel, &id, &lines, ttl_ms);
        self.write("/v1/reservations", body).await
    }

    async fn reserve_frame(&self, holds: Vec<(String, Vec<Line>)>, ttl_ms: u64) -> Vec<OpResult> {
        let ops = holds
            .iter()
            .map(|(id, lines)| {
                let mut op = reserve_body(&self.channel, id, lines, ttl_ms);
                if let Some(fields) = op.as_object_mut() {
                    fields.insert("op".to_owned(), Value::from("reserve"));
                }
                op
            })
            .collect();
        self.batch(ops).await
    }

    async fn release(&self, id: String) -> OpResult {
        let path = format!("/v1/reservations/{id}/release");
        self.write(&path, json!({})).await
    }

    async fn commit(&self, id: String, lines: Vec<Line>) -> OpResult {
        let order = format!("o-{id}");
        let placed = self
            .write(
                "/v1/orders",
                json!({"order": order, "reservation": id, "fulfilment": {"kind": "ship"}}),
            )
            .await?;
        if placed != code::OK {
            return Ok(placed);
        }
        let lines: Vec<Value> = lines
            .iter()
            .map(|l| json!({"sku": l.sku, "location": l.location, "qty": l.qty}))
            .collect();
        let path = format!("/v1/orders/{order}/fulfilments");
        self.write(&path, json!({ "lines": lines })).await
    }

    async fn available(&self, keys: Vec<Key>) -> Result<Vec<i64>, OpError> {
        let rows = self.read(keys, "local", false).await?;
        Ok(rows.iter().map(|r| r.ats.units).collect())
    }

    async fn totals(&self, keys: Vec<Key>) -> Result<(i64, i64), OpError> {
        let rows = self.read(keys, "linearizable", true).await?;
        let mut on_hand = 0;
        let mut reserved = 0;
        for row in rows.iter().flat_map(|s| s.rows.iter()) {
            on_hand += row.balance.on_hand.units;
            reserved += row.balance.reserved.units;
        }
        Ok((on_hand, reserved))
    }
}

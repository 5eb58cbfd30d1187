//! stockd as a [`Target`], through the client library, and a local cluster to aim it at.
//!
//! [`LocalCluster`] runs real nodes (`server::node::Node`: Raft, QUIC with TLS, the log on
//! disk) in this process, on loopback, on a runtime of their own (so the generator's runtime
//! and the cluster's can be chosen and measured separately), with their data in a fresh
//! directory that is removed when the cluster stops: testkit's [`BackgroundCluster`], started
//! from the generator's options.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::{Client, ClientConfig, ClientError};
use engine::{
    Answer, ChannelId, Command, Fulfilment, LocatedLine, LocationDef, LocationId, LocationKind,
    OrderId, OrderSource, Outcome, Query, Reason, Rejection, Request, ReservationId, SkuId,
};
use protocol::Consistency;
use server::node::RaftTimings;
use server::raft::log_store::Durability;
use testkit::{BackgroundCluster, ClusterConfig};

use crate::target::{Key, Line, OpError, OpResult, Target};

/// Which tokio runtime a side uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum RuntimeKind {
    /// One thread.
    Current,
    /// A worker per core.
    Multi,
}

impl RuntimeKind {
    /// Builds a runtime of this kind (timers and IO enabled).
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            RuntimeKind::Current => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            RuntimeKind::Multi => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
    }
}

/// A cluster of in-process nodes on loopback, on its own runtime thread: a
/// [`testkit::BackgroundCluster`] started from the generator's options. It dereferences to
/// that cluster (addresses, CA, data directory, client configuration, convergence).
pub struct LocalCluster(BackgroundCluster);

/// How to start a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes (1..=7).
    pub nodes: u64,
    /// Where the nodes keep their data; a fresh directory under the system's temporary
    /// directory when `None`. Removed when the cluster stops.
    pub dir: Option<PathBuf>,
    /// The cluster's runtime.
    pub runtime: RuntimeKind,
    /// Log durability.
    pub durability: Durability,
    /// Raft entries between snapshots (`None`: the server's default).
    pub snapshot_every: Option<u64>,
    /// MiB of log that also trigger a snapshot (`None`: the server's default).
    pub snapshot_log_mib: Option<u64>,
    /// Seconds since the last snapshot that also trigger one (`None`: the server's default).
    pub snapshot_interval_s: Option<u64>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            dir: None,
            runtime: RuntimeKind::Multi,
            durability: Durability::default(),
            snapshot_every: None,
            snapshot_log_mib: None,
            snapshot_interval_s: None,
        }
    }
}

impl LocalCluster {
    /// Starts the nodes with the server's default Raft timings (measurements see what
    /// production would), initialises the cluster and waits (up to 20 s) for a leader.
    pub fn start(options: ClusterOptions) -> Result<LocalCluster, testkit::Error> {
        let runtime = options.runtime.build().map_err(testkit::Error::Runtime)?;
        let mut timings = RaftTimings::default();
        if let Some(every) = options.snapshot_every {
            timings.snapshot_every = every.max(1);
        }
        if let Some(mib) = options.snapshot_log_mib {
            timings.snapshot_log_bytes = mib.max(1).saturating_mul(1 << 20);
        }
        if let Some(seconds) = options.snapshot_interval_s {
            timings.snapshot_interval_ms = seconds.max(1).saturating_mul(1_000);
        }
        let config = ClusterConfig {
            nodes: options.nodes.clamp(1, 7),
            durability: options.durability,
            timings,
            dir: options.dir,
            leader_within: Duration::from_secs(20),
            ..ClusterConfig::new(options.nodes.clamp(1, 7))
        };
        BackgroundCluster::start(runtime, config).map(LocalCluster)
    }

    /// Stops every node and removes the data directory.
    pub fn stop(self) {
        self.0.stop();
    }
}

impl std::ops::Deref for LocalCluster {
    type Target = BackgroundCluster;

    fn deref(&self) -> &BackgroundCluster {
        &self.0
    }
}

/// How the generator talks to stockd.
#[derive(Debug, Clone)]
pub struct StockdOptions {
    /// Client connections for writes (each a [`Client`] with its own QUIC connection).
    pub connections: usize,
    /// Request streams per connection.
    pub streams: usize,
    /// Retries of a write or read that got no final answer (busy, timeout...).
    pub retries: u32,
    /// Consistency of availability reads.
    pub read_consistency: Consistency,
    /// Selling channel of reservations.
    pub channel: String,
}

impl Default for StockdOptions {
    /// 2 connections of 4 streams, 3 retries, `local` reads, channel `web`.
    fn default() -> Self {
        StockdOptions {
            connections: 2,
            streams: 4,
            retries: 3,
            read_consistency: Consistency::Local,
            channel: "web".to_owned(),
        }
    }
}

/// stockd through the client library.
#[derive(Clone)]
pub struct StockdTarget {
    writers: Arc<Vec<Client>>,
    /// One client per node (seeded with that node only): `local` reads spread over replicas.
    readers: Arc<Vec<Client>>,
    next: Arc<AtomicUsize>,
    channel: ChannelId,
    read_consistency: Consistency,
}

impl StockdTarget {
    /// Connects `options.connections` clients to the cluster at `base` (its nodes and trust),
    /// plus one reader per node.
    pub async fn connect(
        base: ClientConfig,
        options: &StockdOptions,
    ) -> Result<StockdTarget, ClientError> {
        let mut config = base.clone();
        config.retries = options.retries;
        config.streams_per_connection = options
            .streams
            .clamp(1, client::api::STREAMS_PER_CONNECTION_MAX);
        let mut writers = Vec::new();
        for _ in 0..options.connections.max(1) {
            let client = Client::connect(config.clone()).await?;
            // Find the leader now, not on the first measured request.
            let _ = client.status().await;
            writers.push(client);
        }
        let mut readers = Vec::new();
        for node in &base.nodes {
            let mut one = config.clone();
            one.nodes = vec![node.clone()];
            readers.push(Client::connect(one).await?);
        }
        Ok(StockdTarget {
            writers: Arc::new(writers),
            readers: Arc::new(readers),
            next: Arc::new(AtomicUsize::new(0)),
            channel: ChannelId::from(options.channel.as_str()),
            read_consistency: options.read_consistency,
        })
    }

    fn writer(&self) -> &Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.writers[i % self.writers.len()]
    }

    fn reader(&self) -> &Client {
        if self.read_consistency == Consistency::Linearizable || self.readers.is_empty() {
            return self.writer();
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.readers[i % self.readers.len()]
    }

    /// A client for other calls (status, digests, the replay).
    pub fn client(&self) -> &Client {
        &self.writers[0]
    }

    async fn write(&self, command: Command) -> Result<Outcome, OpError> {
        self.writer()
            .write(command)
            .await
            .map(|r| r.outcome)
            .map_err(client_error)
    }

    async fn read(
        &self,
        keys: Vec<Key>,
        consistency: Consistency,
    ) -> Result<Vec<engine::query::SkuAvailability>, OpError> {
        let mut out = Vec::with_capacity(keys.len());
        for (location, skus) in crate::target::location_runs(keys) {
            let query = Query::Availability {
                skus,
                target: engine::Target::Location(location),
                channel: self.channel.clone(),
            };
            let client = if consistency == Consistency::Linearizable {
                self.writer()
            } else {
                self.reader()
            };
            let result = client
                .read(query, consistency)
                .await
                .map_err(client_error)?;
            match result.answer {
                Ok(Answer::Availability(rows)) => out.extend(rows),
                Ok(other) => {
                    return Err(OpError::new(
                        "unexpected",
                        format!("wanted availability, got {other:?}"),
                    ))
                }
                Err(r) => return Err(OpError::new(r.code().as_str(), format!("{r:?}"))),
            }
        }
        Ok(out)
    }
}

/// The code of a client error.
pub fn client_error(e: ClientError) -> OpError {
    let code = match &e {
        ClientError::GaveUp { last, .. } => match last {
            client::retry::Failure::Server(s) => s.code(),
            client::retry::Failure::Transport(_) => "transport",
            client::retry::Failure::NoReply => "no_reply",
        },
        ClientError::Server(s) => s.code(),
        ClientError::Config(_) => "config",
        ClientError::Limit(_) => "limit",
        ClientError::Protocol { .. } => "protocol",
        ClientError::Unexpected(_) => "unexpected",
        ClientError::SubscriptionCut { .. } => "subscription_cut",
    };
    OpError::new(code, e.to_string())
}

/// The stable code of a ledger outcome.
pub fn outcome_code(outcome: &Outcome) -> &'static str {
    engine::code_of(outcome).as_str()
}

fn rejection_code(r: &Rejection) -> &'static str {
    r.code().as_str()
}

fn reserve_command(channel: &ChannelId, id: &str, lines: Vec<Line>, ttl_ms: u64) -> Command {
    Command::Reserve {
        reservation: ReservationId::from(id),
        channel: channel.clone(),
        lines: lines
            .into_iter()
            .map(|l| engine::Line {
                sku: SkuId::from(l.sku.as_str()),
                target: engine::Target::Location(LocationId::from(l.location.as_str())),
                qty: l.qty,
            })
            .collect(),
        ttl_ms,
    }
}

impl Target for StockdTarget {
    fn name(&self) -> String {
        "stockd".to_owned()
    }

    async fn load_stock(&self, stock: Vec<(String, String, i64)>) -> Result<(), OpError> {
        let mut locations: Vec<&String> = stock.iter().map(|(_, l, _)| l).collect();
        locations.sort();
        locations.dedup();
        let mut requests: Vec<Request> = locations
            .into_iter()
            .map(|l| Request {
                request_id: client::new_request_id(),
                command: Command::DefineLocation(LocationDef {
                    location: LocationId::from(l.as_str()),
                    kind: LocationKind::Warehouse,
                    pickup: false,
                    coordinates: None,
                    channels: None,
                }),
            })
            .collect();
        let defines = requests.len();
        requests.extend(stock.iter().map(|(sku, location, qty)| Request {
            request_id: client::new_request_id(),
            command: Command::SetOnHand {
                sku: SkuId::from(sku.as_str()),
                location: LocationId::from(location.as_str()),
                qty: *qty,
                reason: Reason::from("load-test"),
                expected: None,
            },
        }));
        let client = self.client();
        // Locations first (a count needs its location), then the counts.
        let rest = requests.split_off(defines);
        for batch in [requests, rest] {
            for chunk in batch.chunks(protocol::OPS_PER_FRAME_MAX) {
                for r in client.write_batch(chunk.to_vec()).await {
                    let r = r.map_err(client_error)?;
                    if let Err(rejection) = r.outcome {
                        return Err(OpError::new(
                            rejection_code(&rejection),
                            format!("loading stock: {rejection:?}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    async fn reserve(&self, id: String, lines: Vec<Line>, ttl_ms: u64) -> OpResult {
        let outcome = self
            .write(reserve_command(&self.channel, &id, lines, ttl_ms))
            .await?;
        Ok(outcome_code(&outcome))
    }

    async fn reserve_frame(&self, holds: Vec<(String, Vec<Line>)>, ttl_ms: u64) -> Vec<OpResult> {
        let requests: Vec<Request> = holds
            .into_iter()
            .map(|(id, lines)| Request {
                request_id: client::new_request_id(),
                command: reserve_command(&self.channel, &id, lines, ttl_ms),
            })
            .collect();
        self.writer()
            .write_batch(requests)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(w) => Ok(outcome_code(&w.outcome)),
                Err(e) => Err(client_error(e)),
            })
            .collect()
    }

    async fn release(&self, id: String) -> OpResult {
        let outcome = self
            .write(Command::Release {
                reservation: ReservationId::from(id.as_str()),
            })
            .await?;
        Ok(outcome_code(&outcome))
    }

    async fn commit(&self, id: String, lines: Vec<Line>) -> OpResult {
        let order = OrderId::from(format!("o-{id}").as_str());
        let placed = self
            .write(Command::PlaceOrder {
                order: order.clone(),
                source: OrderSource::Reservation(ReservationId::from(id.as_str())),
                fulfilment: Fulfilment::Ship,
            })
            .await?;
        if placed.is_err() {
            return Ok(outcome_code(&placed));
        }
        let fulfilled = self
            .write(Command::Fulfil {
                order,
                lines: lines
                    .into_iter()
                    .map(|l| LocatedLine {
                        sku: SkuId::from(l.sku.as_str()),
                        location: LocationId::from(l.location.as_str()),
                        qty: l.qty,
                    })
                    .collect(),
            })
            .await?;
        Ok(outcome_code(&fulfilled))
    }

    async fn available(&self, keys: Vec<Key>) -> Result<Vec<i64>, OpError> {
        let rows = self.read(keys, self.read_consistency).await?;
        Ok(rows.iter().map(|r| r.ats).collect())
    }

    async fn totals(&self, keys: Vec<Key>) -> Result<(i64, i64), OpError> {
        let rows = self.read(keys, Consistency::Linearizable).await?;
        let mut on_hand = 0;
        let mut reserved = 0;
        for row in rows.iter().flat_map(|s| s.rows.iter()) {
            on_hand += row.balance.on_hand;
            reserved += row.balance.reserved;
        }
        Ok((on_hand, reserved))
    }
}

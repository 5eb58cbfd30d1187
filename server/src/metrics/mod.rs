//! The node's metrics (SPEC section 6, `/metrics`): one prometheus-client registry per node,
//! rendered in the Prometheus text format (version 0.0.4) by [`Metrics::render`].
//!
//! Two kinds of series:
//! - **recorded** where things happen: requests by transport, operation and outcome (the QUIC
//!   front records in `api`, the HTTP front calls [`Metrics::record_request`]), writes per
//!   Raft entry (the proposer), apply and snapshot times (the state machine), the longest
//!   pause, connections (accept) and denied requests by role (auth). Each is an atomic
//!   found by index or through a handle built once: recording takes no lock and allocates
//!   nothing (a request series allocates its histogram once, on its first request);
//! - **read at scrape time** from the node ([`node_state`]): Raft role, term and indexes,
//!   replication lag per follower, queue depths, reply budgets, readiness and the counters
//!   the node keeps anyway for `status`. A node registers itself with [`Metrics::attach`]
//!   once started; before that only the recorded series render.
//!
//! Names follow Prometheus: a `stockd_` prefix, base units (seconds, bytes) in the name,
//! counters ending in `_total`. docs/OPERATIONS.md ("Metrics") lists every series.

mod histogram;
mod labels;
mod node_state;
mod requests;

pub use histogram::{Buckets, Histogram, HistogramSnapshot};
pub use labels::{Operation, Outcome, RequestKey, Transport};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use pki::ClientRole;

use crate::node::NodeCtx;

/// The `Content-Type` of [`Metrics::render`]'s text (what `/metrics` answers with).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The prefix of every series name.
pub const PREFIX: &str = "stockd";

/// A label set of one pair (what a [`Family`] of this module is keyed by).
type OneLabel = [(&'static str, &'static str); 1];

/// The kind of a connection, for `stockd_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// A client (ALPN `stockd/1`, or the HTTP front's).
    Client,
    /// Another node (ALPN `stockd-raft/1`).
    Peer,
}

/// A node's metrics: the registry and the handles that record into it. Shared by every
/// part of the node (`NodeCtx::metrics`).
pub struct Metrics {
    registry: Registry,
    requests: Arc<requests::Requests>,
    /// The histograms of the node's own work.
    timings: Timings,
    /// The longest pause seen, ns (a gauge: `stockd_pause_max_seconds`).
    pause_max_ns: Arc<AtomicU64>,
    /// Open connections by kind, indexed by [`ConnectionKind`].
    connections: [Gauge; 2],
    /// Requests answered `forbidden`, indexed like [`ClientRole::ALL`].
    denied: [Counter; 5],
    /// The node, once started: read at scrape time.
    node: Arc<OnceLock<Weak<NodeCtx>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every recorded series at zero (nothing read from a node yet).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Arc::new(requests::Requests::default());
        registry.register_collector(Box::new(requests.clone()));
        let timings = Timings::register(&mut registry);
        let connections = Family::<OneLabel, Gauge>::default();
        registry.register(
            "connections",
            "Open connections this node accepted, by kind (client; peer: another node dialed it)",
            connections.clone(),
        );
        let denied = Family::<OneLabel, Counter>::default();
        registry.register(
            "denied_requests",
            "Requests answered forbidden (SPEC section 7), by the role of the principal",
            denied.clone(),
        );
        let node = Arc::new(OnceLock::new());
        let pause_max_ns = Arc::new(AtomicU64::new(0));
        registry.register_collector(Box::new(node_state::NodeState {
            node: node.clone(),
            pause_max_ns: pause_max_ns.clone(),
        }));
        let kind = |kind: ConnectionKind| [("kind", kind.as_str())];
        let role = |role: ClientRole| [("role", role.as_str())];
        Metrics {
            registry,
            requests,
            timings,
            pause_max_ns,
            connections: [ConnectionKind::Client, ConnectionKind::Peer]
                .map(|k| connections.get_or_create(&kind(k)).clone()),
            denied: ClientRole::ALL.map(|r| denied.get_or_create(&role(r)).clone()),
            node,
        }
    }

    /// Has the series read at scrape time come from `node` (called once it is started; a
    /// second call changes nothing). Holds it weakly: the node owns its metrics.
    pub fn attach(&self, node: &Arc<NodeCtx>) {
        let _ = self.node.set(Arc::downgrade(node));
    }

    /// Every series in the Prometheus text format (version 0.0.4; [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and the encoders only fail on the writer's errors.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// Records `n` requests answered by `key.transport` that each took `elapsed` from their
    /// arrival to their answer. The HTTP front calls this with [`Transport::Http`].
    pub fn record_request(&self, key: RequestKey, elapsed: Duration, n: u64) {
        self.requests.record_n(key, elapsed, n);
    }

    /// Records requests answered together (a frame's operations, an HTTP batch) that each
    /// took `elapsed`: one observation per run of equal operation and outcome, so a frame of
    /// 100 reservations costs one.
    pub fn record_requests(
        &self,
        transport: Transport,
        answered: impl IntoIterator<Item = (Operation, Outcome)>,
        elapsed: Duration,
    ) {
        let mut run: Option<(RequestKey, u64)> = None;
        for (operation, outcome) in answered {
            let key = RequestKey {
                transport,
                operation,
                outcome,
            };
            match &mut run {
                Some((current, n)) if *current == key => *n += 1,
                _ => {
                    if let Some((done, n)) = run.replace((key, 1)) {
                        self.requests.record_n(done, elapsed, n);
                    }
                }
            }
        }
        if let Some((done, n)) = run {
            self.requests.record_n(done, elapsed, n);
        }
    }

    /// Requests of `key` recorded so far.
    pub fn requests(&self, key: RequestKey) -> u64 {
        self.requests.count(key)
    }

    /// Records a Raft entry of `writes` client writes proposed by this node.
    pub fn record_entry_writes(&self, writes: usize) {
        self.timings.entry_writes.observe(writes as u64);
    }

    /// Records the time one Raft entry took to apply.
    pub fn record_apply(&self, elapsed: Duration) {
        self.timings.apply.observe_duration(elapsed);
    }

    /// Records a snapshot build (freeze, encode, write).
    pub fn record_snapshot_build(&self, elapsed: Duration) {
        self.timings.snapshot_build.observe_duration(elapsed);
    }

    /// Records a snapshot install (restore, swap, write).
    pub fn record_snapshot_install(&self, elapsed: Duration) {
        self.timings.snapshot_install.observe_duration(elapsed);
    }

    /// Records a pause of the apply loop or of reads caused by upkeep (a snapshot's freeze):
    /// `stockd_pause_max_seconds` keeps the longest of these and of the node's own measured
    /// apply pause and read wait (SPEC section 4: at most 5 ms).
    pub fn record_pause(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.pause_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Counts an open connection of `kind` until the returned guard is dropped.
    pub fn connection(&self, kind: ConnectionKind) -> ConnectionGuard {
        let gauge = self.connections[kind as usize].clone();
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Counts a request answered `forbidden` for a principal of `role`.
    pub fn denied(&self, role: ClientRole) {
        let at = ClientRole::ALL.iter().position(|r| *r == role);
        if let Some(counter) = at.and_then(|at| self.denied.get(at)) {
            counter.inc();
        }
    }

    /// Requests answered `forbidden` for `role` so far.
    pub fn denied_total(&self, role: ClientRole) -> u64 {
        let at = ClientRole::ALL.iter().position(|r| *r == role);
        at.and_then(|at| self.denied.get(at))
            .map_or(0, Counter::get)
    }
}

/// The histograms of the node's own work (not of requests).
struct Timings {
    /// Client writes per proposed Raft entry.
    entry_writes: Histogram,
    /// Time to apply one entry.
    apply: Histogram,
    /// Time to build a snapshot.
    snapshot_build: Histogram,
    /// Time to install a snapshot.
    snapshot_install: Histogram,
}

impl Timings {
    /// The histograms, registered (prometheus-client ends their help with a period).
    fn register(registry: &mut Registry) -> Timings {
        let mut histogram = |name: &str, help: &str, buckets, unit: Option<Unit>| {
            let h = Histogram::new(buckets);
            match unit {
                Some(unit) => registry.register_with_unit(name, help, unit, h.clone()),
                None => registry.register(name, help, h.clone()),
            }
            h
        };
        Timings {
            entry_writes: histogram(
                "raft_entry_writes",
                "Client writes per Raft entry proposed by this node (its batches, as leader)",
                histogram::ENTRY_WRITES,
                None,
            ),
            apply: histogram(
                "apply_duration",
                "Time to apply one Raft entry to the ledger (the ledger is write-locked meanwhile)",
                histogram::APPLY_SECONDS,
                Some(Unit::Seconds),
            ),
            snapshot_build: histogram(
                "snapshot_build_duration",
                "Time to build a snapshot: freeze the ledger, encode it and write the file (off the apply path)",
                histogram::SNAPSHOT_SECONDS,
                Some(Unit::Seconds),
            ),
            snapshot_install: histogram(
                "snapshot_install_duration",
                "Time to install a snapshot received from the leader: restore, swap and write",
                histogram::SNAPSHOT_SECONDS,
                Some(Unit::Seconds),
            ),
        }
    }
}

impl ConnectionKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Client => "client",
            ConnectionKind::Peer => "peer",
        }
    }
}

/// One open connection in `stockd_connections`, until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests;

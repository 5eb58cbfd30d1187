//! The systems under test by name ([`TargetKind`]) and connected ([`AnyTarget`]): stockd
//! through the client library, and (feature `baselines`) Redis and PostgreSQL.

use std::fmt;

use serde::Serialize;

#[cfg(feature = "baselines")]
use crate::baseline_targets::{PostgresTarget, RedisTarget};
use crate::cluster::Cluster;
use crate::stockd::{StockdOptions, StockdTarget};
use crate::target::OpError;

/// A system under test, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum TargetKind {
    /// stockd through the client library.
    Stockd,
    /// Redis with a Lua script per operation.
    Redis,
    /// PostgreSQL with a transaction per operation.
    Postgres,
}

impl TargetKind {
    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Stockd => "stockd",
            TargetKind::Redis => "redis",
            TargetKind::Postgres => "postgres",
        }
    }
}

/// How to connect to the targets.
#[derive(Debug, Clone, Default)]
pub struct TargetSettings {
    /// Connections to each target (stockd: client connections; baselines: pool size).
    pub connections: usize,
    /// stockd: request streams per connection.
    pub streams: usize,
    /// stockd: retries of a request without a final answer.
    pub retries: u32,
    /// Redis URL (`None`: `$STOCKD_REDIS_URL`).
    pub redis_url: Option<String>,
    /// PostgreSQL URL (`None`: `$STOCKD_PG_URL`).
    pub pg_url: Option<String>,
}

/// A target ready for scenarios.
#[derive(Clone)]
pub enum AnyTarget {
    /// stockd.
    Stockd(StockdTarget),
    /// Redis.
    #[cfg(feature = "baselines")]
    Redis(RedisTarget),
    /// PostgreSQL.
    #[cfg(feature = "baselines")]
    Postgres(PostgresTarget),
}

/// Why a target could not be connected.
#[derive(Debug)]
pub enum ConnectError {
    /// stockd was asked for but no cluster was opened.
    NoCluster,
    /// stockd's client did not connect.
    Stockd(client::ClientError),
    /// No URL for a baseline (neither the flag nor the environment variable).
    NoUrl(TargetKind),
    /// A baseline did not connect.
    Baseline {
        /// Which one.
        kind: TargetKind,
        /// Its URL.
        url: String,
        /// What went wrong.
        error: OpError,
    },
    /// A baseline was asked for but this build has no baselines (feature `baselines`).
    NotBuilt(TargetKind),
}

const HOW_TO_START: &str =
    "`scripts/baselines.sh start` then `eval \"$(scripts/baselines.sh env)\"`";

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NoCluster => write!(f, "no cluster"),
            ConnectError::Stockd(e) => write!(f, "stockd: {e}"),
            ConnectError::NoUrl(kind) => {
                let (flag, var) = url_source(*kind);
                let name = kind.as_str();
                write!(f, "{name}: no URL ({flag} or {var}; {HOW_TO_START})")
            }
            ConnectError::Baseline { kind, url, error } => {
                write!(f, "{} at {url}: {error}", kind.as_str())
            }
            ConnectError::NotBuilt(kind) => write!(
                f,
                "{}: this stockd-load was built without the baselines (cargo feature `baselines`)",
                kind.as_str()
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Where a baseline's URL comes from: its flag, else its environment variable.
fn url_source(kind: TargetKind) -> (&'static str, &'static str) {
    match kind {
        TargetKind::Postgres => ("--pg-url", "STOCKD_PG_URL"),
        _ => ("--redis-url", "STOCKD_REDIS_URL"),
    }
}

/// The flag's value, else the environment variable's; empty counts as unset.
#[cfg(feature = "baselines")]
fn env_or(flag: &Option<String>, var: &str) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var(var).ok())
        .filter(|s| !s.is_empty())
}

/// Connects to one target; stockd needs the `cluster`.
pub async fn connect_target(
    kind: TargetKind,
    settings: &TargetSettings,
    cluster: Option<&Cluster>,
) -> Result<AnyTarget, ConnectError> {
    match kind {
        TargetKind::Stockd => connect_stockd(settings, cluster)
            .await
            .map(AnyTarget::Stockd),
        TargetKind::Redis | TargetKind::Postgres => connect_baseline(kind, settings).await,
    }
}

/// Connects to stockd in the `cluster`.
pub async fn connect_stockd(
    settings: &TargetSettings,
    cluster: Option<&Cluster>,
) -> Result<StockdTarget, ConnectError> {
    let cluster = cluster.ok_or(ConnectError::NoCluster)?;
    let options = StockdOptions {
        connections: settings.connections.max(1),
        streams: settings.streams,
        retries: settings.retries,
        ..StockdOptions::default()
    };
    StockdTarget::connect(cluster.config.clone(), &options)
        .await
        .map_err(ConnectError::Stockd)
}

#[cfg(feature = "baselines")]
async fn connect_baseline(
    kind: TargetKind,
    settings: &TargetSettings,
) -> Result<AnyTarget, ConnectError> {
    let flag = match kind {
        TargetKind::Postgres => &settings.pg_url,
        _ => &settings.redis_url,
    };
    let url = env_or(flag, url_source(kind).1).ok_or(ConnectError::NoUrl(kind))?;
    let connections = settings.connections.max(1);
    let connected = match kind {
        TargetKind::Postgres => PostgresTarget::connect(&url, connections)
            .await
            .map(AnyTarget::Postgres),
        _ => RedisTarget::connect(&url, connections)
            .await
            .map(AnyTarget::Redis),
    };
    connected.map_err(|error| ConnectError::Baseline { kind, url, error })
}

#[cfg(not(feature = "baselines"))]
async fn connect_baseline(
    kind: TargetKind,
    _settings: &TargetSettings,
) -> Result<AnyTarget, ConnectError> {
    Err(ConnectError::NotBuilt(kind))
}

//! The systems under test by name ([`TargetKind`]) and connected ([`AnyTarget`]): stockd
//! through the client library (QUIC) or over HTTP/JSON, and (feature `baselines`) Redis and
//! PostgreSQL.

use std::fmt;

use serde::Serialize;

#[cfg(feature = "baselines")]
use crate::baseline_targets::{PostgresTarget, RedisTarget};
use crate::cluster::Cluster;
use crate::stockd::{StockdOptions, StockdTarget};
use crate::stockd_http::{HttpCluster, HttpOptions, StockdHttpTarget};
use crate::target::OpError;

/// A system under test, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum TargetKind {
    /// stockd through the client library.
    Stockd,
    /// stockd over HTTP/JSON (keep-alive, a pool of connections, a bearer token).
    StockdHttp,
    /// Redis with a Lua script per operation.
    Redis,
    /// PostgreSQL with a transaction per operation.
    Postgres,
}

impl TargetKind {
    /// Whether this target needs a stockd cluster.
    pub fn is_stockd(self) -> bool {
        matches!(self, TargetKind::Stockd | TargetKind::StockdHttp)
    }

    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Stockd => "stockd",
            TargetKind::StockdHttp => "stockd-http",
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
    /// stockd-http: HTTP/2 (h2c) over `connections` connections instead of HTTP/1.1 with
    /// keep-alive.
    pub http2: bool,
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
    /// stockd over HTTP.
    StockdHttp(StockdHttpTarget),
    /// Redis.
    #[cfg(feature = "baselines")]
    Redis(RedisTarget),
    /// PostgreSQL.
    #[cfg(feature = "baselines")]
    Postgres(PostgresTarget),
}

impl AnyTarget {
    /// A QUIC client of the stockd cluster behind a stockd target (for node statuses, outside
    /// the measurement); `None` for a baseline.
    pub fn stockd_client(&self) -> Option<&client::Client> {
        match self {
            AnyTarget::Stockd(t) => Some(t.client()),
            AnyTarget::StockdHttp(t) => Some(t.client()),
            #[cfg(feature = "baselines")]
            _ => None,
        }
    }
}

/// Why a target could not be connected.
#[derive(Debug)]
pub enum ConnectError {
    /// stockd was asked for but no cluster was opened.
    NoCluster,
    /// stockd's client did not connect.
    Stockd(client::ClientError),
    /// stockd's HTTP front could not be used: no HTTP addresses, no token, or the token was
    /// not accepted.
    StockdHttp(OpError),
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
            ConnectError::StockdHttp(e) => write!(f, "stockd-http: {e}"),
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
        TargetKind::StockdHttp => connect_stockd_http(settings, cluster)
            .await
            .map(AnyTarget::StockdHttp),
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

/// Connects to stockd's HTTP front in the `cluster`: its nodes' HTTP addresses and its
/// token file ([`Cluster::token_file`]).
pub async fn connect_stockd_http(
    settings: &TargetSettings,
    cluster: Option<&Cluster>,
) -> Result<StockdHttpTarget, ConnectError> {
    let cluster = cluster.ok_or(ConnectError::NoCluster)?;
    if cluster.http.is_empty() {
        let detail = "no HTTP address of the nodes (with --connect, give --connect-http)";
        return Err(ConnectError::StockdHttp(OpError::new("config", detail)));
    }
    let token = std::fs::read_to_string(&cluster.token_file).map_err(|e| {
        let detail = format!("{}: {e} (give --token-file)", cluster.token_file.display());
        ConnectError::StockdHttp(OpError::new("config", detail))
    })?;
    let options = HttpOptions {
        retries: settings.retries,
        http2: settings.http2,
        connections: settings.connections.max(1),
        ..HttpOptions::default()
    };
    let http = HttpCluster {
        quic: cluster.config.clone(),
        urls: cluster.http.clone(),
        token: token.trim().to_owned(),
    };
    StockdHttpTarget::connect(http, &options)
        .await
        .map_err(ConnectError::StockdHttp)
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

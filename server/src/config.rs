//! Configuration: command-line flags and an optional TOML file (flags win).
//!
//! With no arguments, `stockd` runs the embedded default: a single-node cluster, node 1 on
//! 127.0.0.1:7400, data (log, snapshots, TLS files) in `./stockd-data`, durability
//! `replicated`. A real cluster gives each node its id, addresses and the initial voters:
//!
//! ```toml
//! id = 1
//! listen = "10.0.0.1:7400"
//! data_dir = "/var/lib/stockd"
//! durability = "fsync"            # or "replicated" (default)
//! flush_interval_ms = 50          # replicated mode: background flush period
//! peers = ["1=10.0.0.1:7400", "2=10.0.0.2:7400", "3=10.0.0.3:7400"]
//! tls_dir = "/etc/stockd/tls"     # node.pem, node.key, ca.pem
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use protocol::NodeAddr;

use crate::node::{NodeConfig, RaftTimings};
use crate::raft::log_store::{Durability, FLUSH_INTERVAL_MS_DEFAULT};

/// The default client/peer port.
pub const DEFAULT_PORT: u16 = 7400;
/// The default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "stockd-data";
/// `dev` node i serves HTTP on base_port + this + i - 1 (7480.. for the default base port).
pub const DEV_HTTP_OFFSET: u16 = 80;
/// Most nodes `stockd dev` starts.
pub const DEV_NODES_MAX: u16 = 9;

/// How to run a real cluster (shown by `stockd --help`).
const CLUSTER_HELP: &str = "\
With no options: a single-node cluster, node 1 on 127.0.0.1:7400, data in ./stockd-data.

A cluster of three machines (or processes):
  1. One cluster CA, one certificate per node (nodes accept only peers signed by the CA):
       stockd certs --ca-dir ca --out node1 --name 10.0.0.1      (then node2, node3)
     Copy nodeN/ (node.pem, node.key, ca.pem) to node N; keep ca/ca.key safe.
  2. On each node, the same --peer list (all initial voters), its own id and address:
       stockd --id 1 --listen 10.0.0.1:7400 --tls-dir node1 --data-dir /var/lib/stockd \\
              --peer 1=10.0.0.1:7400 --peer 2=10.0.0.2:7400 --peer 3=10.0.0.3:7400
     (or --ca-dir ca on one machine: certificates are issued at first start.)
  3. Every client has an identity issued from the CA, with a role (reader, checkout, store,
     ops, admin) and a scope:
       stockd certs --ca-dir ca --client web-checkout --role checkout --channel web
       stockd certs --ca-dir ca --client paris-tablet --role store --location store-paris
       stockd certs --ca-dir ca --client ops-1 --role admin --days 30
     Clients trust ca.pem and present their identity:
       stockctl --connect 10.0.0.1:7400 --ca ca.pem --cert ca/ops-1.pem --key ca/ops-1.key status
     The embedded default and `dev` write an admin identity (admin.pem, admin.key) next to
     ca.pem, which stockctl uses by default. Revoke one with
       stockctl credentials revoke ID      (ID: the certificate's serial, see stockctl whoami)
To add a node later: start it with --join (it waits, uninitialised), then
  stockctl add-node ID HOST:PORT
It answers within seconds with the node's state: a voter once it has the log; a learner still
catching up or unreachable (exit 3: run add-node again to promote it, or remove-node ID); or
not added (nothing, or another node id, answered at HOST:PORT; nothing changed).
stockctl members shows each member's role and lag. A removed node stops serving clients.

The same options in a TOML file (--config FILE; flags win):
  id = 1
  listen = \"10.0.0.1:7400\"
  data_dir = \"/var/lib/stockd\"
  durability = \"fsync\"          # or \"replicated\" (default)
  flush_interval_ms = 50          # replicated mode: background flush period
  peers = [\"1=10.0.0.1:7400\", \"2=10.0.0.2:7400\", \"3=10.0.0.3:7400\"]
  tls_dir = \"/etc/stockd/node1\"  # node.pem, node.key, ca.pem
  join = false
  snapshot_every = 100000         # entries; also snapshot_log_mib = 256, snapshot_interval_s = 600
  memory_limit_mib = 12000        # busy for new holds above it (default 80% of the host)";

/// `stockd`: the stockd server.
#[derive(Debug, Parser)]
#[command(
    name = "stockd",
    version,
    about = "stockd: a replicated, real-time inventory ledger",
    after_help = CLUSTER_HELP
)]
pub struct Cli {
    /// Run something else than a node.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Node options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Threads of the async runtime that pumps QUIC, Raft, the proposer and the APIs: 1 (the
    /// default) runs all of them on one thread (a wake-up between them is then a queue push,
    /// not a futex between threads); N > 1 a work-stealing runtime of N threads; 0 one thread
    /// per core, for a host where one core no longer keeps up (the node's process at 100% of
    /// a core).
    /// The log writer, the snapshot encoder and blocking work have threads of their own
    /// either way. At most 256 ([`RUNTIME_THREADS_MAX`]).
    #[arg(long, global = true, default_value_t = RUNTIME_THREADS_DEFAULT,
          value_parser = clap::value_parser!(u16).range(0..=RUNTIME_THREADS_MAX as i64))]
    pub runtime_threads: u16,
}

/// Default of `--runtime-threads` (see docs/BENCHMARKS.md, "Runtime threads").
pub const RUNTIME_THREADS_DEFAULT: u16 = 1;
/// Most `--runtime-threads` accepted.
pub const RUNTIME_THREADS_MAX: u16 = 256;

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local cluster of N nodes on loopback in this process, for trying things out.
    Dev {
        /// Number of nodes (1..=9).
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Port of node 1; node i listens on base_port + i - 1.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        base_port: u16,
        /// Root data directory (the CA lives here; node i in dev/n<i>).
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Log durability.
        #[arg(long, value_enum, default_value_t = DurabilityArg::Replicated)]
        durability: DurabilityArg,
    },
    /// Create a cluster CA (if missing) and issue a node certificate from it, or, with
    /// `--client`, a client identity (SPEC section 7).
    Certs(CertsArgs),
}

/// `stockd certs`: a node certificate, or with `--client` a client identity (SPEC section 7).
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory of the CA (`ca.pem`, `ca.key`); created if empty.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// Where to write: `node.pem`, `node.key` and `ca.pem` for a node (required);
    /// `NAME.pem` and `NAME.key` for a client (default: the CA directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Extra DNS names or IP addresses for a node certificate.
    #[arg(long)]
    pub name: Vec<String>,
    /// Issue a client identity with this name instead of a node certificate.
    #[arg(long, requires = "role")]
    pub client: Option<String>,
    /// The client's role: reader, checkout, store, ops or admin.
    #[arg(long, value_parser = parse_role)]
    pub role: Option<pki::ClientRole>,
    /// A channel a `checkout` client sells on (repeat for several).
    #[arg(long)]
    pub channel: Vec<String>,
    /// A location a `store` client acts at (repeat for several).
    #[arg(long)]
    pub location: Vec<String>,
    /// Validity of a client identity, days.
    #[arg(long, default_value_t = pki::CLIENT_DAYS_DEFAULT)]
    pub days: u32,
}

fn parse_role(s: &str) -> Result<pki::ClientRole, String> {
    pki::ClientRole::parse(s)
        .ok_or_else(|| format!("unknown role {s:?} (reader, checkout, store, ops, admin)"))
}

/// Log durability on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// Acknowledge on a majority in memory; flush in the background.
    Replicated,
    /// Acknowledge after a majority fsynced.
    Fsync,
}

/// Options of a node (each also settable in the TOML file).
#[derive(Debug, Args, Default)]
pub struct NodeArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Raft node id (default 1).
    #[arg(long)]
    pub id: Option<u64>,
    /// UDP address to listen on (default 127.0.0.1:7400).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address others reach this node at (default: the listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data directory (default ./stockd-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log durability (default replicated).
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// Background flush period in replicated mode, ms.
    #[arg(long)]
    pub flush_interval_ms: Option<u64>,
    /// Initial voters as ID=HOST:PORT (repeat); with none, a single-node cluster of this node.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Directory with node.pem, node.key, ca.pem (default: the data directory).
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Directory of the CA that issues this node's certificate if it has none.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    /// Start without initialising a cluster: wait to be added by `stockctl add-node`.
    #[arg(long)]
    pub join: bool,
    /// Raft entries applied between snapshots (default 100,000; node 2 waits 25% longer, node
    /// 3 50%, the leader twice as long).
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// MiB of log since the last snapshot that also trigger one (default 256; staggered the
    /// same way).
    #[arg(long)]
    pub snapshot_log_mib: Option<u64>,
    /// Seconds since the last snapshot that also trigger one if anything was written (default
    /// 600; staggered the same way).
    #[arg(long)]
    pub snapshot_interval_s: Option<u64>,
    /// Resident memory, MiB, above which this node answers `busy` to new reservations and
    /// direct orders (0: no limit; default: 80% of the host's memory or of its cgroup limit;
    /// a host running several nodes should give each its share; docs/OPERATIONS.md,
    /// "Memory").
    #[arg(long)]
    pub memory_limit_mib: Option<u64>,
    /// TCP address of the HTTP/JSON API, or `off` (default: 127.0.0.1:7480 for the embedded
    /// default, off when `--peer` or a config file describes a cluster).
    #[arg(long, value_parser = parse_http)]
    pub http: Option<HttpArg>,
}

/// `--http`: an address or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum HttpArg {
    /// No HTTP.
    Off,
    /// Serve HTTP here.
    At(SocketAddr),
}

impl TryFrom<String> for HttpArg {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_http(&s)
    }
}

fn parse_http(s: &str) -> Result<HttpArg, String> {
    if s == "off" {
        return Ok(HttpArg::Off);
    }
    s.parse()
        .map(HttpArg::At)
        .map_err(|_| format!("{s:?}: expected HOST:PORT or off"))
}

/// Where a node serves HTTP: as asked, else on the default address for the embedded
/// default only (a configured cluster serves HTTP where it says).
fn http_addr(asked: Option<HttpArg>, embedded: bool) -> Option<SocketAddr> {
    match asked {
        Some(HttpArg::Off) => None,
        Some(HttpArg::At(addr)) => Some(addr),
        None if embedded => Some(default_http()),
        None => None,
    }
}

/// The HTTP address of the embedded default.
pub fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], crate::http::DEFAULT_HTTP_PORT))
}

/// The TOML file's keys (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u64>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    durability: Option<DurabilityArg>,
    flush_interval_ms: Option<u64>,
    #[serde(default)]
    peers: Vec<String>,
    tls_dir: Option<PathBuf>,
    ca_dir: Option<PathBuf>,
    #[serde(default)]
    join: bool,
    snapshot_every: Option<u64>,
    snapshot_log_mib: Option<u64>,
    snapshot_interval_s: Option<u64>,
    http: Option<HttpArg>,
    memory_limit_mib: Option<u64>,
}

/// Why a configuration (flags, TOML file, `dev` arguments) was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The TOML file could not be read or parsed.
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A `--peer` is not `ID=HOST:PORT` with an id > 0.
    Peer(String),
    /// `--join` with `--peer`: a joining node learns its members when added.
    JoinWithPeers,
    /// The `--peer` list does not include this node's id.
    NotAPeer(u64),
    /// `dev --nodes` out of 1..=[`DEV_NODES_MAX`].
    DevNodes(u16),
    /// `dev --base-port` leaves no room for that many nodes.
    DevBasePort(u16),
    /// A snapshot threshold (named by its flag) is 0: a node would snapshot after every entry
    /// or every check.
    ZeroSnapshotThreshold(&'static str),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::File { path, error } => write!(f, "{}: {error}", path.display()),
            ConfigError::Peer(text) => {
                write!(f, "peer {text:?}: expected ID=HOST:PORT with ID > 0")
            }
            ConfigError::JoinWithPeers => {
                f.write_str("--join starts a node that waits to be added: it takes no --peer")
            }
            ConfigError::NotAPeer(id) => write!(
                f,
                "--peer lists the initial voters and must include this node (id {id})"
            ),
            ConfigError::DevNodes(n) => write!(f, "--nodes must be 1..={DEV_NODES_MAX}, not {n}"),
            ConfigError::DevBasePort(port) => {
                write!(f, "--base-port {port} too high for that many nodes")
            }
            ConfigError::ZeroSnapshotThreshold(flag) => write!(f, "{flag} must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses `ID=HOST:PORT`.
pub fn parse_peer(text: &str) -> Result<NodeAddr, ConfigError> {
    let bad = || ConfigError::Peer(text.to_owned());
    let (id, addr) = text.split_once('=').ok_or_else(bad)?;
    let id: u64 = id.parse().map_err(|_| bad())?;
    if id == 0 || !addr.contains(':') {
        return Err(bad());
    }
    Ok(NodeAddr {
        id,
        addr: addr.to_owned(),
    })
}

fn durability(arg: DurabilityArg, flush_interval_ms: Option<u64>) -> Durability {
    match arg {
        DurabilityArg::Fsync => Durability::Fsync,
        DurabilityArg::Replicated => Durability::Replicated {
            flush_interval_ms: flush_interval_ms.unwrap_or(FLUSH_INTERVAL_MS_DEFAULT),
        },
    }
}

impl NodeArgs {
    /// Merges the flags over the TOML file (if any) over the embedded defaults.
    pub fn resolve(&self) -> Result<NodeConfig, ConfigError> {
        let file: FileConfig = match &self.config {
            None => FileConfig::default(),
            Some(path) => {
                let file_err = |error: String| ConfigError::File {
                    path: path.clone(),
                    error,
                };
                let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
                toml::from_str(&text).map_err(|e| file_err(e.to_string()))?
            }
        };
        let timings = self.snapshot_timings(&file)?;
        let id = self.id.or(file.id).unwrap_or(1);
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
        let advertise = self.advertise.clone().or(file.advertise);
        let peers = if self.peers.is_empty() {
            file.peers
        } else {
            self.peers.clone()
        };
        let mut members = peers
            .iter()
            .map(|p| parse_peer(p))
            .collect::<Result<Vec<_>, _>>()?;
        let me = NodeAddr {
            id,
            addr: advertise.clone().unwrap_or_else(|| listen.to_string()),
        };
        let join = self.join || file.join;
        let embedded = self.config.is_none() && peers.is_empty() && !join;
        let http = http_addr(self.http.or(file.http), embedded);
        if join {
            if !members.is_empty() {
                return Err(ConfigError::JoinWithPeers);
            }
        } else if members.is_empty() {
            members.push(me);
        } else if !members.iter().any(|m| m.id == id) {
            return Err(ConfigError::NotAPeer(id));
        }
        Ok(NodeConfig {
            id,
            listen,
            advertise,
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            durability: durability(
                self.durability
                    .or(file.durability)
                    .unwrap_or(DurabilityArg::Replicated),
                self.flush_interval_ms.or(file.flush_interval_ms),
            ),
            tls_dir: self.tls_dir.clone().or(file.tls_dir),
            ca_dir: self.ca_dir.clone().or(file.ca_dir),
            initial_members: members,
            timings,
            clock: Arc::default(),
            http,
            memory_limit_mib: self.memory_limit_mib.or(file.memory_limit_mib),
        })
    }

    /// The default Raft timings with the snapshot thresholds of the flags (over the file).
    fn snapshot_timings(&self, file: &FileConfig) -> Result<RaftTimings, ConfigError> {
        let pick = |flag: Option<u64>, key: Option<u64>, name| match flag.or(key) {
            Some(0) => Err(ConfigError::ZeroSnapshotThreshold(name)),
            other => Ok(other),
        };
        let defaults = RaftTimings::default();
        let every = pick(self.snapshot_every, file.snapshot_every, "--snapshot-every")?;
        let log_mib = pick(
            self.snapshot_log_mib,
            file.snapshot_log_mib,
            "--snapshot-log-mib",
        )?;
        let interval_s = pick(
            self.snapshot_interval_s,
            file.snapshot_interval_s,
            "--snapshot-interval-s",
        )?;
        Ok(RaftTimings {
            snapshot_every: every.unwrap_or(defaults.snapshot_every),
            snapshot_log_bytes: log_mib
                .map_or(defaults.snapshot_log_bytes, |m| m.saturating_mul(1 << 20)),
            snapshot_interval_ms: interval_s
                .map_or(defaults.snapshot_interval_ms, |s| s.saturating_mul(1_000)),
            ..defaults
        })
    }
}

/// The node configurations of a `dev` cluster: node i on base_port + i - 1 in `data_dir/dev/n<i>`,
/// one CA in `data_dir` (so `stockctl --ca data_dir/ca.pem` trusts every node), node 1
/// initialising the cluster.
pub fn dev_cluster(
    nodes: u16,
    base_port: u16,
    data_dir: &std::path::Path,
    arg: DurabilityArg,
) -> Result<Vec<NodeConfig>, ConfigError> {
    if nodes == 0 || nodes > DEV_NODES_MAX {
        return Err(ConfigError::DevNodes(nodes));
    }
    if u32::from(base_port) + u32::from(DEV_HTTP_OFFSET + nodes) > u32::from(u16::MAX) {
        return Err(ConfigError::DevBasePort(base_port));
    }
    let members: Vec<NodeAddr> = (1..=nodes)
        .map(|i| NodeAddr {
            id: u64::from(i),
            addr: format!("127.0.0.1:{}", base_port + i - 1),
        })
        .collect();
    Ok((1..=nodes)
        .map(|i| {
            let dir = data_dir.join("dev").join(format!("n{i}"));
            NodeConfig {
                id: u64::from(i),
                listen: SocketAddr::from(([127, 0, 0, 1], base_port + i - 1)),
                advertise: None,
                data_dir: dir.clone(),
                durability: durability(arg, None),
                tls_dir: Some(dir),
                ca_dir: Some(data_dir.to_path_buf()),
                initial_members: if i == 1 { members.clone() } else { Vec::new() },
                timings: RaftTimings::default(),
                clock: Arc::default(),
                http: Some(SocketAddr::from((
                    [127, 0, 0, 1],
                    base_port + DEV_HTTP_OFFSET + i - 1,
                ))),
                // The nodes share this process: one node's budget would count all of them.
                memory_limit_mib: Some(0),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_threads_default_to_one_and_are_bounded() {
        use clap::Parser as _;
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.runtime_threads);
        assert_eq!(parse(&["stockd"]).expect("default"), 1);
        assert_eq!(
            parse(&["stockd", "--runtime-threads", "1"]).expect("one"),
            1
        );
        let max = RUNTIME_THREADS_MAX.to_string();
        assert_eq!(
            parse(&["stockd", "--runtime-threads", &max]).expect("max"),
            256
        );
        let over = (RUNTIME_THREADS_MAX + 1).to_string();
        assert!(parse(&["stockd", "--runtime-threads", &over]).is_err());
        assert!(parse(&["stockd", "--runtime-threads", "-1"]).is_err());
        // Global: also after a subcommand (a load tester passes it to every invocation).
        let dev = parse(&["stockd", "dev", "--nodes", "1", "--runtime-threads", "2"]);
        assert_eq!(dev.expect("dev"), 2);
    }

    #[test]
    fn no_arguments_is_a_single_node_cluster_in_stockd_data() {
        let config = NodeArgs::default().resolve().expect("defaults resolve");
        assert_eq!(config.id, 1);
        assert_eq!(config.listen.to_string(), "127.0.0.1:7400");
        assert_eq!(config.http, Some(default_http()));
        assert_eq!(config.data_dir, PathBuf::from("stockd-data"));
        assert_eq!(
            config.initial_members,
            vec![NodeAddr {
                id: 1,
                addr: "127.0.0.1:7400".to_owned()
            }]
        );
        assert_eq!(
            config.durability,
            Durability::Replicated {
                flush_interval_ms: FLUSH_INTERVAL_MS_DEFAULT
            }
        );
    }

    #[test]
    fn peers_must_include_this_node() {
        let args = NodeArgs {
            id: Some(2),
            peers: vec!["1=h1:7400".to_owned()],
            ..NodeArgs::default()
        };
        assert_eq!(args.resolve().err(), Some(ConfigError::NotAPeer(2)));
        assert!(parse_peer("0=h:1").is_err());
        assert!(parse_peer("x=h:1").is_err());
        assert!(parse_peer("3").is_err());
        assert_eq!(
            parse_peer("3=h:1"),
            Ok(NodeAddr {
                id: 3,
                addr: "h:1".to_owned()
            })
        );
    }

    #[test]
    fn toml_file_is_read_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("stockd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "id = 2\nlisten = \"127.0.0.1:9000\"\ndurability = \"fsync\"\npeers = [\"1=a:1\", \"2=127.0.0.1:9000\"]\n",
        )
        .expect("write");
        let args = NodeArgs {
            config: Some(path.clone()),
            listen: None,
            ..NodeArgs::default()
        };
        let config = args.resolve().expect("resolves");
        assert_eq!((config.id, config.durability), (2, Durability::Fsync));
        assert_eq!(
            config.http, None,
            "a configured cluster serves HTTP only if asked"
        );
        assert_eq!(config.initial_members.len(), 2);
        let args = NodeArgs {
            config: Some(path.clone()),
            durability: Some(DurabilityArg::Replicated),
            ..NodeArgs::default()
        };
        assert!(matches!(
            args.resolve().expect("resolves").durability,
            Durability::Replicated { .. }
        ));
        std::fs::write(&path, "bogus = 1\n").expect("write");
        assert!(NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        }
        .resolve()
        .is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn snapshot_thresholds_come_from_flags_over_the_file() {
        let defaults = NodeArgs::default().resolve().expect("resolves").timings;
        assert_eq!(defaults, RaftTimings::default());
        let dir = std::env::temp_dir().join(format!("stockd-config-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("node.toml");
        std::fs::write(&path, "snapshot_every = 500\nsnapshot_interval_s = 30\n").expect("write");
        let args = NodeArgs {
            config: Some(path.clone()),
            snapshot_log_mib: Some(3),
            snapshot_interval_s: Some(7),
            ..NodeArgs::default()
        };
        let timings = args.resolve().expect("resolves").timings;
        assert_eq!(
            (
                timings.snapshot_every,
                timings.snapshot_log_bytes,
                timings.snapshot_interval_ms
            ),
            (500, 3 << 20, 7_000)
        );
        assert_eq!(timings.heartbeat_ms, defaults.heartbeat_ms);
        let zero = NodeArgs {
            snapshot_every: Some(0),
            ..NodeArgs::default()
        };
        assert_eq!(
            zero.resolve().err(),
            Some(ConfigError::ZeroSnapshotThreshold("--snapshot-every"))
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn join_starts_uninitialised_and_takes_no_peers() {
        let args = NodeArgs {
            join: true,
            ..NodeArgs::default()
        };
        assert!(args.resolve().expect("resolves").initial_members.is_empty());
        let args = NodeArgs {
            join: true,
            peers: vec!["1=h:1".to_owned()],
            ..NodeArgs::default()
        };
        assert!(args.resolve().is_err());
    }

    #[test]
    fn dev_cluster_layout() {
        let configs =
            dev_cluster(3, 7400, std::path::Path::new("d"), DurabilityArg::Fsync).expect("dev");
        assert_eq!(configs.len(), 3);
        assert_eq!(configs[2].listen.to_string(), "127.0.0.1:7402");
        assert_eq!(configs[2].data_dir, PathBuf::from("d/dev/n3"));
        assert_eq!(configs[2].http.map(|a| a.port()), Some(7482));
        assert_eq!(configs[0].initial_members.len(), 3);
        assert!(configs[1].initial_members.is_empty());
        assert!(dev_cluster(0, 7400, std::path::Path::new("d"), DurabilityArg::Fsync).is_err());
        assert!(dev_cluster(10, 7400, std::path::Path::new("d"), DurabilityArg::Fsync).is_err());
    }
}

//! The stockd cluster a command runs against: `stockd` processes started for the command (the
//! default of `run` and `compare`, as deployed: [`crate::processes`]), nodes started in this
//! process (`--in-process`, the demo and the tests), or an existing cluster reached with its
//! CA certificate (`--connect`). A cluster started for the command is stopped, and its data
//! removed, after it.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::processes::{NodeMemory, NodeProcesses, ProcessError, ProcessOptions, StockdBinary};
use crate::stockd::{ClusterOptions, LocalCluster};

/// Which cluster to use.
#[derive(Debug, Clone)]
pub enum ClusterChoice {
    /// An existing cluster: its nodes (`host:port`) and its CA certificate (`ca.pem`, which
    /// `--connect` requires).
    Existing {
        /// The nodes.
        nodes: Vec<String>,
        /// The CA certificate.
        ca: Option<PathBuf>,
        /// The nodes' HTTP base URLs (`http://host:port`), in the order of `nodes`, for the
        /// `stockd-http` target.
        http: Vec<String>,
        /// The bearer token's file for the `stockd-http` target (`None`: the `admin.token`
        /// next to the CA certificate).
        token_file: Option<PathBuf>,
    },
    /// `stockd` processes started for the command.
    Processes(ProcessOptions),
    /// A local cluster started in this process.
    Local(ClusterOptions),
}

/// Why no cluster is available.
#[derive(Debug)]
pub enum ClusterError {
    /// `--connect` without `--ca`.
    NoCa,
    /// The CA certificate, or the administrator identity beside it (`admin.pem`,
    /// `admin.key`), could not be read.
    Identity(String),
    /// The local cluster did not start, or its client settings could not be made.
    Local(testkit::Error),
    /// The `stockd` processes did not start.
    Processes(ProcessError),
    /// The processes' client settings could not be made.
    Client(client::ClientError),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::NoCa => write!(f, "--connect needs --ca (the cluster's ca.pem)"),
            ClusterError::Identity(e) => write!(f, "{e}"),
            ClusterError::Local(e) => write!(f, "{e}"),
            ClusterError::Processes(e) => write!(f, "{e}"),
            ClusterError::Client(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// A cluster to test: one we started (and stop), or an existing one.
pub struct Cluster {
    /// The in-process cluster, if we started one.
    pub local: Option<LocalCluster>,
    /// The `stockd` processes, if we started them.
    pub processes: Option<NodeProcesses>,
    /// How to reach the cluster.
    pub config: client::ClientConfig,
    /// Every node's HTTP base URL (`http://host:port`), in the order of `config.nodes`; empty
    /// for an existing cluster without `--connect-http`.
    pub http: Vec<String>,
    /// Where the `stockd-http` target reads its bearer token: `--token-file`, else the
    /// administrator token the cluster wrote next to its CA (`admin.token`).
    pub token_file: PathBuf,
}

/// The administrator token file next to the CA certificate `ca`.
fn token_beside(ca: &std::path::Path) -> PathBuf {
    let dir = ca.parent().unwrap_or(std::path::Path::new("."));
    dir.join(pki::ADMIN_TOKEN_FILE)
}

/// What a report says about the cluster it measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    /// `processes`, `in-process` or `existing`.
    pub kind: &'static str,
    /// Node addresses.
    pub nodes: Vec<String>,
    /// The binary of a process cluster.
    pub binary: Option<StockdBinary>,
}

impl Cluster {
    /// [`Cluster::open`] (reported on stderr) and a runtime of `kind` for the commands that
    /// drive it; on failure the error is printed and the exit code (2) returned.
    pub fn open_with_runtime(
        choice: ClusterChoice,
        kind: crate::stockd::RuntimeKind,
    ) -> Result<(Cluster, tokio::runtime::Runtime), std::process::ExitCode> {
        let cluster = Cluster::open(choice, true).map_err(|e| {
            eprintln!("stockd-load: cluster: {e}");
            std::process::ExitCode::from(2)
        })?;
        match kind.build() {
            Ok(runtime) => Ok((cluster, runtime)),
            Err(e) => {
                eprintln!("stockd-load: cannot start the runtime: {e}");
                cluster.stop();
                Err(std::process::ExitCode::from(2))
            }
        }
    }

    /// Connects to an existing cluster or starts a local one; `say` reports a start on
    /// stderr.
    pub fn open(choice: ClusterChoice, say: bool) -> Result<Cluster, ClusterError> {
        let options = match choice {
            ClusterChoice::Existing {
                nodes,
                ca,
                http,
                token_file,
            } => {
                let path = ca.ok_or(ClusterError::NoCa)?;
                // The administrator identity that the cluster wrote beside its CA (`stockd`'s
                // embedded default and `dev`), as stockctl uses by default.
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                let config = client::ClientConfig::admin_of(nodes, dir)
                    .map_err(|e| ClusterError::Identity(e.to_string()))?;
                return Ok(Cluster {
                    local: None,
                    processes: None,
                    config,
                    http,
                    token_file: token_file.unwrap_or_else(|| token_beside(&path)),
                });
            }
            ClusterChoice::Processes(options) => return Cluster::start_processes(&options, say),
            ClusterChoice::Local(options) => options,
        };
        let started = Instant::now();
        let nodes = options.nodes;
        let local = LocalCluster::start(options).map_err(ClusterError::Local)?;
        if say {
            eprintln!(
                "started a local {}-node cluster in {:.1} s: {} (data in {}, removed at the end)",
                nodes.clamp(1, 7),
                started.elapsed().as_secs_f64(),
                local.addrs().join(" "),
                local.root().display()
            );
        }
        let config = local.client_config().map_err(ClusterError::Local)?;
        let http = local.http_urls().to_vec();
        let token_file = token_beside(local.ca_path());
        Ok(Cluster {
            local: Some(local),
            processes: None,
            config,
            http,
            token_file,
        })
    }

    fn start_processes(options: &ProcessOptions, say: bool) -> Result<Cluster, ClusterError> {
        let started = Instant::now();
        let nodes = NodeProcesses::start(options).map_err(ClusterError::Processes)?;
        if say {
            eprintln!(
                "started {} stockd processes in {:.1} s: {} (pids {:?}; {}, {}; data and logs in {}, removed at the end)",
                nodes.addrs().len(),
                started.elapsed().as_secs_f64(),
                nodes.addrs().join(" "),
                nodes.pids(),
                nodes.binary().path.display(),
                nodes.binary().how,
                nodes.root().display()
            );
        }
        let dir = nodes.ca().parent().map(PathBuf::from).unwrap_or_default();
        let config =
            client::ClientConfig::admin_of(nodes.addrs(), &dir).map_err(ClusterError::Client)?;
        Ok(Cluster {
            local: None,
            http: nodes.http_urls(),
            token_file: token_beside(&nodes.ca()),
            processes: Some(nodes),
            config,
        })
    }

    /// What the reports say about this cluster.
    pub fn info(&self) -> ClusterInfo {
        let kind = match (&self.processes, &self.local) {
            (Some(_), _) => "processes",
            (None, Some(_)) => "in-process",
            (None, None) => "existing",
        };
        ClusterInfo {
            kind,
            nodes: self.config.nodes.clone(),
            binary: self.processes.as_ref().map(|p| p.binary().clone()),
        }
    }

    /// Each node's resident memory now: only for `stockd` processes we started (the nodes of
    /// an in-process cluster share the generator's memory; an existing one may be elsewhere).
    pub fn memory(&self) -> Vec<NodeMemory> {
        self.processes
            .as_ref()
            .map(NodeProcesses::memory)
            .unwrap_or_default()
    }

    /// Stops the cluster, if we started it (an existing cluster is left running).
    pub fn stop(self) {
        if let Some(local) = self.local {
            local.stop();
        }
        if let Some(processes) = self.processes {
            processes.stop();
        }
    }
}

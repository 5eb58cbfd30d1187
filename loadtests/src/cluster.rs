//! The stockd cluster a command runs against: one started in this process for the command
//! (and stopped after it), or an existing one reached with its CA certificate.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

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
    },
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
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::NoCa => write!(f, "--connect needs --ca (the cluster's ca.pem)"),
            ClusterError::Identity(e) => write!(f, "{e}"),
            ClusterError::Local(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// A cluster to test: a local one we started (and stop), or an existing one.
pub struct Cluster {
    /// The local cluster, if we started it.
    pub local: Option<LocalCluster>,
    /// How to reach the cluster.
    pub config: client::ClientConfig,
}

impl Cluster {
    /// Connects to an existing cluster or starts a local one; `say` reports a start on
    /// stderr.
    pub fn open(choice: ClusterChoice, say: bool) -> Result<Cluster, ClusterError> {
        let options = match choice {
            ClusterChoice::Existing { nodes, ca } => {
                let path = ca.ok_or(ClusterError::NoCa)?;
                // The administrator identity that the cluster wrote beside its CA (`stockd`'s
                // embedded default and `dev`), as stockctl uses by default.
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                let config = client::ClientConfig::admin_of(nodes, dir)
                    .map_err(|e| ClusterError::Identity(e.to_string()))?;
                return Ok(Cluster {
                    local: None,
                    config,
                });
            }
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
        Ok(Cluster {
            local: Some(local),
            config,
        })
    }

    /// Stops the local cluster, if we started one (an existing cluster is left running).
    pub fn stop(self) {
        if let Some(local) = self.local {
            local.stop();
        }
    }
}

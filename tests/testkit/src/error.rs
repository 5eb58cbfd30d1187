//! Why a cluster could not be started, reached or driven.

use std::path::PathBuf;

use crate::wait::WaitTimeout;

/// What went wrong in a testkit call.
#[derive(Debug)]
pub enum Error {
    /// A directory (or a node's log file in one) could not be created or emptied.
    Dir {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A node did not start.
    Start {
        /// The node.
        id: u64,
        /// The cause.
        source: server::node::StartError,
    },
    /// Node 1 could not initialise the cluster.
    Initialise(server::raft::consensus::ConsensusError),
    /// Something awaited did not happen in time.
    Wait(WaitTimeout),
    /// The cluster's runtime or thread could not be created.
    Runtime(std::io::Error),
    /// The background cluster's thread has stopped.
    Stopped,
    /// The cluster CA certificate could not be read.
    Ca {
        /// The certificate file.
        path: PathBuf,
        /// The cause.
        source: pki::TlsError,
    },
    /// A client could not connect or its call failed.
    Client(client::ClientError),
    /// A node answered something else than the call asks for.
    UnexpectedAnswer {
        /// What was asked.
        asked: &'static str,
        /// The answer, formatted.
        got: String,
    },
    /// A `stockd` process could not be run.
    Spawn {
        /// The command, for the message.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `stockd certs` ran but failed.
    Certs {
        /// Its exit status and output.
        output: String,
    },
    /// A signal could not be sent to a node's process.
    Signal {
        /// The node.
        id: u64,
        /// The signal's name, e.g. `STOP`.
        signal: String,
    },
    /// A node the call needs is not running.
    NotRunning(u64),
    /// A node the call starts is already running.
    Running(u64),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Dir { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Start { id, source } => write!(f, "node {id}: {source}"),
            Error::Initialise(reason) => write!(f, "initialising the cluster: {reason}"),
            Error::Wait(timeout) => timeout.fmt(f),
            Error::Runtime(e) => write!(f, "cluster runtime: {e}"),
            Error::Stopped => f.write_str("the cluster thread stopped"),
            Error::Ca { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Client(e) => write!(f, "client: {e}"),
            Error::UnexpectedAnswer { asked, got } => write!(f, "asked {asked}, got {got}"),
            Error::Spawn { command, source } => write!(f, "{command}: {source}"),
            Error::Certs { output } => write!(f, "stockd certs failed: {output}"),
            Error::Signal { id, signal } => write!(f, "kill -{signal} node {id} failed"),
            Error::NotRunning(id) => write!(f, "node {id} is not running"),
            Error::Running(id) => write!(f, "node {id} is already running"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Dir { source, .. } | Error::Spawn { source, .. } => Some(source),
            Error::Runtime(source) => Some(source),
            Error::Start { source, .. } => Some(source),
            Error::Wait(source) => Some(source),
            Error::Client(source) => Some(source),
            Error::Initialise(source) => Some(source),
            Error::Ca { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<WaitTimeout> for Error {
    fn from(timeout: WaitTimeout) -> Self {
        Error::Wait(timeout)
    }
}

impl From<client::ClientError> for Error {
    fn from(e: client::ClientError) -> Self {
        Error::Client(e)
    }
}

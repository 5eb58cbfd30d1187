//! `stockctl`, the operators' CLI: every operation and query of SPEC section 3, cluster status
//! and membership, and the scenario-case runner.
//!
//! Exit status: 0 done; 1 the ledger rejected the write (or answered a read with a rejection
//! such as `not_found`); 2 a usage, configuration or connection error (or `add-node` added
//! nothing); 3 `add-node` left the node a learner (catching up or unreachable: run it again).
//!
//! Quantities on the command line are DISPLAY units: before sending, stockctl asks the cluster
//! for each SKU's scale (an availability read returns it) and converts with
//! [`engine::units`]; more decimals than the scale is `invalid`, decided locally (exit 1).
//! Human output shows display units; `--json` shows the wire values (base units, ms).
//!
//! Layout: [`Cli`] and [`Cmd`] (`command.rs`) are the command line; `facts.rs` asks the cluster
//! what a write needs to know (scales, groups); [`build`] makes the write; `execute.rs` runs a
//! command and prints its answer; [`show`] formats human output. Words are read by
//! [`crate::grammar`].

mod build;
mod command;
mod execute;
mod facts;
mod retention;
pub mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use client::{Client, ClientConfig, ClientError};
use pki::Trust;

use crate::case::{run_case, CaseTarget, EngineTarget, RunOptions, TargetError};
use crate::cluster_target::{options_for, ClusterTarget};
use crate::grammar::{self, GrammarError};
pub use build::{build, BuildError, Built};
use command::is_write;
pub use command::{Cli, Cmd, Global, DEFAULT_CA, DEFAULT_CONNECT};
pub use execute::{added_exit, member_state_json};
use execute::{execute, Out};
pub use facts::{needs, Facts, Needs};

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok,
    /// The ledger rejected the write (or the read), or a quantity was `invalid` locally.
    Rejected,
    /// Usage, configuration or connection error.
    Failed,
    /// `add-node` left the node a learner: run it again once it has caught up.
    Pending,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Rejected => ExitCode::from(1),
            Exit::Failed => ExitCode::from(2),
            Exit::Pending => ExitCode::from(3),
        }
    }
}

/// A usage, configuration or connection error (exit status 2), printed as `stockctl: ...`.
#[derive(Debug, thiserror::Error)]
pub enum Fail {
    /// A usage error clap cannot see (an option that does not apply to the command, ...).
    #[error("{0}")]
    Usage(&'static str),
    /// A word of the command line does not fit the grammar (e.g. a `--connect` address).
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    /// No final answer from the cluster.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `case --connect`: the cluster target failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The `--ca` file could not be read.
    #[error("--ca: {0}")]
    Ca(pki::TlsError),
    /// The default CA file exists but could not be read.
    #[error("{0}")]
    DefaultCa(pki::TlsError),
    /// The identity (`--cert`, `--key`, or the default admin identity) could not be read.
    #[error("identity: {0}")]
    Identity(pki::TlsError),
    /// No `--cert` and no admin identity next to the CA file.
    #[error(
        "no identity: pass --cert FILE --key FILE (issued by stockd certs --client NAME --role ROLE); {0} does not exist"
    )]
    NoIdentity(String),
    /// Neither `--ca` nor `--fingerprint`, and no default CA file.
    #[error(
        "no trust anchor: pass --ca FILE or --fingerprint HEX ({DEFAULT_CA} does not exist here)"
    )]
    NoTrustAnchor,
    /// A case file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    ReadCase {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The tokio runtime could not start.
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs stockctl with the process's arguments.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(why) => {
            eprintln!("stockctl: {why}");
            Exit::Failed.into()
        }
    }
}

/// Exit code when the reader of our output went away (128 + SIGPIPE, as a shell reports it).
const EXIT_BROKEN_PIPE: i32 = 141;

/// `stockctl ... | head` closes our stdout early; printing then fails, which `println!` turns
/// into a panic. Exit quietly instead, as tools killed by SIGPIPE do.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info);
    }));
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Exit, Fail> {
    if let Cmd::Case { files } = &cli.command {
        return run_cases(&cli.global, files);
    }
    if let Cmd::Whoami = &cli.command {
        return whoami(&cli.global);
    }
    if cli.global.request_id.is_some() && !is_write(&cli.command) {
        return Err(Fail::Usage("--request-id only applies to writes"));
    }
    let config = client_config(&cli.global)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Fail::Runtime)?;
    runtime.block_on(async move {
        let first = config.nodes.first().cloned().unwrap_or_default();
        let client = Client::connect(config).await?;
        let out = Out {
            json: cli.global.json,
        };
        let exit = execute(&client, &out, &first, cli.global.request_id, cli.command).await;
        client.close();
        exit
    })
}

/// The client configuration from the global options.
pub fn client_config(global: &Global) -> Result<ClientConfig, Fail> {
    let nodes = if global.connect.is_empty() {
        vec![DEFAULT_CONNECT.to_owned()]
    } else {
        global.connect.clone()
    };
    for node in &nodes {
        grammar::host_port(node)?;
    }
    let trust = match (&global.fingerprint, &global.ca) {
        (Some(hex), _) => Trust::Fingerprint(hex.clone()),
        (None, Some(path)) => Trust::Ca(pki::load_certs(path).map_err(Fail::Ca)?),
        (None, None) => {
            let path = std::path::Path::new(DEFAULT_CA);
            if !path.exists() {
                return Err(Fail::NoTrustAnchor);
            }
            Trust::Ca(pki::load_certs(path).map_err(Fail::DefaultCa)?)
        }
    };
    let mut config = ClientConfig::new(nodes, trust).with_identity(identity(global)?);
    config.timeout_ms = global.timeout_ms.max(1);
    config.connect_timeout_ms = config.timeout_ms;
    Ok(config)
}

/// The identity to present: `--cert`/`--key`, else the admin identity next to the CA file
/// (`--ca`'s directory, or the default data directory's).
fn identity(global: &Global) -> Result<pki::Identity, Fail> {
    if let (Some(cert), Some(key)) = (&global.cert, &global.key) {
        return pki::load_client_identity(cert, key).map_err(Fail::Identity);
    }
    let ca = global
        .ca
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_CA));
    let dir = ca.parent().unwrap_or(std::path::Path::new("."));
    let cert = dir.join(format!("{}.pem", pki::DEFAULT_ADMIN));
    let key = dir.join(format!("{}.key", pki::DEFAULT_ADMIN));
    if !cert.exists() {
        return Err(Fail::NoIdentity(cert.display().to_string()));
    }
    pki::load_client_identity(&cert, &key).map_err(Fail::Identity)
}

/// `whoami`: the principal of the identity stockctl would present.
fn whoami(global: &Global) -> Result<Exit, Fail> {
    let identity = identity(global)?;
    let p = pki::principal_of(&identity.chain[0]).map_err(Fail::Identity)?;
    let scope = [
        (!p.channels.is_empty()).then(|| format!(" channels={}", p.channels.join(","))),
        (!p.locations.is_empty()).then(|| format!(" locations={}", p.locations.join(","))),
    ]
    .into_iter()
    .flatten()
    .collect::<String>();
    if global.json {
        let json = serde_json::json!({"name": p.name, "role": p.role.as_str(),
            "channels": p.channels, "locations": p.locations,
            "credential": p.credential_id, "expires_at_ms": p.expires_at_ms});
        println!("{json}");
    } else {
        println!(
            "{} role={}{} credential={} expires_at_ms={}",
            p.name, p.role, scope, p.credential_id, p.expires_at_ms
        );
    }
    Ok(Exit::Ok)
}

fn run_cases(global: &Global, files: &[PathBuf]) -> Result<Exit, Fail> {
    let mut cluster = if global.connect.is_empty() {
        None
    } else {
        Some(ClusterTarget::connect(client_config(global)?)?)
    };
    let mut failed = false;
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|error| Fail::ReadCase {
            path: file.clone(),
            error,
        })?;
        let name = file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let report = match &mut cluster {
            Some(target) => run_case(&name, &text, target, &options_for(&name)),
            None => run_case(
                &name,
                &text,
                &mut EngineTarget::default() as &mut dyn CaseTarget,
                &RunOptions::default(),
            ),
        };
        failed |= report.failure.is_some();
        println!("{report}");
    }
    Ok(if failed { Exit::Rejected } else { Exit::Ok })
}

#[cfg(test)]
mod tests;

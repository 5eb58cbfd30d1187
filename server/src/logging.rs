//! `stockd`'s log: `tracing` to stderr, filtered so that normal elections and peers that come
//! and go are not errors (SPEC section 6: "normal elections are not errors").
//!
//! openraft logs every failed RPC to a peer at ERROR (each heartbeat to a dead follower, ten
//! a second; each vote request to a dead voter), and its message flow during an election at
//! WARN (stale vote responses, "seen a higher vote", progress updates that failed). None of
//! these is a fault of the node that logs them: a peer being down is reported once, by
//! stockd's own network layer (`raft::network`: "node N does not answer", then "answers
//! again"). So:
//! - the default directives keep openraft's replication, engine and core at ERROR (their
//!   warnings are that message flow), the rest of openraft at WARN
//!   ([`crate::raft::quiet::OPENRAFT_DIRECTIVES`]);
//! - [`crate::raft::quiet::is_peer_rpc_failure`] drops openraft's ERROR events about a failed
//!   RPC to a peer, recognised by target and fields. Its other errors (storage errors, a core
//!   that quits, a failed state machine command) still log as errors.

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::raft::quiet::{is_peer_rpc_failure, OPENRAFT_DIRECTIVES};

/// The log directives when `RUST_LOG` is not set: `info`, quinn at `warn`, and openraft's
/// ([`OPENRAFT_DIRECTIVES`]).
pub fn default_directives() -> String {
    format!("info,quinn=warn,{OPENRAFT_DIRECTIVES}")
}

/// The log layer `stockd` writes: `filter` (from `RUST_LOG`, else [`default_directives`])
/// without [`is_peer_rpc_failure`] events, to `writer`.
pub fn layer<S, W>(filter: EnvFilter, writer: W, ansi: bool) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(filter)
        .with_filter(filter_fn(|event| !is_peer_rpc_failure(event)))
}

/// Installs `stockd`'s log for the process: stderr, `RUST_LOG` or [`default_directives`].
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_directives().into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(layer(filter, std::io::stderr, ansi))
        .init();
}

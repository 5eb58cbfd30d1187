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

use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::{Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

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
    // One filter, so that what `filter` never wants (openraft's and quinn's spans per message
    // and per packet) is never created: a second `with_filter` would be asked about every
    // callsite on its own and, with no level hint, enable them all in the registry.
    let mut quiet = filter_fn(|event| !is_peer_rpc_failure(event));
    if let Some(level) = Filter::<S>::max_level_hint(&filter) {
        quiet = quiet.with_max_level_hint(level);
    }
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(filter.and(quiet))
}

/// Installs `stockd`'s log for the process: stderr, `RUST_LOG` or [`default_directives`].
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_directives().into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(layer(filter, std::io::stderr, ansi))
        .init();
}

#[cfg(test)]
mod tests {
    use super::{default_directives, layer};
    use tracing::level_filters::LevelFilter;
    use tracing::Subscriber;
    use tracing_subscriber::filter::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;

    /// The subscriber `init` installs, writing nowhere.
    fn subscriber() -> impl Subscriber + Send + Sync {
        tracing_subscriber::registry().with(layer(
            EnvFilter::new(default_directives()),
            std::io::sink,
            false,
        ))
    }

    // openraft and quinn open a span per message and per packet at DEBUG and TRACE. If the log
    // cannot say up front that it never wants them, each is created, entered and closed in the
    // registry: a quarter of a node's CPU at 1,000 checkouts/s (docs/BENCHMARKS.md).
    #[test]
    fn the_log_says_up_front_it_wants_nothing_below_info() {
        let subscriber = subscriber();
        assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::INFO));
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::span_enabled!(target: "openraft::core", tracing::Level::DEBUG));
            assert!(
                !tracing::span_enabled!(target: "quinn_proto::connection", tracing::Level::TRACE)
            );
            assert!(!tracing::enabled!(target: "openraft::replication", tracing::Level::WARN));
            assert!(tracing::enabled!(target: "server::node", tracing::Level::INFO));
        });
    }
}

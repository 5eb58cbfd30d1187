//! Which of openraft's log events are not faults of the node that logs them (see
//! `crate::logging`): its warnings about the message flow of elections and replication, and
//! its errors about an RPC to a peer that failed. Kept here because it names openraft's
//! targets and fields (pinned at 0.9.25): an openraft upgrade checks this file, and
//! `server/tests/failover.rs` checks the real events.

use tracing::Metadata;

/// Log directives for openraft: its replication, engine and core only at ERROR (their
/// warnings are election and replication chatter: stale vote responses, "seen a higher
/// vote", failed progress updates), the rest at WARN.
pub const OPENRAFT_DIRECTIVES: &str =
    "openraft=warn,openraft::replication=error,openraft::engine=error,openraft::core::raft_core=error";

/// Whether `event` is one of openraft's errors about an RPC to a peer that failed or timed
/// out (the peer is down, restarting or cut off), which are not errors of this node:
/// - `openraft::replication`'s `RPCError` (field `err`): an AppendEntries or heartbeat that
///   failed; its storage errors carry `error` and stay;
/// - `openraft::core::raft_core`'s vote request that failed or timed out, and a leadership
///   check (linearizable read) that timed out on one peer (fields `error` and `target`).
pub fn is_peer_rpc_failure(event: &Metadata<'_>) -> bool {
    if *event.level() != tracing::Level::ERROR || !event.is_event() {
        return false;
    }
    let fields = event.fields();
    let has = |name: &str| fields.field(name).is_some();
    match event.target() {
        "openraft::replication" => has("err"),
        "openraft::core::raft_core" => has("error") && has("target") && fields.len() == 3,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::logging::{default_directives, layer};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::filter::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `emit` logs through stockd's layer with the default directives.
    fn logged(emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(layer(
            EnvFilter::new(default_directives()),
            move || writer.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    // The events below have the targets, levels and fields of openraft 0.9's (its
    // `replication/mod.rs` and `core/raft_core.rs`); `server/tests/failover.rs` checks the
    // real ones during leader kills.
    #[test]
    fn failed_rpcs_to_peers_and_election_chatter_are_not_logged() {
        let text = logged(|| {
            tracing::error!(target: "openraft::replication", err = "timeout after 100ms when AppendEntries 1->2", "RPCError");
            tracing::error!(target: "openraft::core::raft_core", error = "no answer from node 2", target = "2", "while requesting vote");
            tracing::error!(target: "openraft::core::raft_core", target = "2", error = "timeout", "timeout while confirming leadership for read request");
            tracing::warn!(target: "openraft::replication", error = "seen a higher vote", "error replication to target=3");
            tracing::warn!(target: "openraft::core::raft_core", "A message will be ignored because vote changed");
            tracing::warn!(target: "openraft::engine::handler::replication_handler", "heartbeat error");
        });
        assert_eq!(text, "");
    }

    #[test]
    fn real_faults_still_log_as_errors() {
        let text = logged(|| {
            tracing::error!(target: "openraft::replication", error = "disk full", "error replication to target=2");
            tracing::error!(target: "openraft::core::raft_core", error = "storage", "quit RaftCore::main on error");
            tracing::error!(target: "openraft::core::sm::worker", "state machine command failed");
            tracing::error!(target: "server::raft::log_store", "the log writer thread panicked");
            tracing::warn!(target: "openraft::progress::entry", "follower log is reverted");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[..4].iter().all(|l| l.contains("ERROR")), "{text}");
    }
}

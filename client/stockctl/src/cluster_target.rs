//! A live cluster as a [`CaseTarget`]: `stockctl case --connect ADDR FILE...`.
//!
//! The case runner is synchronous; this target owns a tokio runtime and blocks on the async
//! client (so it must not be used from inside another runtime). `concurrent N` lines are sent
//! as N separate frames at once, spread over the pooled streams; `advance` sleeps (or calls a
//! hook, for tests with a controllable clock); checks are linearizable reads.

use engine::{Answer, Outcome, Query, Rejection, Request};
use protocol::Consistency;

use crate::case::{CaseTarget, RunOptions, TargetError};
use client::{Client, ClientConfig};

/// Replaces the sleep of `advance` (e.g. to move a test node's clock).
pub type AdvanceHook = Box<dyn FnMut(u64) -> Result<(), TargetError> + Send>;

/// A live cluster reached through the client.
pub struct ClusterTarget {
    // Fields drop in order: the client closes its connections while the runtime still runs.
    client: Client,
    advance: Option<AdvanceHook>,
    runtime: tokio::runtime::Runtime,
}

impl ClusterTarget {
    /// Starts a runtime and connects. Fails inside another tokio runtime.
    pub fn connect(config: ClientConfig) -> Result<ClusterTarget, TargetError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(TargetError::NestedRuntime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let client = runtime.block_on(Client::connect(config))?;
        Ok(ClusterTarget {
            runtime,
            client,
            advance: None,
        })
    }

    /// Calls `hook` instead of sleeping on `advance`.
    pub fn on_advance(&mut self, hook: AdvanceHook) {
        self.advance = Some(hook);
    }

    /// The client, e.g. for extra checks between cases.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Blocks on a future in this target's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// Options for one case on a shared cluster: ids prefixed with `t<8 random hex>-<name>:`
/// (the name cut to 12 bytes of the id alphabet, so that prefixed ids stay within 64 bytes)
/// and a random request-id salt, so that cases do not collide and reruns are not replays.
pub fn options_for(case_name: &str) -> RunOptions {
    let name: String = case_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(12)
        .collect();
    RunOptions {
        namespace: format!("t{:08x}-{name}:", rand::random::<u32>()),
        salt: rand::random(),
    }
}

impl CaseTarget for ClusterTarget {
    fn submit(&mut self, requests: Vec<Request>) -> Result<Vec<Outcome>, TargetError> {
        let client = self.client.clone();
        self.runtime.block_on(async move {
            let calls: Vec<_> = requests
                .into_iter()
                .map(|request| {
                    let client = client.clone();
                    tokio::spawn(async move { client.write_with_id(request).await })
                })
                .collect();
            let mut outcomes = Vec::with_capacity(calls.len());
            for call in calls {
                outcomes.push(call.await??.outcome);
            }
            Ok(outcomes)
        })
    }

    fn advance(&mut self, ms: u64) -> Result<(), TargetError> {
        match &mut self.advance {
            Some(hook) => hook(ms),
            None => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            }
        }
    }

    fn query(&mut self, query: Query) -> Result<Result<Answer, Rejection>, TargetError> {
        let read = self.client.read(query, Consistency::Linearizable);
        Ok(self.runtime.block_on(read)?.answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_short_unique_and_valid() {
        let a = options_for("01-last-unit-concurrent-checkouts");
        let b = options_for("01-last-unit-concurrent-checkouts");
        assert_ne!(a.namespace, b.namespace);
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.namespace.len(), "t12345678-01-last-unit:".len());
        assert!(a.namespace.ends_with("-01-last-unit:"));
        assert!(engine::ids::is_valid_id(&a.namespace));
        let odd = options_for("weird name!é");
        assert!(odd.namespace.ends_with("-weirdname:"));
    }
}

//! Scenario cases: the line-oriented language of `../shared/cases/FORMAT.md`, run against any
//! [`CaseTarget`].
//!
//! A case is read and executed one line at a time, because converting display units to base
//! units needs the scales declared by earlier `sku` lines, and telling a group from a location
//! needs the earlier `group` lines. Every write line is one request (one batch against an
//! in-process engine); `concurrent N` submits N requests at once (one batch in-process, N
//! concurrent calls against a cluster). The words of a line (`SKU@LOC:QTY`, quantities,
//! durations) are read by [`crate::grammar`], like stockctl's arguments.
//!
//! Against a shared cluster, ids are prefixed with a per-run namespace ([`RunOptions::namespace`])
//! so that cases cannot see each other's SKUs, locations or orders; request ids are derived from
//! a per-run salt, so that a rerun is not a replay of an earlier run.
//!
//! Layout: [`run_case`] and the types here; `runner` reads and runs lines; `prepare` turns a
//! command line into a write; `check` runs `expect` lines; [`EngineTarget`] is the in-process
//! target (a live cluster is [`crate::cluster_target::ClusterTarget`]).

mod check;
mod engine_target;
mod prepare;
mod runner;

use std::fmt;
use std::path::{Path, PathBuf};

use engine::{Answer, Outcome, Query, Rejection, Request};

use crate::grammar::GrammarError;
pub use engine_target::EngineTarget;

/// Where a case runs: an in-process engine, or a live cluster through the client.
pub trait CaseTarget {
    /// Submits requests at once (one batch in-process; concurrent calls on a cluster) and
    /// returns one outcome per request, in order. A rejection is an outcome, not an error.
    fn submit(&mut self, requests: Vec<Request>) -> Result<Vec<Outcome>, TargetError>;
    /// Lets `ms` of time pass (moves the clock in-process; sleeps against a cluster).
    fn advance(&mut self, ms: u64) -> Result<(), TargetError>;
    /// A linearizable read as of now: the ledger's answer or rejection.
    fn query(&mut self, query: Query) -> Result<Result<Answer, Rejection>, TargetError>;
}

/// Why a target could not run a step (not a ledger rejection: those are outcomes).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The in-process ledger broke one of its invariants after a batch.
    #[error("ledger invariant broken: {0}")]
    Invariant(engine::InvariantViolation),
    /// The client got no final answer from the cluster.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// A concurrent write's task failed (panicked or was cancelled).
    #[error("write task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The cluster target's own runtime could not start.
    #[error("tokio runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// A cluster target was made inside a tokio runtime, where it cannot block.
    #[error("ClusterTarget cannot run inside a tokio runtime")]
    NestedRuntime,
    /// The target answered another number of outcomes than requests.
    #[error("{got} outcomes for {sent} requests")]
    Outcomes {
        /// Requests submitted.
        sent: usize,
        /// Outcomes returned.
        got: usize,
    },
}

/// Why a case line failed (shown as `line N: ...` in the case's report).
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A word does not fit the grammar (`SKU@LOC:QTY`, a duration, ...).
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    /// The target failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The first word is not a command of the case language.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A command lacks a word.
    #[error("{command} needs {what}")]
    Missing {
        /// The command.
        command: String,
        /// What it needs, for humans.
        what: &'static str,
    },
    /// A word is not one of those the language allows there.
    #[error("unknown {what} {text:?}")]
    Unknown {
        /// What kind of word (an outcome code, an order state, ...).
        what: &'static str,
        /// The word.
        text: String,
    },
    /// The check or the outcome differs from what the case expects.
    #[error("expected {want}, got {got}")]
    Mismatch {
        /// What the case expects.
        want: String,
        /// What the target said.
        got: String,
    },
    /// A query answered something other than what it asks for.
    #[error("unexpected answer {0}")]
    UnexpectedAnswer(String),
    /// A balance query was rejected.
    #[error("query rejected: {0}")]
    QueryRejected(Rejection),
}

/// How a case is run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Prefix of every SKU, location, group, reservation, order, RMA and transfer id (empty
    /// for a fresh engine; unique per run against a shared cluster).
    pub namespace: String,
    /// Mixed into every request id.
    pub salt: u128,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The case's name (file name without `.case`).
    pub name: String,
    /// `None` if it passed, else the first failure: `line N: expected X, got Y`.
    pub failure: Option<String>,
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            None => write!(f, "PASS {}", self.name),
            Some(why) => write!(f, "FAIL {}: {why}", self.name),
        }
    }
}

/// Runs the case text `text` named `name` against `target`, up to its first failing line.
pub fn run_case(
    name: &str,
    text: &str,
    target: &mut dyn CaseTarget,
    options: &RunOptions,
) -> CaseReport {
    let mut runner = runner::Runner::new(options);
    let failure = text.lines().enumerate().find_map(|(i, line)| {
        runner
            .run_line(target, line)
            .err()
            .map(|e| format!("line {}: {e}", i + 1))
    });
    CaseReport {
        name: name.to_owned(),
        failure,
    }
}

/// The case directories of a workspace at `root`: the shared cases (`$STOCKD_SHARED/cases`,
/// else `../shared/cases` next to the workspace), then the project's own (`tests/cases`).
pub fn case_dirs(root: &Path) -> [PathBuf; 2] {
    let shared = std::env::var_os("STOCKD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    [shared.join("cases"), root.join("tests/cases")]
}

/// The `.case` files of `dir`, sorted by name.
pub fn case_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "case") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &str) {
        let report = run_case(
            "t",
            text,
            &mut EngineTarget::default(),
            &RunOptions::default(),
        );
        assert_eq!(report.to_string(), expected);
    }

    #[test]
    fn reports_the_first_failing_line() {
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 5\nexpect A@wh1 on_hand=5 available=5",
            "PASS t",
        );
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 5\nexpect A@wh1 on_hand=4",
            "FAIL t: line 3: expected on_hand=4, got on_hand=5",
        );
        check(
            "location wh1 warehouse\nreserve r1 web A@wh1:1 ttl=1m",
            "FAIL t: line 2: expected ok, got insufficient_stock: A@wh1: requested 1, available 0",
        );
        check(
            "location wh1 warehouse\nbogus x",
            "FAIL t: line 2: unknown command \"bogus\"",
        );
    }

    #[test]
    fn malformed_lines_fail_instead_of_panicking() {
        check("=> ok", "FAIL t: line 1: unknown command \"\"");
        check(
            "order o1 ship",
            "FAIL t: line 1: order needs a channel and lines, or `from RES`",
        );
        check(
            "set_on_hand A@wh1",
            "FAIL t: line 1: set_on_hand needs a quantity",
        );
        check(
            "reserve r1 web A@wh1 ttl=1m",
            "FAIL t: line 1: \"A@wh1\": expected SKU@LOCATION:QTY",
        );
    }

    /// Ids may contain ':' (SPEC section 1), so `SKU@LOC:QTY` splits at the LAST ':', as
    /// stockctl reads the same line (both use `grammar`).
    #[test]
    fn ids_with_colons_read_like_stockctl() {
        check(
            "location eu:par warehouse\nset_on_hand A@eu:par 3\nreserve r web A@eu:par:2 ttl=1m\n\
             fulfil o A@eu:par:1 => not_found\nreturn m o A@eu:par:1:restock => not_found\n\
             expect A@eu:par reserved=2 available=1",
            "PASS t",
        );
    }

    #[test]
    fn too_many_decimals_is_invalid_locally() {
        check(
            "location wh1 warehouse\nsku C scale=2\nset_on_hand C@wh1 1\nreserve r web C@wh1:0.001 ttl=1m => invalid\nexpect C@wh1 available=1",
            "PASS t",
        );
    }

    #[test]
    fn concurrent_counts_must_match_exactly() {
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 2\nconcurrent 3 reserve r{i} web A@wh1:1 ttl=1m => ok:2 insufficient_stock:1",
            "PASS t",
        );
        check(
            "location wh1 warehouse\nset_on_hand A@wh1 2\nconcurrent 3 reserve r{i} web A@wh1:1 ttl=1m => ok:3",
            "FAIL t: line 3: expected ok:3, got ok:2 insufficient_stock:1",
        );
    }
}

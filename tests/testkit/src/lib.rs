//! # testkit: stockd clusters for tests, benches and the demo
//!
//! Everything that starts stockd nodes for a test lives here, once:
//! - [`Cluster`]: real nodes (`server::node::Node`: Raft, QUIC with TLS, the log on disk) in
//!   this process, on free loopback ports, with their data in a [`TempDir`]; stop, restart,
//!   isolate (fault injection) and add nodes.
//! - [`BackgroundCluster`]: a [`Cluster`] on a runtime thread of its own, for callers that
//!   are not async or that must measure their own runtime apart from the cluster's.
//! - [`ProcessCluster`]: real `stockd` processes (crash tests: SIGKILL, SIGSTOP, torn tails).
//! - One rule for "there is a leader" ([`leader_of`]) and one for "the replicas agree"
//!   ([`agreed`]), each polled by one loop that fails with a [`WaitTimeout`] naming what it
//!   waited for.
//!
//! Nothing outlives its owner: dropping a cluster stops its nodes (or kills its processes)
//! and removes its directory.

mod background;
mod cluster;
mod error;
mod faults;
mod fixtures;
mod process;
mod raw;
mod temp;
mod wait;

pub use background::BackgroundCluster;
pub use cluster::{fast_timings, Cluster, ClusterConfig};
pub use error::Error;
pub use faults::{cut_tail, TornTail};
pub use fixtures::{
    acknowledged_receipt, client, count, hold, on_hand, receipt, rss_bytes, warehouse,
};
pub use process::{ProcessCluster, ProcessConfig};
pub use raw::{RawConnection, RawError};
pub use temp::TempDir;
pub use wait::{agreed, leader_of, Awaited, Digest, WaitTimeout};

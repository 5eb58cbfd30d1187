//! # stockd load tests
//!
//! The load generator for stockd (`stockd-load`) and the real-data demo through a live
//! cluster. The real order data, its planner and the engine replay live in the `retail` crate
//! (`loadtests/retail`), which depends on the engine only.
//!
//! - [`mix`], [`pacing`], [`stats`]: the generator's pure parts: the workload's random choices
//!   (Zipf popularity, the checkout mix), open-loop pacing, and latency recording
//!   (HdrHistogram) with its summaries.
//! - [`target`]: the [`target::Target`] trait every system under test implements;
//!   [`stockd`]: stockd through the client library, and an in-process local cluster;
//!   [`stockd_http`]: stockd over HTTP/JSON;
//!   [`processes`]: the cluster as deployed, `stockd` processes; [`cluster`]: which of them
//!   (or an existing cluster) a command uses.
//! - [`scenario`]: `checkout`, `flash-sale`, `store-reads`; [`run`]: open and closed loops.
//! - [`drive`]: one scenario against one target, driven open, closed or searching for the
//!   maximum; [`soak`]: a fixed rate for long, with memory and the nodes' pauses per window;
//!   [`compare`]: every scenario against every target, in phases; [`demo`]: the
//!   real-data demo and the engine replay commands.
//! - `baseline_targets`, `baselines` (cargo feature `baselines`, on by default): the Redis and
//!   PostgreSQL baselines as targets.
//! - [`cli`]: the `stockd-load` command line (parsing and dispatch); [`streams`]: long-lived
//!   QUIC streams against a stream per request, on the raw protocol.
//! - [`report`]: text summary, JSON record, `.hgrm` files, SVG charts, the side-by-side table.
//! - [`retention`]: the cluster's retention settings, set before the load (`--retention-*`).
//! - [`cluster_replay`]: the retail replay's batches through the client against a live
//!   cluster (the `retail::LedgerSink` implementation), checked against the engine replay.

#[cfg(feature = "baselines")]
pub mod baseline_targets;
#[cfg(feature = "baselines")]
pub mod baselines;
pub mod cli;
pub mod cluster;
pub mod cluster_replay;
pub mod compare;
pub mod connect;
pub mod demo;
pub mod drive;
pub mod expiry_burst;
pub mod limited_sale;
pub mod mix;
pub mod outputs;
pub mod pacing;
pub mod processes;
pub mod report;
pub mod retention;
pub mod run;
pub mod scenario;
pub mod soak;
pub mod stats;
pub mod stockd;
pub mod stockd_http;
pub mod streams;
pub mod target;

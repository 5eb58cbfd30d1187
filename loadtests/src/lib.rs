//! # stockd load tests
//!
//! Load generators for stockd (`stockd-load`), and the real-data demo.
//!
//! - [`mix`], [`pacing`], [`stats`]: the generator's pure parts: the workload's random choices
//!   (Zipf popularity, the checkout mix), open-loop pacing, and latency recording
//!   (HdrHistogram) with its summaries.
//! - [`target`]: the [`target::Target`] trait every system under test implements;
//!   [`stockd`]: stockd through the client library, and an in-process local cluster.
//! - [`scenario`]: `checkout`, `flash-sale`, `store-reads`; [`run`]: open and closed loops.
//! - [`baseline_targets`]: the Redis and PostgreSQL baselines ([`baselines`]) as targets.
//! - [`cli`]: the `stockd-load` command line; [`streams`]: long-lived QUIC streams against a
//!   stream per request, on the raw protocol.
//! - [`report`]: text summary, JSON record, `.hgrm` files, SVG charts, the side-by-side table.
//! - [`retail`]: a replay of real order data (Online Retail II, ~503k order lines of a UK
//!   online gift retailer, Dec 2009 - Nov 2010) through the engine: CSV -> events -> batches
//!   of engine requests -> a backend; [`cluster_replay`]: the same batches through the client
//!   against a live cluster, checked against the engine replay (the demo).

pub mod baseline_targets;
pub mod baselines;
pub mod cli;
pub mod cluster_replay;
pub mod mix;
pub mod pacing;
pub mod report;
pub mod retail;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod stockd;
pub mod streams;
pub mod target;

//! # stockd server
//!
//! A node: the engine replicated with Raft and served over QUIC.
//!
//! # Layout
//! - [`raft`]: everything openraft: the state machine (decode + delegate to the engine), the log
//!   store on disk, the QUIC network between nodes, elections, the proposer (write batching,
//!   deadline ticks, the linearizable read barrier) and membership (`init`, `add-node`,
//!   `remove-node`).
//! - [`auth`]: who may do what (SPEC section 7), decided before the proposer.
//! - [`clock`]: the leader's clock (with a test-only offset).
//! - [`accept`]: connection bounds and the identity each ALPN requires.
//! - [`api`]: client streams, frames and operations.
//! - [`replies`]: the budgets of replies queued for clients (per stream, connection, node and
//!   subscriber) and the watchdog that closes connections that do not read.
//! - [`node`]: a node's lifecycle (TLS, storage, Raft, endpoint).
//! - [`config`]: command line and TOML configuration; the embedded default and `dev` clusters.
//! - [`metrics`]: the node's Prometheus registry (`/metrics`): requests, batching, apply and
//!   snapshot times, Raft position, queues, connections, denials.
//! - [`logging`]: the log, where normal elections are not errors.

pub mod accept;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod hops;
pub mod http;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod replies;

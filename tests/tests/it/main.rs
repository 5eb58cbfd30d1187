//! Cluster tests: real nodes on loopback (see [`testkit::Cluster`]).
//! One integration-test binary for the crate; one module per concern.

mod budget;
mod cases;
mod deadlines;
mod failover;
mod feed;
mod http;
mod membership;
mod memory;
mod observability;
mod partition;
mod protocol_errors;
mod restart;
mod retention;
mod security;
mod snapshot;
mod store_page;

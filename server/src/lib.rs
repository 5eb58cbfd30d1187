//! # stockd server
//!
//! A node: the engine replicated with Raft and served over QUIC.
//!
//! # Layout
//! - [`raft`]: openraft's types, the state machine (decode + delegate to the engine), the log
//!   store on disk and the QUIC network between nodes.

pub mod raft;

//! # stockd client
//!
//! The async client library of stockd (SPEC section 6). `stockctl` (the operators' CLI) and the
//! scenario-case runner are the `stockctl` crate (client/stockctl), so that a library user does
//! not compile clap or serde_json.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! use client::{Client, ClientConfig};
//! use pki::{load_certs, Trust};
//!
//! let ca = load_certs("stockd-data/ca.pem".as_ref())
//!     .map_err(|e| client::ClientError::Config(e.to_string()))?;
//! let config = ClientConfig::new(vec!["127.0.0.1:7400".into()], Trust::Ca(ca));
//! let client = Client::connect(config).await?;
//! let status = client.status().await;
//! # let _ = status;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`api`]: [`Client`] — leader discovery, retries with the same request id, a pool of QUIC
//!   connections with several pipelined streams each; [`Subscription`] for the change feed.
//! - [`retry`]: the retry policy, a pure function of the failure, the attempt and the time.
//! - [`error`]: [`ClientError`]; ledger rejections are outcomes, not errors.
//! - `channel`, `pool` (private): one stream with its writer and reader tasks and the pending
//!   frames by id; the connections per node.

pub mod api;
mod channel;
pub mod error;
mod pool;
pub mod retry;

pub use api::{
    new_request_id, Client, ClientConfig, Digest, NodeReport, ReadResult, Subscription, WriteResult,
};
pub use error::ClientError;

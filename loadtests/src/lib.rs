//! # stockd load tests
//!
//! Load generators for stockd.
//!
//! - [`retail`]: a replay of real order data (Online Retail II, ~503k order lines of a UK
//!   online gift retailer, Dec 2009 - Nov 2010) through the engine: CSV -> events -> batches
//!   of engine requests -> a backend. The `stockd-load replay` binary runs it in process and
//!   prints a summary.

pub mod baselines;
pub mod retail;

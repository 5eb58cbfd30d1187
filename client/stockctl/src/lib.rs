//! # stockctl
//!
//! The operators' CLI of stockd and the scenario-case runner, over the `client` library.
//!
//! # Layout
//! - [`grammar`]: the ONE text grammar of command-line words and case lines (`SKU@LOC:QTY`
//!   lines split at the last `:`, display quantities, durations, ...), shared by the CLI and
//!   the case runner.
//! - [`case`]: the scenario-case language of `../shared/cases/FORMAT.md`: a runner that drives
//!   any [`case::CaseTarget`] (an in-process engine: [`case::EngineTarget`]);
//!   [`cluster_target`]: a live cluster as a target.
//! - [`cli`]: `stockctl`'s commands (the binary in src/main.rs only calls [`cli::main`]).

pub mod case;
pub mod cli;
pub mod cluster_target;
pub mod grammar;

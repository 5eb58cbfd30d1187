//! # stockd client
//!
//! # Layout
//! - [`case`]: the scenario-case language of `../shared/cases/FORMAT.md`: a parser and a runner
//!   that drives any [`case::CaseTarget`] (an in-process engine here; a live cluster through
//!   the client later) and reports `PASS name` / `FAIL name: line N: expected X, got Y`.
//! - `stockctl` (src/bin): the operators' CLI.

pub mod case;

//! # stockd engine
//!
//! The ledger of stock per SKU and location, as a pure, deterministic state machine
//! (SPEC sections 1-4). No IO, no clock, no randomness: the server wraps it with Raft and QUIC;
//! tests drive it directly.
//!
//! # Layout
//! - [`limits`]: every limit, in one place.
//! - [`ids`], [`units`]: identifiers and display/base unit conversion.
//! - [`command`]: writes ([`Request`], [`Command`]); [`outcome`]: their results ([`Reply`],
//!   [`Rejection`] with a stable [`Code`]).
//! - [`query`]: reads ([`Query`], [`Answer`]) and the views they return.
//! - [`Ledger`]: the state; `apply` for batches of writes, `query` for reads, `snapshot` /
//!   `restore` for Raft snapshots.
//!
//! # Calling order
//! 1. [`Ledger::apply`] with a [`BatchHeader`] (strictly increasing log index, the leader's
//!    timestamp) and up to [`limits::BATCH_REQUESTS_MAX`] requests: one outcome each.
//! 2. [`Ledger::query`] at any time with the reader's clock: deadlines that passed since the
//!    last batch are already taken into account.
//! 3. [`Ledger::snapshot`] / [`Ledger::restore`]: byte-identical on every replica;
//!    [`Ledger::freeze`] takes a [`Frozen`] view whose `encode()` gives the same bytes on
//!    another thread while batches go on.

mod ahead;
pub mod balance;
pub mod command;
mod deadlines;
mod exchange;
mod fifo;
mod holds;
pub mod ids;
mod kits;
mod ledger;
pub mod limits;
mod orders;
pub mod outcome;
mod pages;
mod prefetch;
mod probe;
mod purchase;
pub mod query;
mod retention;
mod returns;
mod search;
mod shard_map;
mod sku_order;
mod slab;
mod snapshot;
mod sourcing;
mod state;
mod stock;
#[cfg(test)]
mod test_fixtures;
pub mod units;
mod view;
mod view_kits;

pub mod access;

pub use access::{
    Author, Authors, Credentials, Revocation, RevokedView, TokenDef, TokenGrant, AUTHORS_MAX,
    REVOKED_MAX, TOKENS_MAX,
};
pub use balance::Balance;
pub use command::{
    Command, Coordinates, Disposition, Exchange, Fulfilment, KitComponent, Line, LocatedLine,
    LocationDef, LocationKind, OrderSource, Request, ReturnLine, Target,
};
pub use ids::{
    ChannelId, CustomerId, GroupId, LocationId, LocationName, OrderId, Reason, RequestId,
    ReservationId, RmaId, SkuId, TransferId,
};
pub use ledger::{BatchHeader, Config, Ledger};
pub use outcome::{
    code_of, Allocation, Allocations, Code, InvalidReason, ObjectKind, Outcome, Rejection, Reply,
};
pub use query::{Answer, Query};
pub use snapshot::{Frozen, InvariantViolation, SnapshotError, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};

//! Who may do what (SPEC section 7): the one place where a principal's request is allowed or
//! refused, before it reaches the proposer or the ledger.
//!
//! [`authorize`] is a pure function of (principal, operation). Most operations are decided by
//! what they name: a reservation's channel, the locations of a stock write. A few name only an
//! object (extend or release a hold, cancel or pick up an order, receive a transfer): for those
//! it answers [`Access::Lookup`], and [`check_lookup`] decides from the object as the ledger
//! holds it (its channel, or the locations it touches), again a pure function of its inputs.
//! An object that does not exist is allowed through: the engine answers `not_found` as it
//! would to anyone allowed to write.
//!
//! Scope rules, per role:
//! - `reader`: queries (including the store page's SKU search and pickups due, at any
//!   location: reads are not scoped), the change feed, status and digests; no write.
//! - `checkout`: reader + `reserve`, `extend`, `release` and `place_order` whose channel (the
//!   request's, or the hold's) is one of its channels.
//! - `store`: reader + stock writes, `sell`, holds and orders on channel `pos`, fulfilment,
//!   cancellation, reallocation, pickups, returns and transfers, where every location the write
//!   names or touches is one of its locations (a group or `all` is refused: the engine could
//!   source elsewhere). A transfer is the two ends' joint work: the sending store ships
//!   (`from` is its own), the receiving store receives (`to` is its own).
//! - `ops`: every ledger write but credentials and retention settings. `admin`: ops +
//!   membership, credentials and retention settings (`set_retention`: how much the cluster
//!   keeps, so how much memory every node needs, is the cluster's configuration).

pub mod access;
pub mod credentials;
pub mod forbidden;

pub use credentials::{credential_ends, standing, CredentialCopy};
pub use forbidden::{Forbidden, ForbiddenReason};

use engine::{Answer, ChannelId, Command, Ledger, LocationId, OrderId, OrderSource, Query};
use engine::{ReservationId, Target, TransferId};
use pki::{ClientRole, Principal};
use protocol::Op;

/// The channel of counter sales: the only one a `store` identity sells on.
pub const STORE_CHANNEL: &str = "pos";

/// Whether an operation may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// It may.
    Allowed,
    /// It may not, and why.
    Denied(Forbidden),
    /// It may if the named object passes [`check_lookup`].
    Lookup(Lookup),
}

/// An object whose facts decide an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The hold's channel must be one of the principal's (checkout).
    HoldChannel(ReservationId),
    /// The hold's locations must all be the principal's (store).
    HoldLocations(ReservationId),
    /// The order's locations must all be the principal's (store).
    OrderLocations(OrderId),
    /// The transfer's destination must be the principal's (store).
    TransferTo(TransferId),
}

fn denied(p: &Principal, reason: ForbiddenReason) -> Access {
    Access::Denied(Forbidden::new(p, reason))
}

/// Decides an operation from what it names (module documentation).
pub fn authorize(p: &Principal, op: &Op) -> Access {
    match op {
        Op::Read { .. }
        | Op::Status
        | Op::Digest
        | Op::Subscribe { .. }
        | Op::SubscribeAt { .. } => Access::Allowed,
        Op::Admin(_) if p.role == ClientRole::Admin => Access::Allowed,
        Op::Admin(_) => denied(p, ForbiddenReason::Membership),
        Op::Write(request) => match p.role {
            ClientRole::Admin => Access::Allowed,
            ClientRole::Ops
                if matches!(
                    request.command,
                    Command::RevokeCredential { .. } | Command::CreateToken(_)
                ) =>
            {
                denied(p, ForbiddenReason::Credentials)
            }
            ClientRole::Ops if matches!(request.command, Command::SetRetention(_)) => {
                denied(p, ForbiddenReason::Retention)
            }
            ClientRole::Ops => Access::Allowed,
            ClientRole::Reader => denied(p, ForbiddenReason::Write),
            ClientRole::Checkout => checkout(p, &request.command),
            ClientRole::Store => store(p, &request.command),
        },
    }
}

fn checkout(p: &Principal, command: &Command) -> Access {
    let channel = |c: &ChannelId| {
        if p.sells_on(c.as_str()) {
            Access::Allowed
        } else {
            denied(p, ForbiddenReason::Channel(c.0.to_string()))
        }
    };
    match command {
        Command::Reserve { channel: c, .. } => channel(c),
        Command::PlaceOrder {
            source: OrderSource::Lines { channel: c, .. },
            ..
        } => channel(c),
        Command::PlaceOrder {
            source: OrderSource::Reservation(id),
            ..
        }
        | Command::Extend {
            reservation: id, ..
        }
        | Command::Release { reservation: id } => Access::Lookup(Lookup::HoldChannel(id.clone())),
        // A customer's reserve or place_order: decided as the write it wraps (one level: the
        // engine refuses anything deeper).
        Command::AsCustomer { command, .. } if !matches!(**command, Command::AsCustomer { .. }) => {
            checkout(p, command)
        }
        // An exchange is a return too, which checkout does not do (SPEC section 7).
        other => denied(p, ForbiddenReason::Operation(other.name())),
    }
}

fn store(p: &Principal, command: &Command) -> Access {
    let own = |l: &LocationId| p.acts_at(l.as_str());
    let at = |locations: &[&LocationId]| match locations.iter().find(|l| !own(l)) {
        None => Access::Allowed,
        Some(l) => denied(p, ForbiddenReason::Location(l.0.to_string())),
    };
    let sale = |c: &ChannelId, targets: Vec<&Target>| {
        if c.0 != STORE_CHANNEL {
            return denied(p, ForbiddenReason::StoreChannel(c.0.to_string()));
        }
        let mut located = Vec::new();
        for target in targets {
            match target {
                Target::Location(l) => located.push(l),
                Target::Group(_) | Target::All => return denied(p, ForbiddenReason::GroupSource),
            }
        }
        at(&located)
    };
    match command {
        Command::SetOnHand { location, .. }
        | Command::Adjust { location, .. }
        | Command::SetSafetyStock { location, .. }
        | Command::MarkUnavailable { location, .. }
        | Command::RestoreUnavailable { location, .. }
        | Command::Sell { location, .. } => at(&[location]),
        Command::Reserve { channel, lines, .. }
        | Command::PlaceOrder {
            source: OrderSource::Lines { channel, lines },
            ..
        } => sale(channel, lines.iter().map(|l| &l.target).collect()),
        Command::PlaceOrder {
            source: OrderSource::Reservation(id),
            ..
        }
        | Command::Extend {
            reservation: id, ..
        }
        | Command::Release { reservation: id } => Access::Lookup(Lookup::HoldLocations(id.clone())),
        Command::Fulfil { lines, .. }
        | Command::Cancel {
            lines: Some(lines), ..
        } => at(&lines.iter().map(|l| &l.location).collect::<Vec<_>>()),
        Command::Cancel { order, lines: None }
        | Command::ReadyForPickup { order }
        | Command::PickedUp { order } => Access::Lookup(Lookup::OrderLocations(order.clone())),
        Command::Reallocate { from, to, .. } => at(&[from, to]),
        Command::Return { lines, .. } => {
            at(&lines.iter().map(|l| &l.received_at).collect::<Vec<_>>())
        }
        Command::ShipTransfer { from, .. } => at(&[from]),
        Command::ReceiveTransfer { transfer, .. } => {
            Access::Lookup(Lookup::TransferTo(transfer.clone()))
        }
        Command::AsCustomer { command, .. } if !matches!(**command, Command::AsCustomer { .. }) => {
            store(p, command)
        }
        Command::Exchange(x) => store_exchange(p, x),
        other => denied(p, ForbiddenReason::Operation(other.name())),
    }
}

/// An exchange for a store: a return and a direct order, decided as those two writes (both
/// must be the store's own: received at its locations, sold on `pos` there).
fn store_exchange(p: &Principal, x: &engine::Exchange) -> Access {
    let halves = x.halves();
    match store(p, &halves.0) {
        Access::Allowed => store(p, &halves.1),
        refused => refused,
    }
}

/// Decides one operation of `p` at `now_ms`: a credential that no longer stands (expired,
/// or on the deny list: `credentials`, the node's lock-free copy of the ledger's, so every
/// node refuses it once it applied the revocation) is refused first, then [`authorize`], then
/// [`check_lookup`] if the operation names only an object: the one case that read-locks
/// `ledger`, for the lookup only.
pub fn decide(
    p: &Principal,
    op: &Op,
    credentials: &CredentialCopy,
    ledger: &crate::raft::ledger_lock::LedgerLock,
    now_ms: u64,
) -> Result<(), Forbidden> {
    standing(p, &credentials.load(), now_ms)?;
    match authorize(p, op) {
        Access::Allowed => Ok(()),
        Access::Denied(forbidden) => Err(forbidden),
        Access::Lookup(lookup) => {
            let ledger = ledger
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            check_lookup(p, &lookup, &ledger, now_ms)
        }
    }
}

/// Decides a [`Lookup`] from the ledger as of `now_ms`. An object the ledger does not hold is
/// allowed through (the engine answers `not_found`).
pub fn check_lookup(
    p: &Principal,
    lookup: &Lookup,
    ledger: &Ledger,
    now_ms: u64,
) -> Result<(), Forbidden> {
    let own_location = |l: &LocationId| p.acts_at(l.as_str());
    let refuse = |reason| Err(Forbidden::new(p, reason));
    let answer = |query: Query| ledger.query(&query, now_ms).ok();
    match lookup {
        Lookup::HoldChannel(id) => match answer(Query::Reservation(id.clone())) {
            Some(Answer::Reservation(hold)) if !p.sells_on(hold.channel.as_str()) => {
                refuse(ForbiddenReason::HoldChannel(hold.channel.0.into_string()))
            }
            _ => Ok(()),
        },
        Lookup::HoldLocations(id) => match answer(Query::Reservation(id.clone())) {
            Some(Answer::Reservation(hold)) => {
                match hold.lines.into_iter().find(|l| !own_location(&l.location)) {
                    Some(line) => {
                        refuse(ForbiddenReason::HoldLocation(line.location.0.into_string()))
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        },
        Lookup::OrderLocations(id) => match answer(Query::Order(id.clone())) {
            Some(Answer::Order(order)) => {
                match order.lines.into_iter().find(|l| !own_location(&l.location)) {
                    Some(line) => refuse(ForbiddenReason::OrderLocation(
                        line.location.0.into_string(),
                    )),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        },
        Lookup::TransferTo(id) => match answer(Query::Transfer(id.clone())) {
            Some(Answer::Transfer(t)) if !own_location(&t.to) => {
                refuse(ForbiddenReason::TransferTo(t.to.0.into_string()))
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests;

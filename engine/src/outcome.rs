//! Results of writes: a [`Reply`] or a typed [`Rejection`] with a stable [`Code`]
//! (SPEC section 3: "Rejections are typed results with a stable code ... never panics"; the codes
//! are those of `../shared/cases/FORMAT.md`).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::balance::Balance;
use crate::ids::{ChannelId, LocationId, LocationName, SkuId};

/// The result of one write.
pub type Outcome = Result<Reply, Rejection>;

/// Where one line's units were taken (sourcing result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Index of the request line (0-based) these units serve. A line sourced from a group may
    /// be split across several locations: one allocation each.
    pub line: u16,
    /// The chosen location (the ledger's shared copy of its id: no allocation per reply).
    pub location: LocationName,
    /// Base units taken there.
    pub qty: i64,
}

/// The allocations of a reply, one per (line, location), in line order. Inline for one
/// allocation (a one-line checkout at a location: no heap allocation); serialized as a
/// sequence, exactly as a `Vec<Allocation>`.
pub type Allocations = smallvec::SmallVec<[Allocation; 1]>;

/// A successful write's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done; nothing to report.
    Done,
    /// A stock write (count, adjust, safety stock, unavailable, sale): the balance after it.
    Balance(Balance),
    /// A hold was granted.
    Reserved {
        /// Deadline, ms since the epoch (batch timestamp + ttl).
        expires_at_ms: u64,
        /// The location and quantity chosen for every line.
        allocations: Allocations,
    },
    /// A hold was extended.
    Extended {
        /// New deadline, ms since the epoch.
        expires_at_ms: u64,
    },
    /// An order was placed.
    OrderPlaced {
        /// The location and quantity allocated for every line.
        allocations: Allocations,
        /// Collection deadline of a pickup order, ms since the epoch.
        pickup_deadline_ms: Option<u64>,
    },
    /// A transfer was received.
    TransferReceived {
        /// Units lost in transit (shipped - received - damaged).
        lost: i64,
    },
}

/// The stable code of a rejection (FORMAT.md, "Outcome codes"). The names are part of the
/// protocol and of the case files: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Code {
    /// `ok`: done.
    Ok,
    /// `insufficient_stock`: not enough ATS (or on_hand) for the request.
    InsufficientStock,
    /// `expired`: the reservation or pickup deadline has passed.
    Expired,
    /// `not_found`: no such reservation, order, RMA, transfer or location.
    NotFound,
    /// `invalid_state`: the object's state forbids this.
    InvalidState,
    /// `conflict`: the compare-and-set expectation did not match.
    Conflict,
    /// `invalid`: a malformed request or an exceeded limit.
    Invalid,
    /// `over_fulfil`: more than the unfulfilled quantity of that line.
    OverFulfil,
    /// `over_return`: more than fulfilled minus already returned.
    OverReturn,
    /// `nothing_to_cancel`: no unfulfilled units left to cancel.
    NothingToCancel,
    /// `channel_not_allowed`: the location does not sell to that channel.
    ChannelNotAllowed,
    /// `already_exists`: an id reused by a different request.
    AlreadyExists,
    /// `limit_exceeded`: a customer's purchase limit for a SKU would be passed.
    LimitExceeded,
}

impl Code {
    /// Every code, in declaration order.
    pub const ALL: [Code; 13] = [
        Code::Ok,
        Code::InsufficientStock,
        Code::Expired,
        Code::NotFound,
        Code::InvalidState,
        Code::Conflict,
        Code::Invalid,
        Code::OverFulfil,
        Code::OverReturn,
        Code::NothingToCancel,
        Code::ChannelNotAllowed,
        Code::AlreadyExists,
        Code::LimitExceeded,
    ];

    /// The code's stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::InsufficientStock => "insufficient_stock",
            Code::Expired => "expired",
            Code::NotFound => "not_found",
            Code::InvalidState => "invalid_state",
            Code::Conflict => "conflict",
            Code::Invalid => "invalid",
            Code::OverFulfil => "over_fulfil",
            Code::OverReturn => "over_return",
            Code::NothingToCancel => "nothing_to_cancel",
            Code::ChannelNotAllowed => "channel_not_allowed",
            Code::AlreadyExists => "already_exists",
            Code::LimitExceeded => "limit_exceeded",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of object a rejection is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    /// A SKU.
    Sku,
    /// A location.
    Location,
    /// A location group.
    Group,
    /// A reservation.
    Reservation,
    /// An order.
    Order,
    /// A return (RMA).
    Rma,
    /// A transfer.
    Transfer,
    /// A bearer token (HTTP).
    Token,
    /// A kit (a SKU made of components).
    Kit,
}

impl ObjectKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Sku => "sku",
            ObjectKind::Location => "location",
            ObjectKind::Group => "group",
            ObjectKind::Reservation => "reservation",
            ObjectKind::Order => "order",
            ObjectKind::Rma => "rma",
            ObjectKind::Transfer => "transfer",
            ObjectKind::Token => "token",
            ObjectKind::Kit => "kit",
        }
    }
}

/// Why a request was `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvalidReason {
    /// The request id is zero.
    ZeroRequestId,
    /// An id is empty, too long or has a character outside `[A-Za-z0-9._:/-]`.
    BadId {
        /// Which id (`sku`, `location`, ...).
        field: String,
    },
    /// A quantity that must be > 0 is not.
    QtyNotPositive,
    /// A quantity that must be >= 0 is negative.
    QtyNegative,
    /// A quantity, or a field it would produce, exceeds `QTY_MAX`.
    QtyTooLarge,
    /// A request with no lines.
    NoLines,
    /// A TTL or deadline of zero or above its maximum.
    BadDuration,
    /// A scale above 6.
    BadScale,
    /// Coordinates out of range.
    BadCoordinates,
    /// A named limit of `engine::limits` was exceeded.
    LimitExceeded {
        /// The limit's name, e.g. `LINES_PER_REQUEST_MAX`.
        limit: String,
    },
    /// Pickup at a location that does not offer it.
    PickupNotOffered {
        /// The location.
        location: LocationId,
    },
    /// An order without pickup lines was asked about pickup.
    NotAPickupOrder,
    /// A transfer or reallocation from a location to itself.
    SameLocation,
    /// A group lists a location twice.
    DuplicateLocation,
    /// An id that names something else: a group named like a location or `all`.
    NameTaken,
    /// received + damaged exceeds what the transfer shipped.
    OverReceived {
        /// Units shipped.
        shipped: i64,
    },
    /// A stock write, counter sale, transfer or reallocation names a kit, which has no stock
    /// of its own (a counter sale of a bundle is a POS order).
    KitHasNoStock {
        /// The kit.
        sku: SkuId,
    },
    /// A kit definition that nests kits: a component that is a kit, a kit naming itself, or a
    /// SKU that a kit's current definition names becoming a kit.
    KitNesting {
        /// The offending SKU.
        sku: SkuId,
    },
    /// A kit definition naming a component twice.
    DuplicateComponent {
        /// The component.
        sku: SkuId,
    },
    /// A kit must be counted in whole units: its SKU is declared with another scale.
    KitScale {
        /// The kit.
        sku: SkuId,
    },
    /// A line without a customer on a SKU whose purchase limit is strict.
    CustomerRequired {
        /// The SKU.
        sku: SkuId,
    },
    /// Only `reserve` and a direct `place_order` may be made for a customer.
    NotForCustomer,
    /// A retention setting outside its range: `min` is its `_MIN` constant, `max` its
    /// `_DEFAULT` constant in `engine::limits` (ms for the `_ms` fields, entries for the others).
    RetentionOutOfRange {
        /// The setting, as [`crate::Config`] names it (`retired_entries`, `dedup_window_ms`...).
        field: String,
        /// Smallest value allowed.
        min: u64,
        /// Largest value allowed.
        max: u64,
    },
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::ZeroRequestId => f.write_str("request id must not be zero"),
            InvalidReason::BadId { field } => {
                write!(f, "bad {field} id: 1..=64 bytes of [A-Za-z0-9._:/-]")
            }
            InvalidReason::QtyNotPositive => f.write_str("quantity must be > 0"),
            InvalidReason::QtyNegative => f.write_str("quantity must be >= 0"),
            InvalidReason::QtyTooLarge => f.write_str("quantity above QTY_MAX"),
            InvalidReason::NoLines => f.write_str("request has no lines"),
            InvalidReason::BadDuration => f.write_str("duration out of range"),
            InvalidReason::BadScale => f.write_str("scale must be 0..=6"),
            InvalidReason::BadCoordinates => f.write_str("coordinates out of range"),
            InvalidReason::LimitExceeded { limit } => write!(f, "limit {limit} exceeded"),
            InvalidReason::PickupNotOffered { location } => {
                write!(f, "location {location} does not offer pickup")
            }
            InvalidReason::NotAPickupOrder => f.write_str("order has no pickup lines"),
            InvalidReason::SameLocation => f.write_str("source and target are the same"),
            InvalidReason::DuplicateLocation => f.write_str("location listed twice"),
            InvalidReason::NameTaken => f.write_str("id already names a location or `all`"),
            InvalidReason::OverReceived { shipped } => {
                write!(f, "received + damaged exceeds the {shipped} units shipped")
            }
            InvalidReason::KitHasNoStock { sku } => write!(f, "{sku} is a kit: it has no stock"),
            InvalidReason::KitNesting { sku } => write!(f, "kits do not nest ({sku})"),
            InvalidReason::DuplicateComponent { sku } => write!(f, "component {sku} named twice"),
            InvalidReason::KitScale { sku } => write!(f, "kit {sku} must have scale 0"),
            InvalidReason::CustomerRequired { sku } => {
                write!(
                    f,
                    "{sku} has a strict purchase limit: a customer is required"
                )
            }
            InvalidReason::NotForCustomer => {
                f.write_str("only reserve and a direct place_order take a customer")
            }
            InvalidReason::RetentionOutOfRange { field, min, max } => {
                write!(f, "retention {field} must be {min}..={max}")
            }
        }
    }
}

/// A typed rejection: the write changed nothing (SPEC section 3: all-or-nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// Not enough stock where it was asked for.
    InsufficientStock {
        /// The SKU.
        sku: SkuId,
        /// The location, group or `all` that was asked.
        at: String,
        /// Units asked for (summed over the request's lines for the same SKU and location).
        requested: i64,
        /// Units that were available (the ATS seen, or on_hand for an adjust).
        available: i64,
    },
    /// The reservation's hold or the order's pickup deadline has passed.
    Expired {
        /// Which kind of object.
        kind: ObjectKind,
    },
    /// No such object.
    NotFound {
        /// Which kind of object.
        kind: ObjectKind,
        /// Its id.
        id: String,
    },
    /// The object exists but its state forbids this.
    InvalidState {
        /// Which kind of object.
        kind: ObjectKind,
        /// Its state (`released`, `placed`, `received`...).
        state: String,
    },
    /// A compare-and-set count did not match.
    Conflict {
        /// The on_hand found.
        actual: i64,
    },
    /// A malformed request.
    Invalid {
        /// Why.
        reason: InvalidReason,
    },
    /// More than the unfulfilled quantity of an order line.
    OverFulfil {
        /// The SKU.
        sku: SkuId,
        /// The location.
        location: LocationId,
        /// Units still unfulfilled there.
        unfulfilled: i64,
    },
    /// More than fulfilled minus already returned, for that order and SKU.
    OverReturn {
        /// The SKU.
        sku: SkuId,
        /// Units that may still be returned.
        returnable: i64,
    },
    /// No unfulfilled units (or fewer than asked) to cancel.
    NothingToCancel {
        /// Units that could be cancelled (of the line asked, or of the whole order).
        cancellable: i64,
    },
    /// The location does not sell to that channel.
    ChannelNotAllowed {
        /// The location.
        location: LocationId,
        /// The channel.
        channel: ChannelId,
    },
    /// The id is taken by an earlier request.
    AlreadyExists {
        /// Which kind of object.
        kind: ObjectKind,
        /// Its id.
        id: String,
    },
    /// The customer's purchase limit for the SKU would be passed.
    LimitExceeded {
        /// The limited SKU.
        sku: SkuId,
        /// Units the customer may still hold or buy now (never below 0).
        allowed: i64,
    },
}

impl Rejection {
    /// The stable code.
    pub fn code(&self) -> Code {
        match self {
            Rejection::InsufficientStock { .. } => Code::InsufficientStock,
            Rejection::Expired { .. } => Code::Expired,
            Rejection::NotFound { .. } => Code::NotFound,
            Rejection::InvalidState { .. } => Code::InvalidState,
            Rejection::Conflict { .. } => Code::Conflict,
            Rejection::Invalid { .. } => Code::Invalid,
            Rejection::OverFulfil { .. } => Code::OverFulfil,
            Rejection::OverReturn { .. } => Code::OverReturn,
            Rejection::NothingToCancel { .. } => Code::NothingToCancel,
            Rejection::ChannelNotAllowed { .. } => Code::ChannelNotAllowed,
            Rejection::AlreadyExists { .. } => Code::AlreadyExists,
            Rejection::LimitExceeded { .. } => Code::LimitExceeded,
        }
    }

    /// Shorthand for an `invalid` rejection.
    pub fn invalid(reason: InvalidReason) -> Self {
        Rejection::Invalid { reason }
    }

    /// Shorthand for `invalid` naming an exceeded limit.
    pub fn limit(limit: &str) -> Self {
        Rejection::Invalid {
            reason: InvalidReason::LimitExceeded {
                limit: limit.to_owned(),
            },
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.code())?;
        match self {
            Rejection::InsufficientStock {
                sku,
                at,
                requested,
                available,
            } => {
                write!(
                    f,
                    "{sku}@{at}: requested {requested}, available {available}"
                )
            }
            Rejection::Expired { kind } => write!(f, "{} deadline has passed", kind.as_str()),
            Rejection::NotFound { kind, id } => write!(f, "no {} {id}", kind.as_str()),
            Rejection::InvalidState { kind, state } => {
                write!(f, "{} is {state}", kind.as_str())
            }
            Rejection::Conflict { actual } => write!(f, "on_hand is {actual}"),
            Rejection::Invalid { reason } => write!(f, "{reason}"),
            Rejection::OverFulfil {
                sku,
                location,
                unfulfilled,
            } => {
                write!(f, "{sku}@{location}: {unfulfilled} unfulfilled")
            }
            Rejection::OverReturn { sku, returnable } => {
                write!(f, "{sku}: {returnable} returnable")
            }
            Rejection::NothingToCancel { cancellable } => write!(f, "{cancellable} cancellable"),
            Rejection::ChannelNotAllowed { location, channel } => {
                write!(f, "{location} does not sell to {channel}")
            }
            Rejection::AlreadyExists { kind, id } => {
                write!(f, "{} {id} already exists", kind.as_str())
            }
            Rejection::LimitExceeded { sku, allowed } => {
                write!(f, "{sku}: {allowed} more allowed for this customer")
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// The code of an outcome (`ok` for a reply).
pub fn code_of(outcome: &Outcome) -> Code {
    match outcome {
        Ok(_) => Code::Ok,
        Err(rejection) => rejection.code(),
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    /// The reply types as they were before `LocationName` and `Allocations`: the wire and
    /// snapshot bytes must not change.
    #[derive(Serialize)]
    struct OldAllocation {
        line: u16,
        location: LocationId,
        qty: i64,
    }

    #[derive(Serialize)]
    #[allow(dead_code)]
    enum OldReply {
        Done,
        Balance(Balance),
        Reserved {
            expires_at_ms: u64,
            allocations: Vec<OldAllocation>,
        },
    }

    #[test]
    fn shared_location_names_encode_as_before() {
        for n in 0..3u16 {
            let old = OldReply::Reserved {
                expires_at_ms: 1_767_226_500_000,
                allocations: (0..n)
                    .map(|i| OldAllocation {
                        line: i,
                        location: LocationId::from(format!("wh-{i}")),
                        qty: 59 + i64::from(i),
                    })
                    .collect(),
            };
            let new = Reply::Reserved {
                expires_at_ms: 1_767_226_500_000,
                allocations: (0..n)
                    .map(|i| Allocation {
                        line: i,
                        location: LocationName::from(format!("wh-{i}").as_str()),
                        qty: 59 + i64::from(i),
                    })
                    .collect(),
            };
            let bytes = postcard::to_allocvec(&new).expect("encode");
            assert_eq!(bytes, postcard::to_allocvec(&old).expect("encode"));
            let back: Reply = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(back, new);
        }
    }
}

//! A refusal of the access check, typed: who was refused and why. Its `Display` is the text
//! of the `forbidden` answer (docs/PROTOCOL.md), the same words whichever front asked.

use pki::{ClientRole, Principal};

use super::STORE_CHANNEL;

/// Why a principal may not run an operation (SPEC section 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForbiddenReason {
    /// Its credential has passed its end of validity.
    Expired,
    /// Its credential (this certificate serial or token id) is on the replicated deny list.
    Revoked {
        /// The credential id, lowercase hex.
        credential: String,
    },
    /// Cluster membership is the admin's.
    Membership,
    /// Issuing and revoking credentials is the admin's.
    Credentials,
    /// Changing the retention settings (`set_retention`) is the admin's.
    Retention,
    /// A reader writes nothing.
    Write,
    /// A write outside the role altogether (the command's name, as FORMAT.md spells it).
    Operation(&'static str),
    /// A checkout identity sells on its own channels only (this one is not).
    Channel(String),
    /// A store sells on [`STORE_CHANNEL`] only (this channel is another).
    StoreChannel(String),
    /// A store sources from its own locations, never from a group or all locations.
    GroupSource,
    /// A store acts at its own locations only (this one is not).
    Location(String),
    /// A checkout identity acts on holds of its own channels only (the hold's channel).
    HoldChannel(String),
    /// A store acts on holds at its own locations only (a line's location).
    HoldLocation(String),
    /// A store acts on orders at its own locations only (a line's location).
    OrderLocation(String),
    /// A store receives transfers to its own locations only (the transfer's destination).
    TransferTo(String),
}

/// A refused operation: the principal's name and role, and why. Answered as the stable code
/// `forbidden` with the `Display` text as its message; counted and logged per principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The principal's name (from its certificate or token).
    pub principal: String,
    /// Its role.
    pub role: ClientRole,
    /// Why.
    pub reason: ForbiddenReason,
}

impl Forbidden {
    /// `p` refused for `reason`.
    pub fn new(p: &Principal, reason: ForbiddenReason) -> Forbidden {
        Forbidden {
            principal: p.name.clone(),
            role: p.role,
            reason,
        }
    }

    /// Whether the credential itself no longer stands (revoked or expired), rather than this
    /// one operation being outside the role: then the node also closes the principal's
    /// connections.
    pub fn ends_credential(&self) -> bool {
        matches!(
            self.reason,
            ForbiddenReason::Expired | ForbiddenReason::Revoked { .. }
        )
    }

    /// The QUIC close reason of a connection closed because its credential ended
    /// (docs/PROTOCOL.md: `credential revoked: NAME (ID)`, `credential expired: NAME`).
    pub fn close_reason(&self) -> String {
        match &self.reason {
            ForbiddenReason::Revoked { credential } => {
                format!("credential revoked: {} ({credential})", self.principal)
            }
            ForbiddenReason::Expired => format!("credential expired: {}", self.principal),
            _ => self.to_string(),
        }
    }
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ForbiddenReason as R;
        let name = &self.principal;
        match &self.reason {
            R::Expired => return write!(f, "the credential of {name} has expired"),
            R::Revoked { credential } => {
                return write!(f, "the credential of {name} ({credential}) was revoked")
            }
            _ => {}
        }
        write!(f, "{name} (role {}) may not ", self.role)?;
        match &self.reason {
            R::Expired | R::Revoked { .. } => Ok(()),
            R::Membership => f.write_str("change cluster membership"),
            R::Credentials => f.write_str("issue or revoke credentials"),
            R::Retention => f.write_str("change the retention settings"),
            R::Write => f.write_str("write"),
            R::Operation(name) => f.write_str(name),
            R::Channel(c) => write!(f, "sell on channel {c}"),
            R::StoreChannel(c) => {
                write!(f, "sell on channel {c} (stores sell on {STORE_CHANNEL})")
            }
            R::GroupSource => f.write_str("source from a group or all locations"),
            R::Location(l) => write!(f, "act at location {l}"),
            R::HoldChannel(c) => write!(f, "act on a hold of channel {c}"),
            R::HoldLocation(l) => write!(f, "act on a hold at location {l}"),
            R::OrderLocation(l) => write!(f, "act on an order line at location {l}"),
            R::TransferTo(l) => write!(f, "receive a transfer to location {l}"),
        }
    }
}

impl std::error::Error for Forbidden {}

//! Identifiers: SKUs, locations, groups, channels, reservations, orders, RMAs, transfers, and the
//! 128-bit request id (SPEC sections 1 and 3).
//!
//! Every id is a string of 1..=[`ID_BYTES_MAX`] bytes from `[A-Za-z0-9._:/-]` (the SKU alphabet
//! of SPEC section 1, used for every id so ids are safe in URLs, file names and case files).
//! Ids are NOT validated when decoded: a malformed id reaching the engine is answered with
//! `invalid` ([`crate::InvalidReason::BadId`]), never a panic.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::limits::ID_BYTES_MAX;

/// Whether `s` is a well-formed id: 1..=64 bytes of `[A-Za-z0-9._:/-]`.
pub fn is_valid_id(s: &str) -> bool {
    // A fold without early exit: no branch per byte, so the loop unrolls (ids are valid
    // almost always, and at most 64 bytes).
    !s.is_empty()
        && s.len() <= ID_BYTES_MAX
        && s.bytes().fold(true, |ok, b| ok & ID_BYTE[usize::from(b)])
}

/// Whether `s` is a well-formed customer id: 1..=[`ID_BYTES_MAX`] bytes with no control
/// character. A customer id is opaque to the ledger (SPEC section 3: a loyalty card, a hashed
/// e-mail in base64 or hex), so it is not held to the alphabet of the ledger's own ids; control
/// characters are refused because the id appears in logs and the change feed.
pub fn is_valid_customer_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= ID_BYTES_MAX && !s.chars().any(char::is_control)
}

/// Which bytes may appear in an id (a table: this check runs for every id of every request).
const ID_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'/' | b'-');
        b += 1;
    }
    table
};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub CompactString);

        impl $name {
            /// What kind of id this is, for error messages.
            pub const KIND: &'static str = $what;

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the id is well formed (see [`is_valid_id`]).
            pub fn is_valid(&self) -> bool {
                is_valid_id(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(CompactString::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(CompactString::from(s))
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A sellable item (SPEC section 1).
    SkuId, "sku"
);
string_id!(
    /// A place that holds stock.
    LocationId, "location"
);
string_id!(
    /// A named, ordered list of locations used for sourcing.
    GroupId, "group"
);
string_id!(
    /// Where a sale starts: `web`, `app`, `pos`, `marketplace-x`... `pos` is special: it sells
    /// at the counter and ignores safety stock (SPEC section 1, ATS).
    ChannelId, "channel"
);
string_id!(
    /// A checkout hold, chosen by the client.
    ReservationId, "reservation"
);
string_id!(
    /// A placed order, chosen by the client.
    OrderId, "order"
);
string_id!(
    /// A return authorisation, chosen by the client.
    RmaId, "rma"
);
string_id!(
    /// A transfer between two locations, chosen by the client.
    TransferId, "transfer"
);
string_id!(
    /// A customer, as the caller resolved it (loyalty card, hashed e-mail): opaque to the
    /// ledger, which only counts their units against purchase limits (SPEC section 3).
    CustomerId, "customer"
);
string_id!(
    /// Why stock moved (`cycle-count`, `damaged`, `receipt`...): recorded in the change feed.
    Reason, "reason"
);

impl ChannelId {
    /// The point-of-sale channel: counter sales at a store, which may sell safety stock.
    pub const POS: &'static str = "pos";
}

/// A location's id as a reply carries it ([`crate::Allocation::location`]): a reference to the
/// ledger's one shared copy of the name, so building a reply costs a reference count instead of
/// an allocation and a copy. Serialized exactly as [`LocationId`] (a string, through serde's
/// `rc` feature): postcard, JSON and snapshot bytes are those of a `LocationId`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LocationName(Arc<str>);

impl LocationName {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned [`LocationId`] (copies the name).
    pub fn to_location_id(&self) -> LocationId {
        LocationId::from(self.as_str())
    }
}

impl fmt::Debug for LocationName {
    // Printed as the `LocationId` it stands for, so debug output of replies is unchanged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocationId({:?})", self.as_str())
    }
}

impl fmt::Display for LocationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for LocationName {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<&LocationId> for LocationName {
    fn from(id: &LocationId) -> Self {
        Self::from(id.as_str())
    }
}

impl PartialEq<LocationId> for LocationName {
    fn eq(&self, other: &LocationId) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::borrow::Borrow<str> for LocationName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The client-chosen 128-bit idempotency key of a write (SPEC section 3). Zero is not a valid
/// request id (it is rejected with `invalid`), so that a forgotten id is never deduplicated.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u128);

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:032x})", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_alphabet_and_length() {
        assert!(is_valid_id("A"));
        assert!(is_valid_id("sku-1.2_3:x/y"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("é"));
        assert!(!is_valid_id("a,b"));
    }
}

//! Who made each write, and the credentials the cluster no longer accepts (SPEC section 7).
//!
//! The ledger does not decide who may do what (the server does, before a write reaches the
//! log); it records what the log says: the author of every write, shown on its change-feed
//! events (the audit trail), and a deny list of revoked credentials that every replica holds
//! the same, so that every node refuses them within one batch of the revocation.
//!
//! Both are bounded: authors are interned in a table of at most [`AUTHORS_MAX`] entries (a
//! write by an author beyond it is recorded without one), and the deny list keeps at most
//! [`REVOKED_MAX`] credentials, each forgotten once its own expiry has passed (an expired
//! credential is refused anyway).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ledger::{invalid, Ledger};
use crate::outcome::{InvalidReason, Outcome, Rejection, Reply};

/// Distinct authors a ledger remembers (their names appear on change-feed events).
pub const AUTHORS_MAX: usize = 4_096;
/// Bytes of an author's name or role.
pub const AUTHOR_BYTES_MAX: usize = 64;
/// Revoked credentials kept at once; more is a `limit` rejection.
pub const REVOKED_MAX: usize = 10_000;
/// Bytes of a credential id (a certificate serial or token id, hex).
pub const CREDENTIAL_BYTES_MAX: usize = 64;

/// Who made a write: the principal's name and role, as the server authenticated them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Author {
    /// The principal's name.
    pub name: String,
    /// Its role (`reader`, `checkout`, `store`, `ops`, `admin`).
    pub role: String,
}

/// The authors of a batch's requests: a small table and, per request, its index in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authors {
    /// The distinct authors of the batch.
    pub names: Vec<Author>,
    /// For request `i`, the index of its author in `names`; missing or out of range means
    /// no author (a write from before identities, or from a test).
    pub of_request: Vec<u16>,
}

/// One revoked credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When it was revoked (batch time), ms since the epoch.
    pub revoked_at_ms: u64,
    /// When the credential expires anyway, ms since the epoch: the entry is dropped then.
    pub until_ms: u64,
}

/// A revoked credential as a query shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedView {
    /// The credential id.
    pub credential: String,
    /// When and until when.
    pub revocation: Revocation,
}

/// What the ledger keeps of access: interned authors and the deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessState {
    /// Author handle `h` (from 1) is `authors[h - 1]`; 0 means none.
    pub authors: Arc<Vec<Author>>,
    /// Revoked credentials by id.
    pub revoked: Arc<BTreeMap<String, Revocation>>,
}

fn valid_credential(id: &str) -> bool {
    !id.is_empty() && id.len() <= CREDENTIAL_BYTES_MAX && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_author(a: &Author) -> bool {
    let ok = |s: &str| !s.is_empty() && s.len() <= AUTHOR_BYTES_MAX;
    ok(&a.name) && ok(&a.role)
}

impl Ledger {
    /// The handle of `author` (interned on first use), or 0 when the table is full or the
    /// author is malformed.
    pub(crate) fn intern_author(&mut self, author: &Author) -> u32 {
        if let Some(&h) = self.ix.author.get(author) {
            return h;
        }
        let authors = &mut self.state.access.authors;
        if authors.len() >= AUTHORS_MAX || !valid_author(author) {
            return 0;
        }
        Arc::make_mut(authors).push(author.clone());
        let h = authors.len() as u32;
        self.ix.author.insert(author.clone(), h);
        h
    }

    /// The author behind handle `h`.
    pub(crate) fn author(&self, h: u32) -> Option<Author> {
        let i = usize::try_from(h).ok()?.checked_sub(1)?;
        self.state.access.authors.get(i).cloned()
    }

    /// `revoke_credential`: adds `credential` to the deny list until `until_ms`.
    pub(crate) fn revoke_credential(&mut self, credential: &str, until_ms: u64) -> Outcome {
        if !valid_credential(credential) {
            return invalid(InvalidReason::BadId {
                field: "credential".to_owned(),
            });
        }
        let now = self.state.now_ms;
        let revoked = &mut self.state.access.revoked;
        if until_ms <= now || revoked.contains_key(credential) {
            // Expired credentials are refused anyway; a second revocation changes nothing.
            return Ok(Reply::Done);
        }
        if revoked.len() >= REVOKED_MAX {
            return Err(Rejection::limit("REVOKED_MAX"));
        }
        let revocation = Revocation {
            revoked_at_ms: now,
            until_ms,
        };
        Arc::make_mut(revoked).insert(credential.to_owned(), revocation);
        self.ix.revoked_next_expiry = self.ix.revoked_next_expiry.min(until_ms);
        Ok(Reply::Done)
    }

    /// Drops revocations whose credential has expired (at most once per expiry time, so a
    /// batch costs nothing while none is due).
    pub(crate) fn expire_revocations(&mut self) {
        let now = self.state.now_ms;
        if self.ix.revoked_next_expiry > now {
            return;
        }
        let revoked = Arc::make_mut(&mut self.state.access.revoked);
        revoked.retain(|_, r| r.until_ms > now);
        self.ix.revoked_next_expiry = revoked
            .values()
            .map(|r| r.until_ms)
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Whether `credential` is on the deny list.
    pub fn is_revoked(&self, credential: &str) -> bool {
        self.state.access.revoked.contains_key(credential)
    }

    /// The deny list, by credential id.
    pub fn revoked(&self) -> Vec<RevokedView> {
        self.state
            .access
            .revoked
            .iter()
            .map(|(credential, revocation)| RevokedView {
                credential: credential.clone(),
                revocation: *revocation,
            })
            .collect()
    }

    /// Rebuilds the author index and the next revocation expiry from the state (restore).
    pub(crate) fn rebuild_access(&mut self) {
        self.ix.author = self
            .state
            .access
            .authors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), i as u32 + 1))
            .collect();
        let next = self.state.access.revoked.values().map(|r| r.until_ms).min();
        self.ix.revoked_next_expiry = next.unwrap_or(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        BatchHeader, Command, Config, LocationDef, LocationId, LocationKind, Query, Reason,
        Request, RequestId, SkuId,
    };

    fn request(id: u128, command: Command) -> Request {
        Request {
            request_id: RequestId(id),
            command,
        }
    }

    fn author(name: &str, role: &str) -> Author {
        Author {
            name: name.to_owned(),
            role: role.to_owned(),
        }
    }

    #[test]
    fn change_events_name_the_author_of_their_write() {
        let mut ledger = Ledger::new(Config::default());
        let define = Command::DefineLocation(LocationDef {
            location: LocationId("s1".to_owned()),
            kind: LocationKind::Store,
            pickup: false,
            coordinates: None,
            channels: None,
        });
        let adjust = |delta| Command::Adjust {
            sku: SkuId("A".to_owned()),
            location: LocationId("s1".to_owned()),
            delta,
            reason: Reason("count".to_owned()),
        };
        let authors = Authors {
            names: vec![author("tablet-1", "store"), author("ops-1", "ops")],
            of_request: vec![1, 0],
        };
        let header = |i| BatchHeader {
            log_index: i,
            timestamp_ms: 1_000,
        };
        let requests = [request(1, define), request(2, adjust(5))];
        ledger.apply_by(header(1), &requests, &authors);
        ledger.apply(header(2), &[request(3, adjust(1))]);
        let Ok(crate::Answer::Changes(page)) =
            ledger.query(&Query::Changes { since: 0, max: 10 }, 1_000)
        else {
            panic!("changes");
        };
        let by: Vec<Option<&str>> = page
            .events
            .iter()
            .map(|e| e.author.as_ref().map(|a| a.name.as_str()))
            .collect();
        assert_eq!(by, [Some("tablet-1"), None]);
        // Authors survive a snapshot.
        let copy = Ledger::restore(&ledger.snapshot()).expect("restores");
        assert_eq!(copy.digest(), ledger.digest());
        assert_eq!(copy.ix.author.len(), 2);
    }

    #[test]
    fn revoked_credentials_are_kept_until_they_expire() {
        let mut ledger = Ledger::new(Config::default());
        let revoke = |id: u128, credential: &str, until_ms| {
            request(
                id,
                Command::RevokeCredential {
                    credential: credential.to_owned(),
                    until_ms,
                },
            )
        };
        let header = |i, t| BatchHeader {
            log_index: i,
            timestamp_ms: t,
        };
        let outcomes = ledger.apply(
            header(1, 1_000),
            &[
                revoke(1, "0a1b", 5_000),
                revoke(2, "not hex", 5_000),
                revoke(3, "ff", 9_000),
            ],
        );
        assert!(
            outcomes[0].is_ok() && outcomes[1].is_err() && outcomes[2].is_ok(),
            "{outcomes:?}"
        );
        assert!(ledger.is_revoked("0a1b") && ledger.is_revoked("ff"));
        let copy = Ledger::restore(&ledger.snapshot()).expect("restores");
        assert!(copy.is_revoked("0a1b"));
        ledger.apply(header(2, 5_000), &[]);
        assert!(!ledger.is_revoked("0a1b"), "expired with its credential");
        assert!(ledger.is_revoked("ff"));
        assert_eq!(ledger.revoked().len(), 1);
    }
}

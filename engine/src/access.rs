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
/// Live bearer tokens kept at once (each forgotten at its expiry); more is a `limit`
/// rejection. A token costs about 200 bytes, so the table stays under a few MiB.
pub const TOKENS_MAX: usize = 10_000;
/// Channels or locations one token may name (the same bound as a client certificate's).
pub const TOKEN_SCOPE_MAX: usize = 64;

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

/// What a bearer token grants: the principal it stands for, as `stockctl token create` asked
/// (the server reads the role and scope exactly like a client certificate's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    /// The principal's name, 1..=[`AUTHOR_BYTES_MAX`] bytes.
    pub name: String,
    /// Its role (`reader`, `checkout`, `store`, `ops`, `admin`), 1..=[`AUTHOR_BYTES_MAX`] bytes.
    pub role: String,
    /// Channels of a `checkout` principal, at most [`TOKEN_SCOPE_MAX`].
    pub channels: Vec<String>,
    /// Locations of a `store` principal, at most [`TOKEN_SCOPE_MAX`].
    pub locations: Vec<String>,
    /// End of validity, ms since the epoch: the ledger forgets the token then.
    pub expires_at_ms: u64,
    /// SHA-256 of the token's secret (`pki::Token::secret_hash`): the secret itself never
    /// reaches the cluster.
    pub secret_hash: [u8; 32],
}

/// A token to issue: its id (the credential id, hex) and what it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDef {
    /// The credential id, 1..=[`CREDENTIAL_BYTES_MAX`] hex digits (lowercase).
    pub id: String,
    /// The principal and the secret's hash.
    pub grant: TokenGrant,
}

/// What the ledger keeps of access: interned authors, the deny list and the bearer tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessState {
    /// Author handle `h` (from 1) is `authors[h - 1]`; 0 means none.
    pub authors: Arc<Vec<Author>>,
    /// Revoked credentials by id.
    pub revoked: Arc<BTreeMap<String, Revocation>>,
    /// Live bearer tokens by id.
    pub tokens: Arc<BTreeMap<String, TokenGrant>>,
}

/// The ledger's credential tables (the deny list and the live tokens), shared with it rather
/// than copied: what a node keeps beside the ledger so that checking a credential takes no
/// lock (`server::auth::credentials`).
///
/// While a `Credentials` holds a table, the ledger's next change to that table copies it first
/// (`Arc::make_mut`), so a changed table is always a new allocation:
/// [`Credentials::same_tables`] tells whether anything changed by comparing pointers.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    revoked: Arc<BTreeMap<String, Revocation>>,
    tokens: Arc<BTreeMap<String, TokenGrant>>,
}

impl Credentials {
    /// Whether `credential` (a certificate serial or token id) is on the deny list.
    pub fn is_revoked(&self, credential: &str) -> bool {
        self.revoked.contains_key(credential)
    }

    /// The grant of the live token `id`, if any.
    pub fn token(&self, id: &str) -> Option<&TokenGrant> {
        self.tokens.get(id)
    }

    /// Whether both tables are the very ones `other` holds (so neither changed in between,
    /// as long as one of the two was held meanwhile: see the type's documentation).
    pub fn same_tables(&self, other: &Credentials) -> bool {
        Arc::ptr_eq(&self.revoked, &other.revoked) && Arc::ptr_eq(&self.tokens, &other.tokens)
    }
}

fn valid_grant(g: &TokenGrant) -> bool {
    let ok = |s: &String| !s.is_empty() && s.len() <= AUTHOR_BYTES_MAX;
    ok(&g.name)
        && ok(&g.role)
        && g.channels.len() <= TOKEN_SCOPE_MAX
        && g.locations.len() <= TOKEN_SCOPE_MAX
        && g.channels.iter().chain(&g.locations).all(ok)
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

    /// `create_token`: keeps a token's grant by id until its expiry.
    pub(crate) fn create_token(&mut self, token: &TokenDef) -> Outcome {
        if !valid_credential(&token.id) {
            return invalid(InvalidReason::BadId {
                field: "token".to_owned(),
            });
        }
        if !valid_grant(&token.grant) {
            return invalid(InvalidReason::BadId {
                field: "token principal".to_owned(),
            });
        }
        if token.grant.expires_at_ms <= self.state.now_ms {
            return invalid(InvalidReason::BadDuration);
        }
        let tokens = &mut self.state.access.tokens;
        if tokens.contains_key(&token.id) {
            return Err(Rejection::AlreadyExists {
                kind: crate::outcome::ObjectKind::Token,
                id: token.id.clone(),
            });
        }
        if tokens.len() >= TOKENS_MAX {
            return Err(Rejection::limit("TOKENS_MAX"));
        }
        Arc::make_mut(tokens).insert(token.id.clone(), token.grant.clone());
        let until = token.grant.expires_at_ms;
        self.ix.revoked_next_expiry = self.ix.revoked_next_expiry.min(until);
        Ok(Reply::Done)
    }

    /// The grant of the live token `id`, if any.
    pub fn token(&self, id: &str) -> Option<&TokenGrant> {
        self.state.access.tokens.get(id)
    }

    /// Drops revocations whose credential has expired and expired tokens (at most once per
    /// expiry time, so a batch costs nothing while none is due).
    pub(crate) fn expire_revocations(&mut self) {
        let now = self.state.now_ms;
        if self.ix.revoked_next_expiry > now {
            return;
        }
        // A table is copied only if something in it expires: a node's copy of the tables
        // (`Credentials`) is swapped whenever a table is a new one.
        let revoked = &mut self.state.access.revoked;
        if revoked.values().any(|r| r.until_ms <= now) {
            Arc::make_mut(revoked).retain(|_, r| r.until_ms > now);
        }
        let tokens = &mut self.state.access.tokens;
        if tokens.values().any(|t| t.expires_at_ms <= now) {
            Arc::make_mut(tokens).retain(|_, t| t.expires_at_ms > now);
        }
        self.ix.revoked_next_expiry = self.next_credential_expiry();
    }

    /// The earliest expiry among revocations and tokens (`u64::MAX` if none).
    fn next_credential_expiry(&self) -> u64 {
        let access = &self.state.access;
        let revoked = access.revoked.values().map(|r| r.until_ms);
        let tokens = access.tokens.values().map(|t| t.expires_at_ms);
        revoked.chain(tokens).min().unwrap_or(u64::MAX)
    }

    /// Whether `credential` is on the deny list.
    pub fn is_revoked(&self, credential: &str) -> bool {
        self.state.access.revoked.contains_key(credential)
    }

    /// The credential tables as they are now, shared with the ledger (two reference counts).
    pub fn credentials(&self) -> Credentials {
        Credentials {
            revoked: self.state.access.revoked.clone(),
            tokens: self.state.access.tokens.clone(),
        }
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
        self.ix.revoked_next_expiry = self.next_credential_expiry();
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
            location: LocationId::from("s1".to_owned()),
            kind: LocationKind::Store,
            pickup: false,
            coordinates: None,
            channels: None,
        });
        let adjust = |delta| Command::Adjust {
            sku: SkuId::from("A".to_owned()),
            location: LocationId::from("s1".to_owned()),
            delta,
            reason: Reason::from("count"),
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

    #[test]
    fn a_held_copy_of_the_credential_tables_sees_every_change_as_new_tables() {
        let mut ledger = Ledger::new(Config::default());
        let header = |i, t| BatchHeader {
            log_index: i,
            timestamp_ms: t,
        };
        ledger.apply(header(1, 1_000), &[]);
        let held = ledger.credentials();
        ledger.apply(header(2, 1_000), &[]);
        assert!(ledger.credentials().same_tables(&held), "nothing changed");
        let revoke = Command::RevokeCredential {
            credential: "0a".to_owned(),
            until_ms: 5_000,
        };
        ledger.apply(header(3, 1_000), &[request(1, revoke)]);
        let revoked = ledger.credentials();
        assert!(!revoked.same_tables(&held) && revoked.is_revoked("0a"));
        assert!(
            !held.is_revoked("0a"),
            "the held copy is not changed in place"
        );
        ledger.apply(header(4, 5_000), &[]);
        assert!(!ledger.credentials().same_tables(&revoked), "expired");
        assert!(!ledger.credentials().is_revoked("0a"));
        let restored = Ledger::restore(&ledger.snapshot()).expect("restores");
        assert!(!restored.credentials().same_tables(&ledger.credentials()));
    }

    #[test]
    fn tokens_are_kept_hashed_until_they_expire_and_are_bounded_by_id() {
        let mut ledger = Ledger::new(Config::default());
        let token = |id: &str, expires_at_ms| {
            Command::CreateToken(TokenDef {
                id: id.to_owned(),
                grant: TokenGrant {
                    name: "shop".to_owned(),
                    role: "checkout".to_owned(),
                    channels: vec!["web".to_owned()],
                    locations: Vec::new(),
                    expires_at_ms,
                    secret_hash: [7; 32],
                },
            })
        };
        let header = |i, t| BatchHeader {
            log_index: i,
            timestamp_ms: t,
        };
        let outcomes = ledger.apply(
            header(1, 1_000),
            &[
                request(1, token("0a", 5_000)),
                request(2, token("0a", 9_000)),
                request(3, token("zz", 9_000)),
                request(4, token("0b", 1_000)),
                request(5, token("0c", 9_000)),
            ],
        );
        let codes: Vec<&str> = outcomes
            .iter()
            .map(|o| o.as_ref().map_or_else(|r| r.code().as_str(), |_| "ok"))
            .collect();
        assert_eq!(
            codes,
            ["ok", "already_exists", "invalid", "invalid", "ok"],
            "{outcomes:?}"
        );
        assert_eq!(ledger.token("0a").map(|g| g.secret_hash), Some([7; 32]));
        let copy = Ledger::restore(&ledger.snapshot()).expect("restores");
        assert_eq!(copy.token("0c"), ledger.token("0c"));
        ledger.apply(header(2, 5_000), &[]);
        assert!(ledger.token("0a").is_none(), "forgotten at its expiry");
        assert!(ledger.token("0c").is_some());
    }
}

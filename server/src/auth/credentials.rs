//! The node's copy of the ledger's credential tables (the deny list and the live bearer
//! tokens), read without a lock by every access check.
//!
//! Why a copy: the ledger is one `RwLock`, and its read lock waits behind a batch's apply, so
//! reading the deny list there on every operation made each operation queue behind apply.
//! The copy is an [`ArcSwap`] of [`engine::Credentials`] (the ledger's own tables, shared,
//! not copied). The state machine calls [`CredentialCopy::follow`] after each entry it applies,
//! after a snapshot install and at open (restore); `follow` compares two pointers and swaps
//! only when a table is a new one (a revocation, a token created, one forgotten at its
//! expiry, another ledger), so a batch of stock writes costs it two pointer comparisons.
//!
//! Every open client connection checks its credential against the copy at least once a
//! second ([`credential_ends`]) and is closed once it is revoked or expired. (A first version
//! woke every connection through a `watch` channel at each swap; with it, a follower serving
//! subscribers that never read stopped applying in `tests/it/budget.rs`, for a reason not
//! found yet, so connections poll the copy instead: one timer per connection per second.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use engine::{Credentials, Ledger};
use pki::Principal;

use super::forbidden::{Forbidden, ForbiddenReason};
use crate::clock::Clock;

/// Longest an open connection goes without checking its credential against the copy and the
/// clock, ms (SPEC section 7: a revocation is enforced on open connections within a second;
/// the clock may also jump: tests move the node's clock forward).
pub const CREDENTIAL_CHECK_MS: u64 = 1_000;

/// The node's lock-free copy of the credential tables, and a revision bumped on each swap.
#[derive(Debug)]
pub struct CredentialCopy {
    /// The tables as of the last entry applied. Loaded lock-free by `auth::decide` and the
    /// HTTP token check; stored only by the state machine.
    tables: ArcSwap<Credentials>,
    /// Swaps so far (tests and the log: a batch that changes no credential swaps nothing).
    revision: AtomicU64,
}

impl CredentialCopy {
    /// A copy of `ledger`'s tables.
    pub fn new(ledger: &Ledger) -> CredentialCopy {
        CredentialCopy {
            tables: ArcSwap::from_pointee(ledger.credentials()),
            revision: AtomicU64::new(0),
        }
    }

    /// Takes `ledger`'s tables if they are not the ones held (called with the ledger's write
    /// lock held, after an apply or a snapshot install, so the copy never lags the ledger a
    /// reader could see). Returns whether it swapped.
    pub fn follow(&self, ledger: &Ledger) -> bool {
        let now = ledger.credentials();
        if self.tables.load().same_tables(&now) {
            return false;
        }
        self.tables.store(Arc::new(now));
        self.revision.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The tables now (a lock-free load; hold the guard briefly).
    pub fn load(&self) -> arc_swap::Guard<Arc<Credentials>> {
        self.tables.load()
    }

    /// Swaps so far (tests: a batch that changes no credential swaps nothing).
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Relaxed)
    }
}

/// Whether `p`'s credential stands at `now_ms`: not expired, not on the deny list. The first
/// check of every operation (`auth::decide`) and what closes open connections.
pub fn standing(p: &Principal, credentials: &Credentials, now_ms: u64) -> Result<(), Forbidden> {
    if p.expires_at_ms <= now_ms {
        return Err(Forbidden::new(p, ForbiddenReason::Expired));
    }
    if credentials.is_revoked(&p.credential_id) {
        let credential = p.credential_id.clone();
        return Err(Forbidden::new(p, ForbiddenReason::Revoked { credential }));
    }
    Ok(())
}

/// Waits until `p`'s credential no longer stands (checked at once, then at its expiry by
/// `clock` and at least every [`CREDENTIAL_CHECK_MS`]) and returns why.
pub async fn credential_ends(copy: &CredentialCopy, clock: &Clock, p: &Principal) -> Forbidden {
    loop {
        let now_ms = clock.now_ms();
        if let Err(ended) = standing(p, &copy.load(), now_ms) {
            return ended;
        }
        let wait_ms = p.expires_at_ms.saturating_sub(now_ms);
        tokio::time::sleep(Duration::from_millis(wait_ms.min(CREDENTIAL_CHECK_MS))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{BatchHeader, Command, Config, Request, RequestId};
    use pki::ClientRole;

    fn principal(credential: &str, expires_at_ms: u64) -> Principal {
        Principal {
            name: "tablet-1".to_owned(),
            role: ClientRole::Store,
            channels: Vec::new(),
            locations: vec!["store-1".to_owned()],
            credential_id: credential.to_owned(),
            expires_at_ms,
        }
    }

    #[test]
    fn a_credential_stands_until_it_expires_or_is_revoked() {
        let mut ledger = Ledger::new(Config::default());
        let copy = CredentialCopy::new(&ledger);
        let p = principal("0a", 10_000);
        assert_eq!(standing(&p, &copy.load(), 9_999), Ok(()));
        let expired = standing(&p, &copy.load(), 10_000).expect_err("expired");
        assert_eq!(expired.reason, ForbiddenReason::Expired);
        assert_eq!(
            expired.to_string(),
            "the credential of tablet-1 has expired"
        );
        assert_eq!(expired.close_reason(), "credential expired: tablet-1");

        let revoke = Request {
            request_id: RequestId(1),
            command: Command::RevokeCredential {
                credential: "0a".to_owned(),
                until_ms: 10_000,
            },
        };
        let header = BatchHeader {
            log_index: 1,
            timestamp_ms: 1_000,
        };
        ledger.apply(header, &[revoke]);
        assert_eq!(
            standing(&p, &copy.load(), 1_000),
            Ok(()),
            "not followed yet"
        );
        assert!(copy.follow(&ledger));
        let revoked = standing(&p, &copy.load(), 1_000).expect_err("revoked");
        assert_eq!(
            revoked.to_string(),
            "the credential of tablet-1 (0a) was revoked"
        );
        assert_eq!(revoked.close_reason(), "credential revoked: tablet-1 (0a)");
        assert!(!copy.follow(&ledger), "nothing new");
        assert_eq!(copy.revision(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_connection_learns_of_a_revocation_or_an_expiry() {
        let mut ledger = Ledger::new(Config::default());
        let copy = Arc::new(CredentialCopy::new(&ledger));
        let clock = Arc::new(Clock::default());
        let far = clock.now_ms() + 86_400_000;
        let watcher = {
            let (copy, clock) = (copy.clone(), clock.clone());
            tokio::spawn(async move { credential_ends(&copy, &clock, &principal("0a", far)).await })
        };
        tokio::task::yield_now().await;
        assert!(!watcher.is_finished());
        let revoke = Request {
            request_id: RequestId(1),
            command: Command::RevokeCredential {
                credential: "0a".to_owned(),
                until_ms: far,
            },
        };
        let header = BatchHeader {
            log_index: 1,
            timestamp_ms: clock.now_ms(),
        };
        ledger.apply(header, &[revoke]);
        copy.follow(&ledger);
        let ended = watcher.await.expect("watcher");
        assert!(matches!(ended.reason, ForbiddenReason::Revoked { .. }));

        // The clock jumps past the expiry of another credential: checked within a second.
        let (copy2, clock2) = (copy.clone(), clock.clone());
        let watcher =
            tokio::spawn(
                async move { credential_ends(&copy2, &clock2, &principal("0b", far)).await },
            );
        tokio::task::yield_now().await;
        clock.advance(2 * 86_400_000);
        tokio::time::advance(Duration::from_millis(CREDENTIAL_CHECK_MS)).await;
        let ended = watcher.await.expect("watcher");
        assert_eq!(ended.reason, ForbiddenReason::Expired);
    }
}

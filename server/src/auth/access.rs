//! Identities of connections, the counters of what was refused, and the bounds that keep
//! handshake floods cheap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pki::{CertificateDer, Principal};
use protocol::{AccessStats, PrincipalCount};

/// Principal names whose denials are counted apart; the rest are counted under `*`.
pub const DENIED_PRINCIPALS_MAX: usize = 1_024;
/// At most one `forbidden` log line per this many ms (per node): a client looping on a
/// forbidden request must not flood the log.
pub const DENIED_LOG_EVERY_MS: u64 = 1_000;
/// Connections one IP address may hold open at once (clients pool a few per node; a
/// checkout gateway behind one address holds more).
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 512;
/// Connections in progress (handshaking) above which a node asks new ones to prove their
/// address first (a QUIC retry round trip), so that a flood of spoofed handshakes costs it
/// one stateless packet each.
pub const HANDSHAKES_BEFORE_RETRY: usize = 64;

/// The certificate chain a peer presented, if any.
fn presented(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|chain| *chain)
}

/// The principal of a client connection (ALPN `stockd/1`): its certificate must be a client
/// certificate of the cluster CA (rustls checked the chain and the validity period during the
/// handshake). `Err` is the close reason.
pub fn client_principal(conn: &quinn::Connection) -> Result<Principal, String> {
    let chain = presented(conn).ok_or_else(|| {
        "no client certificate: every client needs an identity (stockd certs --client NAME --role ROLE)"
            .to_owned()
    })?;
    let first = chain
        .first()
        .ok_or_else(|| "empty certificate chain".to_owned())?;
    pki::principal_of(first).map_err(|e| format!("not a client identity: {e}"))
}

/// Checks a peer connection (ALPN `stockd-raft/1`): it must present a node certificate of
/// the cluster CA, never a client certificate. `Err` is the close reason.
pub fn check_peer(conn: &quinn::Connection) -> Result<(), String> {
    let chain = presented(conn)
        .ok_or_else(|| "peers must present a cluster node certificate".to_owned())?;
    match chain.first().map(pki::principal_of) {
        Some(Err(_)) => Ok(()),
        Some(Ok(p)) => Err(format!(
            "{} holds a client certificate: it is not a node",
            p.name
        )),
        None => Err("empty certificate chain".to_owned()),
    }
}

/// What the node refused, counted (reported in `status`).
#[derive(Default)]
pub struct Refusals {
    denied_total: AtomicU64,
    denied_by_principal: Mutex<HashMap<String, u64>>,
    refused_connections: AtomicU64,
    connection_limit: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl Refusals {
    /// Counts a `forbidden` answer for `name` and logs it, at most once per
    /// [`DENIED_LOG_EVERY_MS`].
    pub fn denied(&self, name: &str, why: &str) {
        let total = self.denied_total.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut by_name = lock(&self.denied_by_principal);
            let key = if by_name.contains_key(name) || by_name.len() < DENIED_PRINCIPALS_MAX {
                name
            } else {
                "*"
            };
            *by_name.entry(key.to_owned()).or_default() += 1;
        }
        let mut last = lock(&self.last_log);
        let quiet = Duration::from_millis(DENIED_LOG_EVERY_MS);
        if last.is_none_or(|at| at.elapsed() >= quiet) {
            *last = Some(Instant::now());
            tracing::warn!(principal = name, denied_total = total, "forbidden: {why}");
        }
    }

    /// Counts a connection closed for its identity.
    pub fn refused_connection(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection refused or retried by the connection bounds.
    pub fn connection_limited(&self) {
        self.connection_limit.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters, for `status`.
    pub fn stats(&self) -> AccessStats {
        let mut denied_by_principal: Vec<PrincipalCount> = lock(&self.denied_by_principal)
            .iter()
            .map(|(name, count)| PrincipalCount {
                name: name.clone(),
                count: *count,
            })
            .collect();
        denied_by_principal.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        AccessStats {
            denied_total: self.denied_total.load(Ordering::Relaxed),
            denied_by_principal,
            refused_connections_total: self.refused_connections.load(Ordering::Relaxed),
            connection_limit_total: self.connection_limit.load(Ordering::Relaxed),
        }
    }
}

/// Open connections per IP address, each held by an [`AddressSlot`].
#[derive(Default, Clone)]
pub struct AddressCounts {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place in its address's count, given back on drop.
pub struct AddressSlot {
    counts: AddressCounts,
    ip: IpAddr,
}

impl AddressCounts {
    /// A slot for one more connection from `ip`, unless it holds
    /// [`CONNECTIONS_PER_ADDRESS_MAX`] already.
    pub fn take(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(ip).or_default();
        if *count >= CONNECTIONS_PER_ADDRESS_MAX {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts.counts);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_a_bounded_number_of_slots() {
        let counts = AddressCounts::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let slots: Vec<AddressSlot> = (0..CONNECTIONS_PER_ADDRESS_MAX)
            .map(|_| counts.take(ip).expect("room"))
            .collect();
        assert!(counts.take(ip).is_none(), "one over the bound");
        assert!(
            counts.take([10, 0, 0, 2].into()).is_some(),
            "another address"
        );
        drop(slots);
        assert!(counts.take(ip).is_some(), "slots come back");
    }

    #[test]
    fn denials_are_counted_per_principal_within_a_bound() {
        let refusals = Refusals::default();
        for i in 0..DENIED_PRINCIPALS_MAX + 10 {
            refusals.denied(&format!("p{i}"), "test");
        }
        refusals.denied("p0", "test");
        let stats = refusals.stats();
        assert_eq!(stats.denied_total, DENIED_PRINCIPALS_MAX as u64 + 11);
        assert_eq!(stats.denied_by_principal.len(), DENIED_PRINCIPALS_MAX + 1);
        assert_eq!(stats.denied_by_principal[0].name, "*");
        assert_eq!(stats.denied_by_principal[0].count, 10);
    }
}

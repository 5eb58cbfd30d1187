//! Pooled QUIC connections: one per node, each with a fixed number of long-lived bidirectional
//! streams ([`Channel`]s) used round-robin, opened lazily and reopened when they fail.
//!
//! A dial that failed is remembered for [`DIAL_RETRY_MS`]: callers asking for that node
//! meanwhile fail at once instead of dialing again (a dead node costs a connect timeout per
//! dial, and would otherwise be dialed by every leader search and every rotation onto it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::channel::{CallError, Channel, Feed};

/// Locks a std mutex, ignoring poisoning (the protected maps stay consistent: every critical
/// section is a single insert, remove or clone).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One stream slot of a connection.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Channel>>>,
    /// Held while a stream is being opened, so that concurrent callers open only one.
    opening: tokio::sync::Mutex<()>,
}

/// A connection to one node and its streams.
pub(crate) struct NodeConn {
    conn: quinn::Connection,
    slots: Vec<Slot>,
    next: AtomicUsize,
    frames_in_flight: usize,
    coalesce: bool,
}

impl NodeConn {
    fn alive(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Why the node closed this connection for its identity, if it did
    /// ([`protocol::CLOSE_IDENTITY_REFUSED`], or a TLS alert about the certificate).
    fn refused(&self) -> Option<String> {
        match self.conn.close_reason()? {
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == protocol::CLOSE_IDENTITY_REFUSED.into() =>
            {
                Some(String::from_utf8_lossy(&close.reason).into_owned())
            }
            // TLS 1.3: the client's handshake is done before the node checks its certificate,
            // so the node's alert arrives as the connection's end.
            other => handshake_refusal(&other).map(str::to_owned),
        }
    }

    /// A working stream, round-robin over the slots.
    pub(crate) async fn channel(&self) -> Result<Arc<Channel>, CallError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(channel) = lock(&slot.current).as_ref().filter(|c| !c.is_closed()) {
            return Ok(channel.clone());
        }
        let _opening = slot.opening.lock().await;
        if let Some(channel) = lock(&slot.current).as_ref().filter(|c| !c.is_closed()) {
            return Ok(channel.clone());
        }
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| CallError::Closed(e.to_string()))?;
        let channel = Channel::spawn(recv, send, self.frames_in_flight, None, self.coalesce);
        *lock(&slot.current) = Some(channel.clone());
        Ok(channel)
    }

    /// A new stream of its own for a subscription, delivering events to `events`.
    pub(crate) async fn subscription_channel(
        &self,
        events: mpsc::Sender<Feed>,
    ) -> Result<Arc<Channel>, CallError> {
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| CallError::Closed(e.to_string()))?;
        Ok(Channel::spawn(recv, send, 1, Some(events), false))
    }
}

/// What a TLS alert that ended a handshake says about this client's identity, if it was one
/// (RFC 8446 alert numbers; QUIC carries them as crypto errors 0x100 + alert).
fn handshake_refusal(e: &quinn::ConnectionError) -> Option<&'static str> {
    let code = match e {
        // The node's alert (the client's handshake may be done before the node checks it).
        quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
        // This side's own handshake failed on the node's alert.
        quinn::ConnectionError::TransportError(t) => t.code,
        _ => return None,
    };
    let alert = u64::from(code).checked_sub(0x100)?;
    Some(match alert {
        116 => "the node requires a client certificate (stockctl --cert FILE --key FILE; issue one with stockd certs --client NAME --role ROLE)",
        // unknown_ca, or decrypt_error: another CA of the same name signed it.
        48 | 51 => "this client's certificate is not from the cluster's CA",
        45 => "this client's certificate has expired",
        42 | 43 | 46 => "the node refused this client's certificate",
        _ => return None,
    })
}

/// How long a failed dial to a node is remembered (calls fail at once instead of dialing it
/// again), ms.
pub const DIAL_RETRY_MS: u64 = 1_000;

/// Dials made to one node.
#[derive(Debug, Default, Clone)]
struct Dials {
    /// Connection attempts started.
    attempts: u64,
    /// The last attempt's failure, if it failed.
    failed: Option<DialFailure>,
}

/// A failed dial: when, and why (repeated to callers until [`DIAL_RETRY_MS`] have passed).
#[derive(Debug, Clone)]
struct DialFailure {
    at: Instant,
    why: String,
}

/// The client endpoints of a pool, one per address family.
#[derive(Default)]
struct Endpoints {
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
}

/// The connections of a client.
pub(crate) struct Pool {
    quic: quinn::ClientConfig,
    streams_per_connection: usize,
    frames_in_flight: usize,
    coalesce: bool,
    connect_timeout: Duration,
    /// Client endpoints, created on first use: one for IPv4 peers, one for IPv6 peers.
    endpoints: Mutex<Endpoints>,
    conns: Mutex<HashMap<String, Arc<NodeConn>>>,
    /// One dial at a time per node.
    dialing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Dials per node, and the last failure.
    dials: Mutex<HashMap<String, Dials>>,
}

impl Pool {
    pub(crate) fn new(
        quic: quinn::ClientConfig,
        streams_per_connection: usize,
        frames_in_flight: usize,
        coalesce: bool,
        connect_timeout: Duration,
    ) -> Pool {
        Pool {
            quic,
            streams_per_connection: streams_per_connection.max(1),
            frames_in_flight: frames_in_flight.max(1),
            coalesce,
            connect_timeout,
            endpoints: Mutex::new(Endpoints::default()),
            conns: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            dials: Mutex::new(HashMap::new()),
        }
    }

    /// The live connection to `node` (`host:port`), dialing it if needed. A node that closed
    /// the last connection for its identity is not dialed again: the answer is `Refused`.
    pub(crate) async fn get(&self, node: &str) -> Result<Arc<NodeConn>, CallError> {
        if let Some(conn) = self.live(node) {
            return Ok(conn);
        }
        let refused = lock(&self.conns).get(node).and_then(|c| c.refused());
        if let Some(why) = refused {
            lock(&self.conns).remove(node);
            return Err(CallError::Refused(why));
        }
        let dial = lock(&self.dialing)
            .entry(node.to_owned())
            .or_default()
            .clone();
        let _dialing = dial.lock().await;
        if let Some(conn) = self.live(node) {
            return Ok(conn);
        }
        {
            let mut dials = lock(&self.dials);
            let record = dials.entry(node.to_owned()).or_default();
            if let Some(DialFailure { why, .. }) = record
                .failed
                .as_ref()
                .filter(|f| f.at.elapsed() < Duration::from_millis(DIAL_RETRY_MS))
            {
                return Err(CallError::Closed(format!(
                    "{why} (not dialed again within {DIAL_RETRY_MS} ms)"
                )));
            }
            record.attempts += 1;
        }
        let dialed = self.dial(node).await;
        lock(&self.dials).entry(node.to_owned()).or_default().failed = match &dialed {
            Err(CallError::Closed(why)) => Some(DialFailure {
                at: Instant::now(),
                why: why.clone(),
            }),
            Err(other) => Some(DialFailure {
                at: Instant::now(),
                why: format!("connect to {node}: {other:?}"),
            }),
            Ok(_) => None,
        };
        let conn = Arc::new(dialed?);
        lock(&self.conns).insert(node.to_owned(), conn.clone());
        Ok(conn)
    }

    /// Connection attempts started to `node` so far.
    pub(crate) fn dial_attempts(&self, node: &str) -> u64 {
        lock(&self.dials).get(node).map_or(0, |d| d.attempts)
    }

    /// The connection to `node` if it is still open (a closed one stays in the map until
    /// [`Pool::get`] has looked at why it closed).
    fn live(&self, node: &str) -> Option<Arc<NodeConn>> {
        let mut conns = lock(&self.conns);
        match conns.get(node) {
            Some(conn) if conn.alive() => Some(conn.clone()),
            Some(conn) if conn.refused().is_some() => None,
            Some(_) => {
                conns.remove(node);
                None
            }
            None => None,
        }
    }

    async fn dial(&self, node: &str) -> Result<NodeConn, CallError> {
        let closed = |e: String| CallError::Closed(format!("connect to {node}: {e}"));
        let addr: SocketAddr = tokio::net::lookup_host(node)
            .await
            .map_err(|e| closed(e.to_string()))?
            .next()
            .ok_or_else(|| closed("address did not resolve".into()))?;
        let endpoint = self
            .endpoint(addr)
            .map_err(|e| closed(format!("UDP socket: {e}")))?;
        let connecting = endpoint
            .connect_with(self.quic.clone(), addr, pki::SERVER_NAME)
            .map_err(|e| closed(e.to_string()))?;
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| closed("timed out".into()))?
            .map_err(|e| match handshake_refusal(&e) {
                Some(why) => CallError::Refused(format!("{node}: {why}")),
                None => closed(e.to_string()),
            })?;
        Ok(NodeConn {
            conn,
            slots: (0..self.streams_per_connection)
                .map(|_| Slot::default())
                .collect(),
            next: AtomicUsize::new(0),
            frames_in_flight: self.frames_in_flight,
            coalesce: self.coalesce,
        })
    }

    /// The client endpoint for `peer`'s address family (bound on first use).
    fn endpoint(&self, peer: SocketAddr) -> std::io::Result<quinn::Endpoint> {
        let mut endpoints = lock(&self.endpoints);
        let (slot, bind): (&mut Option<quinn::Endpoint>, SocketAddr) = if peer.is_ipv4() {
            (&mut endpoints.v4, SocketAddr::from(([0, 0, 0, 0], 0)))
        } else {
            (&mut endpoints.v6, SocketAddr::from(([0u16; 8], 0)))
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        // Larger kernel buffers than the default: the answers to a gateway's frames arrive
        // in bursts (pki's `udp` module says why a dropped datagram costs so much).
        let (endpoint, _) = pki::endpoint(bind, None)?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// Stops handing out the pooled connection to `node` (calls in flight on it go on): after
    /// a call got no answer in time, the node may have died without closing the connection,
    /// and the next call should dial again rather than wait for the idle timeout.
    /// Why the node closed the last connection for this client's identity, if it did.
    pub(crate) fn refusal(&self, node: &str) -> Option<String> {
        lock(&self.conns).get(node).and_then(|c| c.refused())
    }

    pub(crate) fn forget(&self, node: &str) {
        lock(&self.conns).remove(node);
    }

    /// Closes every connection (pending calls fail at once).
    pub(crate) fn close(&self) {
        let endpoints = lock(&self.endpoints);
        for endpoint in [&endpoints.v4, &endpoints.v6].into_iter().flatten() {
            endpoint.close(0u32.into(), b"client closed");
        }
        lock(&self.conns).clear();
    }
}

//! Pooled QUIC connections: one per node, each with a fixed number of long-lived bidirectional
//! streams ([`Channel`]s) used round-robin, opened lazily and reopened when they fail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

/// The connections of a client.
pub(crate) struct Pool {
    quic: quinn::ClientConfig,
    streams_per_connection: usize,
    frames_in_flight: usize,
    coalesce: bool,
    connect_timeout: Duration,
    /// Client endpoints, created on first use: one for IPv4 peers, one for IPv6 peers.
    endpoints: Mutex<(Option<quinn::Endpoint>, Option<quinn::Endpoint>)>,
    conns: Mutex<HashMap<String, Arc<NodeConn>>>,
    /// One dial at a time per node.
    dialing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
            endpoints: Mutex::new((None, None)),
            conns: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
        }
    }

    /// The live connection to `node` (`host:port`), dialing it if needed.
    pub(crate) async fn get(&self, node: &str) -> Result<Arc<NodeConn>, CallError> {
        if let Some(conn) = self.live(node) {
            return Ok(conn);
        }
        let dial = lock(&self.dialing)
            .entry(node.to_owned())
            .or_default()
            .clone();
        let _dialing = dial.lock().await;
        if let Some(conn) = self.live(node) {
            return Ok(conn);
        }
        let conn = Arc::new(self.dial(node).await?);
        lock(&self.conns).insert(node.to_owned(), conn.clone());
        Ok(conn)
    }

    fn live(&self, node: &str) -> Option<Arc<NodeConn>> {
        let mut conns = lock(&self.conns);
        match conns.get(node) {
            Some(conn) if conn.alive() => Some(conn.clone()),
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
        let endpoint = self.endpoint(addr).map_err(closed)?;
        let connecting = endpoint
            .connect_with(self.quic.clone(), addr, protocol::tls::SERVER_NAME)
            .map_err(|e| closed(e.to_string()))?;
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| closed("timed out".into()))?
            .map_err(|e| closed(e.to_string()))?;
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

    fn endpoint(&self, peer: SocketAddr) -> Result<quinn::Endpoint, String> {
        let mut endpoints = lock(&self.endpoints);
        let (slot, bind): (&mut Option<quinn::Endpoint>, SocketAddr) = if peer.is_ipv4() {
            (&mut endpoints.0, SocketAddr::from(([0, 0, 0, 0], 0)))
        } else {
            (&mut endpoints.1, SocketAddr::from(([0u16; 8], 0)))
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = quinn::Endpoint::client(bind).map_err(|e| format!("UDP socket: {e}"))?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// Stops handing out the pooled connection to `node` (calls in flight on it go on): after
    /// a call got no answer in time, the node may have died without closing the connection,
    /// and the next call should dial again rather than wait for the idle timeout.
    pub(crate) fn forget(&self, node: &str) {
        lock(&self.conns).remove(node);
    }

    /// Closes every connection (pending calls fail at once).
    pub(crate) fn close(&self) {
        let endpoints = lock(&self.endpoints);
        for endpoint in [&endpoints.0, &endpoints.1].into_iter().flatten() {
            endpoint.close(0u32.into(), b"client closed");
        }
        lock(&self.conns).clear();
    }
}

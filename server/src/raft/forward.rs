//! Operations forwarded from a follower to the leader over the node-to-node protocol.
//!
//! The HTTP front answers on any node (SPEC section 6). A write (or a linearizable read) that
//! reaches a follower is sent on to the leader as a [`Forwarded`] request carrying the caller's
//! principal; the leader runs it through the same path as its own clients' operations
//! (`auth::decide`, then the proposer), so the leader is the one authorization point for
//! writes and records the caller, not the follower, as the author. A peer connection is mutual
//! TLS with a node certificate of the cluster CA (`accept::check_peer`), so only a node can
//! claim a principal this way.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use pki::Principal;
use protocol::{Op, OpResult, ServerError};

use super::network::{PeerReply, PeerRequest};

/// How long a forwarded frame may take, ms: the leader's own deadlines (5 s for a write or a
/// read) plus a round trip.
pub const FORWARD_TIMEOUT_MS: u64 = 6_000;

/// The caller of forwarded operations, as the follower authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedPrincipal {
    /// The principal's name.
    pub name: String,
    /// Its role's name (`reader` .. `admin`).
    pub role: String,
    /// Channels of a `checkout` principal.
    pub channels: Vec<String>,
    /// Locations of a `store` principal.
    pub locations: Vec<String>,
    /// The credential id (certificate serial or token id): the leader checks its deny list.
    pub credential_id: String,
    /// The credential's expiry, ms since the epoch: the leader checks it too.
    pub expires_at_ms: u64,
}

impl From<&Principal> for ForwardedPrincipal {
    fn from(p: &Principal) -> Self {
        ForwardedPrincipal {
            name: p.name.clone(),
            role: p.role.as_str().to_owned(),
            channels: p.channels.clone(),
            locations: p.locations.clone(),
            credential_id: p.credential_id.clone(),
            expires_at_ms: p.expires_at_ms,
        }
    }
}

impl ForwardedPrincipal {
    /// The principal, `None` if the role is unknown (a node of a newer version).
    pub fn principal(&self) -> Option<Principal> {
        Some(Principal {
            name: self.name.clone(),
            role: pki::ClientRole::parse(&self.role)?,
            channels: self.channels.clone(),
            locations: self.locations.clone(),
            credential_id: self.credential_id.clone(),
            expires_at_ms: self.expires_at_ms,
        })
    }
}

/// Operations a follower forwards to the leader, with the caller's principal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    /// Who asked.
    pub principal: ForwardedPrincipal,
    /// What, at most [`protocol::OPS_PER_FRAME_MAX`] operations.
    pub ops: Vec<Op>,
}

/// How the leader runs forwarded operations (the node's client path), set by `accept`.
pub type ForwardFn =
    Arc<dyn Fn(Forwarded) -> Pin<Box<dyn Future<Output = Vec<OpResult>> + Send>> + Send + Sync>;

/// Sends forwarded operations to other nodes, one cached peer connection per address.
pub struct Forwarder {
    endpoint: quinn::Endpoint,
    peer_tls: quinn::ClientConfig,
    /// Connections by peer address; a closed one is replaced on the next call.
    connections: Mutex<HashMap<String, quinn::Connection>>,
}

impl Forwarder {
    /// A forwarder dialing from `endpoint` with this node's peer identity.
    pub fn new(endpoint: quinn::Endpoint, peer_tls: quinn::ClientConfig) -> Forwarder {
        Forwarder {
            endpoint,
            peer_tls,
            connections: Mutex::new(HashMap::new()),
        }
    }

    async fn connection(&self, addr: &str) -> Result<quinn::Connection, String> {
        let cached = self.lock().get(addr).cloned();
        if let Some(conn) = cached.filter(|c| c.close_reason().is_none()) {
            return Ok(conn);
        }
        let socket = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("the address does not resolve")?;
        let conn = self
            .endpoint
            .connect_with(self.peer_tls.clone(), socket, pki::SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        self.lock().insert(addr.to_owned(), conn.clone());
        Ok(conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, quinn::Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `forwarded` on the node at `addr` and returns its results (one per operation).
    /// A node that cannot be reached, or does not answer within [`FORWARD_TIMEOUT_MS`], is
    /// `unavailable` (a write MAY have applied: retry with the same request id).
    pub async fn forward(
        &self,
        addr: &str,
        forwarded: &Forwarded,
    ) -> Result<Vec<OpResult>, ServerError> {
        let exchange = async {
            let conn = self.connection(addr).await?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let request = PeerRequest::Forward(forwarded.clone());
            let frame = protocol::encode_limit(&request, protocol::PEER_FRAME_BYTES_MAX)
                .map_err(|e| e.to_string())?;
            protocol::write_frame(&mut send, &frame)
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            let reply = protocol::read_frame_limit(&mut recv, protocol::PEER_FRAME_BYTES_MAX)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the leader closed the stream without answering")?;
            match protocol::parse_limit(&reply, protocol::PEER_FRAME_BYTES_MAX) {
                Ok(PeerReply::Forwarded(results)) => Ok(results),
                Ok(_) => Err("unexpected reply kind".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        };
        let limit = Duration::from_millis(FORWARD_TIMEOUT_MS);
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(results)) if results.len() == forwarded.ops.len() => Ok(results),
            Ok(Ok(_)) => Err(ServerError::Internal {
                message: "the leader answered a different number of operations".to_owned(),
            }),
            Ok(Err(why)) => Err(ServerError::Unavailable {
                message: format!("forwarding to the leader at {addr}: {why}"),
            }),
            Err(_) => Err(ServerError::Timeout),
        }
    }
}

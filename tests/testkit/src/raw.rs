//! A QUIC connection without the client library.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pki::Trust;

/// Why a [`RawConnection`] call failed.
#[derive(Debug)]
pub enum RawError {
    /// The CA certificate could not be read or the TLS configuration built.
    Tls(pki::TlsError),
    /// The local endpoint could not be bound.
    Endpoint(std::io::Error),
    /// The node address is not `ip:port`.
    Address(std::net::AddrParseError),
    /// The connection could not be attempted.
    Connect(quinn::ConnectError),
    /// The handshake failed or the connection broke.
    Connection(quinn::ConnectionError),
    /// A frame could not be encoded, written, read or decoded.
    Frame(protocol::FrameError),
    /// No reply within this long.
    Timeout(Duration),
    /// The stream ended without a reply.
    NoReply,
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawError::Tls(e) => write!(f, "TLS: {e}"),
            RawError::Endpoint(e) => write!(f, "endpoint: {e}"),
            RawError::Address(e) => write!(f, "address: {e}"),
            RawError::Connect(e) => write!(f, "connect: {e}"),
            RawError::Connection(e) => write!(f, "connection: {e}"),
            RawError::Frame(e) => write!(f, "frame: {e}"),
            RawError::Timeout(after) => write!(f, "no reply within {after:?}"),
            RawError::NoReply => f.write_str("the stream ended without a reply"),
        }
    }
}

impl std::error::Error for RawError {}

/// A bare QUIC connection speaking the client protocol without the client library's retries:
/// for tests that must see exactly what one node answers, or send malformed bytes.
pub struct RawConnection {
    /// The connection.
    pub connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawConnection {
    /// Connects to `addr` trusting the CA in `ca_path` and presenting the admin identity
    /// beside it.
    pub async fn connect(addr: &str, ca_path: &Path) -> Result<RawConnection, RawError> {
        let identity = crate::fixtures::admin_identity(ca_path).map_err(RawError::Tls)?;
        RawConnection::connect_as(addr, ca_path, &identity).await
    }

    /// Connects to `addr` trusting the CA in `ca_path` and presenting `identity`.
    pub async fn connect_as(
        addr: &str,
        ca_path: &Path,
        identity: &pki::Identity,
    ) -> Result<RawConnection, RawError> {
        let ca = pki::load_certs(ca_path).map_err(RawError::Tls)?;
        let config =
            pki::client_config_with(&Trust::Ca(ca), Some(identity)).map_err(RawError::Tls)?;
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(RawError::Endpoint)?;
        endpoint.set_default_client_config(config);
        let addr: SocketAddr = addr.parse().map_err(RawError::Address)?;
        let connection = endpoint
            .connect(addr, pki::SERVER_NAME)
            .map_err(RawError::Connect)?
            .await
            .map_err(RawError::Connection)?;
        Ok(RawConnection {
            connection,
            _endpoint: endpoint,
        })
    }

    /// Sends one frame of `ops` on a new stream and returns the node's first message.
    pub async fn call(
        &self,
        ops: Vec<protocol::Op>,
        timeout: Duration,
    ) -> Result<protocol::ServerMessage, RawError> {
        let frame =
            protocol::encode(&protocol::ClientFrame { id: 1, ops }).map_err(RawError::Frame)?;
        let reply = self.send_bytes(&frame, timeout).await?;
        reply.ok_or(RawError::NoReply)
    }

    /// Sends raw bytes on a new stream (then finishes it) and returns the node's first message,
    /// `None` if the stream ends without one.
    pub async fn send_bytes(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<Option<protocol::ServerMessage>, RawError> {
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(RawError::Connection)?;
        protocol::write_frame(&mut send, bytes)
            .await
            .map_err(RawError::Frame)?;
        // Finishing fails only if the stream is already gone; the read below says why.
        let _ = send.finish();
        let reply = tokio::time::timeout(timeout, protocol::read_frame(&mut recv))
            .await
            .map_err(|_| RawError::Timeout(timeout))?
            .map_err(RawError::Frame)?;
        reply
            .map(|frame| protocol::parse(&frame).map_err(RawError::Frame))
            .transpose()
    }
}

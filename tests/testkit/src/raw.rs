//! A QUIC connection without the client library.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pki::Trust;

/// A bare QUIC connection speaking the client protocol without the client library's retries:
/// for tests that must see exactly what one node answers, or send malformed bytes.
pub struct RawConnection {
    /// The connection.
    pub connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawConnection {
    /// Connects to `addr` trusting the CA in `ca_path`.
    pub async fn connect(addr: &str, ca_path: &Path) -> RawConnection {
        let ca = pki::load_certs(ca_path).expect("CA certificate");
        let config = pki::client_config(&Trust::Ca(ca)).expect("client config");
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("endpoint");
        endpoint.set_default_client_config(config);
        let addr: SocketAddr = addr.parse().expect("socket address");
        let connection = endpoint
            .connect(addr, pki::SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        RawConnection {
            connection,
            _endpoint: endpoint,
        }
    }

    /// Sends one frame of `ops` on a new stream and returns the node's first message.
    pub async fn call(&self, ops: Vec<protocol::Op>, timeout: Duration) -> protocol::ServerMessage {
        let frame = protocol::encode(&protocol::ClientFrame { id: 1, ops }).expect("encode");
        self.send_bytes(&frame, timeout).await.expect("a reply")
    }

    /// Sends raw bytes on a new stream (then finishes it) and returns the node's first message,
    /// `None` if the stream ends without one.
    pub async fn send_bytes(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Option<protocol::ServerMessage> {
        let (mut send, mut recv) = self.connection.open_bi().await.expect("open stream");
        protocol::write_frame(&mut send, bytes)
            .await
            .expect("write");
        let _ = send.finish();
        let reply = tokio::time::timeout(timeout, protocol::read_frame(&mut recv))
            .await
            .expect("reply in time");
        reply
            .expect("readable reply")
            .map(|frame| protocol::parse(&frame).expect("decodable reply"))
    }
}

//! QUIC endpoints on UDP sockets whose kernel buffers can take a node's bursts.
//!
//! A node receives in bursts: a leader sends each follower an `AppendEntries` of up to a MiB
//! at once, and a gateway sends frames of a hundred reservations whose answers leave together.
//! Linux gives a UDP socket 208 KiB by default (`net.core.rmem_default`), and a datagram that
//! does not fit is dropped. QUIC recovers it, but only after its loss timer fires (at least
//! the peer's 25 ms acknowledgement delay when the dropped datagram ended a burst) and with
//! its congestion window cut. So every endpoint, the node's and the client library's, asks
//! for [`UDP_BUFFER_BYTES`] each way.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Bytes asked for each UDP socket's kernel receive and send buffers: room for four full
/// `AppendEntries` bursts. The kernel grants at most `net.core.rmem_max` / `wmem_max`
/// (docs/OPERATIONS.md, "Network buffers", says how to raise them).
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// What the kernel granted a socket, in bytes (Linux reports twice what it reserves for
/// data, its own bookkeeping included, as `getsockopt` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBuffers {
    /// The receive buffer granted.
    pub recv: usize,
    /// The send buffer granted.
    pub send: usize,
}

impl UdpBuffers {
    /// Whether the receive buffer is smaller than asked: the host caps it
    /// (`net.core.rmem_max`), and bursts may be dropped.
    pub fn recv_capped(&self) -> bool {
        self.recv < UDP_BUFFER_BYTES
    }
}

/// A UDP socket bound to `addr` with buffers of [`UDP_BUFFER_BYTES`] asked for. An IPv6
/// wildcard address is made dual-stack where the system allows it. Errors: the socket cannot
/// be created or bound (the address is taken or not local). A refused buffer size is not an
/// error: the returned [`UdpBuffers`] says what was granted.
pub fn udp_socket(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, UdpBuffers)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Best effort, as quinn's own client endpoint does: an IPv6-only socket still works
        // towards IPv6 peers.
        let _ = socket.set_only_v6(false);
    }
    // Best effort as well: the kernel clamps a size above its maximum rather than refuse it.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    let buffers = UdpBuffers {
        recv: socket.recv_buffer_size()?,
        send: socket.send_buffer_size()?,
    };
    Ok((socket.into(), buffers))
}

/// A QUIC endpoint on [`udp_socket`]`(addr)`, accepting connections if `server` is given.
/// Must be called within a tokio runtime. Errors: as [`udp_socket`], or no runtime.
pub fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<(quinn::Endpoint, UdpBuffers)> {
    let (socket, buffers) = udp_socket(addr)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("no async runtime: a QUIC endpoint needs tokio"))?;
    let endpoint = quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)?;
    Ok((endpoint, buffers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_larger_buffers_than_the_default_where_the_host_allows() {
        let (socket, buffers) = udp_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let default = Socket::from(plain).recv_buffer_size().expect("size");
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // The kernel grants min(asked, rmem_max), reported doubled.
        if max > default {
            assert!(
                buffers.recv > default,
                "granted {} against a default of {default} (rmem_max {max})",
                buffers.recv
            );
        }
        assert!(socket.local_addr().expect("addr").port() > 0);
    }

    #[test]
    fn a_taken_address_is_an_error() {
        let (first, _) = udp_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let taken = first.local_addr().expect("addr");
        assert!(udp_socket(taken).is_err());
    }
}

//! # stockd protocol
//!
//! The wire protocol between clients and nodes (TLS and certificates are the `pki` crate's).
//! docs/PROTOCOL.md is the prose version; this crate is the reference.
//!
//! # Layout
//! - [`frame`]: the messages ([`ClientFrame`], [`ServerMessage`]) and their types.
//! - [`codec`]: length-prefixed, versioned postcard frames: `check`, `parse`, `encode`, and async
//!   `read_frame` / `write_frame` over any tokio stream (quinn's streams).
//! - [`coalesce`]: client frames assembled from operations encoded ahead of their frame (a
//!   client stream's writer puts the calls queued at one moment into one frame).

pub mod coalesce;
pub mod codec;
pub mod frame;

pub use coalesce::{
    encode_client_frame, CoalescedFrame, EncodedOps, CLIENT_FRAME_HEADER_BYTES_MAX,
};
pub use codec::{
    check, check_limit, encode, encode_limit, frame_len, parse, parse_limit, read_frame,
    read_frame_limit, read_prefix, read_rest, write_frame, FrameError,
};
pub use frame::*;

/// ALPN of client connections (SPEC section 6: QUIC, TLS 1.3 always).
pub const ALPN_CLIENT: &[u8] = b"stockd/1";
/// ALPN of node-to-node (Raft) connections; these require a client certificate signed by the
/// cluster CA (mutual TLS).
pub const ALPN_PEER: &[u8] = b"stockd-raft/1";
/// The protocol version carried by every frame. A frame with another version is answered with
/// [`ProtocolErrorCode::UnsupportedVersion`] listing [`SUPPORTED_VERSIONS`].
pub const PROTOCOL_VERSION: u16 = 1;
/// Versions this build speaks.
pub const SUPPORTED_VERSIONS: &[u16] = &[PROTOCOL_VERSION];

/// Largest frame, in bytes, including its 4-byte length prefix and 2-byte version.
pub const FRAME_BYTES_MAX: usize = 4 << 20;
/// Largest node-to-node frame, in bytes (Raft log entries and snapshot chunks).
pub const PEER_FRAME_BYTES_MAX: usize = 64 << 20;
/// Operations in one client frame.
pub const OPS_PER_FRAME_MAX: usize = 1_024;
/// Concurrent bidirectional streams a client may open on one connection.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 64;
/// Frames a node processes concurrently on one stream (pipelining depth); further frames wait
/// in the stream's flow control.
pub const FRAMES_IN_FLIGHT_PER_STREAM_MAX: usize = 256;
/// Seconds of per-second pause maxima a status reports ([`PauseStats::recent`]).
pub const PAUSE_SECONDS_REPORTED: usize = 60;
/// Idle timeout of every QUIC connection, ms; clients send keep-alives at a third of it.
pub const IDLE_TIMEOUT_MS: u64 = 30_000;
/// Idle timeout of node-to-node connections, ms: short, so that a peer that died without
/// closing (kill -9, power loss) is noticed and redialled quickly.
pub const PEER_IDLE_TIMEOUT_MS: u64 = 5_000;
/// Keep-alive interval of node-to-node connections, ms.
pub const PEER_KEEP_ALIVE_MS: u64 = 1_000;
/// Longest a node takes to answer an admin operation ([`AdminOp`]), ms: a client must wait at
/// least this long (plus a round trip) for one attempt, or it retries an operation that is
/// still running and reports a failure for a change that happens.
pub const ADMIN_REPLY_MS_MAX: u64 = 4_000;
/// QUIC application close code of a client connection that the node closed because the
/// client did not read its replies (docs/PROTOCOL.md, "Reply budgets"); the close reason says
/// how much was waiting and for how long.
pub const CLOSE_REPLIES_NOT_READ: u32 = 2;
/// QUIC application close code of a connection refused for its identity: no client
/// certificate, a node certificate on the client ALPN or a client certificate on the peer
/// ALPN, or a revoked or expired credential (SPEC section 7). The close reason says which.
pub const CLOSE_IDENTITY_REFUSED: u32 = 3;
/// Keep-alive interval of clients, ms.
pub const KEEP_ALIVE_MS: u64 = IDLE_TIMEOUT_MS / 3;

const _: () = assert!(KEEP_ALIVE_MS < IDLE_TIMEOUT_MS);
const _: () = assert!(PEER_KEEP_ALIVE_MS * 3 <= PEER_IDLE_TIMEOUT_MS);
const _: () = assert!(FRAME_BYTES_MAX < u32::MAX as usize);

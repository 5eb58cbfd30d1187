//! Frames on the wire: `[u32 LE length][u16 LE version][postcard body]`.
//!
//! `length` counts the version and the body (not itself). A pure part ([`check`], [`parse`],
//! [`encode`]) works on byte slices and is fuzzed; [`read_frame`] and [`write_frame`] move frames
//! over any tokio stream (quinn's `RecvStream` / `SendStream`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{FRAME_BYTES_MAX, PROTOCOL_VERSION, SUPPORTED_VERSIONS};

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than [`FRAME_BYTES_MAX`].
    TooLarge {
        /// Announced length of the whole frame, bytes.
        len: u64,
    },
    /// The stream ended inside a frame.
    Truncated,
    /// A version this build does not speak.
    UnsupportedVersion {
        /// The frame's version.
        version: u16,
    },
    /// The body did not decode, had trailing bytes, or the length is below the header.
    Malformed(String),
    /// The transport failed.
    Io(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len } => {
                write!(f, "frame of {len} bytes exceeds the limit")
            }
            FrameError::Truncated => f.write_str("stream ended inside a frame"),
            FrameError::UnsupportedVersion { version } => {
                write!(
                    f,
                    "protocol version {version} not supported (speaks {SUPPORTED_VERSIONS:?})"
                )
            }
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
            FrameError::Io(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameError {
    /// The protocol error code to send back for this error (`None` for transport errors).
    pub fn code(&self) -> Option<crate::ProtocolErrorCode> {
        use crate::ProtocolErrorCode as C;
        Some(match self {
            FrameError::TooLarge { .. } => C::FrameTooLarge,
            FrameError::Truncated => C::Truncated,
            FrameError::UnsupportedVersion { .. } => C::UnsupportedVersion,
            FrameError::Malformed(_) => C::Malformed,
            FrameError::Io(_) => return None,
        })
    }
}

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Bytes of the version field.
pub const VERSION_BYTES: usize = 2;

/// Whether `buf` starts with a whole frame: `Ok(Some(total_len))` if so, `Ok(None)` if more bytes
/// are needed, `Err` if the prefix is impossible (too large, or shorter than the version).
pub fn check(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    check_limit(buf, FRAME_BYTES_MAX)
}

/// [`check`] with another size limit (peer frames carry log entries and snapshot chunks).
pub fn check_limit(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LEN_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as u64;
    let total = len + LEN_BYTES as u64;
    if total > max as u64 {
        return Err(FrameError::TooLarge { len: total });
    }
    if (len as usize) < VERSION_BYTES {
        return Err(FrameError::Malformed(format!(
            "length {len} below the version field"
        )));
    }
    Ok((buf.len() as u64 >= total).then_some(total as usize))
}

/// Decodes one whole frame (as delimited by [`check`]).
pub fn parse<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    parse_limit(frame, FRAME_BYTES_MAX)
}

/// [`parse`] with another size limit.
pub fn parse_limit<T: DeserializeOwned>(frame: &[u8], max: usize) -> Result<T, FrameError> {
    let total = check_limit(frame, max)?.ok_or(FrameError::Truncated)?;
    if total != frame.len() {
        return Err(FrameError::Malformed(format!(
            "{} bytes after the frame",
            frame.len() - total
        )));
    }
    let version = u16::from_le_bytes(
        frame[LEN_BYTES..LEN_BYTES + VERSION_BYTES]
            .try_into()
            .expect("2 bytes"),
    );
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(FrameError::UnsupportedVersion { version });
    }
    let body = &frame[LEN_BYTES + VERSION_BYTES..];
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes in the body",
            rest.len()
        )));
    }
    Ok(value)
}

/// Encodes a message as one frame of the current version.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    encode_limit(message, FRAME_BYTES_MAX)
}

/// [`encode`] with another size limit.
pub fn encode_limit<T: Serialize>(message: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; LEN_BYTES];
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    let mut out =
        postcard::to_extend(message, out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if out.len() > max {
        return Err(FrameError::TooLarge {
            len: out.len() as u64,
        });
    }
    let len = (out.len() - LEN_BYTES) as u32;
    out[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Reads the next whole frame's bytes; `Ok(None)` at a clean end of stream (between frames).
/// The length is checked before anything is buffered, so a hostile prefix cannot make the
/// reader allocate more than [`FRAME_BYTES_MAX`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    read_frame_limit(reader, FRAME_BYTES_MAX).await
}

/// [`read_frame`] with another size limit.
pub async fn read_frame_limit<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let Some(prefix) = read_prefix(reader).await? else {
        return Ok(None);
    };
    let total = frame_len(&prefix, max)?;
    read_rest(reader, prefix, total).await.map(Some)
}

/// Reads a frame's 4-byte length prefix; `Ok(None)` at a clean end of stream.
pub async fn read_prefix<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<[u8; LEN_BYTES]>, FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    let mut got = 0;
    while got < LEN_BYTES {
        let n = reader
            .read(&mut prefix[got..])
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    Ok(Some(prefix))
}

/// The whole length of the frame a prefix announces, checked against `max`.
pub fn frame_len(prefix: &[u8; LEN_BYTES], max: usize) -> Result<usize, FrameError> {
    Ok(match check_limit(prefix, max)? {
        Some(total) => total,
        None => LEN_BYTES + u32::from_le_bytes(*prefix) as usize,
    })
}

/// Reads the rest of a frame of `total` bytes whose prefix was read. Memory grows with the
/// bytes that actually arrive (not with the announced length), so a peer that announces 4 MiB
/// and sends nothing costs nothing.
pub async fn read_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
    prefix: [u8; LEN_BYTES],
    total: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(total.min(READ_CHUNK_BYTES));
    frame.extend_from_slice(&prefix);
    let body = (total - LEN_BYTES) as u64;
    reader
        .take(body)
        .read_to_end(&mut frame)
        .await
        .map_err(|e| FrameError::Io(e.to_string()))?;
    if frame.len() != total {
        return Err(FrameError::Truncated);
    }
    Ok(frame)
}

/// The first allocation for a frame being read, bytes; it grows as data arrives.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// Writes one encoded frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> Result<(), FrameError> {
    writer
        .write_all(frame)
        .await
        .map_err(|e| FrameError::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ClientFrame, Consistency, Op, ServerMessage};
    use engine::{Command, Query, Request, RequestId, ReservationId};
    use proptest::prelude::*;

    fn sample() -> ClientFrame {
        ClientFrame {
            id: 7,
            ops: vec![
                Op::Write(Request {
                    request_id: RequestId(42),
                    command: Command::Release {
                        reservation: ReservationId::from("r1"),
                    },
                }),
                Op::Read {
                    query: Query::Status,
                    consistency: Consistency::AtLeast(9),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).expect("encodes");
        assert_eq!(check(&bytes), Ok(Some(bytes.len())));
        assert_eq!(check(&bytes[..bytes.len() - 1]), Ok(None));
        assert_eq!(parse::<ClientFrame>(&bytes), Ok(sample()));
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), PROTOCOL_VERSION);
    }

    #[test]
    fn rejects_bad_frames_with_the_right_error() {
        let mut bytes = encode(&sample()).expect("encodes");
        bytes[4] = 99;
        assert_eq!(
            parse::<ClientFrame>(&bytes),
            Err(FrameError::UnsupportedVersion { version: 99 })
        );
        let huge = ((FRAME_BYTES_MAX as u32) + 1).to_le_bytes();
        assert_eq!(
            check(&huge),
            Err(FrameError::TooLarge {
                len: FRAME_BYTES_MAX as u64 + 5
            })
        );
        assert!(matches!(
            check(&[1, 0, 0, 0, 1]),
            Err(FrameError::Malformed(_))
        ));
        let mut trailing = encode(&sample()).expect("encodes");
        trailing.push(0);
        assert!(matches!(
            parse::<ClientFrame>(&trailing),
            Err(FrameError::Malformed(_))
        ));
        // A body that is valid postcard for nothing we know.
        let garbage = [6u8, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            parse::<ClientFrame>(&garbage),
            Err(FrameError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn stream_reads_frames_and_detects_truncation() {
        let a = encode(&sample()).expect("encodes");
        let b = encode(&ServerMessage::Events(vec![])).expect("encodes");
        let mut input: Vec<u8> = [a.clone(), b.clone()].concat();
        let mut reader = &input[..];
        assert_eq!(read_frame(&mut reader).await, Ok(Some(a.clone())));
        assert_eq!(read_frame(&mut reader).await, Ok(Some(b)));
        assert_eq!(read_frame(&mut reader).await, Ok(None));
        input.truncate(a.len() + 3);
        let mut reader = &input[..];
        assert_eq!(read_frame(&mut reader).await, Ok(Some(a)));
        assert_eq!(read_frame(&mut reader).await, Err(FrameError::Truncated));
    }

    #[test]
    fn a_cut_subscription_is_variant_3_after_the_older_messages() {
        // Appended at the end of `ServerMessage` (docs/PROTOCOL.md): the older variants keep
        // their indexes, so older peers decode everything they knew before.
        let cut = ServerMessage::SubscriptionCut {
            resume_from: 300,
            reason: "x".to_owned(),
        };
        let bytes = encode(&cut).expect("encodes");
        assert_eq!(bytes, [7, 0, 0, 0, 1, 0, 3, 0xac, 0x02, 1, b'x']);
        assert_eq!(parse::<ServerMessage>(&bytes), Ok(cut));
    }

    proptest! {
        /// The decoder never panics and never accepts random bytes as something else than what
        /// encodes back to the same bytes.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some(total)) = check(&bytes) {
                if let Ok(frame) = parse::<ClientFrame>(&bytes[..total]) {
                    let again = encode(&frame).expect("re-encodes");
                    prop_assert_eq!(parse::<ClientFrame>(&again), Ok(frame));
                }
            }
        }

        /// Valid frames with random corruption are rejected or decode to a valid frame.
        #[test]
        fn corrupted_frames_never_panic(flip in 0usize..200, value in any::<u8>()) {
            let mut bytes = encode(&sample()).expect("encodes");
            let i = flip % bytes.len();
            bytes[i] = value;
            if let Ok(Some(total)) = check(&bytes) {
                let _ = parse::<ClientFrame>(&bytes[..total.min(bytes.len())]);
            }
        }
    }
}

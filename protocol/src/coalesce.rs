//! Client frames assembled from operations encoded ahead of their frame.
//!
//! A client stream's writer puts every call queued at one moment into ONE
//! [`ClientFrame`](crate::ClientFrame)
//! (docs/PROTOCOL.md: the operations of a frame are independent). The calls encode their
//! operations when they are made ([`EncodedOps`]); the writer concatenates them into a
//! [`CoalescedFrame`] and gives it its id last. The bytes are exactly those of
//! [`crate::encode`]`(&ClientFrame { id, ops })`: postcard encodes a struct as its fields in
//! order, a `u64` and a sequence length as varints (LEB128), and a sequence as its length then
//! its elements (tested below), so a node cannot tell the two apart.

use serde::Serialize;

use crate::codec::{encode, FrameError, LEN_BYTES, VERSION_BYTES};
use crate::{Op, FRAME_BYTES_MAX, OPS_PER_FRAME_MAX, PROTOCOL_VERSION};

/// Longest postcard varint of a `u64`, bytes (ceil(64 / 7)).
const VARINT_U64_BYTES_MAX: usize = 10;

/// Most bytes a client frame's header takes: the length prefix, the version, the frame id and
/// the operation count (two varints).
pub const CLIENT_FRAME_HEADER_BYTES_MAX: usize =
    LEN_BYTES + VERSION_BYTES + 2 * VARINT_U64_BYTES_MAX;

/// One call's operations, postcard-encoded and concatenated, waiting for a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedOps {
    bytes: Vec<u8>,
    count: usize,
}

impl EncodedOps {
    /// Encodes `ops`. Fails ([`FrameError::TooLarge`]) if they could not fit one frame with
    /// its header, or ([`FrameError::Malformed`]) if an operation does not encode. The number
    /// of operations is the caller's to check against [`OPS_PER_FRAME_MAX`].
    pub fn encode(ops: &[Op]) -> Result<EncodedOps, FrameError> {
        let mut bytes = Vec::new();
        for op in ops {
            bytes =
                postcard::to_extend(op, bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
        }
        let len = bytes.len() + CLIENT_FRAME_HEADER_BYTES_MAX;
        if len > FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge { len: len as u64 });
        }
        Ok(EncodedOps {
            bytes,
            count: ops.len(),
        })
    }

    /// How many operations.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// A [`ClientFrame`](crate::ClientFrame) being filled with the operations of several calls, in order.
#[derive(Debug, Default)]
pub struct CoalescedFrame {
    ops: Vec<u8>,
    count: usize,
}

impl CoalescedFrame {
    /// A frame with the operations of one call.
    pub fn new(first: EncodedOps) -> CoalescedFrame {
        CoalescedFrame {
            ops: first.bytes,
            count: first.count,
        }
    }

    /// Adds a call's operations if the frame stays within [`OPS_PER_FRAME_MAX`] operations and
    /// [`FRAME_BYTES_MAX`] bytes; otherwise gives them back (for the next frame).
    pub fn push(&mut self, more: EncodedOps) -> Result<(), EncodedOps> {
        let fits = self.count + more.count <= OPS_PER_FRAME_MAX
            && self.ops.len() + more.bytes.len() + CLIENT_FRAME_HEADER_BYTES_MAX <= FRAME_BYTES_MAX;
        if !fits {
            return Err(more);
        }
        self.ops.extend_from_slice(&more.bytes);
        self.count += more.count;
        Ok(())
    }

    /// How many operations the frame holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The whole frame `ClientFrame { id, ops }`: length prefix, version, body.
    pub fn finish(self, id: u64) -> Vec<u8> {
        let mut frame = Vec::with_capacity(CLIENT_FRAME_HEADER_BYTES_MAX + self.ops.len());
        frame.extend_from_slice(&[0; LEN_BYTES]);
        frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        push_varint(&mut frame, id);
        push_varint(&mut frame, self.count as u64);
        frame.extend_from_slice(&self.ops);
        // Fits a u32: push keeps the frame within FRAME_BYTES_MAX (< u32::MAX, lib.rs).
        let len = (frame.len() - LEN_BYTES) as u32;
        frame[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
        frame
    }
}

/// The wire shape of [`ClientFrame`](crate::ClientFrame), borrowing its operations.
#[derive(Serialize)]
struct ClientFrameRef<'a> {
    id: u64,
    ops: &'a [Op],
}

/// Encodes `ClientFrame { id, ops }` from borrowed operations, so that a retry re-encodes the
/// same operations without cloning them: the bytes of [`crate::encode`] of the owned frame.
pub fn encode_client_frame(id: u64, ops: &[Op]) -> Result<Vec<u8>, FrameError> {
    encode(&ClientFrameRef { id, ops })
}

/// Appends `value` as a postcard varint (LEB128: 7 bits a byte, low bits first).
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, ClientFrame, Consistency};
    use engine::{Command, Query, Request, RequestId, ReservationId};

    fn release(n: u128) -> Op {
        Op::Write(Request {
            request_id: RequestId(n),
            command: Command::Release {
                reservation: ReservationId::from("r1"),
            },
        })
    }

    #[test]
    fn varints_are_leb128() {
        let varint = |v: u64| {
            let mut out = Vec::new();
            push_varint(&mut out, v);
            out
        };
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX).len(), VARINT_U64_BYTES_MAX);
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            assert_eq!(varint(v), postcard::to_stdvec(&v).expect("encodes"), "{v}");
        }
    }

    #[test]
    fn coalesced_frames_are_the_bytes_of_client_frames() {
        for (id, calls) in [
            (1u64, vec![1usize]),
            (127, vec![1, 2]),
            (128, vec![100, 30]),
        ] {
            let mut all = Vec::new();
            let mut frame: Option<CoalescedFrame> = None;
            for (call, count) in calls.iter().enumerate() {
                let ops: Vec<Op> = (0..*count)
                    .map(|i| release((call * 1_000 + i + 1) as u128))
                    .collect();
                let encoded = EncodedOps::encode(&ops).expect("encodes");
                all.extend(ops);
                match &mut frame {
                    None => frame = Some(CoalescedFrame::new(encoded)),
                    Some(f) => f.push(encoded).expect("fits"),
                }
            }
            let frame = frame.expect("a frame");
            assert_eq!(frame.count(), all.len());
            let bytes = frame.finish(id);
            let owned = ClientFrame { id, ops: all };
            assert_eq!(bytes, encode(&owned).expect("encodes"), "id {id}");
            assert_eq!(parse::<ClientFrame>(&bytes), Ok(owned));
        }
        let big_id = CoalescedFrame::new(EncodedOps::encode(&[Op::Status]).expect("encodes"));
        let bytes = big_id.finish(u64::MAX);
        let owned = ClientFrame {
            id: u64::MAX,
            ops: vec![Op::Status],
        };
        assert_eq!(bytes, encode(&owned).expect("encodes"));
    }

    #[test]
    fn borrowed_frames_encode_like_client_frames() {
        let ops = vec![
            release(42),
            Op::Read {
                query: Query::Status,
                consistency: Consistency::AtLeast(9),
            },
            Op::Status,
        ];
        let owned = encode(&ClientFrame {
            id: 7,
            ops: ops.clone(),
        })
        .expect("encodes");
        assert_eq!(encode_client_frame(7, &ops), Ok(owned));
    }

    #[test]
    fn a_frame_takes_no_more_than_the_limits() {
        let one = || EncodedOps::encode(&[Op::Status]).expect("encodes");
        let mut frame = CoalescedFrame::new(one());
        for _ in 1..OPS_PER_FRAME_MAX {
            frame.push(one()).expect("fits");
        }
        assert_eq!(frame.push(one()), Err(one()), "the operation limit");
        let half = Op::Write(Request {
            request_id: RequestId(1),
            command: Command::Release {
                reservation: ReservationId::from("x".repeat(FRAME_BYTES_MAX / 2)),
            },
        });
        let half = EncodedOps::encode(&[half]).expect("half a frame fits");
        let mut frame = CoalescedFrame::new(half.clone());
        assert_eq!(frame.push(half.clone()), Err(half), "the byte limit");
        let whole = Op::Write(Request {
            request_id: RequestId(1),
            command: Command::Release {
                reservation: ReservationId::from("x".repeat(FRAME_BYTES_MAX)),
            },
        });
        assert!(matches!(
            EncodedOps::encode(&[whole]),
            Err(FrameError::TooLarge { .. })
        ));
    }
}

//! The on-disk format of the log store, as pure functions over bytes (no file IO here).
//!
//! A segment file is `SEGMENT_MAGIC` followed by records. A record is
//!
//! ```text
//! kind_and_len: u32 LE | crc32: u32 LE | payload
//! ```
//!
//! where the CRC-32 (IEEE) covers the four length bytes and the payload, so a damaged length is
//! caught too. The top bit of `kind_and_len` tells the kind, the other 31 bits the payload
//! length: clear, an entry (`postcard(Entry)`); set ([`COMMIT_MARK`]), a commit marker
//! (`postcard(LogId)`): the committed log id as the node knew it when the records before the
//! marker were written. A marker names only entries written before it, so it is durable with
//! them and recovery replays up to it. A small file (vote, purge point, shutdown record) is an
//! 8-byte magic, the postcard-encoded value, then a CRC-32 LE of everything before it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::RECORD_PAYLOAD_BYTES_MAX;
use crate::raft::{Entry, LogId};

/// First bytes of every segment file (the last byte is the format version: 2 added commit
/// markers; a version 1 segment is read as one without markers).
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"STKDLOG\x02";
/// The version 1 magic, still read.
const SEGMENT_MAGIC_V1: &[u8; 8] = b"STKDLOG\x01";
/// Bytes before a record's payload: length and checksum.
pub(super) const RECORD_HEADER_BYTES: usize = 8;
/// The bit of a record's length field that marks a commit marker.
pub(super) const COMMIT_MARK: u32 = 1 << 31;

const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX < COMMIT_MARK as usize);

/// A record of a segment.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record {
    /// A log entry.
    Entry(Entry),
    /// A commit marker: this log id was committed when the records before it were written.
    Commit(LogId),
}

/// Appends a commit marker for `committed` to `out`; returns its length in bytes.
pub(super) fn encode_commit_marker(committed: &LogId, out: &mut Vec<u8>) -> u32 {
    let payload = postcard::to_allocvec(committed).expect("a log id always encodes");
    let len_bytes = (payload.len() as u32 | COMMIT_MARK).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(&payload);
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&payload);
    (RECORD_HEADER_BYTES + payload.len()) as u32
}

/// Appends `entry` to `out` as one record and returns the record's length in bytes.
pub(super) fn encode_record(entry: &Entry, out: &mut Vec<u8>) -> Result<u32, String> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    let mut buf = postcard::to_extend(entry, std::mem::take(out)).map_err(|e| e.to_string())?;
    let payload_len = buf.len() - start - RECORD_HEADER_BYTES;
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        buf.truncate(start);
        *out = buf;
        return Err(format!(
            "log entry {} is {payload_len} bytes, more than RECORD_PAYLOAD_BYTES_MAX ({RECORD_PAYLOAD_BYTES_MAX})",
            entry.log_id
        ));
    }
    let len_bytes = (payload_len as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(&buf[start + RECORD_HEADER_BYTES..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    *out = buf;
    Ok((RECORD_HEADER_BYTES + payload_len) as u32)
}

/// Why the bytes at some offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RecordError {
    /// The record (header or payload) runs past the end of the file: a write cut short.
    Incomplete,
    /// The length field is zero or above the limit.
    BadLength(u32),
    /// The checksum does not match the bytes.
    BadChecksum,
    /// The checksum matches but the payload does not decode: written by an incompatible
    /// version. Never a torn write.
    Undecodable(String),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Incomplete => f.write_str("incomplete record"),
            RecordError::BadLength(len) => write!(f, "bad record length {len}"),
            RecordError::BadChecksum => f.write_str("record checksum mismatch"),
            RecordError::Undecodable(e) => write!(f, "record does not decode: {e}"),
        }
    }
}

/// Decodes the record at the start of `bytes`: the record and its length.
pub(super) fn decode_record(bytes: &[u8]) -> Result<(Record, usize), RecordError> {
    let Some((header, rest)) = bytes.split_first_chunk::<RECORD_HEADER_BYTES>() else {
        return Err(RecordError::Incomplete);
    };
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let kind_and_len = u32::from_le_bytes(len_bytes);
    let is_marker = kind_and_len & COMMIT_MARK != 0;
    let payload_len = kind_and_len & !COMMIT_MARK;
    let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if payload_len == 0 || payload_len as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(RecordError::BadLength(payload_len));
    }
    let Some(payload) = rest.get(..payload_len as usize) else {
        return Err(RecordError::Incomplete);
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(payload);
    if crc.finalize() != stored_crc {
        return Err(RecordError::BadChecksum);
    }
    let undecodable = |e: postcard::Error| RecordError::Undecodable(e.to_string());
    let record = if is_marker {
        Record::Commit(postcard::from_bytes(payload).map_err(undecodable)?)
    } else {
        Record::Entry(postcard::from_bytes(payload).map_err(undecodable)?)
    };
    Ok((record, RECORD_HEADER_BYTES + payload_len as usize))
}

/// The records of one segment file as read at startup.
#[derive(Debug)]
pub(super) struct ParsedSegment {
    /// The entries, consecutive from the segment's first index.
    pub entries: Vec<Entry>,
    /// The file offset of each entry's record.
    pub offsets: Vec<u64>,
    /// Bytes up to the end of the last valid record (0 if even the magic is torn).
    pub valid_len: u64,
    /// The last commit marker of the segment.
    pub committed: Option<LogId>,
    /// Why the tail after `valid_len` was dropped, if it was.
    pub torn: Option<String>,
}

/// Parses a segment whose first entry must have index `first_index`.
///
/// A bad record is a torn tail, dropped, only in the last segment (`is_last`) and only when
/// nothing valid can follow it: the record runs past the end of the file, or everything from
/// the record's end (for a bad length: from the record's start) to the end of the file is
/// zeros. Any other bad record is corruption and an error: acknowledged data must not be lost
/// silently.
pub(super) fn parse_segment(
    bytes: &[u8],
    first_index: u64,
    is_last: bool,
) -> Result<ParsedSegment, String> {
    let mut parsed = ParsedSegment {
        entries: Vec::new(),
        offsets: Vec::new(),
        valid_len: 0,
        committed: None,
        torn: None,
    };
    let magic = bytes.get(..SEGMENT_MAGIC.len());
    if magic != Some(SEGMENT_MAGIC.as_slice()) && magic != Some(SEGMENT_MAGIC_V1.as_slice()) {
        let torn_magic = SEGMENT_MAGIC.starts_with(bytes) || all_zero(bytes);
        if is_last && torn_magic {
            parsed.torn = Some("segment header incomplete".to_owned());
            return Ok(parsed);
        }
        return Err("not a log segment (bad magic)".to_owned());
    }
    let mut pos = SEGMENT_MAGIC.len();
    let mut expected = first_index;
    while pos < bytes.len() {
        match decode_record(&bytes[pos..]) {
            Ok((Record::Commit(committed), len)) => {
                parsed.committed = Some(committed);
                pos += len;
            }
            Ok((Record::Entry(entry), len)) => {
                if entry.log_id.index != expected {
                    return Err(format!(
                        "record at offset {pos} holds log index {}, expected {expected}",
                        entry.log_id.index
                    ));
                }
                parsed.entries.push(entry);
                parsed.offsets.push(pos as u64);
                pos += len;
                expected += 1;
            }
            Err(e) => {
                if is_last && is_torn_tail(bytes, pos, &e) {
                    parsed.torn = Some(format!(
                        "{e} at offset {pos}, {} bytes dropped",
                        bytes.len() - pos
                    ));
                    break;
                }
                return Err(format!(
                    "{e} at offset {pos} ({} bytes follow)",
                    bytes.len() - pos
                ));
            }
        }
    }
    parsed.valid_len = pos as u64;
    Ok(parsed)
}

/// Whether a bad record at `pos` of the last segment is the remains of a write cut short.
fn is_torn_tail(bytes: &[u8], pos: usize, error: &RecordError) -> bool {
    match error {
        RecordError::Incomplete => true,
        RecordError::BadLength(_) => all_zero(&bytes[pos..]),
        RecordError::BadChecksum => {
            let payload_len =
                u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    & !COMMIT_MARK;
            let end = pos + RECORD_HEADER_BYTES + payload_len as usize;
            all_zero(&bytes[end.min(bytes.len())..])
        }
        RecordError::Undecodable(_) => false,
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// The file name of the segment whose first entry has index `first_index`.
pub(super) fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

/// The first index of a segment file name, `None` if `name` is not one.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a small file: `magic`, the postcard-encoded value, a CRC-32 of both.
pub(super) fn encode_small<T: Serialize>(magic: &[u8; 8], value: &T) -> Result<Vec<u8>, String> {
    let mut out = magic.to_vec();
    out = postcard::to_extend(value, out).map_err(|e| e.to_string())?;
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a small file written by [`encode_small`].
pub(super) fn decode_small<T: DeserializeOwned>(
    magic: &[u8; 8],
    bytes: &[u8],
) -> Result<T, String> {
    if bytes.len() < magic.len() + 4 || &bytes[..magic.len()] != magic {
        return Err("bad magic or too short".to_owned());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("checksum mismatch".to_owned());
    }
    postcard::from_bytes(&body[magic.len()..]).map_err(|e| e.to_string())
}

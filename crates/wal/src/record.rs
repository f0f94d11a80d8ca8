//! One WAL record: `[len: u32 LE][crc: u32 LE][type: u8][payload]`.

use crate::WalError;

/// Header bytes before the type byte.
pub const HEADER_BYTES: usize = 8;

/// A record larger than this is refused on write and treated as damage on read, so a corrupt
/// length can never make us allocate gigabytes (etcd caps WAL records at 10 MiB too).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Metadata = 1,
    Entry = 2,
    HardState = 3,
    Snapshot = 4,
}

impl RecordType {
    pub fn from_byte(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::Metadata,
            2 => RecordType::Entry,
            3 => RecordType::HardState,
            4 => RecordType::Snapshot,
            _ => return None,
        })
    }
}

pub fn crc(rtype: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[rtype]), payload)
}

pub fn encode(buf: &mut Vec<u8>, rtype: RecordType, payload: &[u8]) -> Result<(), WalError> {
    let len = payload.len() + 1;
    if len > MAX_RECORD_BYTES {
        return Err(WalError::Encode(format!(
            "record of {len} bytes exceeds the WAL record limit of {MAX_RECORD_BYTES}"
        )));
    }
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&crc(rtype as u8, payload).to_le_bytes());
    buf.push(rtype as u8);
    buf.extend_from_slice(payload);
    Ok(())
}

/// Outcome of decoding at one offset.
pub enum Decoded<'a> {
    Record {
        rtype: RecordType,
        payload: &'a [u8],
        next: usize,
    },
    /// Fewer bytes left than the record needs.
    Short,
    /// Length, CRC or type do not check out.
    Bad(String),
    /// A zero record header (or only zeros left): space allocated ahead of the records.
    Zeros,
}

pub fn decode(data: &[u8], at: usize) -> Decoded<'_> {
    let rest = &data[at..];
    if rest[..rest.len().min(HEADER_BYTES)].iter().all(|&b| b == 0) {
        return Decoded::Zeros;
    }
    if rest.len() < HEADER_BYTES + 1 {
        return Decoded::Short;
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let sum = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_RECORD_BYTES {
        return Decoded::Bad(format!("record length {len} out of range"));
    }
    if rest.len() < HEADER_BYTES + len {
        return Decoded::Short;
    }
    let body = &rest[HEADER_BYTES..HEADER_BYTES + len];
    if crc(body[0], &body[1..]) != sum {
        return Decoded::Bad("CRC mismatch".into());
    }
    let Some(rtype) = RecordType::from_byte(body[0]) else {
        return Decoded::Bad(format!("unknown record type {}", body[0]));
    };
    Decoded::Record {
        rtype,
        payload: &body[1..],
        next: at + HEADER_BYTES + len,
    }
}

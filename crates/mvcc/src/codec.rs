//! Encoding of one stored version of a key.

use rampart_proto::mvccpb::KeyValue;

use crate::MvccError;

/// One version of a key (its key and main revision are stored beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub sub: u64,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub tombstone: bool,
    pub value: Vec<u8>,
}

const FIXED_BYTES: usize = 1 + 8 * 4;

impl Version {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_BYTES + self.value.len());
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.tombstone));
        out.extend_from_slice(&self.sub.to_le_bytes());
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.lease.to_le_bytes());
        out.extend_from_slice(&self.value);
    }

    pub fn decode(bytes: &[u8]) -> Result<Version, MvccError> {
        if bytes.len() < FIXED_BYTES {
            return Err(MvccError::Damaged(format!(
                "version record of {} bytes",
                bytes.len()
            )));
        }
        let word = |i: usize| {
            let start = 1 + i * 8;
            u64::from_le_bytes(bytes[start..start + 8].try_into().expect("8 bytes"))
        };
        Ok(Version {
            tombstone: bytes[0] != 0,
            sub: word(0),
            create_revision: word(1) as i64,
            version: word(2) as i64,
            lease: word(3) as i64,
            value: bytes[FIXED_BYTES..].to_vec(),
        })
    }

    pub fn to_key_value(&self, key: &[u8], mod_revision: i64) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

/// A stored version with its key, as the history table holds it under `(main, sub)`:
/// `[key length: u32 LE][key][version]`.
pub(crate) fn encode_record(key: &[u8], version: &Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + FIXED_BYTES + version.value.len());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    version.encode_into(&mut out);
    out
}

/// The key and the encoded version of a history record, without copying either.
pub(crate) fn split_record(record: &[u8]) -> Result<(&[u8], &[u8]), MvccError> {
    let damaged = || MvccError::Damaged(format!("history record of {} bytes", record.len()));
    let len = u32::from_le_bytes(record.get(..4).ok_or_else(damaged)?.try_into().expect("4"));
    let end = 4usize.checked_add(len as usize).ok_or_else(damaged)?;
    let key = record.get(4..end).ok_or_else(damaged)?;
    let version = &record[end..];
    if version.len() < FIXED_BYTES {
        return Err(damaged());
    }
    Ok((key, version))
}

/// Whether an encoded version is a deletion, and the lease it names, without decoding the value.
pub(crate) fn version_flags(encoded: &[u8]) -> (bool, i64) {
    let lease = i64::from_le_bytes(encoded[25..33].try_into().expect("8 bytes"));
    (encoded[0] != 0, lease)
}

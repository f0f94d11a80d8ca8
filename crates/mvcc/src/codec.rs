//! Encoding of one stored version of a key.

use rampart_proto::mvccpb::KeyValue;

use crate::MvccError;

/// One version of a key as stored under `(key, mod_revision)`.
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
        out.push(u8::from(self.tombstone));
        out.extend_from_slice(&self.sub.to_le_bytes());
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.lease.to_le_bytes());
        out.extend_from_slice(&self.value);
        out
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

//! Whole-store snapshots, sent to a follower that is too far behind the leader's log.
//!
//! Format: `RMPSNAP1`, then records `[table: u8][key len: u32 LE][key][value len: u32 LE][value]`,
//! then `0xFF` and a CRC32C (LE) of everything before it.

use redb::{ReadableDatabase, ReadableTable};

use crate::store::{Store, AUTH, HISTORY, LEASES, META, V2};
use crate::MvccError;

/// Version 2: the history table keyed by revision replaced version 1's key and revision tables.
const MAGIC: &[u8; 8] = b"RMPSNAP2";
const END: u8 = 0xFF;
const TABLE_HISTORY: u8 = 6;
const TABLE_META: u8 = 3;
const TABLE_LEASES: u8 = 4;
const TABLE_V2: u8 = 5;
const TABLE_AUTH: u8 = 7;

fn put_record(out: &mut Vec<u8>, table: u8, key: &[u8], value: &[u8]) {
    out.push(table);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

impl Store {
    /// A consistent copy of the whole store (including the consistent index).
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, MvccError> {
        let err = |e: &dyn std::fmt::Display| MvccError::backend(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(MAGIC);
        let history = txn.open_table(HISTORY).map_err(|e| err(&e))?;
        for item in history.iter().map_err(|e| err(&e))? {
            let (k, v) = item.map_err(|e| err(&e))?;
            let (main, sub) = k.value();
            let mut composite = main.to_be_bytes().to_vec();
            composite.extend_from_slice(&sub.to_be_bytes());
            put_record(&mut out, TABLE_HISTORY, &composite, v.value());
        }
        let meta = txn.open_table(META).map_err(|e| err(&e))?;
        for item in meta.iter().map_err(|e| err(&e))? {
            let (k, v) = item.map_err(|e| err(&e))?;
            put_record(
                &mut out,
                TABLE_META,
                k.value().as_bytes(),
                &v.value().to_le_bytes(),
            );
        }
        let leases = txn.open_table(LEASES).map_err(|e| err(&e))?;
        for item in leases.iter().map_err(|e| err(&e))? {
            let (id, ttl) = item.map_err(|e| err(&e))?;
            put_record(
                &mut out,
                TABLE_LEASES,
                &id.value().to_be_bytes(),
                &ttl.value().to_le_bytes(),
            );
        }
        let v2 = txn.open_table(V2).map_err(|e| err(&e))?;
        for item in v2.iter().map_err(|e| err(&e))? {
            let (path, node) = item.map_err(|e| err(&e))?;
            put_record(&mut out, TABLE_V2, path.value().as_bytes(), node.value());
        }
        let auth = txn.open_table(AUTH).map_err(|e| err(&e))?;
        for item in auth.iter().map_err(|e| err(&e))? {
            let (key, value) = item.map_err(|e| err(&e))?;
            put_record(&mut out, TABLE_AUTH, key.value().as_bytes(), value.value());
        }
        out.push(END);
        let sum = crc32c::crc32c(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// Replaces the whole store with a snapshot: built in a new file, synced, then renamed over
    /// the old one, so a crash leaves either the old or the new store, never a mix.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), MvccError> {
        let bad = |m: &str| MvccError::BadSnapshot(m.to_string());
        if bytes.len() < MAGIC.len() + 5 || &bytes[..8] != MAGIC {
            return Err(bad("not a rampart store snapshot"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(sum.try_into().expect("4 bytes")) {
            return Err(bad("checksum mismatch"));
        }
        let tmp = self.path.with_extension("restore");
        let _ = std::fs::remove_file(&tmp);
        let err = |e: &dyn std::fmt::Display| MvccError::backend(&tmp, e);
        {
            let db = crate::store::open_database(&tmp).map_err(|e| err(&e))?;
            let txn = db.begin_write().map_err(|e| err(&e))?;
            {
                let mut history = txn.open_table(HISTORY).map_err(|e| err(&e))?;
                let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
                let mut leases = txn.open_table(LEASES).map_err(|e| err(&e))?;
                let mut v2 = txn.open_table(V2).map_err(|e| err(&e))?;
                let mut auth = txn.open_table(AUTH).map_err(|e| err(&e))?;
                let mut at = MAGIC.len();
                loop {
                    let table = *body.get(at).ok_or_else(|| bad("truncated"))?;
                    if table == END {
                        break;
                    }
                    let (key, next) = take(body, at + 1).ok_or_else(|| bad("truncated key"))?;
                    let (value, next) = take(body, next).ok_or_else(|| bad("truncated value"))?;
                    at = next;
                    match table {
                        TABLE_HISTORY if key.len() == 16 => {
                            crate::codec::split_record(value).map_err(|_| bad("history record"))?;
                            let main = u64::from_be_bytes(key[..8].try_into().expect("8"));
                            let sub = u64::from_be_bytes(key[8..].try_into().expect("8"));
                            history.insert((main, sub), value).map_err(|e| err(&e))?;
                        }
                        TABLE_META if value.len() == 8 => {
                            let name = std::str::from_utf8(key).map_err(|_| bad("meta key"))?;
                            meta.insert(name, u64::from_le_bytes(value.try_into().expect("8")))
                                .map_err(|e| err(&e))?;
                        }
                        TABLE_LEASES if key.len() == 8 && value.len() == 8 => {
                            let id = i64::from_be_bytes(key.try_into().expect("8"));
                            let ttl = i64::from_le_bytes(value.try_into().expect("8"));
                            leases.insert(id, ttl).map_err(|e| err(&e))?;
                        }
                        TABLE_V2 => {
                            let path = std::str::from_utf8(key).map_err(|_| bad("v2 path"))?;
                            v2.insert(path, value).map_err(|e| err(&e))?;
                        }
                        TABLE_AUTH => {
                            let name = std::str::from_utf8(key).map_err(|_| bad("auth key"))?;
                            auth.insert(name, value).map_err(|e| err(&e))?;
                        }
                        _ => return Err(bad("unknown record")),
                    }
                }
            }
            txn.commit().map_err(|e| err(&e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| MvccError::backend(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| MvccError::backend(dir, e))?;
        }
        self.db = crate::store::open_database(&self.path)
            .map_err(|e| MvccError::backend(&self.path, e))?;
        // The old handle names the replaced file.
        self.writeback = std::sync::Arc::new(
            crate::writeback::Writeback::open(&self.path)
                .map_err(|e| MvccError::backend(&self.path, e))?,
        );
        self.rebuild_index()
    }
}

fn take(data: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
    let start = at + 4;
    Some((data.get(start..start + len)?, start + len))
}

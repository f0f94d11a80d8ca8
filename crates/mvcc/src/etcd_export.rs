//! The store in etcd 3.4's backend layout (bbolt buckets), for Maintenance.Snapshot: the file
//! `etcdctl snapshot save` writes, `snapshot status` reads and `snapshot restore` turns into an
//! etcd data dir. Buckets: `key` (revision → `mvccpb.KeyValue`, tombstones marked with a trailing
//! `t`), `meta` (consistent index, compaction revisions), `lease` (`leasepb.Lease`), `alarm`,
//! and v3 auth's `auth` (enabled flag, revision), `authUsers` and `authRoles`.
//! Membership is left out: a restore writes its own.

use std::collections::BTreeMap;

use prost::Message as _;
use rampart_bbolt::Buckets;
use rampart_proto::mvccpb::KeyValue;
use redb::{ReadableDatabase, ReadableTable};

use crate::codec::{split_record, Version};
use crate::store::{read_meta, Store, AUTH, HISTORY, LEASES, META};
use crate::MvccError;

/// etcd's revision key: main and sub revision, big-endian, joined by `_`; `t` marks a tombstone.
fn revision_key(main: u64, sub: u64, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&main.to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// `leasepb.Lease{ID, TTL}` as etcd's gogoproto code encodes it (zero fields left out).
fn lease_record(id: i64, ttl: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, v) in [(1u8, id), (2u8, ttl)] {
        if v != 0 {
            out.push(field << 3);
            prost::encoding::encode_varint(v as u64, &mut out);
        }
    }
    out
}

/// `etcdserverpb.AlarmMember{MemberID, Alarm}`, the alarm bucket's key.
fn alarm_record(member_id: u64, alarm: i32) -> Vec<u8> {
    let mut out = Vec::new();
    if member_id != 0 {
        out.push(1 << 3);
        prost::encoding::encode_varint(member_id, &mut out);
    }
    if alarm != 0 {
        out.push(2 << 3);
        prost::encoding::encode_varint(alarm as u64, &mut out);
    }
    out
}

impl Store {
    /// One consistent read of the whole store in etcd's bucket layout.
    pub fn etcd_buckets(&self) -> Result<Buckets, MvccError> {
        let err = |e: &dyn std::fmt::Display| MvccError::backend(&self.path, e);
        let alarms = self.alarms()?;
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let history = txn.open_table(HISTORY).map_err(|e| err(&e))?;
        let mut keys = BTreeMap::new();
        for item in history.iter().map_err(|e| err(&e))? {
            let (rev, record) = item.map_err(|e| err(&e))?;
            let (main, sub) = rev.value();
            let (user_key, encoded) = split_record(record.value())?;
            let version = Version::decode(encoded)?;
            let record = if version.tombstone {
                KeyValue {
                    key: user_key.to_vec(),
                    ..Default::default()
                }
            } else {
                version.to_key_value(user_key, main as i64)
            };
            keys.insert(
                revision_key(main, sub, version.tombstone),
                record.encode_to_vec(),
            );
        }

        let meta_table = txn.open_table(META).map_err(|e| err(&e))?;
        let meta = read_meta(&meta_table).map_err(|e| err(&e))?;
        let mut meta_bucket = BTreeMap::new();
        meta_bucket.insert(
            b"consistent_index".to_vec(),
            meta.consistent_index.to_be_bytes().to_vec(),
        );
        if meta.compact_revision > 0 {
            let rev = revision_key(meta.compact_revision as u64, 0, false);
            meta_bucket.insert(b"scheduledCompactRev".to_vec(), rev.clone());
            meta_bucket.insert(b"finishedCompactRev".to_vec(), rev);
        }

        let leases_table = txn.open_table(LEASES).map_err(|e| err(&e))?;
        let mut leases = BTreeMap::new();
        for item in leases_table.iter().map_err(|e| err(&e))? {
            let (id, ttl) = item.map_err(|e| err(&e))?;
            leases.insert(
                (id.value() as u64).to_be_bytes().to_vec(),
                lease_record(id.value(), ttl.value()),
            );
        }

        // v3 auth: rampart-auth's records ("enabled", "revision", "user/<name>", "role/<name>",
        // users and roles encoded as authpb messages) in etcd's three auth buckets.
        let auth_table = txn.open_table(AUTH).map_err(|e| err(&e))?;
        let mut auth = BTreeMap::from([(b"authRevision".to_vec(), 1u64.to_be_bytes().to_vec())]);
        let (mut users, mut roles) = (BTreeMap::new(), BTreeMap::new());
        for item in auth_table.iter().map_err(|e| err(&e))? {
            let (key, value) = item.map_err(|e| err(&e))?;
            let (key, value) = (key.value(), value.value().to_vec());
            if let Some(name) = key.strip_prefix("user/") {
                users.insert(name.as_bytes().to_vec(), value);
            } else if let Some(name) = key.strip_prefix("role/") {
                roles.insert(name.as_bytes().to_vec(), value);
            } else if key == "enabled" {
                auth.insert(b"authEnabled".to_vec(), value);
            } else if key == "revision" {
                auth.insert(b"authRevision".to_vec(), value);
            }
        }

        let mut buckets = Buckets::new();
        buckets.insert(b"auth".to_vec(), auth);
        buckets.insert(b"authUsers".to_vec(), users);
        buckets.insert(b"authRoles".to_vec(), roles);
        buckets.insert(b"key".to_vec(), keys);
        buckets.insert(b"meta".to_vec(), meta_bucket);
        buckets.insert(b"lease".to_vec(), leases);
        buckets.insert(
            b"alarm".to_vec(),
            alarms
                .into_iter()
                .map(|(member, alarm)| (alarm_record(member, alarm), Vec::new()))
                .collect(),
        );
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_are_etcds() {
        let k = revision_key(5, 1, false);
        assert_eq!(k.len(), 17);
        assert_eq!(&k[..8], &5u64.to_be_bytes());
        assert_eq!(k[8], b'_');
        assert_eq!(revision_key(5, 1, true).last(), Some(&b't'));
    }

    #[test]
    fn lease_records_match_gogoproto() {
        // leasepb.Lease{ID: 1, TTL: 100}: field 1 varint 1, field 2 varint 100.
        assert_eq!(lease_record(1, 100), vec![0x08, 0x01, 0x10, 0x64]);
    }
}

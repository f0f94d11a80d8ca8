//! Writes: a batch of requests applied in one redb write transaction.

use std::collections::BTreeSet;

use rampart_proto::mvccpb::{event::EventType, Event, KeyValue};
use redb::{Durability, ReadableTable, WriteTransaction};

use crate::codec::{encode_record, split_record, Version};
use crate::index::{Rev, SharedIndex};
use crate::read::live_revisions;
use crate::store::{
    check_revision, fetch, read_meta, Meta, RangeResult, Store, AUTH, HISTORY, LEASES, META,
    META_COMPACT_REV, META_CONSISTENT_INDEX, META_CURRENT_REV, META_V2_INDEX, V2,
};
use crate::{range_bounds, MvccError};

/// One write transaction spanning many requests.
pub struct WriteBatch {
    txn: WriteTransaction,
    meta: Meta,
    start_meta: Meta,
    /// Sub revision of the next write in the request being applied (0 = nothing written yet).
    sub: u64,
    path: std::path::PathBuf,
    index: IndexChanges,
    writeback: std::sync::Arc<crate::writeback::Writeback>,
}

/// The batch's hold on the key index, which it changes as it writes (its own reads need the
/// changes before the commit). Dropped without a commit, it marks the index for a rebuild
/// from the backend, whose writes were rolled back.
struct IndexChanges {
    index: SharedIndex,
    changed: bool,
}

impl Drop for IndexChanges {
    fn drop(&mut self) {
        if self.changed {
            self.index.mark_stale();
        }
    }
}

impl Store {
    /// Starts a write batch.
    pub fn write(&self) -> Result<WriteBatch, MvccError> {
        self.refresh_index()?;
        let txn = self
            .db
            .begin_write()
            .map_err(|e| MvccError::backend(&self.path, e))?;
        let meta = {
            let table = txn
                .open_table(META)
                .map_err(|e| MvccError::backend(&self.path, e))?;
            read_meta(&table).map_err(|e| MvccError::backend(&self.path, e))?
        };
        Ok(WriteBatch {
            txn,
            meta,
            start_meta: meta,
            sub: 0,
            path: self.path.clone(),
            index: IndexChanges {
                index: self.index.clone(),
                changed: false,
            },
            writeback: self.writeback.clone(),
        })
    }
}

impl WriteBatch {
    fn err(&self, e: impl std::fmt::Display) -> MvccError {
        MvccError::backend(&self.path, e)
    }

    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// The revision the current request writes at.
    pub fn pending_revision(&self) -> i64 {
        self.meta.current_revision + 1
    }

    /// The revision reads of the current request see: the pending one once it has written.
    pub fn read_revision(&self) -> i64 {
        if self.sub > 0 {
            self.pending_revision()
        } else {
            self.meta.current_revision
        }
    }

    /// Reads within the batch, seeing earlier writes (also of the current request).
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        revision: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError> {
        let visible = Meta {
            current_revision: self.read_revision(),
            ..self.meta
        };
        let at = check_revision(revision, visible)?;
        let (revs, count) = live_revisions(
            &self.index.index.read(),
            range_bounds(key, range_end),
            at,
            limit,
        )?;
        let kvs = if revs.is_empty() {
            Vec::new()
        } else {
            let history = self.txn.open_table(HISTORY).map_err(|e| self.err(e))?;
            revs.into_iter()
                .map(|rev| fetch(&history, rev))
                .collect::<Result<_, _>>()?
        };
        Ok(RangeResult {
            kvs,
            count,
            revision: visible.current_revision,
        })
    }

    /// The live version of `key` as the current request sees it.
    pub fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        Ok(self.range(key, &[], 0, 1)?.kvs.pop())
    }

    /// Puts `key` at the pending revision; returns the previous live version.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> Result<(Option<KeyValue>, Event), MvccError> {
        let prev = self.latest(key)?;
        self.put_over(key, value, lease, prev)
    }

    /// [`WriteBatch::put`] for a caller that already read the live version (`prev`, from
    /// [`WriteBatch::latest`] in this request): saves a second lookup on the write path.
    pub fn put_over(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        prev: Option<KeyValue>,
    ) -> Result<(Option<KeyValue>, Event), MvccError> {
        let rev = self.pending_revision();
        let version = Version {
            sub: self.sub,
            create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(rev),
            version: prev.as_ref().map(|p| p.version).unwrap_or(0) + 1,
            lease,
            tombstone: false,
            value,
        };
        self.store_version(key, rev, &version)?;
        let event = Event {
            r#type: EventType::Put as i32,
            kv: Some(version.to_key_value(key, rev)),
            prev_kv: prev.clone(),
        };
        Ok((prev, event))
    }

    /// Deletes the live keys of the range at the pending revision; returns one delete event per
    /// key, whose `prev_kv` is the deleted version (moved there, not copied: a prefix delete can
    /// cover 100,000s of keys with their values).
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<Event>, MvccError> {
        let live = self.range(key, range_end, 0, 0)?.kvs;
        let rev = self.pending_revision();
        let mut events = Vec::with_capacity(live.len());
        let tomb = Version {
            sub: 0,
            create_revision: 0,
            version: 0,
            lease: 0,
            tombstone: true,
            value: Vec::new(),
        };
        // The table and the index are opened once for the whole range.
        {
            let mut history = self.txn.open_table(HISTORY).map_err(|e| self.err(e))?;
            self.index.changed = true;
            let mut index = self.index.index.write();
            for kv in live {
                let tomb = Version {
                    sub: self.sub,
                    ..tomb.clone()
                };
                history
                    .insert(
                        (rev as u64, self.sub),
                        encode_record(&kv.key, &tomb).as_slice(),
                    )
                    .map_err(|e| MvccError::backend(&self.path, e))?;
                index.push(
                    &kv.key,
                    Rev {
                        main: rev,
                        sub: self.sub as u32,
                        tombstone: true,
                    },
                );
                self.sub += 1;
                events.push(Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue {
                        key: kv.key.clone(),
                        mod_revision: rev,
                        ..Default::default()
                    }),
                    prev_kv: Some(kv),
                });
            }
        }
        Ok(events)
    }

    fn store_version(&mut self, key: &[u8], rev: i64, v: &Version) -> Result<(), MvccError> {
        let sub = self.sub;
        {
            let mut history = self.txn.open_table(HISTORY).map_err(|e| self.err(e))?;
            history
                .insert((rev as u64, sub), encode_record(key, v).as_slice())
                .map_err(|e| self.err(e))?;
        }
        self.index.changed = true;
        self.index.index.write().push(
            key,
            Rev {
                main: rev,
                sub: sub as u32,
                tombstone: v.tombstone,
            },
        );
        self.sub += 1;
        Ok(())
    }

    /// Records a granted lease.
    pub fn put_lease(&mut self, id: i64, ttl: i64) -> Result<(), MvccError> {
        let mut leases = self.txn.open_table(LEASES).map_err(|e| self.err(e))?;
        leases.insert(id, ttl).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets a lease (its keys are deleted separately); returns whether it existed.
    pub fn remove_lease(&mut self, id: i64) -> Result<bool, MvccError> {
        let mut leases = self.txn.open_table(LEASES).map_err(|e| self.err(e))?;
        let existed = leases.remove(id).map_err(|e| self.err(e))?.is_some();
        Ok(existed)
    }

    /// Raises or clears an alarm (kept in the meta table, so snapshots carry it); returns whether
    /// that changed anything.
    pub fn set_alarm(
        &mut self,
        member_id: u64,
        alarm: i32,
        active: bool,
    ) -> Result<bool, MvccError> {
        let key = crate::store::alarm_key(member_id, alarm);
        let mut meta = self.txn.open_table(META).map_err(|e| self.err(e))?;
        let changed = if active {
            meta.insert(key.as_str(), 1)
                .map_err(|e| self.err(e))?
                .is_none()
        } else {
            meta.remove(key.as_str())
                .map_err(|e| self.err(e))?
                .is_some()
        };
        Ok(changed)
    }

    /// Stores a v2 node (encoded by the caller).
    pub fn v2_put(&mut self, path: &str, node: &[u8]) -> Result<(), MvccError> {
        let mut t = self.txn.open_table(V2).map_err(|e| self.err(e))?;
        t.insert(path, node).map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn v2_remove(&mut self, path: &str) -> Result<(), MvccError> {
        let mut t = self.txn.open_table(V2).map_err(|e| self.err(e))?;
        t.remove(path).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores a v3 auth record (`None`: removes it).
    pub fn auth_put(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), MvccError> {
        let mut t = self.txn.open_table(AUTH).map_err(|e| self.err(e))?;
        match value {
            Some(v) => t.insert(key, v).map(|_| ()),
            None => t.remove(key).map(|_| ()),
        }
        .map_err(|e| self.err(e))
    }

    pub fn set_v2_index(&mut self, index: u64) {
        self.meta.v2_index = index;
    }

    /// Ends the current request: if it wrote, the pending revision becomes current.
    pub fn end_request(&mut self) {
        if self.sub > 0 {
            self.meta.current_revision += 1;
            debug_assert!(self.meta.current_revision > self.start_meta.current_revision);
            self.sub = 0;
        }
    }

    /// Physically removes versions not needed to read at revisions ≥ `revision`.
    pub fn compact(&mut self, revision: i64) -> Result<(), MvccError> {
        if revision <= self.meta.compact_revision {
            return Err(MvccError::Compacted);
        }
        if revision > self.meta.current_revision {
            return Err(MvccError::FutureRevision);
        }
        // Only keys changed since the previous compaction can have versions to drop: the
        // others were already reduced to their latest version then. This keeps each compaction
        // proportional to the changes it covers, not to the size of the store.
        let mut touched: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut history = self.txn.open_table(HISTORY).map_err(|e| self.err(e))?;
        {
            let from = (self.meta.compact_revision as u64 + 1, 0u64);
            for item in history
                .range(from..=(revision as u64, u64::MAX))
                .map_err(|e| MvccError::backend(&self.path, e))?
            {
                let (_, record) = item.map_err(|e| MvccError::backend(&self.path, e))?;
                touched.insert(split_record(record.value())?.0.to_vec());
            }
        }
        self.index.changed = true;
        let mut index = self.index.index.write();
        // Reads below the compaction are refused from now on, also by views of an older state.
        index.set_compacted(revision);
        for key in &touched {
            for rev in index.compact_key(key, revision) {
                history
                    .remove((rev.main as u64, u64::from(rev.sub)))
                    .map_err(|e| MvccError::backend(&self.path, e))?;
            }
        }
        self.meta.compact_revision = revision;
        Ok(())
    }

    /// Commits the batch with `consistent_index` as the last applied Raft index.
    pub fn commit(
        mut self,
        consistent_index: u64,
        durability: Durability,
    ) -> Result<Meta, MvccError> {
        debug_assert!(self.sub == 0, "a request was left open");
        debug_assert!(
            consistent_index >= self.start_meta.consistent_index,
            "consistent index went backwards"
        );
        self.meta.consistent_index = consistent_index;
        {
            let mut meta = self.txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_CURRENT_REV, self.meta.current_revision as u64)
                .map_err(|e| MvccError::backend(&self.path, e))?;
            meta.insert(META_COMPACT_REV, self.meta.compact_revision as u64)
                .map_err(|e| MvccError::backend(&self.path, e))?;
            meta.insert(META_CONSISTENT_INDEX, consistent_index)
                .map_err(|e| MvccError::backend(&self.path, e))?;
            meta.insert(META_V2_INDEX, self.meta.v2_index)
                .map_err(|e| MvccError::backend(&self.path, e))?;
        }
        self.txn
            .set_durability(durability)
            .map_err(|e| MvccError::backend(&self.path, e))?;
        let meta = self.meta;
        self.txn
            .commit()
            .map_err(|e| MvccError::backend(&self.path, e))?;
        self.index.changed = false;
        self.writeback.after_commit();
        Ok(meta)
    }
}

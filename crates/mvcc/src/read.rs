//! Reads of one committed state: ranges, events since a revision, hashes, side tables.

use std::path::PathBuf;

use rampart_proto::mvccpb::{event::EventType, Event, KeyValue};
use redb::{ReadableTable, ReadableTableMetadata};

use crate::codec::{split_record, version_flags, Version};
use crate::index::{KeyIndex, Rev, SharedIndex};
use crate::store::{check_revision, fetch, HashKv, Meta, RangeResult};
use crate::{range_bounds, MvccError, RangeSpec};

/// A read transaction's view.
pub struct ReadView {
    pub(crate) history: redb::ReadOnlyTable<(u64, u64), &'static [u8]>,
    pub(crate) leases: redb::ReadOnlyTable<i64, i64>,
    pub(crate) v2: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    pub(crate) auth: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    pub(crate) meta: Meta,
    pub(crate) index: SharedIndex,
    pub(crate) path: PathBuf,
}

/// The index entries of the live keys of `spec` at `at` (all counted, `limit` returned), or
/// Compacted when the index has already dropped versions that revision needs.
pub(crate) fn live_revisions(
    index: &KeyIndex,
    spec: RangeSpec<'_>,
    at: i64,
    limit: usize,
) -> Result<(Vec<Rev>, i64), MvccError> {
    if at < index.compacted() {
        return Err(MvccError::Compacted);
    }
    let mut revs = Vec::new();
    let count = index.live(spec, at, limit, |_, rev| revs.push(rev));
    Ok((revs, count))
}

impl ReadView {
    fn err(&self, e: impl std::fmt::Display) -> MvccError {
        MvccError::backend(&self.path, e)
    }

    pub fn meta(&self) -> Meta {
        self.meta
    }

    pub fn current_revision(&self) -> i64 {
        self.meta.current_revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.meta.compact_revision
    }

    pub fn consistent_index(&self) -> u64 {
        self.meta.consistent_index
    }

    /// Live keys in `[key, range_end)` at `revision` (0 = current); at most `limit` returned
    /// (0 = all), `count` counts all.
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        revision: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError> {
        let at = check_revision(revision, self.meta)?;
        // The index may hold newer versions than this view (applied since): every lookup is
        // bounded by `at`, which this view has committed.
        let (revs, count) =
            live_revisions(&self.index.read(), range_bounds(key, range_end), at, limit)?;
        let kvs = revs
            .into_iter()
            .map(|rev| fetch(&self.history, rev))
            .collect::<Result<_, _>>()?;
        Ok(RangeResult {
            kvs,
            count,
            revision: self.meta.current_revision,
        })
    }

    /// Changes in `[key, range_end)` with revision ≥ `from`, in revision order, at most `limit`
    /// revisions' worth (whole revisions are never split).
    pub fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        limit: usize,
    ) -> Result<Vec<Event>, MvccError> {
        self.events_with(key, range_end, from, limit, false)
    }

    /// [`ReadView::events`], each event with the key's previous version when `prev_kv` is set
    /// (as long as compaction kept it).
    pub fn events_with(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        limit: usize,
        prev_kv: bool,
    ) -> Result<Vec<Event>, MvccError> {
        // As etcd's watch: starting at the compacted revision itself is allowed (the versions
        // kept by the compaction are still there), starting before it is not.
        if from > 0 && from < self.meta.compact_revision {
            return Err(MvccError::Compacted);
        }
        let spec = range_bounds(key, range_end);
        let mut events = Vec::new();
        let mut last_main = 0u64;
        let iter = self
            .history
            .range((from.max(1) as u64, 0u64)..)
            .map_err(|e| self.err(e))?;
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (main, _sub) = k.value();
            if main as i64 > self.meta.current_revision {
                break;
            }
            if limit > 0 && events.len() >= limit && main != last_main {
                break;
            }
            let (user_key, encoded) = split_record(v.value())?;
            if !spec.contains(user_key) {
                continue;
            }
            let version = Version::decode(encoded)?;
            let (event_type, kv) = if version.tombstone {
                let kv = KeyValue {
                    key: user_key.to_vec(),
                    mod_revision: main as i64,
                    ..Default::default()
                };
                (EventType::Delete, kv)
            } else {
                (EventType::Put, version.to_key_value(user_key, main as i64))
            };
            let prev = if prev_kv {
                self.previous_version(user_key, main as i64)?
            } else {
                None
            };
            events.push(Event {
                r#type: event_type as i32,
                kv: Some(kv),
                prev_kv: prev,
            });
            last_main = main;
        }
        Ok(events)
    }

    /// The live version of `key` just before revision `main`, if any.
    fn previous_version(&self, key: &[u8], main: i64) -> Result<Option<KeyValue>, MvccError> {
        let before = self.index.read().before(key, main);
        match before {
            Some(rev) if !rev.tombstone => Ok(Some(fetch(&self.history, rev)?)),
            _ => Ok(None),
        }
    }

    /// Every granted lease: (ID, TTL in seconds), by ID.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>, MvccError> {
        let mut out = Vec::new();
        for item in self.leases.iter().map_err(|e| self.err(e))? {
            let (id, ttl) = item.map_err(|e| self.err(e))?;
            out.push((id.value(), ttl.value()));
        }
        Ok(out)
    }

    /// Every v2 node: (path, encoded node), by path.
    pub fn v2_nodes(&self) -> Result<Vec<(String, Vec<u8>)>, MvccError> {
        let mut out = Vec::new();
        for item in self.v2.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every v3 auth record: (key, bytes), by key.
    pub fn auth_records(&self) -> Result<Vec<(String, Vec<u8>)>, MvccError> {
        let mut out = Vec::new();
        for item in self.auth.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Live keys attached to a lease: (lease ID, key), in key order. One pass over the history
    /// in revision order: a version counts if it is its key's live one.
    pub fn lease_attachments(&self) -> Result<Vec<(i64, Vec<u8>)>, MvccError> {
        // Revoking a lease deletes its keys, so without leases no live key names one: a start
        // with many keys and no leases skips a pass over the whole history.
        if self.leases.is_empty().map_err(|e| self.err(e))? {
            return Ok(Vec::new());
        }
        let at = self.meta.current_revision;
        let mut out = Vec::new();
        for item in self.history.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (main, sub) = k.value();
            if main as i64 > at {
                break;
            }
            let (key, encoded) = split_record(v.value())?;
            let (tombstone, lease) = version_flags(encoded);
            if tombstone || lease == 0 {
                continue;
            }
            let live = self.index.read().at(key, at);
            if live.is_some_and(|r| r.main == main as i64 && u64::from(r.sub) == sub) {
                out.push((lease, key.to_vec()));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// etcd's HashKV: a CRC32C over every retained version up to `revision` (0 = current), in
    /// revision order.
    pub fn hash_kv(&self, revision: i64) -> Result<HashKv, MvccError> {
        // etcd refuses to hash at the compacted revision itself, unlike a range there.
        if revision > 0 && revision <= self.meta.compact_revision {
            return Err(MvccError::Compacted);
        }
        let at = check_revision(revision, self.meta)?;
        let mut crc = 0u32;
        let iter = self
            .history
            .range(..=(at as u64, u64::MAX))
            .map_err(|e| self.err(e))?;
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (main, sub) = k.value();
            crc = crc32c::crc32c_append(crc, &main.to_be_bytes());
            crc = crc32c::crc32c_append(crc, &sub.to_be_bytes());
            crc = crc32c::crc32c_append(crc, v.value());
        }
        Ok(HashKv {
            hash: crc,
            compact_revision: self.meta.compact_revision,
            hash_revision: at,
        })
    }

    /// Number of stored versions (for tests and metrics).
    pub fn version_count(&self) -> Result<u64, MvccError> {
        self.history.len().map_err(|e| self.err(e))
    }
}

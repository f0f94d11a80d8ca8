//! The in-memory key index: for each user key, the revisions of its retained versions.
//!
//! etcd keeps the same thing (its `treeIndex`) so that its backend can be keyed by revision:
//! a write then appends to the end of one B-tree instead of dirtying a random leaf page of a
//! key-ordered one. Measured with redb on this machine (100k keys, 290-byte values, random
//! rewrites): 16–18 µs per put keyed by (key, revision) against 2–3 µs keyed by revision.
//! The index is rebuilt from the backend when a store opens.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use smallvec::SmallVec;

use crate::RangeSpec;

/// Where one version of a key is stored: its (main, sub) revision, and whether it is a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rev {
    pub main: i64,
    pub sub: u32,
    pub tombstone: bool,
}

/// A key's retained versions, oldest first. Most keys have one (after a compaction, or when
/// written once), which then needs no allocation of its own.
type History = SmallVec<[Rev; 1]>;

#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    keys: BTreeMap<Box<[u8]>, History>,
    /// Revisions below this one may have lost versions from the index: reads there are refused
    /// (a read view older than a compaction must not see its result half applied).
    compacted: i64,
}

impl KeyIndex {
    /// Records a new version of `key`; revisions of one key only grow.
    pub fn push(&mut self, key: &[u8], rev: Rev) {
        match self.keys.get_mut(key) {
            Some(history) => {
                debug_assert!(history
                    .last()
                    .is_none_or(|r| (r.main, r.sub) < (rev.main, rev.sub)));
                history.push(rev);
            }
            None => {
                let mut history = History::new();
                history.push(rev);
                self.keys.insert(key.into(), history);
            }
        }
    }

    pub fn compacted(&self) -> i64 {
        self.compacted
    }

    /// The newest version of `key` at or below revision `at` (a tombstone included).
    pub fn at(&self, key: &[u8], at: i64) -> Option<Rev> {
        newest_at(self.keys.get(key)?, at)
    }

    /// The newest version of `key` strictly below revision `main`.
    pub fn before(&self, key: &[u8], main: i64) -> Option<Rev> {
        newest_at(self.keys.get(key)?, main - 1)
    }

    /// Live keys of `spec` at revision `at`, in key order: every one is counted, and `visit`
    /// is called for the first `limit` (0 = all) with the key and its live version.
    pub fn live(
        &self,
        spec: RangeSpec<'_>,
        at: i64,
        limit: usize,
        mut visit: impl FnMut(&[u8], Rev),
    ) -> i64 {
        let range = match spec {
            RangeSpec::Single(k) => {
                return match self.at(k, at) {
                    Some(rev) if !rev.tombstone => {
                        visit(k, rev);
                        1
                    }
                    _ => 0,
                };
            }
            RangeSpec::From(k) => self
                .keys
                .range::<[u8], _>((Bound::Included(k), Bound::Unbounded)),
            RangeSpec::Between(k, end) => {
                if end <= k {
                    return 0;
                }
                self.keys
                    .range::<[u8], _>((Bound::Included(k), Bound::Excluded(end)))
            }
        };
        let mut count = 0i64;
        for (key, history) in range {
            if let Some(rev) = newest_at(history, at).filter(|r| !r.tombstone) {
                if limit == 0 || (count as usize) < limit {
                    visit(key, rev);
                }
                count += 1;
            }
        }
        count
    }

    /// Drops the versions of `key` that no read at revision ≥ `revision` needs: every one at
    /// or below it except the newest, and that one too if it is a deletion. Returns the dropped
    /// revisions, for the backend to remove as well.
    pub fn compact_key(&mut self, key: &[u8], revision: i64) -> Vec<Rev> {
        let Some(history) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        let kept_from = history.partition_point(|r| r.main <= revision);
        let mut drop_until = kept_from.saturating_sub(1);
        if kept_from > 0 && history[kept_from - 1].tombstone {
            drop_until = kept_from;
        }
        let dropped: Vec<Rev> = history.drain(..drop_until).collect();
        if history.is_empty() {
            self.keys.remove(key);
        } else if history.spilled() && history.len() == 1 {
            // Back inline: a compacted key should cost no allocation of its own.
            history.shrink_to_fit();
        }
        dropped
    }

    pub fn set_compacted(&mut self, revision: i64) {
        self.compacted = self.compacted.max(revision);
    }

    /// Number of keys with a retained version.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The index shared by the store, its write batch and its read views.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedIndex {
    index: Arc<RwLock<KeyIndex>>,
    /// Set when a write batch that changed the index is dropped without committing.
    stale: Arc<AtomicBool>,
}

impl SharedIndex {
    pub fn read(&self) -> RwLockReadGuard<'_, KeyIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, KeyIndex> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn replace(&self, index: KeyIndex) {
        *self.write() = index;
    }

    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::SeqCst)
    }
}

fn newest_at(history: &History, at: i64) -> Option<Rev> {
    let n = history.partition_point(|r| r.main <= at);
    n.checked_sub(1).map(|i| history[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(main: i64) -> Rev {
        Rev {
            main,
            sub: 0,
            tombstone: false,
        }
    }

    fn del(main: i64) -> Rev {
        Rev {
            tombstone: true,
            ..put(main)
        }
    }

    #[test]
    fn a_key_reads_its_newest_version_at_each_revision() {
        let mut index = KeyIndex::default();
        index.push(b"a", put(2));
        index.push(b"a", del(4));
        index.push(b"a", put(6));
        assert_eq!(index.at(b"a", 1), None);
        assert_eq!(index.at(b"a", 3), Some(put(2)));
        assert_eq!(index.at(b"a", 5), Some(del(4)));
        assert_eq!(index.at(b"a", 9), Some(put(6)));
        assert_eq!(index.before(b"a", 6), Some(del(4)));
        assert_eq!(index.before(b"a", 2), None);
    }

    #[test]
    fn live_counts_every_key_and_visits_up_to_the_limit() {
        let mut index = KeyIndex::default();
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            index.push(*k, put(2 + i as i64));
        }
        index.push(b"b", del(10));
        let mut seen = Vec::new();
        let count = index.live(RangeSpec::From(b"a"), 20, 2, |k, _| seen.push(k.to_vec()));
        assert_eq!(count, 3);
        assert_eq!(seen, vec![b"a".to_vec(), b"c".to_vec()]);
        // Before the deletion, b is live.
        let count = index.live(RangeSpec::Between(b"a", b"c"), 9, 0, |_, _| {});
        assert_eq!(count, 2);
    }

    #[test]
    fn compaction_keeps_the_newest_live_version_and_drops_deleted_keys() {
        let mut index = KeyIndex::default();
        index.push(b"a", put(2));
        index.push(b"a", put(3));
        index.push(b"a", put(7));
        index.push(b"b", put(4));
        index.push(b"b", del(5));
        assert_eq!(index.compact_key(b"a", 5), vec![put(2)]);
        assert_eq!(index.at(b"a", 5), Some(put(3)));
        assert_eq!(index.compact_key(b"b", 5), vec![put(4), del(5)]);
        assert_eq!(index.at(b"b", 9), None);
        assert_eq!(index.len(), 1);
    }
}

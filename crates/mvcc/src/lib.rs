//! etcd's multi-version data model on a `redb` backend.
//!
//! Owns: revisions (main, sub), the per-key history (create/mod revision, version, lease,
//! tombstones), ranges at any retained revision, events since a revision, compaction, HashKV,
//! the consistent index (the last Raft index applied) and whole-store snapshots.
//! Does not own: what a client request means (that is `rampart-apply`), leases' lifetimes, or
//! durability of the Raft log (the WAL).
//!
//! # Layout
//! - `history`: `(main, sub)` → user key and encoded [`Version`] (value, create rev, version,
//!   lease, tombstone flag), in revision order as etcd's `key` bucket: writes append to the end
//!   of the B-tree, and watch catch-up and compaction read it in order.
//! - An in-memory key index (`index`), user key → revisions of its retained versions, as etcd's
//!   `treeIndex`: a range at revision R looks up each key's newest revision ≤ R there and reads
//!   those versions from `history`. It is rebuilt from `history` when the store opens.
//! - `meta`: current revision, compacted revision, consistent index.
//!
//! Writes happen in a [`WriteBatch`] (one redb write transaction for many Raft entries); each
//! request in it gets its own main revision.
//!
//! # Durability
//! A batch commits with the consistent index in the same transaction. Ordinary batches may commit
//! with [`Durability::None`]: the Raft WAL already holds the entries durably. After a crash the
//! store may then be behind the WAL (at its last durable commit); the node replays the entries
//! above [`ReadView::consistent_index`], and entries at or below it are skipped, so a replay is
//! idempotent. Commit with [`Durability::Immediate`] before taking a snapshot and periodically.

mod codec;
mod etcd_export;
mod index;
mod legacy;
mod read;
mod snapshot;
mod store;
mod write;
mod writeback;

pub use codec::Version;
pub use rampart_bbolt::Buckets as EtcdBuckets;
pub use read::ReadView;
pub use redb::Durability;
pub use store::{HashKv, RangeResult, Store};
pub use write::WriteBatch;

/// Errors of the store. Texts of the client-visible ones are etcd's.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("backend {path}: {message}")]
    Backend { path: String, message: String },
    #[error("backend record is damaged: {0}")]
    Damaged(String),
    #[error("snapshot data is damaged: {0}")]
    BadSnapshot(String),
}

impl MvccError {
    pub(crate) fn backend(path: &std::path::Path, e: impl std::fmt::Display) -> MvccError {
        MvccError::Backend {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// The end of a range, etcd style: empty = the single key, `\0` = everything from the key on.
pub fn range_bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> RangeSpec<'a> {
    if range_end.is_empty() {
        RangeSpec::Single(key)
    } else if range_end == [0] {
        RangeSpec::From(key)
    } else {
        RangeSpec::Between(key, range_end)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum RangeSpec<'a> {
    Single(&'a [u8]),
    From(&'a [u8]),
    Between(&'a [u8], &'a [u8]),
}

impl RangeSpec<'_> {
    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            RangeSpec::Single(key) => k == key,
            RangeSpec::From(key) => k >= key,
            RangeSpec::Between(key, end) => k >= key && k < end,
        }
    }

    pub fn start(&self) -> &[u8] {
        match *self {
            RangeSpec::Single(k) | RangeSpec::From(k) | RangeSpec::Between(k, _) => k,
        }
    }
}

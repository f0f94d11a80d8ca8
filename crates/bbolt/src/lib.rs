//! Reads and writes bbolt 1.3 files: the format of etcd's backend (`member/snap/db`) and of the
//! snapshots `etcdctl snapshot save` writes.
//!
//! Owns: the page layout, choosing the meta page, walking bucket trees in key order, bbolt's
//! integrity check (`Tx.Check`) and writing a new compact file from top-level buckets.
//! Does not own: what etcd keeps in the buckets (`rampart-ctl`'s snapshot commands know that),
//! or updating a file in place: a file is read whole and written whole.

mod page;
mod read;
mod write;

pub use page::{Meta, DEFAULT_PAGE_SIZE};
pub use read::{Bucket, Db, Value};
pub use write::{write_buckets, write_db, BucketSlices, Buckets};

/// What can go wrong reading or writing a bbolt file. The first four carry bbolt's own words,
/// which etcdctl prints for a bad snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// bbolt would initialise an empty file as a new database; read-only, it cannot.
    #[error("empty file: not a bbolt database")]
    Empty,
    #[error("invalid database")]
    Invalid,
    #[error("file size too small")]
    TooSmall,
    #[error("version mismatch")]
    VersionMismatch,
    #[error("checksum error")]
    Checksum,
    #[error("page {id}: beyond the end of the file (file truncated?)")]
    PageOutOfFile { id: u64 },
    #[error("page {id}: element runs past the end of the page (corrupt page)")]
    Truncated { id: u64 },
    #[error("page {id}: expected a branch or leaf page, found {found}")]
    PageType { id: u64, found: String },
    #[error("page {id}: tree deeper than any real database (page cycle in a corrupt file?)")]
    TooDeep { id: u64 },
    #[error("bbolt does not allow empty keys or bucket names")]
    EmptyKey,
    #[error("key and value of {len} bytes exceed bbolt's element size limit")]
    TooLarge { len: usize },
    #[error("{key:?} is out of order or repeated: buckets and keys must be sorted and unique")]
    Unsorted { key: String },
    #[error("writing the database: {0}")]
    Write(#[from] std::io::Error),
}

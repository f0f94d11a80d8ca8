//! `snapshot status` and `snapshot restore`: etcdctl 3.4's offline commands on a snapshot file
//! (`snapshot save` talks to a member and lives with the other maintenance commands).
//!
//! A snapshot is etcd's bbolt backend file followed by a SHA-256 of it (`rampart-bbolt` reads
//! and writes the bbolt part). Status reports what etcdctl reports; restore turns a snapshot into
//! a data directory the real etcd 3.4 starts from: `member/snap/db`, a v2 store snapshot
//! carrying the new membership, and a WAL bootstrapping the new cluster.
//!
//! The readers and writers of etcd's files here (`wal`, `wal_read`, `v2snap`, `proto`,
//! `raft_request`) also serve the other offline commands on an etcd data dir: `backup` (v2)
//! and `migrate`.

pub(crate) mod cluster;
pub(crate) mod proto;
pub(crate) mod raft_request;
mod restore;
pub(crate) mod v2snap;
pub(crate) mod wal;
pub(crate) mod wal_read;
mod zaplog;

use std::path::Path;

use rampart_bbolt::{Db, Value};

use crate::exit::{CtlError, CtlResult, ExitCode};

pub(crate) use restore::{create_dir_all, read_buckets};
pub use restore::{restore, RestoreArgs};

/// etcdctl's `snapshot.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStatus {
    /// CRC-32C over every bucket name, key and value, in order.
    pub hash: u32,
    /// Main revision of the last key in the `key` bucket.
    pub revision: i64,
    /// Entries over all buckets.
    pub total_key: u64,
    /// Bytes up to the file's high-water mark (bbolt's `Tx.Size`).
    pub total_size: i64,
}

/// Go's text for an OS error ("no such file or directory"), which etcdctl prints after the
/// operation and the path.
pub(crate) fn go_os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Opens a snapshot's bbolt part as etcdctl does (`bolt.Open` read-only), with its errors.
fn open_db(path: &str) -> CtlResult<Db> {
    let data = std::fs::read(path)
        .map_err(|e| CtlError::error(format!("open {path}: {}", go_os_error(&e))))?;
    Db::from_bytes(data).map_err(|e| match e {
        // bbolt initialises an empty file, which fails on a read-only descriptor.
        rampart_bbolt::Error::Empty => {
            CtlError::error(format!("write {path}: bad file descriptor"))
        }
        other => CtlError::error(other.to_string()),
    })
}

/// Computes what `etcdctl snapshot status` reports for the file at `path`.
pub fn status(path: &str) -> CtlResult<DbStatus> {
    std::fs::metadata(path)
        .map_err(|e| CtlError::error(format!("stat {path}: {}", go_os_error(&e))))?;
    let db = open_db(path)?;
    let problems = db.check();
    if !problems.is_empty() {
        return Err(CtlError::error(format!(
            "snapshot file integrity check failed. {} errors found.\n{}",
            problems.len(),
            problems.join("\n")
        )));
    }
    let bad = |e: rampart_bbolt::Error| CtlError::error(e.to_string());
    let mut crc = 0u32;
    let mut status = DbStatus {
        hash: 0,
        revision: 0,
        total_key: 0,
        total_size: db.size() as i64,
    };
    for (name, value) in db.entries(&db.root()).map_err(bad)? {
        let Value::Bucket(bucket) = value else {
            return Err(CtlError::error(format!(
                "cannot get hash of bucket {}",
                String::from_utf8_lossy(name)
            )));
        };
        crc = crc32c::crc32c_append(crc, name);
        let is_key = name == b"key";
        db.for_each(&bucket, |k, v| {
            crc = crc32c::crc32c_append(crc, k);
            // A nested bucket hashes as an empty value, as a bbolt cursor returns nil for it.
            if let Value::Plain(v) = v {
                crc = crc32c::crc32c_append(crc, v);
            }
            if is_key && k.len() >= 8 {
                // Revision keys start with the main revision, big-endian.
                status.revision = i64::from_be_bytes(k[..8].try_into().unwrap_or_default());
            }
            status.total_key += 1;
            Ok(())
        })
        .map_err(bad)?;
    }
    status.hash = crc;
    Ok(status)
}

/// `snapshot status <file>`.
pub fn status_cmd(printer: &crate::output::Printer, args: &[String]) -> CtlResult {
    if args.len() != 1 {
        return Err(CtlError::new(
            ExitCode::BadArgs,
            "snapshot status requires exactly one argument",
        ));
    }
    let st = status(&args[0])?;
    printer.db_status(&st)
}

/// The data directory etcdctl restores into when `--data-dir` is not given.
pub fn default_data_dir(name: &str) -> String {
    format!("{name}.etcd")
}

/// Whether `path` exists (etcd's `fileutil.Exist`).
fn exists(path: &Path) -> bool {
    std::fs::metadata(path).is_ok()
}

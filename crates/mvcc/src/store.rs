//! Opening the backend, the metadata, and reads (ranges, events, hashes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_proto::mvccpb::KeyValue;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec::{split_record, version_flags, Version};
use crate::index::{KeyIndex, Rev, SharedIndex};
use crate::read::ReadView;
use crate::writeback::Writeback;
use crate::MvccError;

/// Every retained version in revision order: `(main, sub)` → key and version
/// ([`crate::codec::encode_record`]). etcd's `key` bucket, with the key index in memory.
pub(crate) const HISTORY: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("history");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Granted leases: lease ID → TTL in seconds (the keys attached to a lease are the live keys
/// whose version names it, so they need no table of their own).
pub(crate) const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
/// etcd's v2 key space (kept apart from v3 keys, as in etcd 3.4): path → encoded node.
pub(crate) const V2: TableDefinition<&str, &[u8]> = TableDefinition::new("v2");
/// etcd's v3 auth records (enabled flag, revision, users, roles): record key → bytes, as
/// `rampart-auth` encodes them.
pub(crate) const AUTH: TableDefinition<&str, &[u8]> = TableDefinition::new("auth");

pub(crate) const META_CURRENT_REV: &str = "current_revision";
pub(crate) const META_COMPACT_REV: &str = "compact_revision";
pub(crate) const META_CONSISTENT_INDEX: &str = "consistent_index";
pub(crate) const META_V2_INDEX: &str = "v2_index";

/// Meta-table keys of raised alarms: `alarm/<type>/<member ID in hex>`.
const ALARM_PREFIX: &str = "alarm/";

/// Page cache of the backend. redb's default (1 GiB) lets a member's resident memory grow with
/// the data it wrote; the store's reads are point lookups and short scans near recent writes,
/// and the kernel's page cache still holds the file, so a small cache costs little. Measured
/// loading 1M keys of 256 B into 3 members: 312 MiB resident with 32 MiB, 1,050 MiB with 1 GiB,
/// and the load ran at 11.4k against 9.5k puts/s.
pub const BACKEND_CACHE_BYTES: usize = 32 << 20;

/// Opens (or creates) a backend file with the member's cache size.
pub(crate) fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder()
        .set_cache_size(BACKEND_CACHE_BYTES)
        .create(path)
}

pub(crate) fn alarm_key(member_id: u64, alarm: i32) -> String {
    format!("{ALARM_PREFIX}{alarm}/{member_id:016x}")
}

fn parse_alarm_key(key: &str) -> Option<(u64, i32)> {
    let (alarm, member) = key.strip_prefix(ALARM_PREFIX)?.split_once('/')?;
    Some((u64::from_str_radix(member, 16).ok()?, alarm.parse().ok()?))
}

/// Revisions and the applied index, as of one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    pub current_revision: i64,
    pub compact_revision: i64,
    pub consistent_index: u64,
    /// The v2 key space's index (etcd's `X-Etcd-Index`).
    pub v2_index: u64,
}

pub struct Store {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
    /// Rebuilt from [`HISTORY`] on open and after the backend is replaced; kept current by
    /// write batches, shared with read views.
    pub(crate) index: SharedIndex,
    /// Starts the kernel's writeback of the file after commits ([`crate::writeback`]).
    pub(crate) writeback: Arc<Writeback>,
}

/// The key and value of the version stored at `rev` (which the key index named).
pub(crate) fn fetch(
    history: &impl ReadableTable<(u64, u64), &'static [u8]>,
    rev: Rev,
) -> Result<KeyValue, MvccError> {
    let stored = history
        .get((rev.main as u64, u64::from(rev.sub)))
        .map_err(|e| MvccError::Damaged(format!("reading revision {}: {e}", rev.main)))?
        .ok_or_else(|| {
            MvccError::Damaged(format!(
                "the key index names revision {}_{}, which the backend lacks",
                rev.main, rev.sub
            ))
        })?;
    let (key, version) = split_record(stored.value())?;
    Ok(Version::decode(version)?.to_key_value(key, rev.main))
}

/// Keys of a range at one revision.
#[derive(Debug, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Live keys in the range (all of them, not only the ones returned).
    pub count: i64,
    /// The store's current revision.
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    pub compact_revision: i64,
    pub hash_revision: i64,
}

impl Store {
    /// Opens (or creates) the backend file.
    pub fn open(path: &Path) -> Result<Store, MvccError> {
        let db = open_database(path).map_err(|e| MvccError::backend(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            index: SharedIndex::default(),
            writeback: Arc::new(Writeback::open(path).map_err(|e| MvccError::backend(path, e))?),
        };
        // Make sure the tables exist so readers never see "table does not exist".
        let txn = store
            .db
            .begin_write()
            .map_err(|e| MvccError::backend(path, e))?;
        {
            txn.open_table(HISTORY)
                .map_err(|e| MvccError::backend(path, e))?;
            txn.open_table(META)
                .map_err(|e| MvccError::backend(path, e))?;
            txn.open_table(LEASES)
                .map_err(|e| MvccError::backend(path, e))?;
            txn.open_table(V2)
                .map_err(|e| MvccError::backend(path, e))?;
            txn.open_table(AUTH)
                .map_err(|e| MvccError::backend(path, e))?;
        }
        crate::legacy::migrate(&txn).map_err(|e| MvccError::backend(path, e))?;
        txn.commit().map_err(|e| MvccError::backend(path, e))?;
        store.rebuild_index()?;
        Ok(store)
    }

    /// Reads the key index from the backend (at open, and after the backend changed under it).
    pub(crate) fn rebuild_index(&self) -> Result<(), MvccError> {
        let err = |e: &dyn std::fmt::Display| MvccError::backend(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let history = txn.open_table(HISTORY).map_err(|e| err(&e))?;
        let meta = read_meta(&txn.open_table(META).map_err(|e| err(&e))?).map_err(|e| err(&e))?;
        let mut index = KeyIndex::default();
        for item in history.iter().map_err(|e| err(&e))? {
            let (rev, record) = item.map_err(|e| err(&e))?;
            let (main, sub) = rev.value();
            let (key, version) = split_record(record.value())?;
            let (tombstone, _) = version_flags(version);
            index.push(
                key,
                Rev {
                    main: main as i64,
                    sub: sub as u32,
                    tombstone,
                },
            );
        }
        index.set_compacted(meta.compact_revision);
        self.index.replace(index);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A consistent read-only view of the latest committed state.
    pub fn read(&self) -> Result<ReadView, MvccError> {
        self.refresh_index()?;
        let txn = self
            .db
            .begin_read()
            .map_err(|e| MvccError::backend(&self.path, e))?;
        let err = |e: redb::TableError| MvccError::backend(&self.path, e);
        let history = txn.open_table(HISTORY).map_err(err)?;
        let meta_table = txn.open_table(META).map_err(err)?;
        let meta = read_meta(&meta_table).map_err(|e| MvccError::backend(&self.path, e))?;
        let leases = txn.open_table(LEASES).map_err(err)?;
        let v2 = txn.open_table(V2).map_err(err)?;
        let auth = txn.open_table(AUTH).map_err(err)?;
        Ok(ReadView {
            history,
            leases,
            v2,
            auth,
            meta,
            index: self.index.clone(),
            path: self.path.clone(),
        })
    }

    /// Rebuilds the key index if a write batch was dropped without committing after it had
    /// changed the index (its backend writes were rolled back; the index must follow).
    pub(crate) fn refresh_index(&self) -> Result<(), MvccError> {
        if self.index.take_stale() {
            self.rebuild_index()?;
        }
        Ok(())
    }

    /// Raised alarms: (member ID, alarm type), in key order.
    pub fn alarms(&self) -> Result<Vec<(u64, i32)>, MvccError> {
        let err = |e: &dyn std::fmt::Display| MvccError::backend(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let meta = txn.open_table(META).map_err(|e| err(&e))?;
        let mut out = Vec::new();
        for item in meta.range(ALARM_PREFIX..).map_err(|e| err(&e))? {
            let (k, _) = item.map_err(|e| err(&e))?;
            match parse_alarm_key(k.value()) {
                Some(alarm) => out.push(alarm),
                None if k.value().starts_with(ALARM_PREFIX) => {}
                None => break,
            }
        }
        Ok(out)
    }

    /// Empties the v3 key space (keys, history, leases, revisions) and keeps the v2 key space and
    /// the applied index: what `etcdctl backup` without `--with-v3` keeps.
    pub fn drop_v3_data(&mut self) -> Result<(), MvccError> {
        let path = self.path.clone();
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| MvccError::backend(&path, e))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| MvccError::backend(&path, e))?;
        txn.delete_table(HISTORY)
            .map_err(|e| MvccError::backend(&path, e))?;
        txn.delete_table(LEASES)
            .map_err(|e| MvccError::backend(&path, e))?;
        txn.open_table(HISTORY)
            .map_err(|e| MvccError::backend(&path, e))?;
        txn.open_table(LEASES)
            .map_err(|e| MvccError::backend(&path, e))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| MvccError::backend(&path, e))?;
            meta.remove(META_CURRENT_REV)
                .map_err(|e| MvccError::backend(&path, e))?;
            meta.remove(META_COMPACT_REV)
                .map_err(|e| MvccError::backend(&path, e))?;
        }
        txn.commit().map_err(|e| MvccError::backend(&path, e))?;
        self.rebuild_index()
    }

    /// Rewrites the backend file without its free pages (etcd's defragment); the caller holds off
    /// writers. Retries briefly while short-lived readers finish.
    pub fn defragment(&mut self) -> Result<(), MvccError> {
        // Non-durable commits keep the last durable state pinned; make everything durable first.
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| MvccError::backend(&self.path, e))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| MvccError::backend(&self.path, e))?;
        txn.commit()
            .map_err(|e| MvccError::backend(&self.path, e))?;
        let mut attempts = 0;
        loop {
            match self.db.compact() {
                Ok(_) => return Ok(()),
                // A reader (a watch catching up) may still hold pages: let it finish.
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(MvccError::backend(&self.path, e)),
            }
        }
    }

    /// Size of the backend file (Status's dbSize; the quota's first check). One `stat`.
    pub fn file_size(&self) -> i64 {
        std::fs::metadata(&self.path)
            .map(|m| m.len() as i64)
            .unwrap_or(0)
    }

    /// Bytes the backend's tables hold (Status's dbSizeInUse; may exceed the file while
    /// recent pages are still only in memory). This walks every B-tree's pages under the write lock: for Status and the quota's second
    /// check, never per request.
    pub fn bytes_in_use(&self) -> i64 {
        let file = self.file_size();
        self.db
            .begin_write()
            .ok()
            .and_then(|t| {
                let s = t.stats().ok().map(|s| s.stored_bytes() as i64);
                let _ = t.abort();
                s
            })
            .unwrap_or(file)
    }
}

pub(crate) fn read_meta(
    table: &impl ReadableTable<&'static str, u64>,
) -> Result<Meta, redb::StorageError> {
    let get = |k: &str| -> Result<u64, redb::StorageError> {
        Ok(table.get(k)?.map(|v| v.value()).unwrap_or(0))
    };
    Ok(Meta {
        // etcd's store starts at revision 1, so the first write is revision 2.
        current_revision: (get(META_CURRENT_REV)? as i64).max(1),
        compact_revision: get(META_COMPACT_REV)? as i64,
        consistent_index: get(META_CONSISTENT_INDEX)?,
        v2_index: get(META_V2_INDEX)?,
    })
}

/// The revision to read at: 0 means current; compacted and future revisions are errors.
pub(crate) fn check_revision(revision: i64, meta: Meta) -> Result<i64, MvccError> {
    if revision <= 0 {
        return Ok(meta.current_revision);
    }
    if revision > meta.current_revision {
        return Err(MvccError::FutureRevision);
    }
    if revision < meta.compact_revision {
        return Err(MvccError::Compacted);
    }
    Ok(revision)
}

//! `snapshot restore`: a new data directory from a snapshot, as etcdctl 3.4 writes it.
//!
//! `member/snap/db` is the snapshot's keyspace with the consistent index set to the number of
//! members (the new cluster's Raft log holds one ConfChange per member, already applied);
//! `member/snap/*.snap` carries the membership in the v2 store; the WAL bootstraps Raft at that
//! snapshot. The old cluster's members stay in the backend's `members` bucket, as etcd 3.4
//! leaves them: etcd 3.4 reads membership from the v2 store.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rampart_bbolt::{BucketSlices, Db, Value};
use sha2::{Digest, Sha256};

use super::cluster::{self, Cluster, ClusterError};
use super::zaplog::{self, Field};
use super::{exists, go_os_error, proto, v2snap, wal};
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt::quote;

/// Bytes of the SHA-256 `snapshot save` appends to the database.
const SHA256_LEN: usize = 32;
/// A file with a hash is the database (whole 512-byte sectors) plus the hash.
const SECTOR: usize = 512;
/// Read in pieces of this size so the progress bar moves on large snapshots.
const READ_CHUNK: usize = 1 << 20;
/// Buffer between the page writer and the database file.
const WRITE_BUFFER: usize = 1 << 20;
/// The term of the new cluster's bootstrap entries.
const BOOTSTRAP_TERM: u64 = 1;

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    pub args: Vec<String>,
    /// Path to the data directory
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long)]
    pub skip_hash_check: bool,
}

/// Why a restore failed, in etcdctl's words where it has some.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("data-dir {} exists", quote(.0.as_bytes()))]
    DataDirExists(String),
    #[error("wal-dir {} exists", quote(.0.as_bytes()))]
    WalDirExists(String),
    #[error("{op} {path}: {reason}")]
    Os {
        op: &'static str,
        path: String,
        reason: String,
    },
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    #[error("expected sha256 {}, got {}", go_bytes(.expected), go_bytes(.got))]
    HashMismatch { expected: Vec<u8>, got: Vec<u8> },
    #[error("cannot open database at {path} ({source})")]
    Database {
        path: String,
        source: rampart_bbolt::Error,
    },
    #[error("bucket {0} holds nested buckets, which etcd never writes: not an etcd snapshot")]
    NestedBucket(String),
}

/// Go's `%v` of a byte slice: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", items.join(" "))
}

impl RestoreError {
    fn os(op: &'static str, path: &Path, e: &std::io::Error) -> RestoreError {
        RestoreError::Os {
            op,
            path: path.display().to_string(),
            reason: go_os_error(e),
        }
    }
}

/// Directories with etcd's private mode (0700).
pub(crate) fn create_dir_all(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Where the restore writes.
struct Target {
    snapshot: PathBuf,
    data_dir: PathBuf,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    name: String,
    skip_hash_check: bool,
}

pub fn restore(a: &RestoreArgs) -> CtlResult {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            ExitCode::BadArgs,
            "snapshot restore requires exactly one argument",
        ));
    }
    let data_dir = if a.data_dir.is_empty() {
        super::default_data_dir(&a.name)
    } else {
        a.data_dir.clone()
    };
    let wal_dir = if a.wal_dir.is_empty() {
        Path::new(&data_dir).join("member").join("wal")
    } else {
        PathBuf::from(&a.wal_dir)
    };
    let target = Target {
        snapshot: PathBuf::from(&a.args[0]),
        snap_dir: Path::new(&data_dir).join("member").join("snap"),
        data_dir: PathBuf::from(&data_dir),
        wal_dir,
        name: a.name.clone(),
        skip_hash_check: a.skip_hash_check,
    };
    let cluster = prepare(a, &target).map_err(|e| CtlError::error(e.to_string()))?;
    let fields = |t: &Target| {
        [
            ("path", t.snapshot.display().to_string()),
            ("wal-dir", t.wal_dir.display().to_string()),
            ("data-dir", t.data_dir.display().to_string()),
            ("snap-dir", t.snap_dir.display().to_string()),
        ]
    };
    let log = |caller: &str, msg: &str| {
        let f = fields(&target);
        let f: Vec<(&str, Field<'_>)> = f.iter().map(|(k, v)| (*k, Field::Str(v))).collect();
        zaplog::info(caller, msg, &f);
    };
    log("snapshot/v3_snapshot.go:296", "restoring snapshot");
    let result = save_db(&target, cluster.members.len() as u64)
        .and_then(|()| save_wal_and_snap(&target, &cluster));
    if let Err(e) = result {
        // Leave no half-restored directory behind: a second attempt would find it and refuse.
        let _ = std::fs::remove_dir_all(&target.data_dir);
        if !a.wal_dir.is_empty() {
            let _ = std::fs::remove_dir_all(&target.wal_dir);
        }
        return Err(CtlError::error(e.to_string()));
    }
    log("snapshot/v3_snapshot.go:309", "restored snapshot");
    Ok(())
}

/// The checks etcdctl makes before writing anything, in its order.
fn prepare(a: &RestoreArgs, t: &Target) -> Result<Cluster, RestoreError> {
    let peer_urls: Vec<String> = a
        .initial_advertise_peer_urls
        .split(',')
        .map(str::to_string)
        .collect();
    let peer_urls = cluster::parse_urls(&peer_urls)?;
    let initial = cluster::parse_initial_cluster(&a.initial_cluster)?;
    cluster::verify_bootstrap(&a.name, &peer_urls, &initial)?;
    let cluster = cluster::new_cluster(&a.initial_cluster_token, &initial)?;
    if exists(&t.data_dir) {
        return Err(RestoreError::DataDirExists(
            t.data_dir.display().to_string(),
        ));
    }
    if !a.wal_dir.is_empty() && exists(&t.wal_dir) {
        return Err(RestoreError::WalDirExists(t.wal_dir.display().to_string()));
    }
    Ok(cluster)
}

/// Reads the snapshot, with a progress bar (reading, then hashing) that indicatif draws only
/// when stderr is a terminal, so piped output stays etcdctl's.
fn read_snapshot(path: &Path) -> Result<(Vec<u8>, indicatif::ProgressBar), RestoreError> {
    let mut f = std::fs::File::open(path).map_err(|e| RestoreError::os("open", path, &e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(len * 2);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:16} {bar:30} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("reading snapshot");
    let mut data = Vec::with_capacity(len as usize);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = f
            .read(&mut chunk)
            .map_err(|e| RestoreError::os("read", path, &e))?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        bar.inc(n as u64);
    }
    Ok((data, bar))
}

/// The database part of the snapshot, its hash checked as etcdctl checks it.
fn verified_db(
    t: &Target,
    mut data: Vec<u8>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<u8>, RestoreError> {
    if data.len() < SHA256_LEN {
        // etcdctl seeks to the hash before anything else.
        return Err(RestoreError::Os {
            op: "seek",
            path: t.snapshot.display().to_string(),
            reason: "invalid argument".into(),
        });
    }
    let has_hash = data.len() % SECTOR == SHA256_LEN;
    let expected = data[data.len() - SHA256_LEN..].to_vec();
    if has_hash {
        data.truncate(data.len() - SHA256_LEN);
    }
    if !has_hash && !t.skip_hash_check {
        return Err(RestoreError::MissingHash);
    }
    if has_hash && !t.skip_hash_check {
        bar.set_message("checking sha256");
        let mut h = Sha256::new();
        for piece in data.chunks(READ_CHUNK) {
            h.update(piece);
            bar.inc(piece.len() as u64);
        }
        let got = h.finalize().to_vec();
        if got != expected {
            return Err(RestoreError::HashMismatch { expected, got });
        }
    }
    Ok(data)
}

/// Writes `member/snap/db`: the snapshot's buckets with the new consistent index.
fn save_db(t: &Target, members: u64) -> Result<(), RestoreError> {
    let (data, bar) = read_snapshot(&t.snapshot)?;
    let data = verified_db(t, data, &bar);
    // Cleared on failure too, so the error line stands alone.
    bar.finish_and_clear();
    let data = data?;
    let db_path = t.snap_dir.join("db");
    let db = Db::from_bytes(data).map_err(|source| RestoreError::Database {
        path: db_path.display().to_string(),
        source,
    })?;
    let mut buckets = read_buckets(&db, &db_path)?;
    let meta_value = |buckets: &[BucketSlices<'_>], key: &[u8]| {
        buckets
            .iter()
            .find(|b| b.0 == b"meta")
            .and_then(|b| b.1.iter().find(|kv| kv.0 == key))
            .map(|kv| kv.1.to_vec())
    };
    if let Some(rev) = meta_value(&buckets, b"finishedCompactRev").filter(|v| v.len() >= 8) {
        // etcd's store logs this when it opens a compacted database.
        let rev = i64::from_be_bytes(rev[..8].try_into().unwrap_or_default());
        zaplog::info(
            "mvcc/kvstore.go:388",
            "restored last compact revision",
            &[
                ("meta-bucket-name", Field::Str("meta")),
                ("meta-bucket-name-key", Field::Str("finishedCompactRev")),
                ("restored-compact-revision", Field::Int(rev)),
            ],
        );
    }
    // The buckets etcd's store and lessor create on open.
    for name in [&b"key"[..], b"lease", b"meta"] {
        if let Err(at) = buckets.binary_search_by(|b| b.0.cmp(name)) {
            buckets.insert(at, (name, Vec::new()));
        }
    }
    // The new Raft log's entries up to this index (one ConfChange per member) count as
    // applied, so the member does not apply them to the restored keyspace again.
    let index = members.to_be_bytes();
    if let Some(meta) = buckets.iter_mut().find(|b| b.0 == b"meta") {
        let key = &b"consistent_index"[..];
        match meta.1.binary_search_by(|kv| kv.0.cmp(key)) {
            Ok(at) => meta.1[at].1 = &index,
            Err(at) => meta.1.insert(at, (key, &index)),
        }
    }
    create_dir_all(&t.snap_dir).map_err(|e| RestoreError::os("mkdir", &t.snap_dir, &e))?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&db_path)
        .map_err(|e| RestoreError::os("open", &db_path, &e))?;
    // Pages stream to the file; only the snapshot itself is held in memory.
    let mut w = std::io::BufWriter::with_capacity(WRITE_BUFFER, f);
    rampart_bbolt::write_buckets(&mut w, &buckets).map_err(|source| RestoreError::Database {
        path: db_path.display().to_string(),
        source,
    })?;
    let f = w
        .into_inner()
        .map_err(|e| RestoreError::os("write", &db_path, e.error()))?;
    f.sync_all()
        .map_err(|e| RestoreError::os("write", &db_path, &e))?;
    Ok(())
}

/// The top-level buckets and their key/values, borrowed from the snapshot.
pub(crate) fn read_buckets<'a>(
    db: &'a Db,
    db_path: &Path,
) -> Result<Vec<BucketSlices<'a>>, RestoreError> {
    let bad = |source| RestoreError::Database {
        path: db_path.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for (name, value) in db.entries(&db.root()).map_err(bad)? {
        let nested = || RestoreError::NestedBucket(String::from_utf8_lossy(name).into_owned());
        let Value::Bucket(bucket) = value else {
            return Err(nested());
        };
        let mut kvs = Vec::new();
        let mut has_nested = false;
        db.for_each(&bucket, |k, v| {
            match v {
                Value::Plain(v) => kvs.push((k, v)),
                Value::Bucket(_) => has_nested = true,
            }
            Ok(())
        })
        .map_err(bad)?;
        if has_nested {
            return Err(nested());
        }
        out.push((name, kvs));
    }
    Ok(out)
}

/// Writes the WAL and the v2 store snapshot that bootstrap the new cluster.
fn save_wal_and_snap(t: &Target, cluster: &Cluster) -> Result<(), RestoreError> {
    create_dir_all(&t.wal_dir).map_err(|e| RestoreError::os("mkdir", &t.wal_dir, &e))?;
    let cluster_hex = format!("{:x}", cluster.id);
    for m in &cluster.members {
        zaplog::info(
            "membership/cluster.go:392",
            "added member",
            &[
                ("cluster-id", Field::Str(&cluster_hex)),
                ("local-member-id", Field::Str("0")),
                ("added-peer-id", Field::Str(&format!("{:x}", m.id))),
                ("added-peer-peer-urls", Field::Strs(&m.peer_urls)),
            ],
        );
    }
    // The name was checked against the initial cluster, so it is there.
    let me = cluster
        .members
        .iter()
        .find(|m| m.name == t.name)
        .map(|m| m.id)
        .unwrap_or_default();
    let entries: Vec<Vec<u8>> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let cc = proto::conf_change(proto::CONF_CHANGE_ADD_NODE, m.id, m.json().as_bytes());
            proto::entry(proto::ENTRY_CONF_CHANGE, BOOTSTRAP_TERM, i as u64 + 1, &cc)
        })
        .collect();
    let commit = entries.len() as u64;
    let voters: Vec<u64> = cluster.members.iter().map(|m| m.id).collect();
    let metadata = proto::metadata(me, cluster.id);
    // etcd votes for the lowest member ID in the bootstrap hard state.
    let hard_state = proto::hard_state(BOOTSTRAP_TERM, voters[0], commit);
    let segments = wal::encode(&wal::Bootstrap {
        metadata: &metadata,
        entries: &entries,
        hard_state: Some(&hard_state),
        last_index: commit,
        snapshot_index: commit,
        snapshot_term: BOOTSTRAP_TERM,
    });
    wal::create(&t.wal_dir, &segments).map_err(|e| RestoreError::os("create", &t.wal_dir, &e))?;

    let store = v2snap::store_json(&cluster.members);
    let bytes = v2snap::file_bytes(store.as_bytes(), &voters, commit, BOOTSTRAP_TERM);
    let name = v2snap::file_name(BOOTSTRAP_TERM, commit);
    v2snap::write(&t.snap_dir, &name, &bytes)
        .map_err(|e| RestoreError::os("write", &t.snap_dir.join(&name), &e))?;
    wal::sync_dir(&t.snap_dir);
    Ok(())
}

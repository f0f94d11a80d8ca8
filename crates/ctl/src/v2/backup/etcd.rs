//! Backing up etcd's own data dir (etcd's WAL, `.snap` files and bbolt backend), as etcdctl
//! 3.4's `backup` does:
//!
//! 1. the newest loadable `.snap` is copied to the backup's snap dir;
//! 2. the WAL is read from that snapshot on; membership changes, member-attribute updates and
//!    (without `--with-v3`) v3 requests are dropped, the later entries renumbered down and the
//!    commit index lowered by as many;
//! 3. the backend `db` is the source's (with `--with-v3`) or a new one, in both cases without
//!    the membership buckets, and without `--with-v3` with the consistent index set to the new
//!    commit;
//! 4. a new WAL (new node and cluster ID) holds the hard state, the entries and the snapshot.
//!
//! etcd started from the backup with `--force-new-cluster` is a one-member cluster with the
//! data. Nothing in the source data dir is changed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rampart_bbolt::Db;

use super::BackupPaths;
use crate::gofmt::{go_log, quote};
use crate::snapshot::raft_request::{self, Payload};
use crate::snapshot::wal_read::{self, Entry, HardState, SnapshotPos, ENTRY_CONF_CHANGE};
use crate::snapshot::{self, go_os_error, proto, v2snap, wal};

/// The backend buckets that hold membership; `--force-new-cluster` rebuilds it.
const MEMBERSHIP_BUCKETS: [&[u8]; 3] = [b"members", b"members_removed", b"cluster"];

/// Prints one of etcdctl's `log.Println` lines.
fn log(message: &str) {
    eprintln!("{}", go_log(message));
}

fn os_err(op: &str, path: &Path, e: &std::io::Error) -> String {
    format!("{op} {}: {}", path.display(), go_os_error(e))
}

pub fn backup(paths: &BackupPaths) -> Result<(), String> {
    create_empty_dir(&paths.dest_snap).map_err(|e| {
        format!(
            "failed creating backup snapshot dir {}: {e}",
            paths.dest_snap.display()
        )
    })?;
    let walsnap = save_snap(&paths.src_snap, &paths.dest_snap)?;
    let log_data = load_wal(&paths.src_wal, walsnap, paths.with_v3)?;
    save_db(
        &paths.src_snap.join("db"),
        &paths.dest_snap.join("db"),
        log_data.state.commit,
        paths.with_v3,
    )?;
    let (node_id, cluster_id) = new_ids();
    write_wal(&paths.dest_wal, &log_data, node_id, cluster_id, walsnap)
}

/// etcd's `fileutil.CreateDirAll`: the directory (0700) made if missing, and empty.
fn create_empty_dir(dir: &Path) -> Result<(), String> {
    snapshot::create_dir_all(dir).map_err(|e| go_os_error(&e))?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| os_err("open", dir, &e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let listed: Vec<String> = names.iter().map(|n| quote(n.as_bytes())).collect();
    Err(format!(
        "expected {} to be empty, got [{}]",
        quote(dir.display().to_string().as_bytes()),
        listed.join(" ")
    ))
}

/// Copies the newest snapshot; where the WAL is to be read from.
fn save_snap(src: &Path, dest: &Path) -> Result<SnapshotPos, String> {
    let Some(snap) = v2snap::load_newest(src)? else {
        return Ok(SnapshotPos::default());
    };
    let path = dest.join(&snap.name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| os_err("open", &path, &e))?;
    f.write_all(&snap.bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| os_err("write", &path, &e))?;
    wal::sync_dir(dest);
    Ok(SnapshotPos {
        index: snap.index,
        term: snap.term,
    })
}

/// The log the backup keeps.
struct KeptLog {
    state: HardState,
    entries: Vec<Entry>,
}

/// Reads the WAL from the snapshot and keeps what the new cluster should replay.
fn load_wal(dir: &Path, walsnap: SnapshotPos, with_v3: bool) -> Result<KeptLog, String> {
    let read = wal_read::read_all(dir, walsnap).map_err(|e| e.to_string())?;
    if !read.snapshot_found {
        log(&format!(
            "Failed to find the match snapshot record {{Index:{} Term:{} XXX_unrecognized:[]}} in wal {}.",
            walsnap.index,
            walsnap.term,
            dir.display()
        ));
        log("etcdctl will add it back. Start auto fixing...");
    }
    let (entries, removed) = filter_entries(read.entries, with_v3)?;
    let mut state = read.state;
    state.commit = state.commit.saturating_sub(removed);
    Ok(KeptLog { state, entries })
}

/// Drops membership changes, member-attribute updates and, unless `with_v3`, v3 requests;
/// each later entry's index goes down by the number dropped before it. Returns the entries
/// kept and the number dropped.
fn filter_entries(entries: Vec<Entry>, with_v3: bool) -> Result<(Vec<Entry>, u64), String> {
    let mut removed = 0u64;
    let mut kept = Vec::with_capacity(entries.len());
    for mut e in entries {
        e.index -= removed;
        if e.entry_type == ENTRY_CONF_CHANGE {
            log("ignoring EntryConfChange raft entry");
            removed += 1;
            continue;
        }
        let payload = raft_request::decode(e.data.as_deref().unwrap_or_default())
            .map_err(|err| format!("raft entry {}: {err}", e.index + removed))?;
        match payload {
            Payload::V2(r) if r.method == "PUT" && raft_request::is_member_attributes(&r.path) => {
                log(&format!("ignoring member attribute update on {}", r.path));
                removed += 1;
            }
            Payload::Internal { has_header: true } if !with_v3 => {
                log("ignoring v3 raft entry");
                removed += 1;
            }
            _ => kept.push(e),
        }
    }
    Ok((kept, removed))
}

/// Writes the backup's backend: the source's buckets (`with_v3`) or none, less membership,
/// and without v3 the consistent index at the new commit.
fn save_db(src: &Path, dest: &Path, commit: u64, with_v3: bool) -> Result<(), String> {
    let source = if with_v3 {
        let data = std::fs::read(src).map_err(|e| os_err("open", src, &e))?;
        Some(Db::from_bytes(data).map_err(|e| format!("{}: {e}", src.display()))?)
    } else {
        None
    };
    let mut buckets = match &source {
        Some(db) => snapshot::read_buckets(db, src).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    buckets.retain(|b| !MEMBERSHIP_BUCKETS.contains(&b.0));
    let index = commit.to_be_bytes();
    if !with_v3 {
        let key = &b"consistent_index"[..];
        match buckets.binary_search_by(|b| b.0.cmp(b"meta")) {
            Ok(at) => {
                let meta = &mut buckets[at].1;
                match meta.binary_search_by(|kv| kv.0.cmp(key)) {
                    Ok(i) => meta[i].1 = &index,
                    Err(i) => meta.insert(i, (key, &index)),
                }
            }
            Err(at) => buckets.insert(at, (&b"meta"[..], vec![(key, &index[..])])),
        }
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| os_err("open", dest, &e))?;
    let mut w = std::io::BufWriter::new(f);
    rampart_bbolt::write_buckets(&mut w, &buckets)
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    let f = w
        .into_inner()
        .map_err(|e| os_err("write", dest, e.error()))?;
    f.sync_all().map_err(|e| os_err("write", dest, &e))
}

/// Two IDs from etcd's `idutil.Generator` seeded with the time, as etcdctl makes them: the
/// low 40 bits of the Unix time in milliseconds, shifted over an 8-bit counter.
fn new_ids() -> (u64, u64) {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let base = (millis & ((1 << 40) - 1)) << 8;
    let low48 = |v: u64| v & ((1 << 48) - 1);
    (low48(base + 1), low48(base + 2))
}

/// Writes the new WAL: `wal.Create` with the new metadata, `Save` of the hard state and
/// entries, `SaveSnapshot` of the snapshot it starts from.
fn write_wal(
    dir: &Path,
    kept: &KeptLog,
    node_id: u64,
    cluster_id: u64,
    walsnap: SnapshotPos,
) -> Result<(), String> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err("file already exists".to_string());
    }
    // The source's metadata is these two fields, both replaced.
    let metadata = proto::metadata(node_id, cluster_id);
    let entries: Vec<Vec<u8>> = kept.entries.iter().map(Entry::encode).collect();
    let state = kept.state.encode();
    let segments = wal::encode(&wal::Bootstrap {
        metadata: &metadata,
        entries: &entries,
        hard_state: (!kept.state.is_empty()).then_some(&state[..]),
        last_index: kept.entries.last().map_or(0, |e| e.index),
        snapshot_index: walsnap.index,
        snapshot_term: walsnap.term,
    });
    wal::create(dir, &segments).map_err(|e| os_err("create", dir, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, entry_type: u64, data: Option<Vec<u8>>) -> Entry {
        Entry {
            entry_type,
            term: 2,
            index,
            data,
        }
    }

    fn v2(method: &str, path: &str) -> Option<Vec<u8>> {
        let mut b = Vec::new();
        proto::uint(&mut b, 1, 1);
        proto::bytes(&mut b, 2, method.as_bytes());
        proto::bytes(&mut b, 3, path.as_bytes());
        Some(b)
    }

    fn v3() -> Option<Vec<u8>> {
        let mut b = Vec::new();
        proto::bytes(&mut b, 100, &[0x08, 0x07]);
        proto::bytes(&mut b, 4, &[0x0a, 0x01, b'k']);
        Some(b)
    }

    #[test]
    fn entries_are_dropped_and_renumbered_as_etcdctl_does() {
        let log = vec![
            entry(5, ENTRY_CONF_CHANGE, Some(vec![])),
            entry(6, 0, None),
            entry(7, 0, v2("PUT", "/0/members/8e9e05c52164694d/attributes")),
            entry(8, 0, v3()),
            entry(9, 0, v2("PUT", "/1/foo")),
            entry(10, 0, v2("PUT", "/0/version")),
        ];
        let (kept, removed) = filter_entries(log.clone(), false).unwrap();
        assert_eq!(removed, 3);
        let got: Vec<(u64, Option<Vec<u8>>)> =
            kept.iter().map(|e| (e.index, e.data.clone())).collect();
        assert_eq!(
            got,
            vec![
                (5, None),
                (6, v2("PUT", "/1/foo")),
                (7, v2("PUT", "/0/version"))
            ]
        );
        let (kept, removed) = filter_entries(log, true).unwrap();
        assert_eq!(removed, 2);
        assert_eq!(
            kept.iter().map(|e| e.index).collect::<Vec<_>>(),
            [5, 6, 7, 8]
        );
        assert_eq!(kept[1].data, v3());
    }

    #[test]
    fn ids_follow_etcds_generator() {
        let (node, cluster) = new_ids();
        assert_eq!(cluster, node + 1);
        assert_eq!(node & 0xff, 1);
        assert!(node < 1 << 48);
    }

    #[test]
    fn the_backup_snap_dir_must_be_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("member/snap");
        create_empty_dir(&dir).unwrap();
        std::fs::write(dir.join("db"), b"").unwrap();
        let err = create_empty_dir(&dir).unwrap_err();
        assert_eq!(
            err,
            format!("expected \"{}\" to be empty, got [\"db\"]", dir.display())
        );
    }
}

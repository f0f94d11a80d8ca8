//! Backing up Rampart's data dir (its WAL and redb backend). The member may still be running:
//! the WAL is only read, and the backend is copied before it is opened, so the source is never
//! touched (a copy of a live backend opens at its last durable commit; the WAL holds everything
//! after it).
//!
//! Unlike etcdctl, entries that the backup drops are replaced by empty entries rather than
//! removed, so indexes stay as the backend's applied index knows them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use prost::Message as _;
use raft::eraftpb::{Entry, EntryType};
use rampart_proto::internal::{raft_request, RaftRequest};
use rampart_wal::Wal;

use super::BackupPaths;

pub fn backup(paths: &BackupPaths) -> Result<(), String> {
    let contents = Wal::read_only(&paths.src_wal).map_err(|e| e.to_string())?;
    rampart_wal::decode_member_metadata(&contents.metadata).ok_or_else(|| {
        format!(
            "{}: the WAL has no member metadata",
            paths.src_wal.display()
        )
    })?;
    if Wal::exists(&paths.dest_wal) {
        return Err(format!(
            "{}: a WAL is already there: back up into an empty directory",
            paths.dest_wal.display()
        ));
    }
    create_private_dir(&paths.dest_snap)?;

    let src_db = paths.src_snap.join("db");
    let dest_db = paths.dest_snap.join("db");
    std::fs::copy(&src_db, &dest_db).map_err(|e| format!("{}: {e}", src_db.display()))?;
    std::fs::set_permissions(&dest_db, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", dest_db.display()))?;
    if !paths.with_v3 {
        let mut store = rampart_mvcc::Store::open(&dest_db).map_err(|e| e.to_string())?;
        store.drop_v3_data().map_err(|e| e.to_string())?;
    }

    let mut entries = Vec::with_capacity(contents.entries.len());
    let mut dropped = 0usize;
    for entry in &contents.entries {
        if keeps(entry, paths.with_v3)? {
            entries.push(entry.clone());
        } else {
            let mut empty = Entry::default();
            empty.index = entry.index;
            empty.term = entry.term;
            entries.push(empty);
            dropped += 1;
        }
    }
    // A new member of a new cluster: `--force-new-cluster` starts it with this member alone.
    let member_id = nonzero_random();
    let cluster_id = nonzero_random();
    create_private_dir(&paths.dest_wal)?;
    let mut wal = Wal::create(
        &paths.dest_wal,
        &rampart_wal::encode_member_metadata(member_id, cluster_id),
    )
    .map_err(|e| e.to_string())?;
    if let Some(snapshot) = &contents.snapshot {
        wal.save_snapshot(snapshot).map_err(|e| e.to_string())?;
    }
    wal.save(Some(&contents.hard_state), &entries)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "backed up {} entries ({dropped} membership{} entries emptied) to {}; start it with --force-new-cluster",
        entries.len(),
        if paths.with_v3 { "" } else { " and v3" },
        paths.dest_wal.display()
    );
    Ok(())
}

/// Whether the backup keeps an entry: v2 requests always, v3 ones with `--with-v3`, membership
/// never (the backup starts a new cluster).
fn keeps(entry: &Entry, with_v3: bool) -> Result<bool, String> {
    match entry.get_entry_type() {
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => return Ok(false),
        EntryType::EntryNormal if entry.data.is_empty() => return Ok(true),
        EntryType::EntryNormal => {}
    }
    let request = RaftRequest::decode(entry.data.as_ref())
        .map_err(|e| format!("WAL entry {}: cannot decode: {e}", entry.index))?;
    Ok(match request.request {
        Some(raft_request::Request::MemberAttributes(_))
        | Some(raft_request::Request::MemberUpdate(_)) => false,
        Some(raft_request::Request::V2(_)) | Some(raft_request::Request::V2Auth(_)) => true,
        _ => with_v3,
    })
}

fn nonzero_random() -> u64 {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return id;
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

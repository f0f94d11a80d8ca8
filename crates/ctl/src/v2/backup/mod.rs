//! `etcdctl backup` (v2): copies a member's data dir into a new one that `--force-new-cluster`
//! starts as a fresh one-member cluster with the same data — membership dropped, a new member
//! and cluster ID, and the v3 data kept only with `--with-v3`. Works on an offline data dir of
//! either kind: etcd's (its WAL, `.snap` files and bbolt backend) or Rampart's (its WAL and redb
//! backend), told apart by the first WAL record.

mod etcd;
mod rampart;

use std::path::{Path, PathBuf};

use clap::Args;

use crate::exit::{CtlError, CtlResult, ExitCode};

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Path to the etcd data dir
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the etcd wal dir
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Path to the backup dir
    #[arg(long, default_value = "")]
    pub backup_dir: String,
    /// Path to the backup wal dir
    #[arg(long, default_value = "")]
    pub backup_wal_dir: String,
    /// Backup v3 backend data
    #[arg(long)]
    pub with_v3: bool,
}

/// Where a backup reads and writes, as etcdctl derives them from its flags.
#[derive(Debug, Clone)]
pub struct BackupPaths {
    /// `<data-dir>/member/snap`: snapshots and the backend `db`.
    pub src_snap: PathBuf,
    /// `--wal-dir`, or `<data-dir>/member/wal`.
    pub src_wal: PathBuf,
    pub dest_snap: PathBuf,
    pub dest_wal: PathBuf,
    /// Keep the v3 data (`--with-v3`).
    pub with_v3: bool,
}

impl BackupPaths {
    pub fn from_args(a: &BackupArgs) -> BackupPaths {
        let member = |dir: &str| Path::new(dir).join("member");
        BackupPaths {
            src_snap: member(&a.data_dir).join("snap"),
            src_wal: if a.wal_dir.is_empty() {
                member(&a.data_dir).join("wal")
            } else {
                PathBuf::from(&a.wal_dir)
            },
            dest_snap: member(&a.backup_dir).join("snap"),
            dest_wal: if a.backup_wal_dir.is_empty() {
                member(&a.backup_dir).join("wal")
            } else {
                PathBuf::from(&a.backup_wal_dir)
            },
            with_v3: a.with_v3,
        }
    }
}

/// Whose data dir a WAL belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum DataDirKind {
    Etcd,
    Rampart,
}

/// Reads the first record of the oldest WAL segment: etcd frames a `walpb.Record` protobuf (its
/// first byte, at offset 8, is the tag of field 1, 0x08); Rampart's first record is its
/// metadata record (type byte 1 at offset 8).
pub fn data_dir_kind(wal_dir: &Path) -> Result<DataDirKind, String> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(wal_dir)
        .map_err(|e| format!("cannot read the WAL dir {}: {e}", wal_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    let first = segments
        .first()
        .ok_or_else(|| format!("wal: file not found in {}", wal_dir.display()))?;
    let head = std::fs::read(first).map_err(|e| format!("{}: {e}", first.display()))?;
    match head.get(8) {
        Some(0x08) => Ok(DataDirKind::Etcd),
        Some(0x01) => Ok(DataDirKind::Rampart),
        _ => Err(format!(
            "{}: not a WAL written by etcd or rampart",
            first.display()
        )),
    }
}

/// `etcdctl backup`: failures are fatal as in etcdctl (message on stderr, exit 1).
pub fn run(a: &BackupArgs) -> CtlResult<()> {
    let paths = BackupPaths::from_args(a);
    let result = data_dir_kind(&paths.src_wal).and_then(|kind| match kind {
        DataDirKind::Etcd => etcd::backup(&paths),
        DataDirKind::Rampart => rampart::backup(&paths),
    });
    result.map_err(|e| {
        eprintln!("{e}");
        CtlError::silent(ExitCode::Error)
    })
}

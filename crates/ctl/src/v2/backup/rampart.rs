//! Backing up Rampart's data dir (its WAL and redb backend).

use super::BackupPaths;

pub fn backup(_paths: &BackupPaths) -> Result<(), String> {
    Err("backing up a rampart data dir is not built yet".to_string())
}

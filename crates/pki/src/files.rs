//! Writing files the way a CA must: atomically (temp file + rename, so a failure leaves the old
//! file intact) and, for private keys, created with mode 0600 from the start.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::PkiError;

fn err(path: &Path, e: impl std::fmt::Display) -> PkiError {
    PkiError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path, e));
    }
    Ok(())
}

/// A private key file: 0600.
pub fn write_private(path: &Path, pem: &str) -> Result<(), PkiError> {
    write_atomic(path, pem.as_bytes(), 0o600)
}

/// A certificate, CSR or CRL: 0644.
pub fn write_public(path: &Path, pem: &str) -> Result<(), PkiError> {
    write_atomic(path, pem.as_bytes(), 0o644)
}

pub fn read_text(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| err(path, e))
}

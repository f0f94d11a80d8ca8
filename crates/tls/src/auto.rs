//! etcd's `--auto-tls` / `--peer-auto-tls`: a self-signed certificate made on first start and
//! reused afterwards (key written 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{TlsError, TlsOptions};

/// Fills in cert/key files for auto TLS (creating them if needed); other options pass through.
pub fn resolve(mut options: TlsOptions) -> Result<TlsOptions, TlsError> {
    let Some(dir) = options.auto_tls_dir.clone() else {
        return Ok(options);
    };
    if options.cert_file.is_some() {
        // etcd: explicit certificate files win over auto TLS.
        return Ok(options);
    }
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !cert.exists() || !key.exists() {
        generate(&dir, &cert, &key)?;
    }
    options.cert_file = Some(cert);
    options.key_file = Some(key);
    Ok(options)
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let err = |m: String| TlsError::Config(format!("--auto-tls in {}: {m}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| err(e.to_string()))?;
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key_path)
        .map_err(|e| err(e.to_string()))?;
    key.write_all(certified.signing_key.serialize_pem().as_bytes())
        .map_err(|e| err(e.to_string()))?;
    std::fs::write(cert_path, certified.cert.pem()).map_err(|e| err(e.to_string()))?;
    Ok(())
}

//! Reading PEM files, with errors that name the flag and the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::TlsError;

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn bad(flag: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::BadFile {
        flag,
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

pub fn certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(flag, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(flag, path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        let hint = if PrivateKeyDer::from_pem_slice(&data).is_ok() {
            " (this is a private key: pass the certificate here)"
        } else {
            ""
        };
        return Err(bad(
            flag,
            path,
            format!("no certificate found in file{hint}"),
        ));
    }
    Ok(certs)
}

pub fn key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|_| {
        let hint = if CertificateDer::pem_slice_iter(&data).next().is_some() {
            " (this is a certificate: pass its private key here)"
        } else if data.windows(9).any(|w| w == b"ENCRYPTED") {
            " (the key is encrypted: etcd and rampart need an unencrypted key file)"
        } else {
            ""
        };
        bad(flag, path, format!("no private key found in file{hint}"))
    })
}

pub fn roots(flag: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(flag, path)? {
        store
            .add(cert)
            .map_err(|e| bad(flag, path, format!("not a usable CA certificate ({e})")))?;
    }
    Ok(store)
}

pub fn crls(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let data = read(flag, path)?;
    let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(flag, path, format!("not a PEM CRL file ({e})")))?;
    if crls.is_empty() {
        // etcd also takes a DER CRL (openssl's `-outform DER`): it starts with an ASN.1 SEQUENCE.
        if data.first() == Some(&0x30) {
            return Ok(vec![CertificateRevocationListDer::from(data)]);
        }
        return Err(bad(
            flag,
            path,
            "no X509 CRL found in file (expected PEM \"X509 CRL\" blocks or DER)",
        ));
    }
    Ok(crls)
}

//! Revocation: `rampart pki revoke NAME` adds NAME's serial to the CA's list (`revoked.json`)
//! and rewrites `crl.pem`, signed by the CA, which the TLS layer honours (`--client-crl-file`).

use std::path::Path;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::Ca;
use crate::inspect::pem_certificates;
use crate::{files, PkiError};

pub const CRL_FILE: &str = "crl.pem";
const REVOKED_FILE: &str = "revoked.json";

/// A CRL is valid for this long; re-run `revoke` (or `crl`) before it runs out.
pub const CRL_VALIDITY_DAYS: i64 = 365;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Revoked {
    serials: Vec<String>,
    #[serde(default)]
    crl_number: u64,
}

/// Revokes the certificate in `dir/NAME.pem`; returns its serial (hex).
pub fn revoke(ca: &Ca, dir: &Path, name: &str) -> Result<String, PkiError> {
    let path = dir.join(format!("{name}.pem"));
    let text = files::read_text(&path)?;
    let der = pem_certificates(&text, &path.display().to_string())?;
    let (_, cert) =
        X509Certificate::from_der(&der[0]).map_err(|e| PkiError::Invalid(e.to_string()))?;
    let serial = hex::encode(cert.raw_serial());
    let list_path = dir.join(REVOKED_FILE);
    let mut revoked: Revoked = if list_path.exists() {
        crate::profile::parse_json(
            &files::read_text(&list_path)?,
            &list_path.display().to_string(),
        )?
    } else {
        Revoked::default()
    };
    if !revoked.serials.contains(&serial) {
        revoked.serials.push(serial.clone());
    }
    revoked.crl_number += 1;
    write_crl(ca, dir, &revoked)?;
    files::write_public(
        &list_path,
        &serde_json::to_string_pretty(&revoked).expect("serialise"),
    )?;
    Ok(serial)
}

fn write_crl(ca: &Ca, dir: &Path, revoked: &Revoked) -> Result<(), PkiError> {
    let now = time::OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(CRL_VALIDITY_DAYS),
        crl_number: SerialNumber::from(revoked.crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .serials
            .iter()
            .filter_map(|s| hex::decode(s).ok())
            .map(|bytes| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: Some(RevocationReason::Unspecified),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let issuer = ca.issuer()?;
    let crl = params.signed_by(&issuer)?;
    let pem = crl.pem().map_err(|e| PkiError::Generate(e.to_string()))?;
    files::write_public(&dir.join(CRL_FILE), &pem)
}

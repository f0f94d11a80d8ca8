//! Issuing certificates by profile, as `rampart pki issue` and `cfssl gencert` do.

use std::path::Path;

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::ca::{distinguished_name, validity, Ca};
use crate::keys::KeyType;
use crate::profile::{CsrJson, Profile};
use crate::{files, PkiError};

pub struct IssueRequest {
    pub cn: String,
    /// DNS names and IPs; empty strings are ignored (cfssl CSRs often carry `""`).
    pub hosts: Vec<String>,
    pub key_type: KeyType,
    pub profile: Profile,
    /// Overrides the profile's expiry.
    pub expiry: Option<time::Duration>,
    pub csr: Option<CsrJson>,
}

/// A new certificate with its key and CSR, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub csr_pem: String,
}

/// 16 random bytes, positive (first bit clear), like cfssl's serials.
pub fn random_serial() -> SerialNumber {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn sans(hosts: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut out = Vec::new();
    for h in hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        out.push(match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(h.to_string().try_into().map_err(|_| {
                PkiError::Invalid(format!(
                    "host {h:?} is neither an IP address nor a DNS name"
                ))
            })?),
        });
    }
    Ok(out)
}

fn key_usages(profile: &Profile) -> Vec<KeyUsagePurpose> {
    let mut usages = vec![KeyUsagePurpose::DigitalSignature];
    for u in &profile.key_usages {
        let k = match u.as_str() {
            "key encipherment" => KeyUsagePurpose::KeyEncipherment,
            "cert sign" => KeyUsagePurpose::KeyCertSign,
            "crl sign" => KeyUsagePurpose::CrlSign,
            "content commitment" => KeyUsagePurpose::ContentCommitment,
            "key agreement" => KeyUsagePurpose::KeyAgreement,
            "data encipherment" => KeyUsagePurpose::DataEncipherment,
            _ => continue,
        };
        if !usages.contains(&k) {
            usages.push(k);
        }
    }
    usages
}

/// A PKCS#10 request for `key` with the subject and names (what cfssl writes as NAME.csr).
pub fn csr_pem(
    cn: &str,
    csr: Option<&CsrJson>,
    hosts: &[String],
    key: &KeyPair,
) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(cn, csr);
    params.subject_alt_names = sans(hosts)?;
    params
        .serialize_request(key)
        .and_then(|c| c.pem())
        .map_err(|e| PkiError::Generate(format!("CSR: {e}")))
}

/// Issues a certificate signed by `ca`.
pub fn issue(ca: &Ca, req: &IssueRequest) -> Result<Issued, PkiError> {
    let key: KeyPair = req.key_type.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&req.cn, req.csr.as_ref());
    params.subject_alt_names = sans(&req.hosts)?;
    params.key_usages = key_usages(&req.profile);
    if req.profile.server_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if req.profile.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    if req.profile.is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages.push(KeyUsagePurpose::KeyCertSign);
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, req.expiry.unwrap_or(req.profile.expiry));
    let csr_pem = csr_pem(&req.cn, req.csr.as_ref(), &req.hosts, &key)?;
    let issuer = ca.issuer()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        csr_pem,
    })
}

/// Writes `NAME.pem`, `NAME-key.pem` (0600) and `NAME.csr` into `dir` (cfssljson's names).
pub fn write_issued(dir: &Path, name: &str, issued: &Issued) -> Result<(), PkiError> {
    files::write_private(&dir.join(format!("{name}-key.pem")), &issued.key_pem)?;
    files::write_public(&dir.join(format!("{name}.csr")), &issued.csr_pem)?;
    files::write_public(&dir.join(format!("{name}.pem")), &issued.cert_pem)?;
    Ok(())
}

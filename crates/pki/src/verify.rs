//! Would this certificate be accepted for this use? And if not, why, in plain words with the
//! fix: what `rampart pki verify` prints.

use rcgen::PublicKeyData;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::inspect::{describe, fingerprint, pem_certificates, CertInfo};
use crate::PkiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
    Peer,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, PkiError> {
        match s {
            "server" => Ok(Role::Server),
            "client" => Ok(Role::Client),
            "peer" => Ok(Role::Peer),
            other => Err(PkiError::Invalid(format!(
                "unknown role {other:?}: use server, client or peer"
            ))),
        }
    }
}

pub struct VerifyInput<'a> {
    pub ca_pem: &'a str,
    pub ca_origin: &'a str,
    pub cert_pem: &'a str,
    pub cert_origin: &'a str,
    pub key_pem: Option<&'a str>,
    pub host: Option<&'a str>,
    pub role: Option<Role>,
    /// PEM of a CRL to check against (the CA dir's `crl.pem`).
    pub crl_pem: Option<&'a str>,
    /// Unix time to check validity at (now, normally).
    pub now: i64,
}

fn host_matches(info: &CertInfo, host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return info
            .ip_addresses
            .iter()
            .any(|a| a.parse::<std::net::IpAddr>().ok() == Some(ip));
    }
    let host = host.to_ascii_lowercase();
    info.dns_names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
            None => n == host,
        }
    })
}

/// Returns every problem found (empty = the certificate would be accepted).
pub fn diagnose(input: &VerifyInput<'_>) -> Result<Vec<String>, PkiError> {
    let mut problems = Vec::new();
    let ca_der = pem_certificates(input.ca_pem, input.ca_origin)?;
    let cert_der = pem_certificates(input.cert_pem, input.cert_origin)?;
    let leaf = describe(&cert_der[0], input.cert_origin)?;
    let ca_infos: Vec<CertInfo> = ca_der
        .iter()
        .map(|d| describe(d, input.ca_origin))
        .collect::<Result<_, _>>()?;

    // Signed by (one of) the CA certificate(s)?
    let (_, leaf_cert) =
        X509Certificate::from_der(&cert_der[0]).map_err(|e| PkiError::Invalid(e.to_string()))?;
    let signer = ca_der.iter().zip(&ca_infos).find(|(der, _)| {
        X509Certificate::from_der(der)
            .map(|(_, ca)| leaf_cert.verify_signature(Some(ca.public_key())).is_ok())
            .unwrap_or(false)
    });
    match signer {
        None => problems.push(format!(
            "signed by a different CA: {} was issued by \"{}\", but the CA file {} is \"{}\" (SHA-256 {}); pass the CA that signed it, or reissue the certificate from this CA",
            input.cert_origin, leaf.issuer, input.ca_origin, ca_infos[0].subject, ca_infos[0].sha256_fingerprint
        )),
        Some((_, ca)) if !ca.is_ca => problems.push(format!(
            "the CA file {} holds a certificate without the CA basic constraint (\"{}\"): it cannot sign others; use the real CA certificate (ca.pem)",
            input.ca_origin, ca.subject
        )),
        Some(_) => {}
    }
    if input.now < leaf.not_before_unix {
        problems.push(format!(
            "not yet valid: valid from {} (check the clock of this machine or of the CA)",
            leaf.not_before
        ));
    }
    if input.now > leaf.not_after_unix {
        problems.push(format!(
            "expired on {}: reissue it (rampart pki issue)",
            leaf.not_after
        ));
    }
    let has = |eku: &str| {
        leaf.extended_key_usages
            .iter()
            .any(|e| e == eku || e == "any")
    };
    let need: &[(&str, &str)] = match input.role {
        Some(Role::Server) => &[("server auth", "server")],
        Some(Role::Client) => &[("client auth", "client")],
        Some(Role::Peer) => &[("server auth", "peer"), ("client auth", "peer")],
        None => &[],
    };
    for (eku, profile) in need {
        // No extended key usages at all means any use (as Go's verifier treats it).
        if !leaf.extended_key_usages.is_empty() && !has(eku) {
            problems.push(format!(
                "missing {eku} in its extended key usages ({}): reissue it with --profile {profile}",
                if leaf.extended_key_usages.is_empty() { "none".to_string() } else { leaf.extended_key_usages.join(", ") }
            ));
        }
    }
    if let Some(host) = input.host {
        if !host_matches(&leaf, host) {
            let mut names: Vec<String> = leaf.dns_names.clone();
            names.extend(leaf.ip_addresses.iter().cloned());
            problems.push(format!(
                "host {host} is not among the certificate's names ({}): reissue it with --hosts including {host}",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ));
        }
    }
    if let Some(key_pem) = input.key_pem {
        let key = crate::keys::load_key(key_pem, "--key", None)?;
        let (_, cert) =
            X509Certificate::from_der(&leaf.der).map_err(|e| PkiError::Invalid(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            problems.push("the key does not match the certificate: pass the key file written with it (NAME-key.pem)".to_string());
        }
    }
    if let Some(crl_pem) = input.crl_pem {
        if is_revoked(crl_pem, &cert_der[0])? {
            problems.push(format!(
                "revoked: serial {} is listed in the CA's CRL; issue a new certificate",
                leaf.serial
            ));
        }
    }
    Ok(problems)
}

/// Whether a CRL (PEM) lists the certificate's serial.
pub fn is_revoked(crl_pem: &str, cert_der: &[u8]) -> Result<bool, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| PkiError::Invalid(e.to_string()))?;
    for pem in x509_parser::pem::Pem::iter_from_buffer(crl_pem.as_bytes()) {
        let pem = pem.map_err(|e| PkiError::Invalid(format!("CRL: {e}")))?;
        let (_, crl) = CertificateRevocationList::from_der(&pem.contents)
            .map_err(|e| PkiError::Invalid(format!("CRL: {e}")))?;
        if crl
            .iter_revoked_certificates()
            .any(|r| r.raw_serial() == cert.raw_serial())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn ca_fingerprint(ca_pem: &str) -> Result<String, PkiError> {
    let der = pem_certificates(ca_pem, "CA")?;
    Ok(fingerprint(&der[0]))
}

//! Reading a certificate back: what `rampart pki inspect` prints.

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub key_usages: Vec<String>,
    pub extended_key_usages: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub key_type: String,
    pub serial: String,
    pub sha256_fingerprint: String,
    pub is_ca: bool,
    #[serde(skip)]
    pub not_before_unix: i64,
    #[serde(skip)]
    pub not_after_unix: i64,
    #[serde(skip)]
    pub der: Vec<u8>,
}

/// Every certificate in a PEM text.
pub fn pem_certificates(text: &str, origin: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| PkiError::File {
            path: origin.to_string(),
            reason: format!("not PEM ({e})"),
        })?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        let what = if text.contains("PRIVATE KEY") {
            "this is a private key, not a certificate"
        } else if text.contains("CERTIFICATE REQUEST") {
            "this is a certificate request (CSR), not a certificate"
        } else {
            "no certificate found"
        };
        return Err(PkiError::File {
            path: origin.to_string(),
            reason: what.to_string(),
        });
    }
    Ok(out)
}

pub fn describe(der: &[u8], origin: &str) -> Result<CertInfo, PkiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::File {
        path: origin.to_string(),
        reason: format!("not a valid certificate ({e})"),
    })?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => ip_addresses.push(match b.len() {
                    4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                        .to_string(),
                    16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                        .to_string(),
                    _ => hex::encode(b),
                }),
                _ => {}
            }
        }
    }
    let mut key_usages = Vec::new();
    if let Ok(Some(ku)) = cert.key_usage() {
        let k = ku.value;
        for (on, name) in [
            (k.digital_signature(), "digital signature"),
            (k.non_repudiation(), "content commitment"),
            (k.key_encipherment(), "key encipherment"),
            (k.data_encipherment(), "data encipherment"),
            (k.key_agreement(), "key agreement"),
            (k.key_cert_sign(), "cert sign"),
            (k.crl_sign(), "crl sign"),
        ] {
            if on {
                key_usages.push(name.to_string());
            }
        }
    }
    let mut extended_key_usages = Vec::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            extended_key_usages.push("server auth".to_string());
        }
        if eku.value.client_auth {
            extended_key_usages.push("client auth".to_string());
        }
        if eku.value.any {
            extended_key_usages.push("any".to_string());
        }
    }
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .map(|b| b.value.ca)
        .unwrap_or(false);
    let key_type = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(ec)) => format!("ECDSA P-{}", ec.key_size()),
        Ok(other) => format!("{other:?}")
            .split('(')
            .next()
            .unwrap_or("unknown")
            .to_string(),
        Err(_) => "unknown".to_string(),
    };
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_string();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name,
        dns_names,
        ip_addresses,
        key_usages,
        extended_key_usages,
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
        days_left: (na - now).div_euclid(86_400),
        key_type,
        serial: cert.raw_serial_as_string(),
        sha256_fingerprint: fingerprint(der),
        is_ca,
        not_before_unix: nb,
        not_after_unix: na,
        der: der.to_vec(),
    })
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl CertInfo {
    /// The human form `rampart pki inspect` prints.
    pub fn to_text(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(", ")
            }
        };
        format!(
            "subject:        {}\nissuer:         {}\nDNS names:      {}\nIP addresses:   {}\nkey usages:     {}\nextended usages:{}\nvalid:          {} to {} ({} days left)\nkey:            {}\nserial:         {}\nSHA-256:        {}\nCA:             {}\n",
            self.subject,
            self.issuer,
            list(&self.dns_names),
            list(&self.ip_addresses),
            list(&self.key_usages),
            format!(" {}", list(&self.extended_key_usages)),
            self.not_before,
            self.not_after,
            self.days_left,
            self.key_type,
            self.serial,
            self.sha256_fingerprint,
            if self.is_ca { "yes" } else { "no" },
        )
    }
}

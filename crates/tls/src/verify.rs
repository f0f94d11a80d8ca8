//! Client-certificate verification: the webpki chain check (with CRLs) plus etcd's
//! `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname` checks on top.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The common name of a DER certificate, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_string));
    cn
}

fn san_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return vec![];
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[derive(Debug)]
pub struct AllowedNamesVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub allowed_cn: Vec<String>,
    pub allowed_hostname: Vec<String>,
}

impl ClientCertVerifier for AllowedNamesVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self.allowed_cn.is_empty() {
            let cn = common_name(end_entity).unwrap_or_default();
            if !self.allowed_cn.contains(&cn) {
                return Err(rustls::Error::General(format!(
                    "client certificate CN {cn:?} is not one of the allowed CNs {:?}",
                    self.allowed_cn
                )));
            }
        }
        if !self.allowed_hostname.is_empty() {
            let names = san_names(end_entity);
            if !names.iter().any(|n| self.allowed_hostname.contains(n)) {
                return Err(rustls::Error::General(format!(
                    "client certificate names {names:?} do not include an allowed hostname {:?}",
                    self.allowed_hostname
                )));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
}

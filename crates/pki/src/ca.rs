//! The CA: its certificate and (optionally passphrase-protected) key in a directory, as
//! `ca.pem` and `ca-key.pem` like cfssl writes them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::keys::{key_pem, load_key, KeyType};
use crate::profile::CsrJson;
use crate::{files, PkiError};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";

/// CAs last 10 years by default (cfssl's `-initca` default is 5; etcd tutorials ask 87600h).
pub const DEFAULT_CA_EXPIRY_HOURS: i64 = 87_600;

pub struct Ca {
    pub dir: PathBuf,
    pub cert_pem: String,
    pub key: KeyPair,
}

pub struct CaRequest {
    pub cn: String,
    pub key_type: KeyType,
    pub expiry: time::Duration,
    pub csr: Option<CsrJson>,
}

impl Default for CaRequest {
    fn default() -> Self {
        CaRequest {
            cn: "rampart-ca".into(),
            key_type: KeyType::EcdsaP256,
            expiry: time::Duration::hours(DEFAULT_CA_EXPIRY_HOURS),
            csr: None,
        }
    }
}

pub(crate) fn distinguished_name(cn: &str, csr: Option<&CsrJson>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if !cn.is_empty() {
        dn.push(DnType::CommonName, cn);
    }
    if let Some(csr) = csr {
        for n in &csr.names {
            for (t, v) in [
                (DnType::CountryName, &n.country),
                (DnType::StateOrProvinceName, &n.state),
                (DnType::LocalityName, &n.locality),
                (DnType::OrganizationName, &n.organization),
                (DnType::OrganizationalUnitName, &n.organizational_unit),
            ] {
                if !v.is_empty() {
                    dn.push(t, v.as_str());
                }
            }
        }
    }
    dn
}

pub(crate) fn validity(params: &mut CertificateParams, expiry: time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that are slightly behind.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + expiry;
}

impl Ca {
    /// Creates a self-signed CA (cert + key PEMs) without writing anything.
    pub fn generate(req: &CaRequest) -> Result<(String, KeyPair), PkiError> {
        let key = req.key_type.generate()?;
        let mut params = CertificateParams::default();
        let cn = req
            .csr
            .as_ref()
            .map(|c| c.cn.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or(req.cn.clone());
        params.distinguished_name = distinguished_name(&cn, req.csr.as_ref());
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(crate::issue::random_serial());
        validity(&mut params, req.expiry);
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key))
    }

    /// `rampart pki init`: creates `ca.pem` and `ca-key.pem` (0600, encrypted when a passphrase
    /// is given) in `dir`; refuses to replace an existing CA unless `force`.
    pub fn init(
        dir: &Path,
        req: &CaRequest,
        passphrase: Option<&str>,
        force: bool,
    ) -> Result<Ca, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if !force && (cert_path.exists() || key_path.exists()) {
            return Err(PkiError::CaExists(cert_path.display().to_string()));
        }
        let (cert_pem, key) = Ca::generate(req)?;
        files::write_private(&key_path, &key_pem(&key, passphrase)?)?;
        files::write_public(&cert_path, &cert_pem)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            cert_pem,
            key,
        })
    }

    /// Loads the CA of `dir` (or explicit files, for cfssl's `-ca`/`-ca-key`).
    pub fn load_files(
        cert_path: &Path,
        key_path: &Path,
        passphrase: Option<&str>,
    ) -> Result<Ca, PkiError> {
        if !cert_path.exists() {
            let dir = cert_path
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| ".".into());
            return Err(PkiError::NoCa(if dir.is_empty() {
                ".".into()
            } else {
                dir
            }));
        }
        let cert_pem = files::read_text(cert_path)?;
        if !cert_pem.contains("BEGIN CERTIFICATE") {
            return Err(PkiError::File {
                path: cert_path.display().to_string(),
                reason: "not a PEM certificate".into(),
            });
        }
        let key_text = files::read_text(key_path)?;
        let key = load_key(&key_text, &key_path.display().to_string(), passphrase)?;
        Ok(Ca {
            dir: cert_path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            cert_pem,
            key,
        })
    }

    pub fn load(dir: &Path, passphrase: Option<&str>) -> Result<Ca, PkiError> {
        Ca::load_files(&dir.join(CA_CERT), &dir.join(CA_KEY), passphrase)
    }

    /// The signer for issuing and for CRLs.
    pub fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }
}

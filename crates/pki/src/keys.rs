//! Key types, generation, and the passphrase-protected (PKCS#8 encrypted) CA key.

use rcgen::KeyPair;

use crate::PkiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa4096,
}

impl KeyType {
    pub fn parse(text: &str) -> Result<KeyType, PkiError> {
        Ok(match text {
            "ecdsa-p256" | "ecdsa" | "p256" => KeyType::EcdsaP256,
            "ecdsa-p384" | "p384" => KeyType::EcdsaP384,
            "rsa-2048" | "rsa" => KeyType::Rsa2048,
            "rsa-4096" => KeyType::Rsa4096,
            other => {
                return Err(PkiError::Invalid(format!(
                    "unknown key type {other:?}: use ecdsa-p256, ecdsa-p384, rsa-2048 or rsa-4096"
                )))
            }
        })
    }

    /// From a cfssl CSR's `key: {algo, size}`.
    pub fn from_cfssl(algo: &str, size: u32) -> Result<KeyType, PkiError> {
        Ok(match (algo, size) {
            ("ecdsa", 0 | 256) => KeyType::EcdsaP256,
            ("ecdsa", 384) => KeyType::EcdsaP384,
            ("rsa", 0 | 2048) => KeyType::Rsa2048,
            ("rsa", 4096) => KeyType::Rsa4096,
            (a, s) => {
                return Err(PkiError::Invalid(format!(
                    "key {{\"algo\": {a:?}, \"size\": {s}}} is not supported: use ecdsa 256/384 or rsa 2048/4096"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    pub fn generate(self) -> Result<KeyPair, PkiError> {
        Ok(match self {
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)?
            }
        })
    }
}

/// The key as PEM: plain PKCS#8, or encrypted PKCS#8 under a passphrase.
pub fn key_pem(key: &KeyPair, passphrase: Option<&str>) -> Result<String, PkiError> {
    match passphrase {
        None => Ok(key.serialize_pem()),
        Some(pass) => {
            let info = pkcs8::PrivateKeyInfo::try_from(key.serialized_der())
                .map_err(|e| PkiError::Generate(format!("cannot encode the key: {e}")))?;
            let encrypted = info
                .encrypt(rand_core::OsRng, pass.as_bytes())
                .map_err(|e| PkiError::Generate(format!("cannot encrypt the key: {e}")))?;
            encrypted
                .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
                .map(|p| p.to_string())
                .map_err(|e| PkiError::Generate(e.to_string()))
        }
    }
}

/// Reads a key PEM (plain or encrypted PKCS#8, or the PKCS#1/SEC1 forms other tools write).
pub fn load_key(pem: &str, path: &str, passphrase: Option<&str>) -> Result<KeyPair, PkiError> {
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        let pass = passphrase.ok_or_else(|| PkiError::PassphraseNeeded(path.to_string()))?;
        let (_, doc) = pkcs8::SecretDocument::from_pem(pem).map_err(|e| PkiError::File {
            path: path.to_string(),
            reason: format!("not a PEM private key ({e})"),
        })?;
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| {
            PkiError::File {
                path: path.to_string(),
                reason: format!("damaged encrypted key ({e})"),
            }
        })?;
        let plain = encrypted
            .decrypt(pass.as_bytes())
            .map_err(|_| PkiError::WrongPassphrase(path.to_string()))?;
        let der = rustls_pki_der(plain.as_bytes());
        return KeyPair::try_from(der.as_slice()).map_err(|e| PkiError::File {
            path: path.to_string(),
            reason: format!("unsupported key ({e})"),
        });
    }
    KeyPair::from_pem(pem).map_err(|e| PkiError::File {
        path: path.to_string(),
        reason: if pem.contains("CERTIFICATE") {
            "this is a certificate, not a private key".to_string()
        } else {
            format!("not a usable private key ({e})")
        },
    })
}

fn rustls_pki_der(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

//! etcd's JWT tokens (`--auth-token jwt,pub-key=P,priv-key=K,sign-method=RS256,ttl=5m`): signed
//! claims `{"exp", "revision", "username"}` that any member holding the public key checks by
//! itself, without a table of tokens. A member given only `pub-key` accepts tokens but cannot
//! hand them out. Sign methods: RS256/384/512, PS256/384/512, ES256/384.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// etcd's default lifetime of a JWT.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Method {
    fn parse(name: &str) -> Result<Method, String> {
        Ok(match name {
            "RS256" => Method::Rs256,
            "RS384" => Method::Rs384,
            "RS512" => Method::Rs512,
            "PS256" => Method::Ps256,
            "PS384" => Method::Ps384,
            "PS512" => Method::Ps512,
            "ES256" => Method::Es256,
            "ES384" => Method::Es384,
            other => {
                return Err(format!(
                "unsupported JWT sign-method {other:?} (RS256/384/512, PS256/384/512, ES256/384)"
            ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Method::Rs256 => "RS256",
            Method::Rs384 => "RS384",
            Method::Rs512 => "RS512",
            Method::Ps256 => "PS256",
            Method::Ps384 => "PS384",
            Method::Ps512 => "PS512",
            Method::Es256 => "ES256",
            Method::Es384 => "ES384",
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Method::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Method::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Method::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Method::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Method::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Method::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Method::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Method::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }
}

enum Signer {
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(EcdsaKeyPair),
}

pub struct JwtTokens {
    method: Method,
    /// The key's raw public part: PKCS#1 RSAPublicKey, or the uncompressed EC point.
    public_key: Vec<u8>,
    signer: Option<Signer>,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("method", &self.method)
            .field("can_sign", &self.signer.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The blocks of a PEM file: (label, DER).
fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((label, body)) = current.take() {
                if let Ok(der) = STANDARD.decode(body) {
                    out.push((label, der));
                }
            }
        } else if let Some((_, body)) = current.as_mut() {
            if !line.contains(':') {
                body.push_str(line);
            }
        }
    }
    out
}

fn read_pem(flag: &str, path: &PathBuf) -> Result<(String, Vec<u8>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--auth-token {flag} {}: {e}", path.display()))?;
    pem_blocks(&text)
        .into_iter()
        .next()
        .ok_or_else(|| format!("--auth-token {flag} {}: no PEM block", path.display()))
}

/// The raw public key of a PEM certificate, SubjectPublicKeyInfo or PKCS#1 RSA public key.
fn public_key(path: &PathBuf) -> Result<Vec<u8>, String> {
    let (label, der) = read_pem("pub-key", path)?;
    let bad = |e: &dyn std::fmt::Display| format!("--auth-token pub-key {}: {e}", path.display());
    match label.as_str() {
        "CERTIFICATE" => {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(&e))?;
            Ok(cert.public_key().subject_public_key.data.to_vec())
        }
        "PUBLIC KEY" => {
            use x509_parser::prelude::FromDer as _;
            let (_, spki) =
                x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).map_err(|e| bad(&e))?;
            Ok(spki.subject_public_key.data.to_vec())
        }
        "RSA PUBLIC KEY" => Ok(der),
        other => Err(bad(&format!("a {other} is not a public key"))),
    }
}

fn signer(method: Method, path: &PathBuf) -> Result<Signer, String> {
    let (label, der) = read_pem("priv-key", path)?;
    let bad = |e: &dyn std::fmt::Display| format!("--auth-token priv-key {}: {e}", path.display());
    match method {
        Method::Es256 | Method::Es384 => {
            let alg = if method == Method::Es256 {
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            EcdsaKeyPair::from_private_key_der(alg, &der)
                .map(Signer::Ecdsa)
                .map_err(|e| bad(&e))
        }
        _ => {
            let key = match label.as_str() {
                "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
                _ => RsaKeyPair::from_pkcs8(&der),
            }
            .map_err(|e| bad(&e))?;
            let encoding: &'static dyn signature::RsaEncoding = match method {
                Method::Rs256 => &signature::RSA_PKCS1_SHA256,
                Method::Rs384 => &signature::RSA_PKCS1_SHA384,
                Method::Rs512 => &signature::RSA_PKCS1_SHA512,
                Method::Ps256 => &signature::RSA_PSS_SHA256,
                Method::Ps384 => &signature::RSA_PSS_SHA384,
                _ => &signature::RSA_PSS_SHA512,
            };
            Ok(Signer::Rsa(key, encoding))
        }
    }
}

impl JwtTokens {
    /// From the options after `jwt,` in `--auth-token`.
    pub fn from_options(options: &str) -> Result<JwtTokens, String> {
        let (mut pub_key, mut priv_key, mut method, mut ttl) = (None, None, None, DEFAULT_JWT_TTL);
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (name, value) = option
                .split_once('=')
                .ok_or_else(|| format!("--auth-token jwt option {option:?} is not name=value"))?;
            match name {
                "pub-key" => pub_key = Some(PathBuf::from(value)),
                "priv-key" => priv_key = Some(PathBuf::from(value)),
                "sign-method" => method = Some(Method::parse(value)?),
                "ttl" => {
                    ttl = rampart_config::parse_go_duration(value).ok_or_else(|| {
                        format!("--auth-token jwt ttl {value:?} is not a duration")
                    })?
                }
                other => return Err(format!("--auth-token jwt: unknown option {other:?}")),
            }
        }
        let method = method.ok_or("--auth-token jwt needs sign-method=")?;
        let pub_key = pub_key.ok_or("--auth-token jwt needs pub-key=")?;
        Ok(JwtTokens {
            method,
            public_key: public_key(&pub_key)?,
            signer: priv_key.map(|k| signer(method, &k)).transpose()?,
            ttl,
        })
    }

    /// A token for `user` at auth `revision`, valid for the configured time to live.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, String> {
        let signer = self.signer.as_ref().ok_or(
            "this member has no JWT private key (--auth-token priv-key=) to sign tokens with",
        )?;
        let expires = (SystemTime::now() + self.ttl)
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let header = serde_json::json!({"alg": self.method.name(), "typ": "JWT"});
        let claims = serde_json::json!({"exp": expires, "revision": revision, "username": user});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match signer {
            Signer::Rsa(key, encoding) => {
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(*encoding, &rng, signing_input.as_bytes(), &mut sig)
                    .map_err(|e| e.to_string())?;
                sig
            }
            Signer::Ecdsa(key) => key
                .sign(&rng, signing_input.as_bytes())
                .map_err(|e| e.to_string())?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// The user and auth revision of a token signed with this key and not expired.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let (header, claims) = signing_input.split_once('.')?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != self.method.name() {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        UnparsedPublicKey::new(self.method.verification(), &self.public_key)
            .verify(signing_input.as_bytes(), &sig)
            .ok()?;
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        // Whole seconds, valid through the second `exp` names (as jwt-go checks it): a token
        // made with ttl=1s is good for at least a second, whatever the clock's fraction.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        if now > claims.get("exp")?.as_u64()? {
            return None;
        }
        Some((
            claims.get("username")?.as_str()?.to_string(),
            claims.get("revision")?.as_u64()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            STANDARD.encode(der)
        )
    }

    #[test]
    fn tokens_verify_with_the_key_and_until_they_expire() {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let dir = tempfile::tempdir().unwrap();
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let (priv_path, pub_path) = (dir.path().join("k.pem"), dir.path().join("p.pem"));
        std::fs::write(
            &priv_path,
            pem("PRIVATE KEY", key.as_der().unwrap().as_ref()),
        )
        .unwrap();
        std::fs::write(&pub_path, pem("RSA PUBLIC KEY", key.public_key().as_ref())).unwrap();
        for method in ["RS256", "PS384"] {
            let options = format!(
                "pub-key={},priv-key={},sign-method={method},ttl=2s",
                pub_path.display(),
                priv_path.display()
            );
            let jwt = JwtTokens::from_options(&options).unwrap();
            let token = jwt.sign("alice", 7).unwrap();
            assert_eq!(jwt.verify(&token), Some(("alice".to_string(), 7)));
            // A changed claim breaks the signature.
            let parts: Vec<&str> = token.split('.').collect();
            let forged_claims =
                URL_SAFE_NO_PAD.encode(r#"{"exp":99999999999,"revision":7,"username":"root"}"#);
            let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
            assert_eq!(jwt.verify(&forged), None);
            // A member with the public key only checks tokens but cannot make them.
            let checker = JwtTokens::from_options(&format!(
                "pub-key={},sign-method={method}",
                pub_path.display()
            ))
            .unwrap();
            assert_eq!(checker.verify(&token), Some(("alice".to_string(), 7)));
            assert!(checker.sign("alice", 7).is_err());
        }
        let short = JwtTokens::from_options(&format!(
            "pub-key={},priv-key={},sign-method=RS256,ttl=1s",
            pub_path.display(),
            priv_path.display()
        ))
        .unwrap();
        let token = short.sign("bob", 1).unwrap();
        // Good for at least the time to live, gone within a second after it.
        std::thread::sleep(Duration::from_millis(900));
        assert!(short.verify(&token).is_some());
        std::thread::sleep(Duration::from_millis(2200));
        assert_eq!(short.verify(&token), None);
    }

    #[test]
    fn bad_options_are_named() {
        assert!(
            JwtTokens::from_options("pub-key=/nonexistent,sign-method=RS256")
                .unwrap_err()
                .contains("/nonexistent")
        );
        assert!(JwtTokens::from_options("pub-key=x,sign-method=HS256")
            .unwrap_err()
            .contains("HS256"));
        assert!(JwtTokens::from_options("pub-key=x")
            .unwrap_err()
            .contains("sign-method"));
        assert!(JwtTokens::from_options("bogus")
            .unwrap_err()
            .contains("bogus"));
    }
}

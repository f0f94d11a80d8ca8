//! Signing profiles (cfssl's `ca-config.json`) and certificate requests (cfssl's CSR JSON).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::{files, parse_expiry, PkiError};

/// What a certificate may be used for, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub server_auth: bool,
    pub client_auth: bool,
    pub expiry: time::Duration,
    /// cfssl usages that map to key usage bits ("signing", "key encipherment", ...).
    pub key_usages: Vec<String>,
    pub is_ca: bool,
}

/// Certificates last 5 years by default, as in the tutorials' cfssl configs (43800h).
pub const DEFAULT_EXPIRY_HOURS: i64 = 43_800;

impl Profile {
    pub fn builtin(name: &str) -> Option<Profile> {
        let (server_auth, client_auth) = match name {
            "server" => (true, false),
            "client" => (false, true),
            "peer" => (true, true),
            _ => return None,
        };
        Some(Profile {
            server_auth,
            client_auth,
            expiry: time::Duration::hours(DEFAULT_EXPIRY_HOURS),
            key_usages: vec!["signing".into(), "key encipherment".into()],
            is_ca: false,
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawProfile {
    #[serde(default)]
    usages: Vec<String>,
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    ca_constraint: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawSigning {
    #[serde(default)]
    default: Option<RawProfile>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    signing: RawSigning,
}

/// A cfssl `ca-config.json`: named profiles that add to or override the built-in ones.
#[derive(Debug, Clone, Default)]
pub struct CaConfig {
    profiles: BTreeMap<String, Profile>,
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &str,
) -> Result<T, PkiError> {
    serde_json::from_str(text).map_err(|e| PkiError::Json {
        path: path.to_string(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    })
}

fn from_raw(raw: &RawProfile, default_expiry: Option<&str>) -> Result<Profile, PkiError> {
    let expiry = match raw.expiry.as_deref().or(default_expiry) {
        Some(e) => parse_expiry(e)?,
        None => time::Duration::hours(DEFAULT_EXPIRY_HOURS),
    };
    let mut key_usages = Vec::new();
    let (mut server_auth, mut client_auth) = (false, false);
    for u in &raw.usages {
        match u.as_str() {
            "server auth" => server_auth = true,
            "client auth" => client_auth = true,
            "signing" | "digital signature" | "key encipherment" | "cert sign" | "crl sign"
            | "content commitment" | "key agreement" | "data encipherment" => key_usages.push(u.clone()),
            other => {
                return Err(PkiError::Invalid(format!(
                    "unknown usage {other:?} in ca-config.json (known: signing, digital signature, key encipherment, server auth, client auth, cert sign, crl sign)"
                )))
            }
        }
    }
    Ok(Profile {
        server_auth,
        client_auth,
        expiry,
        key_usages,
        is_ca: raw
            .ca_constraint
            .as_ref()
            .and_then(|c| c.get("is_ca"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

impl CaConfig {
    pub fn load(path: &Path) -> Result<CaConfig, PkiError> {
        let text = files::read_text(path)?;
        let raw: RawConfig = parse_json(&text, &path.display().to_string())?;
        let default_expiry = raw.signing.default.as_ref().and_then(|d| d.expiry.clone());
        let mut profiles = BTreeMap::new();
        for (name, p) in &raw.signing.profiles {
            profiles.insert(name.clone(), from_raw(p, default_expiry.as_deref())?);
        }
        if let Some(d) = &raw.signing.default {
            if !d.usages.is_empty() {
                profiles
                    .entry("default".to_string())
                    .or_insert(from_raw(d, None)?);
            }
        }
        Ok(CaConfig { profiles })
    }

    /// A profile by name: the config's first, then the built-in ones.
    pub fn profile(&self, name: &str) -> Result<Profile, PkiError> {
        if let Some(p) = self.profiles.get(name) {
            return Ok(p.clone());
        }
        Profile::builtin(name).ok_or_else(|| {
            let mut known: Vec<String> = vec!["server".into(), "client".into(), "peer".into()];
            known.extend(self.profiles.keys().cloned());
            PkiError::UnknownProfile {
                name: name.to_string(),
                known: known.join(", "),
            }
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyRequest {
    #[serde(default)]
    pub algo: String,
    #[serde(default)]
    pub size: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Name {
    #[serde(rename = "C", default)]
    pub country: String,
    #[serde(rename = "L", default)]
    pub locality: String,
    #[serde(rename = "O", default)]
    pub organization: String,
    #[serde(rename = "OU", default)]
    pub organizational_unit: String,
    #[serde(rename = "ST", default)]
    pub state: String,
}

/// cfssl's CSR JSON, accepted as is.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CsrJson {
    #[serde(rename = "CN", default)]
    pub cn: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub key: Option<KeyRequest>,
    #[serde(default)]
    pub names: Vec<Name>,
}

impl CsrJson {
    pub fn load(path: &Path) -> Result<CsrJson, PkiError> {
        let text = files::read_text(path)?;
        CsrJson::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<CsrJson, PkiError> {
        parse_json(text, origin)
    }
}

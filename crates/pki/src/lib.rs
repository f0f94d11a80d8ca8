//! Rampart's built-in certificate authority: what cfssl + cfssljson and etcd-ca do for etcd
//! tutorials, in one library.
//!
//! Owns: keys ([`keys`]), the CA and its passphrase-protected key ([`ca`]), issuing certificates by
//! profile from cfssl-style requests ([`profile`], [`issue`]), writing files with cfssl's names and
//! private modes ([`files`]), reading certificates back ([`inspect`]), deciding whether one would
//! be accepted for a use and why not ([`verify`]), and revocation lists ([`crl`]).
//! Does not own: serving TLS (`rampart-tls`) or command-line parsing (the `rampart` binary).

pub mod ca;
pub mod crl;
pub mod files;
pub mod inspect;
pub mod issue;
pub mod keys;
pub mod profile;
pub mod verify;

pub use ca::Ca;
pub use issue::{issue, IssueRequest, Issued};
pub use keys::KeyType;
pub use profile::{CaConfig, CsrJson, Profile};

/// What went wrong, worded for the operator with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0} already exists: pass --force to replace the CA (every certificate it signed stops being trusted)")]
    CaExists(String),
    #[error("no CA in {0}: create one with `rampart pki init --dir {0}`")]
    NoCa(String),
    #[error("{path}: malformed JSON at line {line}, column {column}: {reason}")]
    Json {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("unknown profile {name:?}: known profiles are {known}")]
    UnknownProfile { name: String, known: String },
    #[error("the CA key {0} is encrypted: pass --passphrase-file with its passphrase")]
    PassphraseNeeded(String),
    #[error("wrong passphrase for the CA key {0}")]
    WrongPassphrase(String),
    #[error("{0}")]
    Invalid(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Generate(e.to_string())
    }
}

/// Parses cfssl-style durations ("87600h", "8760h", "720h30m", "90d" also accepted).
pub fn parse_expiry(text: &str) -> Result<time::Duration, PkiError> {
    let bad = || PkiError::Invalid(format!("expiry {text:?} is not a duration like 8760h"));
    let mut total = time::Duration::ZERO;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total += match c {
            'd' => time::Duration::days(n),
            'h' => time::Duration::hours(n),
            'm' => time::Duration::minutes(n),
            's' => time::Duration::seconds(n),
            _ => return Err(bad()),
        };
    }
    if !number.is_empty() || total <= time::Duration::ZERO {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_parses_cfssl_forms() {
        assert_eq!(parse_expiry("8760h").unwrap(), time::Duration::hours(8760));
        assert_eq!(parse_expiry("1h30m").unwrap(), time::Duration::minutes(90));
        assert!(parse_expiry("forever").is_err());
        assert!(parse_expiry("10").is_err());
    }
}

//! etcd 3.4's server configuration: command-line flags (Go `flag` syntax), `ETCD_*` environment
//! variables and the YAML `--config-file`, validated into a [`ServerConfig`].
//!
//! Owns: the flag table ([`flags`]), precedence (flag > env; a config file replaces both, as in
//! etcd 3.4), validation with etcd's texts and a hint, and secure-by-default checks.
//! Does not own: acting on the settings (`rampart-server`).

pub mod flags;
mod go_duration;
mod parse;
mod server_config;

pub use go_duration::parse_go_duration;
pub use parse::{parse, Parsed};
pub use server_config::{ClusterState, ServerConfig, TlsSettings};

/// The etcd version Rampart's server speaks.
pub const ETCD_VERSION: &str = "3.4.23";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// etcd's own text for an unknown flag, plus a hint.
    #[error("flag provided but not defined: -{name}{hint}")]
    UnknownFlag { name: String, hint: String },
    #[error("invalid value {value:?} for flag -{name}: {reason}")]
    BadValue {
        name: String,
        value: String,
        reason: String,
    },
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("error verifying flags, {0}. See 'etcd --help'.")]
    Invalid(String),
    #[error("cannot read --config-file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
}

/// `etcd --version`, in etcd's layout.
pub fn version_text() -> String {
    format!(
        "etcd Version: {ETCD_VERSION}\nGit SHA: rampart\nGo Version: not go (rampart {} in Rust)\nGo OS/Arch: {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }
    )
}

/// `etcd --help`: every flag with its default.
pub fn help_text() -> String {
    let mut s = String::from(
        "usage: rampart server [flags]   (or: etcd [flags])\n\n  Start a Rampart member. Takes etcd 3.4's flags and ETCD_* variables.\n\n",
    );
    for f in flags::FLAGS {
        let note = if f.honoured {
            ""
        } else {
            "  (accepted for compatibility; no effect yet)"
        };
        s.push_str(&format!("  --{} '{}'{}\n", f.name, f.default, note));
    }
    s
}

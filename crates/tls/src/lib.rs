//! The one TLS layer of Rampart (rustls with the aws-lc-rs provider), used by the client and
//! peer listeners, the peer transport, the proxy and the CLI.
//!
//! Owns: building server and client configurations from etcd-style options ([`TlsOptions`],
//! [`ClientTlsOptions`]), client-certificate verification with CRLs and allowed CN/hostname,
//! **reloading certificates, keys, CA bundles and CRLs when their files change** ([`reload`]),
//! accepting connections for tonic ([`incoming`]), dialing gRPC channels ([`client`]), and
//! turning handshake failures into one-line explanations with the fix ([`explain`]).
//! Does not own: issuing certificates (`rampart-pki`).

pub mod auto;
pub mod client;
pub mod explain;
pub mod incoming;
mod load;
pub mod reload;
pub mod server;
mod trusted_self_signed;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

pub use client::{
    connect_channel, connect_channel_lazy, dial, explain_refusal, is_alpn_refusal, ClientConn,
    ClientTls, ClientTlsOptions,
};
pub use incoming::{Conn, ConnInfo, Divert, TlsIncoming};
pub use server::ServerTls;

/// TLS settings of a listener, named after etcd's flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--cert-file` / `--peer-cert-file`.
    pub cert_file: Option<PathBuf>,
    /// `--key-file` / `--peer-key-file`.
    pub key_file: Option<PathBuf>,
    /// `--trusted-ca-file` / `--peer-trusted-ca-file`.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
    /// `--client-crl-file` / `--peer-crl-file`.
    pub crl_file: Option<PathBuf>,
    /// `--peer-cert-allowed-cn`: a client certificate must carry one of these CNs.
    pub allowed_cn: Vec<String>,
    /// `--peer-cert-allowed-hostname`: a client certificate must carry one of these in its SANs.
    pub allowed_hostname: Vec<String>,
    /// `--tls-min-version`: "TLS1.2" (default) or "TLS1.3".
    pub min_version: Option<String>,
    /// `--cipher-suites`, Go names (TLS 1.2 suites; TLS 1.3 suites are always on).
    pub cipher_suites: Vec<String>,
    /// `--auto-tls`: a self-signed certificate generated into this directory.
    pub auto_tls_dir: Option<PathBuf>,
}

/// Why TLS could not be set up or a connection could not be made; the text names the flag, the
/// file and the fix, ready to show to an operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file given by `flag` cannot be read.
    #[error("{flag} {path}: cannot read: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file given by `flag` does not hold what that flag needs.
    #[error("{flag} {path}: {problem}")]
    BadFile {
        flag: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// The options do not fit together (or name an unsupported version or suite).
    #[error("{0}")]
    Config(String),
    /// Dialing a channel failed; the text is the one-line explanation from [`explain`].
    #[error("{0}")]
    Connect(String),
}

/// The crypto provider every config is built with (no process-wide default needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

//! Server configurations from [`TlsOptions`], reloaded when the files change.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::reload::Reloading;
use crate::verify::AllowedNamesVerifier;
use crate::{load, provider, TlsError, TlsOptions};

/// A listener's TLS: hands out the current `ServerConfig`.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<Reloading<Arc<ServerConfig>>>,
}

impl ServerTls {
    pub fn new(options: TlsOptions) -> Result<ServerTls, TlsError> {
        ServerTls::new_with_alpn(options, Vec::new())
    }

    /// Like [`ServerTls::new`], also offering the application protocols `extra_alpn` (after h2
    /// and http/1.1), for a listener that serves one of its own besides gRPC.
    pub fn new_with_alpn(
        options: TlsOptions,
        extra_alpn: Vec<Vec<u8>>,
    ) -> Result<ServerTls, TlsError> {
        let options = crate::auto::resolve(options)?;
        let files: Vec<PathBuf> = [
            &options.cert_file,
            &options.key_file,
            &options.trusted_ca_file,
            &options.crl_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let opts = options.clone();
        let config = Reloading::new(
            "server TLS",
            files,
            Box::new(move || {
                build_server_config(&opts).map(|mut config| {
                    config.alpn_protocols.extend(extra_alpn.iter().cloned());
                    Arc::new(config)
                })
            }),
        )?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// The configuration to use for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.get()
    }

    /// Handshakes one accepted connection.
    pub async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        tokio_rustls::TlsAcceptor::from(self.config())
            .accept(tcp)
            .await
    }
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

pub(crate) fn protocol_versions(
    min: Option<&str>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsError> {
    match min.unwrap_or("TLS1.2") {
        "TLS1.2" | "" => Ok(rustls::ALL_VERSIONS),
        "TLS1.3" => Ok(TLS13_ONLY),
        other => Err(TlsError::Config(format!(
            "--tls-min-version {other:?} is not supported: use TLS1.2 or TLS1.3"
        ))),
    }
}

/// Maps etcd's (Go's) cipher suite names onto the provider's suites.
pub(crate) fn select_provider(
    cipher_suites: &[String],
) -> Result<Arc<rustls::crypto::CryptoProvider>, TlsError> {
    let base = provider();
    if cipher_suites.is_empty() {
        return Ok(base);
    }
    let mut chosen = Vec::new();
    for wanted in cipher_suites {
        let found = base.cipher_suites.iter().find(|s| {
            let full = format!("{:?}", s.suite());
            // Go spells the CHACHA20 suites without their "_SHA256" tail.
            full == *wanted || format!("{wanted}_SHA256") == full
        });
        match found {
            Some(s) => chosen.push(*s),
            None => {
                let known: Vec<String> = base
                    .cipher_suites
                    .iter()
                    .filter(|s| s.version() == &rustls::version::TLS12)
                    .map(|s| format!("{:?}", s.suite()))
                    .collect();
                return Err(TlsError::Config(format!(
                    "--cipher-suites: unknown or unsupported suite {wanted:?}; supported: {}",
                    known.join(", ")
                )));
            }
        }
    }
    debug_assert_eq!(
        chosen.len(),
        cipher_suites.len(),
        "one provider suite per name"
    );
    // TLS 1.3 suites are not configurable in etcd either; keep them.
    chosen.extend(
        base.cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied(),
    );
    let mut p = (*base).clone();
    p.cipher_suites = chosen;
    Ok(Arc::new(p))
}

fn build_server_config(o: &TlsOptions) -> Result<ServerConfig, TlsError> {
    let cert_file = o.cert_file.as_ref().ok_or_else(|| {
        TlsError::Config(
            "TLS needs a certificate: pass --cert-file and --key-file (or --auto-tls)".into(),
        )
    })?;
    let key_file = o.key_file.as_ref().ok_or_else(|| {
        TlsError::Config(format!(
            "--cert-file {} given without --key-file",
            cert_file.display()
        ))
    })?;
    let certs = load::certs("--cert-file", cert_file)?;
    let key = load::key("--key-file", key_file)?;
    let provider = select_provider(&o.cipher_suites)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(o.min_version.as_deref())?)
        .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
    let builder = if o.client_cert_auth {
        let ca = o.trusted_ca_file.as_ref().ok_or_else(|| {
            TlsError::Config("--client-cert-auth needs --trusted-ca-file (the CA that signs client certificates)".into())
        })?;
        let roots = Arc::new(load::roots("--trusted-ca-file", ca)?);
        let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        if let Some(crl) = &o.crl_file {
            // Like etcd: a CRL revokes the serials it lists; a client whose issuer has no CRL
            // in the file is not refused for that.
            verifier = verifier
                .with_crls(load::crls("--client-crl-file", crl)?)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
        let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
            Arc::new(crate::trusted_self_signed::ClientVerifier::new(
                verifier,
                load::certs("--trusted-ca-file", ca)?,
            ));
        let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
            if o.allowed_cn.is_empty() && o.allowed_hostname.is_empty() {
                verifier
            } else {
                Arc::new(AllowedNamesVerifier {
                    inner: verifier,
                    allowed_cn: o.allowed_cn.clone(),
                    allowed_hostname: o.allowed_hostname.clone(),
                })
            };
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Config(format!(
            "--cert-file {} and --key-file {} do not form a usable pair: {e}",
            cert_file.display(),
            key_file.display()
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

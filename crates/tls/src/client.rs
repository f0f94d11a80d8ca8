//! Dialing TLS (or plaintext) gRPC channels, with certificates reloaded when their files change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::reload::Reloading;
use crate::{load, provider, TlsError};

/// Client-side TLS settings (etcdctl's `--cacert --cert --key --insecure-skip-tls-verify`).
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    pub trusted_ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against instead of the URL's host.
    pub server_name_override: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<Arc<ClientConfig>>>,
    server_name_override: Option<String>,
}

impl ClientTls {
    pub fn new(options: ClientTlsOptions) -> Result<ClientTls, TlsError> {
        let files: Vec<PathBuf> = [
            &options.trusted_ca_file,
            &options.cert_file,
            &options.key_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let server_name_override = options.server_name_override.clone();
        let config = Reloading::new(
            "client TLS",
            files,
            Box::new(move || build_client_config(&options).map(Arc::new)),
        )?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name_override,
        })
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.get()
    }

    /// Handshakes over an established TCP connection to `host`.
    pub async fn connect(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        self.connect_with(host, tcp, self.config()).await
    }

    /// Handshakes offering the application protocol `alpn` instead of h2.
    pub async fn connect_with_alpn(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut config = (*self.config()).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        self.connect_with(host, tcp, Arc::new(config)).await
    }

    async fn connect_with(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
        config: Arc<ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = self.server_name_override.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(
            name.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad server name {name:?}: {e}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
    }
}

fn build_client_config(o: &ClientTlsOptions) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if o.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::explain::NoVerification(provider())))
    } else {
        let (roots, anchors) = match &o.trusted_ca_file {
            Some(ca) => (load::roots("--cacert", ca)?, load::certs("--cacert", ca)?),
            None => {
                // Without a CA, trust nothing: the error then tells the user to pass --cacert.
                (rustls::RootCertStore::empty(), Vec::new())
            }
        };
        if anchors.is_empty() {
            builder.with_root_certificates(roots)
        } else {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(format!("--cacert: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    crate::trusted_self_signed::Verifier::new(inner, anchors),
                ))
        }
    };
    let mut config = match (&o.cert_file, &o.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load::certs("--cert", cert)?, load::key("--key", key)?)
            .map_err(|e| {
                TlsError::Config(format!(
                    "--cert {} and --key {} do not match: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(TlsError::Config("--cert given without --key".into())),
        (None, Some(_)) => return Err(TlsError::Config("--key given without --cert".into())),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// HTTP/2 pings on idle channels, so a dead peer is noticed without waiting for a call.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// A ping unanswered this long closes the connection.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Dial timeout of lazy (peer) channels, which reconnect by themselves.
pub const LAZY_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Splits `[scheme://]host:port` into (TLS wanted, host, port). Without a scheme, TLS is used
/// when TLS settings are given (as etcdctl does).
fn parse_target(url: &str, have_tls: bool) -> Result<(bool, String, u16), TlsError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if url.starts_with("unix://") || url.starts_with("unixs://") {
        return Err(TlsError::Connect(format!(
            "{url}: unix socket endpoints are not supported: use http://host:port or https://host:port"
        )));
    } else {
        (have_tls, url)
    };
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| TlsError::Connect(format!("{url}: no port in the address")))?;
    let port = port
        .parse()
        .map_err(|_| TlsError::Connect(format!("{url}: bad port {port:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(TlsError::Connect(format!("{url}: no host in the address")));
    }
    Ok((tls, host.to_string(), port))
}

/// The endpoint tonic sees, and the connector that dials it (TCP, then TLS when wanted).
#[allow(clippy::type_complexity)]
fn endpoint(
    url: &str,
    tls: Option<&ClientTls>,
) -> Result<
    (
        Endpoint,
        impl tower::Service<
                Uri,
                Response = TokioIo<ClientConn>,
                Error = std::io::Error,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
    ),
    TlsError,
> {
    let (use_tls, host, port) = parse_target(url, tls.is_some())?;
    let client_tls = match (use_tls, tls) {
        (true, Some(t)) => Some(t.clone()),
        (true, None) => {
            return Err(TlsError::Connect(format!(
                "{url} uses TLS but no TLS settings were given: pass --cacert (and --cert/--key for mutual TLS)"
            )))
        }
        (false, _) => None,
    };
    // tonic only sees a plaintext URI; the connector below does TCP + TLS itself.
    let endpoint = Endpoint::from_shared(format!(
        "http://{}:{port}",
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        }
    ))
    .map_err(|e| TlsError::Connect(format!("{url}: {e}")))?
    .tcp_nodelay(true)
    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
    .keep_alive_while_idle(true);
    let connector = tower::service_fn(move |_uri: Uri| {
        let host = host.clone();
        let client_tls = client_tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let conn = match client_tls {
                Some(t) => ClientConn::Tls(Box::new(t.connect(&host, tcp).await?)),
                None => ClientConn::Plain(tcp),
            };
            Ok::<_, std::io::Error>(TokioIo::new(conn))
        }
    });
    Ok((endpoint, connector))
}

/// Connects now (failing fast with a clear error) to `url`.
pub async fn connect_channel(
    url: &str,
    tls: Option<&ClientTls>,
    connect_timeout: Duration,
) -> Result<Channel, TlsError> {
    let (endpoint, connector) = endpoint(url, tls)?;
    let endpoint = endpoint.connect_timeout(connect_timeout);
    // The outer timeout also bounds a server that accepts TCP but never answers the handshake.
    match tokio::time::timeout(connect_timeout, endpoint.connect_with_connector(connector)).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(TlsError::Connect(crate::explain::explain_connect_error(
            url, &e,
        ))),
        Err(_) => Err(TlsError::Connect(format!(
            "{url}: connection timed out after {connect_timeout:?}"
        ))),
    }
}

/// Why a TLS server refused us after our side of the handshake finished, if it did. With TLS 1.3
/// a server checks our client certificate only after the client's handshake completed, so its
/// refusal (an alert) can race the first call, which then fails as "operation was canceled" or a
/// broken connection. A fresh handshake followed by one read picks up the alert itself; a server
/// that accepted us just waits for our HTTP/2 preface, so the read is bounded by `wait`.
pub async fn explain_refusal(url: &str, tls: &ClientTls, wait: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let (use_tls, host, port) = parse_target(url, true).ok()?;
    if !use_tls {
        return None;
    }
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        let mut stream = match tls.connect(&host, tcp).await {
            Ok(s) => s,
            Err(e) => return Some(crate::explain::explain_connect_error(url, &e)),
        };
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Err(e) => Some(crate::explain::explain_connect_error(url, &e)),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(wait, attempt).await.ok().flatten()
}

/// A channel that connects on first use and reconnects by itself (for long-lived peers).
pub fn connect_channel_lazy(url: &str, tls: Option<&ClientTls>) -> Result<Channel, TlsError> {
    let (endpoint, connector) = endpoint(url, tls)?;
    Ok(endpoint
        .connect_timeout(LAZY_CONNECT_TIMEOUT)
        .connect_with_connector_lazy(connector))
}

/// Dials `url` for a protocol of our own (not gRPC): TCP, then TLS offering `alpn` when the URL
/// is `https://`. Bounded by `timeout`.
pub async fn dial(
    url: &str,
    tls: Option<&ClientTls>,
    alpn: &[u8],
    timeout: Duration,
) -> std::io::Result<ClientConn> {
    let (use_tls, host, port) = parse_target(url, tls.is_some())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        match (use_tls, tls) {
            (true, Some(t)) => Ok(ClientConn::Tls(Box::new(
                t.connect_with_alpn(&host, tcp, alpn).await?,
            ))),
            (true, None) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{url} uses TLS but no TLS settings were given"),
            )),
            (false, _) => Ok(ClientConn::Plain(tcp)),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{url}: connection timed out after {timeout:?}"),
            ))
        })
}

/// True when a TLS server refused the handshake because it does not speak the application
/// protocol we offered (it runs an older version, say).
pub fn is_alpn_refusal(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
            )
        })
}

/// A dialed connection: plaintext or TLS.
pub enum ClientConn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl ClientConn {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &tokio::net::TcpStream {
        match self {
            ClientConn::Plain(s) => s,
            ClientConn::Tls(s) => s.get_ref().0,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientConn::Plain($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            ClientConn::Tls($s) => {
                let $s = std::pin::Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl tokio::io::AsyncRead for ClientConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for ClientConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

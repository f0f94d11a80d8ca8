//! The proxy: clients know one address (and one certificate); the proxy knows the cluster.
//!
//! Owns: the client-facing listener (TLS, optional mutual TLS), finding the members (from client
//! URLs, or from peer URLs by asking a member over the peer port, as etcd's `--proxy on` does)
//! and keeping that list current, and getting every request answered by a member that is up —
//! gRPC (all v3 services and streams) and plain HTTP (v2 keys, `/health`, the JSON gateway).
//! What makes it worth having, as etcd's gRPC proxy: identical watches of many clients share
//! one upstream watch (`watch_broadcast`, `watch_proxy`), lease keep-alives are coalesced
//! (`lease_coalesce`), serializable ranges may be cached (`range_cache`, off by default), reads
//! are retried on another member (`upstream_call`, `forward`), and the proxy serves its own
//! `/metrics` (`metrics`). Also the L4 `gateway` (etcd's `etcd gateway start`).
//! Does not own: the meaning of any request (members answer them).

mod client_queue;
mod forward;
pub mod gateway;
mod kv_proxy;
mod lease_coalesce;
pub mod metrics;
mod peer_members;
pub mod range_cache;
mod routes;
mod upstream;
mod upstream_call;
mod watch_broadcast;
mod watch_proxy;

use std::sync::Arc;
use std::time::Duration;

use rampart_tls::{ClientTls, ServerTls, TlsIncoming};
use tokio::task::JoinHandle;

pub use upstream::{Discovery, Upstreams};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// How the proxy runs.
pub struct ProxySettings {
    /// Client-facing listen URLs (`http://` or `https://`).
    pub listen_urls: Vec<String>,
    /// TLS of the client-facing listener (required for `https://` URLs).
    pub server_tls: Option<rampart_tls::TlsOptions>,
    /// Where the members are found.
    pub discovery: Discovery,
    /// TLS towards the members (client certificate, CA).
    pub upstream_tls: Option<rampart_tls::ClientTlsOptions>,
    /// How often the member list is refreshed (etcd's `--proxy-refresh-interval`, 30 s).
    pub refresh_interval: Duration,
    /// How long serializable range responses are served from the proxy's cache (None: no
    /// cache, the default, as etcd's).
    pub serializable_cache_ttl: Option<Duration>,
    /// Extra plain-HTTP listeners for `/metrics` and `/health` (etcd grpc-proxy's
    /// `--metrics-addr`); the client listeners serve them too.
    pub metrics_urls: Vec<String>,
}

pub struct RunningProxy {
    pub upstreams: Arc<Upstreams>,
    pub metrics: Arc<metrics::ProxyMetrics>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    pub fn shutdown(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn listen_addr(raw: &str) -> Result<(std::net::SocketAddr, bool), ProxyError> {
    let u = url::Url::parse(raw)
        .map_err(|e| ProxyError::Config(format!("invalid listen URL {raw:?}: {e}")))?;
    let tls = match u.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(ProxyError::Config(format!(
                "listen URL {raw:?}: scheme {other} is not served (use http or https)"
            )))
        }
    };
    let host = u.host_str().unwrap_or("127.0.0.1");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = u
        .port()
        .ok_or_else(|| ProxyError::Config(format!("listen URL {raw:?} has no port")))?;
    let ip: std::net::IpAddr = host.parse().map_err(|_| {
        ProxyError::Config(format!(
            "listen URL {raw:?}: host must be an IP address or localhost"
        ))
    })?;
    Ok((std::net::SocketAddr::new(ip, port), tls))
}

/// Starts the proxy; returns once it listens.
pub async fn run(settings: ProxySettings) -> Result<RunningProxy, ProxyError> {
    let upstream_tls = match &settings.upstream_tls {
        Some(o) => {
            Some(Arc::new(ClientTls::new(o.clone()).map_err(|e| {
                ProxyError::Tls(format!("upstream TLS: {e}"))
            })?))
        }
        None => None,
    };
    let upstreams = Arc::new(Upstreams::new(settings.discovery.clone(), upstream_tls));
    let proxy_metrics = Arc::new(metrics::ProxyMetrics::default());
    upstreams.refresh().await;
    let mut tasks = vec![tokio::spawn(
        upstreams.clone().run(settings.refresh_interval),
    )];
    let server_tls = match &settings.server_tls {
        Some(o) => Some(
            ServerTls::new(o.clone()).map_err(|e| ProxyError::Tls(format!("client TLS: {e}")))?,
        ),
        None => None,
    };
    let services = routes::Services::new(
        upstreams.clone(),
        proxy_metrics.clone(),
        settings.serializable_cache_ttl,
    );
    for raw in &settings.listen_urls {
        let (addr, tls) = listen_addr(raw)?;
        let tls = match (tls, &server_tls) {
            (true, Some(t)) => Some(t.clone()),
            (true, None) => {
                return Err(ProxyError::Config(format!(
                    "{raw} is an https URL but no certificate is configured: pass --cert-file and --key-file"
                )))
            }
            (false, _) => None,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let incoming = TlsIncoming::new(listener, tls);
        let routes = services.routes();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, "proxy listener stopped");
            }
        }));
        tracing::info!(address = %addr, "ready to proxy client requests; started gRPC proxy");
    }
    for raw in &settings.metrics_urls {
        let (addr, _) = listen_addr(raw)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let router = services.http_routes();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "proxy metrics listener stopped");
            }
        }));
        tracing::info!(address = %addr, "serving the proxy's /metrics and /health");
    }
    Ok(RunningProxy {
        upstreams,
        metrics: proxy_metrics,
        tasks,
    })
}

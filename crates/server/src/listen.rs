//! Binding the listen URLs and serving gRPC + HTTP on them, with or without TLS.

use std::net::{SocketAddr, ToSocketAddrs};

use tokio::net::TcpListener;

use crate::ServerError;

/// A listen URL taken apart.
pub struct ListenUrl {
    pub url: String,
    pub tls: bool,
    pub addr: SocketAddr,
}

/// Parses `http(s)://host:port` (etcd also accepts `unix://`, which Rampart does not serve).
pub fn parse_listen_url(raw: &str) -> Result<ListenUrl, ServerError> {
    let parsed = url::Url::parse(raw)
        .map_err(|e| ServerError::Config(format!("invalid listen URL {raw:?}: {e}")))?;
    let tls = match parsed.scheme() {
        "https" | "unixs" => true,
        "http" | "unix" => false,
        other => {
            return Err(ServerError::Config(format!(
                "listen URL {raw:?} has scheme {other:?}: use http:// or https://"
            )))
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| ServerError::Config(format!("listen URL {raw:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port()
        .ok_or_else(|| ServerError::Config(format!("listen URL {raw:?} has no port")))?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| ServerError::Config(format!("cannot resolve listen URL {raw:?}: {e}")))?
        .next()
        .ok_or_else(|| ServerError::Config(format!("listen URL {raw:?} resolves to nothing")))?;
    Ok(ListenUrl {
        url: raw.to_string(),
        tls,
        addr,
    })
}

pub async fn bind(url: &ListenUrl) -> Result<TcpListener, ServerError> {
    TcpListener::bind(url.addr).await.map_err(|e| {
        ServerError::io(
            format!(
                "cannot listen on {} ({}): is another member or etcd already using it?",
                url.url, url.addr
            ),
            e,
        )
    })
}

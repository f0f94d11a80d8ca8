//! A small HTTP/1.1 client for the v2 API: one request per connection, TLS from the v2 flags
//! (`--ca-file --cert-file --key-file`), the first endpoint that answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rampart_tls::{ClientTls, ClientTlsOptions};

/// What came back: status, the `X-Etcd-Index` header and the body.
pub struct HttpResponse {
    pub status: u16,
    pub etcd_index: u64,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct HttpClient {
    pub endpoints: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `Authorization: Basic ...` from `--username`.
    basic_auth: Option<String>,
    /// Per request (`--timeout`); long polls have none.
    pub timeout: Duration,
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// `application/x-www-form-urlencoded` / query encoding.
pub fn form(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

/// A key's path with each segment escaped, as the v2 client sends it.
pub fn key_path(key: &str) -> String {
    let key = if key.starts_with('/') {
        key.to_string()
    } else {
        format!("/{key}")
    };
    key.split('/')
        .map(|seg| {
            url::form_urlencoded::byte_serialize(seg.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl HttpClient {
    pub fn new(
        endpoints: Vec<String>,
        tls: Option<ClientTlsOptions>,
        user: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<HttpClient, String> {
        let tls = match tls {
            Some(options) => {
                let mut config =
                    (*ClientTls::new(options).map_err(|e| e.to_string())?.config()).clone();
                // The v2 API is plain HTTP/1.1.
                config.alpn_protocols.clear();
                Some(Arc::new(config))
            }
            None => None,
        };
        Ok(HttpClient {
            endpoints,
            tls,
            basic_auth: user
                .map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))),
            timeout,
        })
    }

    /// Sends to each endpoint in turn until one answers; the error lists every failure.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<HttpResponse, String> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let attempt = self.request_one(ep, method, path_and_query, body.clone());
            let result = match timeout.map(|t| t.min(self.timeout)) {
                Some(t) => match tokio::time::timeout(t, attempt).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("{ep}: context deadline exceeded")),
                },
                None => attempt.await,
            };
            match result {
                Ok(r) => return Ok(r),
                Err(e) => errors.push(e),
            }
        }
        let detail: Vec<String> = errors
            .iter()
            .enumerate()
            .map(|(i, e)| format!("error #{i}: {e}"))
            .collect();
        Err(format!(
            "client: etcd cluster is unavailable or misconfigured; {}",
            detail.join("; ")
        ))
    }

    /// A JSON body (the members API) to the first endpoint that answers.
    pub async fn request_json(
        &self,
        method: &str,
        path: &str,
        body: String,
        timeout: Duration,
    ) -> Result<HttpResponse, String> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let attempt = self.send_to(ep, method, path, Some(body.clone()), "application/json");
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(format!("{ep}: context deadline exceeded")),
            }
        }
        Err(format!(
            "client: etcd cluster is unavailable or misconfigured; {}",
            errors.join("; ")
        ))
    }

    pub async fn request_one(
        &self,
        endpoint: &str,
        method: &str,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<HttpResponse, String> {
        self.send_to(
            endpoint,
            method,
            path_and_query,
            body,
            "application/x-www-form-urlencoded",
        )
        .await
    }

    async fn send_to(
        &self,
        endpoint: &str,
        method: &str,
        path_and_query: &str,
        body: Option<String>,
        content_type: &str,
    ) -> Result<HttpResponse, String> {
        let url = url::Url::parse(endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("{endpoint}: no host"))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(2379);
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let authority = format!("{host}:{port}");
        let req = {
            let mut b = http::Request::builder()
                .method(method)
                .uri(path_and_query)
                .header(http::header::HOST, &authority);
            if body.is_some() {
                b = b.header(http::header::CONTENT_TYPE, content_type);
            }
            if let Some(a) = &self.basic_auth {
                b = b.header(http::header::AUTHORIZATION, a);
            }
            b.body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| e.to_string())?
        };
        let resp = if url.scheme() == "https" {
            let config = self.tls.clone().ok_or_else(|| {
                format!("{endpoint} uses TLS but no TLS settings were given: pass --ca-file (and --cert-file/--key-file)")
            })?;
            let name =
                rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| format!("{endpoint}: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| explain_io(endpoint, &e))?;
            send(TokioIo::new(stream), req).await?
        } else {
            send(TokioIo::new(tcp), req).await?
        };
        Ok(resp)
    }
}

fn explain_io(endpoint: &str, e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(r) => rampart_tls::explain::explain_rustls(endpoint, r),
        None => format!("{endpoint}: {e}"),
    }
}

async fn send<IO>(io: TokioIo<IO>, req: http::Request<Full<Bytes>>) -> Result<HttpResponse, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let etcd_index = resp
        .headers()
        .get("X-Etcd-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse {
        status,
        etcd_index,
        body,
    })
}

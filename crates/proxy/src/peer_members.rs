//! Asking an etcd member for the member list over its peer port, as etcd's own v2 proxy does:
//! `GET /members` over HTTP/1.1 with the peer certificate, answered with JSON. (etcd 3.4's
//! peer port cannot serve gRPC over TLS, and Rampart members answer Rampart's peer service, so
//! this is the way to find the client URLs of a real etcd cluster from `--initial-cluster`.)

use std::time::Duration;

use rampart_tls::ClientTls;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Largest member-list answer read.
const MAX_ANSWER_BYTES: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PeerMembersError {
    #[error("peer URL {0:?} is not http(s)://host:port")]
    BadUrl(String),
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: no answer within {TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url}: answered {status:?} instead of the member list")]
    Status { url: String, status: String },
    #[error("{url}: the member list is not etcd's JSON: {detail}")]
    Json { url: String, detail: String },
}

#[derive(serde::Deserialize)]
struct PeerMember {
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

/// The client URLs of every member, asked from the member at `peer_url`.
pub async fn client_urls(
    peer_url: &str,
    tls: Option<&ClientTls>,
) -> Result<Vec<String>, PeerMembersError> {
    match tokio::time::timeout(TIMEOUT, ask(peer_url, tls)).await {
        Ok(answer) => answer,
        Err(_) => Err(PeerMembersError::Timeout {
            url: peer_url.to_string(),
        }),
    }
}

async fn ask(peer_url: &str, tls: Option<&ClientTls>) -> Result<Vec<String>, PeerMembersError> {
    let url = url::Url::parse(peer_url).map_err(|_| PeerMembersError::BadUrl(peer_url.into()))?;
    let host = url
        .host_str()
        .ok_or_else(|| PeerMembersError::BadUrl(peer_url.into()))?
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| PeerMembersError::BadUrl(peer_url.into()))?;
    let io = |source| PeerMembersError::Io {
        url: peer_url.to_string(),
        source,
    };
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(io)?;
    let request = format!(
        "GET /members HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    match (url.scheme(), tls) {
        ("https", Some(tls)) => {
            // HTTP/1.1, not h2: the member's HTTP handlers on the peer port speak HTTP/1.1.
            let mut config = (*tls.config()).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name =
                rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|_| PeerMembersError::BadUrl(peer_url.into()))?;
            let mut stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(io)?;
            stream.write_all(request.as_bytes()).await.map_err(io)?;
            stream.flush().await.map_err(io)?;
            read_answer(&mut stream, &mut raw).await.map_err(io)?;
        }
        _ => {
            let mut stream = tcp;
            stream.write_all(request.as_bytes()).await.map_err(io)?;
            stream.flush().await.map_err(io)?;
            read_answer(&mut stream, &mut raw).await.map_err(io)?;
        }
    }
    parse_answer(peer_url, &raw)
}

/// Reads one HTTP/1.1 answer: up to the end its headers announce (Content-Length or the last
/// chunk), or to the end of the connection when they announce none. Not waiting for the close
/// matters: etcd 3.4's peer port answers `Connection: close` but can keep a rustls connection
/// open for seconds afterwards.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    raw: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() as u64 > MAX_ANSWER_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
            ));
        }
        if answer_complete(raw) {
            return Ok(());
        }
    }
}

/// Whether `raw` holds a whole answer as its headers frame it.
fn answer_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match (name.trim(), value.trim()) {
            ("content-length", n) => return n.parse().is_ok_and(|n: usize| body.len() >= n),
            ("transfer-encoding", "chunked") => {
                return body.starts_with(b"0\r\n\r\n")
                    || body.windows(7).any(|w| w == b"\r\n0\r\n\r\n")
            }
            _ => {}
        }
    }
    false
}

/// Reads the HTTP/1.1 answer: status line, headers, a body with or without chunked encoding.
fn parse_answer(url: &str, raw: &[u8]) -> Result<Vec<String>, PeerMembersError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    if !status.contains(" 200") {
        return Err(PeerMembersError::Status {
            url: url.to_string(),
            status,
        });
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    let members: Vec<PeerMember> =
        serde_json::from_str(body.trim()).map_err(|e| PeerMembersError::Json {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    Ok(members.into_iter().flat_map(|m| m.client_urls).collect())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_etcds_member_list_plain_and_chunked() {
        let json = r#"[{"id":1,"peerURLs":["https://a:2380"],"name":"e0","clientURLs":["https://a:2379"]},{"id":2,"name":"e1","peerURLs":["https://b:2380"],"clientURLs":["https://b:2379"]}]"#;
        let plain = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{json}\n");
        assert_eq!(
            parse_answer("u", plain.as_bytes()).unwrap(),
            vec!["https://a:2379", "https://b:2379"]
        );
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{json}\r\n0\r\n\r\n",
            json.len()
        );
        assert_eq!(parse_answer("u", chunked.as_bytes()).unwrap().len(), 2);
        let refused = "HTTP/1.1 404 Not Found\r\n\r\nnot found";
        let framed = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}\n",
            json.len() + 1
        );
        assert!(answer_complete(framed.as_bytes()));
        assert!(!answer_complete(&framed.as_bytes()[..framed.len() - 5]));
        assert_eq!(parse_answer("u", framed.as_bytes()).unwrap().len(), 2);
        assert!(answer_complete(chunked.as_bytes()));
        assert!(!answer_complete(&chunked.as_bytes()[..chunked.len() - 3]));
        assert!(!answer_complete(b"HTTP/1.1 200 OK\r\n\r\nbody until close"));
        assert!(matches!(
            parse_answer("u", refused.as_bytes()),
            Err(PeerMembersError::Status { .. })
        ));
    }
}

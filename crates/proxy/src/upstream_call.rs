//! Typed calls to a member on behalf of a client: the client's metadata (auth token, "require
//! leader") goes along, a member that cannot be reached is skipped, and a request whose member
//! dies while it is in flight is sent again to another member only when that is safe.

use std::future::Future;
use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::metrics::ProxyMetrics;
use crate::upstream::Upstreams;

/// etcd's answer (code Unavailable) when no member can take a request.
pub const NO_MEMBER_REACHABLE: &str =
    "etcdserver: no member of the cluster is reachable from the proxy";
/// etcd's text (code Unavailable) for a request whose member stopped while serving it.
pub const SERVER_STOPPED: &str = "etcdserver: server stopped";

/// Headers of the client's request that belong to its own HTTP/2 stream, not to the call.
const CONNECTION_HEADERS: &[&str] = &[
    "te",
    "content-type",
    "user-agent",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-status",
    "grpc-message",
    "host",
];

/// May the request be sent to another member after it reached one that then died?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A read, or an operation whose repetition changes nothing.
    Safe,
    /// A write: it may have been applied; the client decides.
    OnlyIfNotSent,
}

/// The client's metadata to send upstream (everything but the headers of its HTTP/2 stream).
pub fn forwarded_metadata(client: &MetadataMap) -> MetadataMap {
    let mut out = MetadataMap::new();
    let headers: &http::HeaderMap = client.as_ref();
    let target: &mut http::HeaderMap = out.as_mut();
    for (name, value) in headers {
        if !CONNECTION_HEADERS.contains(&name.as_str()) {
            target.append(name.clone(), value.clone());
        }
    }
    out
}

/// The auth token the client sent, if any (requests with different tokens never share state).
pub fn auth_token(client: &MetadataMap) -> Option<String> {
    client
        .get("token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Did the call fail because the member could not be reached at all (so it never saw the
/// request)? tonic reports a refused or failed connection as Unavailable with the connector's
/// error as its source.
pub fn never_reached(status: &Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let mut text = status.message().to_ascii_lowercase();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        text.push(' ');
        text.push_str(&e.to_string().to_ascii_lowercase());
        source = e.source();
    }
    CONNECT_FAILURES.iter().any(|needle| text.contains(needle))
}

/// What the connector's errors say when no connection was made (lower case). Not "connection
/// reset" or "connection closed": those come after the request may have been sent.
pub const CONNECT_FAILURES: &[&str] = &[
    "connection refused",
    "tcp connect error",
    "error trying to connect",
    "dns error",
    "no route to host",
    "network is unreachable",
];

/// Did the call fail because of the member's transport (not an answer of the member)?
pub fn member_failed(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal => {
            // An answer of the member carries etcd's own text; the transport's do not.
            !status.message().starts_with("etcdserver:")
                || status.message() == SERVER_STOPPED
                || never_reached(status)
        }
        _ => false,
    }
}

/// Calls `call` on the members in turn until one answers (see [`Retry`]).
pub async fn call<Req, Resp, F, Fut>(
    upstreams: &Upstreams,
    metrics: &Arc<ProxyMetrics>,
    retry: Retry,
    metadata: &MetadataMap,
    message: Req,
    call: F,
) -> Result<Response<Resp>, Status>
where
    Req: Clone,
    F: Fn(Channel, Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    metrics.requests_forwarded.inc();
    let candidates = upstreams.candidates();
    for (attempt, (url, channel)) in candidates.into_iter().enumerate() {
        if attempt > 0 {
            metrics.requests_retried.inc();
        }
        let mut request = Request::new(message.clone());
        *request.metadata_mut() = metadata.clone();
        match call(channel, request).await {
            Ok(response) => {
                upstreams.mark_up(&url);
                return Ok(response);
            }
            Err(status) if member_failed(&status) => {
                tracing::debug!(url, error = %status, "proxy: member failed the request");
                upstreams.mark_down(&url);
                if retry == Retry::OnlyIfNotSent && !never_reached(&status) {
                    return Err(Status::unavailable(SERVER_STOPPED));
                }
            }
            Err(status) => {
                upstreams.mark_up(&url);
                return Err(status);
            }
        }
    }
    Err(Status::unavailable(NO_MEMBER_REACHABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport_failure(kind: std::io::ErrorKind, text: &str) -> Status {
        let mut status = Status::unavailable("transport error");
        status.set_source(Arc::new(std::io::Error::new(kind, text.to_string())));
        status
    }

    #[test]
    fn a_refused_connection_never_reached_the_member_but_a_reset_one_may_have() {
        let refused = transport_failure(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert!(never_reached(&refused));
        assert!(member_failed(&refused));
        let reset = transport_failure(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        );
        assert!(!never_reached(&reset));
        assert!(member_failed(&reset));
    }

    #[test]
    fn the_members_own_answers_are_not_member_failures() {
        assert!(!member_failed(&Status::unavailable(
            "etcdserver: leader changed"
        )));
        assert!(!member_failed(&Status::invalid_argument(
            "etcdserver: key is not provided"
        )));
        assert!(member_failed(&Status::unavailable(SERVER_STOPPED)));
        assert!(member_failed(&Status::unknown("h2 protocol error")));
    }
}

//! Forwarding of everything the proxy does not serve itself — gRPC services other than KV,
//! Watch and Lease, the v2 API, the JSON gateway, `/health`, `/version` — to a member over
//! HTTP/2 with the upstream TLS settings.
//!
//! Every such request has a finite body (the streaming-request RPCs, Watch and LeaseKeepAlive,
//! are served by the proxy), so it is read whole first and can be sent again: to the next member
//! when the first cannot be connected to, and, for reads ([`is_read`]), also when the member
//! dies before its answer is complete. Otherwise a member dying mid-request fails the request
//! with Unavailable rather than leaving it hanging.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use tower::ServiceExt as _;

use crate::metrics::ProxyMetrics;
use crate::upstream::Upstreams;
use crate::upstream_call::NO_MEMBER_REACHABLE;

/// Largest request body the proxy forwards (etcd's own limit is 1.5 MiB by default; members
/// enforce theirs).
pub const MAX_FORWARDED_REQUEST_BYTES: usize = 8 << 20;

/// Headers that belong to one HTTP/1 connection and must not be forwarded (HTTP/2 forbids them).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// gRPC methods that only read (safe to send again to another member).
const READ_METHODS: &[&str] = &[
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Auth/UserGet",
    "/etcdserverpb.Auth/UserList",
    "/etcdserverpb.Auth/RoleGet",
    "/etcdserverpb.Auth/RoleList",
];

#[derive(Clone)]
pub struct ForwardState {
    pub upstreams: Arc<Upstreams>,
    pub metrics: Arc<ProxyMetrics>,
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A request that only reads: sent again to another member if its member fails. HTTP GETs
/// that wait for changes (v2 `?wait=true`) are reads too but their answers are streamed, so
/// they are not buffered.
fn is_read(parts: &http::request::Parts) -> bool {
    let path = parts.uri.path();
    if READ_METHODS.contains(&path) {
        return true;
    }
    parts.method == http::Method::GET
        && !is_grpc(&parts.headers)
        && !parts.uri.query().unwrap_or_default().contains("wait=true")
}

/// etcd's answer when no member can take a request.
pub fn unavailable(grpc: bool, path: &str) -> Response {
    if grpc {
        let mut r = Response::new(Body::empty());
        let h = r.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from_static("14"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static(
                "etcdserver:%20no%20member%20of%20the%20cluster%20is%20reachable%20from%20the%20proxy",
            ),
        );
        return r;
    }
    if path == "/health" {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"health":"false"}"#,
        )
            .into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, NO_MEMBER_REACHABLE).into_response()
}

/// Did the connection fail before the request could be sent?
fn never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut text = error.to_string().to_ascii_lowercase();
    let mut source = error.source();
    while let Some(e) = source {
        text.push(' ');
        text.push_str(&e.to_string().to_ascii_lowercase());
        source = e.source();
    }
    crate::upstream_call::CONNECT_FAILURES
        .iter()
        .any(|needle| text.contains(needle))
}

/// Reads a whole response (data and trailers) so a read can be sent again if it breaks off.
async fn buffered(
    response: http::Response<tonic::body::Body>,
) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let mut frames = vec![Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
        data,
    ))];
    if let Some(t) = trailers {
        frames.push(Ok(hyper::body::Frame::trailers(t)));
    }
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
    Ok(Response::from_parts(parts, Body::new(body)))
}

pub async fn forward(State(state): State<ForwardState>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);
    let path = parts.uri.path().to_string();
    for h in HOP_BY_HOP {
        parts.headers.remove(*h);
    }
    if parts
        .headers
        .get("te")
        .is_some_and(|v| v.as_bytes() != b"trailers")
    {
        parts.headers.remove("te");
    }
    parts.version = http::Version::HTTP_2;
    let body: Bytes = match Limited::new(body, MAX_FORWARDED_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "proxy: request body not read");
            return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
        }
    };
    let read = is_read(&parts);
    state.metrics.requests_forwarded.inc();
    for (attempt, (url, channel)) in state.upstreams.candidates().into_iter().enumerate() {
        if attempt > 0 {
            state.metrics.requests_retried.inc();
        }
        let request = http::Request::from_parts(
            parts.clone(),
            tonic::body::Body::new(http_body_util::Full::new(body.clone())),
        );
        let answer = match channel.oneshot(request).await {
            Ok(response) if read => buffered(response).await,
            Ok(response) => {
                let (parts, body) = response.into_parts();
                state.upstreams.mark_up(&url);
                return Response::from_parts(parts, Body::new(body));
            }
            Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        };
        match answer {
            Ok(response) => {
                state.upstreams.mark_up(&url);
                return response;
            }
            Err(e) => {
                tracing::debug!(url, error = %e, "proxy: request to member failed");
                state.upstreams.mark_down(&url);
                if !read && !never_sent(e.as_ref()) {
                    return unavailable(grpc, &path);
                }
            }
        }
    }
    unavailable(grpc, &path)
}

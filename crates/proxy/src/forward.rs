//! Forwarding: every request — gRPC or plain HTTP — goes to a member over HTTP/2 with the
//! upstream TLS settings, and the response streams back as it comes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{HeaderValue, StatusCode};
use tower::ServiceExt as _;

use crate::upstream::Upstreams;

/// Headers that belong to one HTTP/1 connection and must not be forwarded (HTTP/2 forbids them).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

pub fn routes(upstreams: Arc<Upstreams>) -> tonic::service::Routes {
    let router = Router::new().fallback(forward).with_state(upstreams);
    tonic::service::Routes::from(router)
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// etcd's answer when no member can take a request.
fn unavailable(grpc: bool) -> Response {
    let message = "etcdserver: no member of the cluster is reachable from the proxy";
    if grpc {
        let mut r = Response::new(Body::empty());
        let h = r.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from_static("14"));
        h.insert("grpc-message", HeaderValue::from_static(
            "etcdserver:%20no%20member%20of%20the%20cluster%20is%20reachable%20from%20the%20proxy",
        ));
        return r;
    }
    (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
}

async fn forward(State(upstreams): State<Arc<Upstreams>>, req: Request) -> Response {
    let grpc = is_grpc(&req);
    let (mut parts, body) = req.into_parts();
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
    let candidates = upstreams.candidates();
    // The body can be sent once: a member that cannot even be connected to is skipped (checked
    // with readiness first), one that fails mid-request fails the request.
    for (url, channel) in candidates {
        let mut channel = channel;
        let ready = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tower::ServiceExt::<http::Request<tonic::body::Body>>::ready(&mut channel),
        )
        .await;
        if !matches!(ready, Ok(Ok(_))) {
            tracing::debug!(url, "proxy: member not reachable, trying the next");
            continue;
        }
        let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
        return match channel.oneshot(request).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                Response::from_parts(parts, Body::new(body))
            }
            Err(e) => {
                tracing::debug!(url, error = %e, "proxy: request to member failed");
                unavailable(grpc)
            }
        };
    }
    unavailable(grpc)
}

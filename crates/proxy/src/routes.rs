//! What the proxy's listeners serve: KV, Watch and Lease by the proxy itself, the proxy's own
//! `/metrics`, and everything else forwarded to a member.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use rampart_proto::etcdserverpb::kv_server::KvServer;
use rampart_proto::etcdserverpb::lease_server::LeaseServer;
use rampart_proto::etcdserverpb::watch_server::WatchServer;

use crate::forward::{forward, ForwardState};
use crate::kv_proxy::KvProxy;
use crate::lease_coalesce::LeaseProxy;
use crate::metrics::ProxyMetrics;
use crate::range_cache::RangeCache;
use crate::upstream::Upstreams;
use crate::watch_proxy::WatchProxy;

/// The services, shared by every listener of one proxy.
pub struct Services {
    forward: ForwardState,
    kv: Arc<KvProxy>,
    watch: Arc<WatchProxy>,
    lease: Arc<LeaseProxy>,
}

async fn metrics(State(state): State<ForwardState>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.upstreams.counts()),
    )
}

impl Services {
    pub fn new(
        upstreams: Arc<Upstreams>,
        metrics: Arc<ProxyMetrics>,
        serializable_cache_ttl: Option<Duration>,
    ) -> Services {
        let cache = serializable_cache_ttl
            .filter(|ttl| !ttl.is_zero())
            .map(|ttl| RangeCache::new(ttl, metrics.clone()));
        Services {
            kv: Arc::new(KvProxy::new(upstreams.clone(), metrics.clone(), cache)),
            watch: Arc::new(WatchProxy::new(upstreams.clone(), metrics.clone())),
            lease: Arc::new(LeaseProxy::new(upstreams.clone(), metrics.clone())),
            forward: ForwardState { upstreams, metrics },
        }
    }

    /// Plain HTTP: the proxy's `/metrics`, and every other path (`/health`, `/version`, v2,
    /// the JSON gateway) answered by a member.
    pub fn http_routes(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .fallback(forward)
            .with_state(self.forward.clone())
    }

    /// Everything a client listener serves.
    pub fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::from(self.http_routes())
            .add_service(
                KvServer::from_arc(self.kv.clone())
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                WatchServer::from_arc(self.watch.clone())
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(LeaseServer::from_arc(self.lease.clone()))
    }
}

//! The HTTP endpoints on the client port: `/health`, `/version`, `/metrics`, as etcd serves them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::etcdserver::EtcdServer;

pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// etcd 3.4: healthy when no alarm is raised, there is a leader and a linearizable read succeeds.
async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let healthy = !server.has_alarms()
        && server.raft.status().leader() != 0
        && server.linearizable_barrier().await.is_ok();
    let (code, body) = if healthy {
        (StatusCode::OK, r#"{"health":"true"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn version(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let body = format!(
        r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
        server.version,
        crate::ETCD_CLUSTER_VERSION
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let status = server.raft.status();
    let is_leader = u8::from(status.is_leader());
    let has_leader = u8::from(status.leader() != 0);
    let (synced, unsynced) = server.watch_hub.counts();
    let watch_streams = server.watch_hub.stream_count();
    let body = format!(
        "# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.\n\
         # TYPE etcd_server_has_leader gauge\netcd_server_has_leader {has_leader}\n\
         # HELP etcd_server_is_leader Whether or not this member is a leader. 1 if is, 0 otherwise.\n\
         # TYPE etcd_server_is_leader gauge\netcd_server_is_leader {is_leader}\n\
         # HELP etcd_server_proposals_committed_total The total number of consensus proposals committed.\n\
         # TYPE etcd_server_proposals_committed_total gauge\netcd_server_proposals_committed_total {}\n\
         # HELP etcd_server_proposals_applied_total The total number of consensus proposals applied.\n\
         # TYPE etcd_server_proposals_applied_total gauge\netcd_server_proposals_applied_total {}\n\
         # HELP etcd_server_version Which version is running. 1 for 'server_version' label with current version.\n\
         # TYPE etcd_server_version gauge\netcd_server_version{{server_version=\"{}\"}} 1\n\
         # HELP etcd_debugging_mvcc_watch_stream_total Total number of watch streams.\n\
         # TYPE etcd_debugging_mvcc_watch_stream_total gauge\netcd_debugging_mvcc_watch_stream_total {watch_streams}\n\
         # HELP etcd_debugging_mvcc_watcher_total Total number of watchers.\n\
         # TYPE etcd_debugging_mvcc_watcher_total gauge\netcd_debugging_mvcc_watcher_total {}\n",
        status.commit_index(),
        server.applied_index(),
        server.version,
        synced + unsynced,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

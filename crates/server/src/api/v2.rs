//! etcd's v2 HTTP API (served with `--enable-v2`): `/v2/keys` (reads, writes through Raft,
//! long-poll `wait`), `/v2/members`, `/v2/stats/*`. Its key space is separate from the v3 keys,
//! as in etcd 3.4.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use rampart_apply::Response as Applied;
use rampart_proto::internal::{raft_request, V2Request};
use rampart_tls::incoming::ConnInfo;
use rampart_v2store::{V2Error, INDEX_NAN, PREV_VALUE_REQUIRED, TTL_NAN};
use tokio::sync::Semaphore;

use crate::etcdserver::EtcdServer;

/// Long-polling `wait` requests served at once at most; more get 503 (bounded memory).
pub const MAX_WAITERS: usize = 10_000;

/// How often a waiting long-poll rechecks the history when nothing wakes it.
const WAIT_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
struct V2State {
    server: Arc<EtcdServer>,
    waiters: Arc<Semaphore>,
    /// `--client-cert-auth`: with v2 auth on, a certificate's CN names the user.
    client_cert_auth: bool,
}

pub fn router(server: Arc<EtcdServer>, client_cert_auth: bool) -> Router {
    let auth = super::v2_auth::router(super::v2_auth::AuthState {
        server: server.clone(),
        client_cert_auth,
    });
    let state = V2State {
        server,
        waiters: Arc::new(Semaphore::new(MAX_WAITERS)),
        client_cert_auth,
    };
    Router::new()
        .route("/v2/keys", any(keys_root))
        .route("/v2/keys/", any(keys_root))
        .route("/v2/keys/{*key}", any(keys))
        .route("/v2/members", get(members))
        .route("/v2/members/", get(members))
        .route("/v2/members/leader", get(members_leader))
        .route("/v2/stats/self", get(stats_self))
        .route("/v2/stats/leader", get(stats_leader))
        .route("/v2/stats/store", get(stats_store))
        .with_state(state)
        .merge(auth)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Query and form parameters together (a form value wins, as Go's `ParseForm`).
fn params(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
    }
    for (k, v) in url::form_urlencoded::parse(body) {
        out.insert(k.into_owned(), v.into_owned());
    }
    out
}

fn flag(p: &HashMap<String, String>, name: &str) -> bool {
    p.get(name).is_some_and(|v| v == "true")
}

fn headers(server: &EtcdServer, etcd_index: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    set("content-type", "application/json".into());
    set("x-etcd-cluster-id", format!("{:x}", server.cluster_id()));
    set("x-etcd-index", etcd_index.to_string());
    set("x-raft-index", server.applied_index().to_string());
    set("x-raft-term", server.raft.status().term().to_string());
    h
}

fn v2_error(server: &EtcdServer, e: &V2Error) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, headers(server, e.index), e.to_json()).into_response()
}

fn etcd_error(server: &EtcdServer, status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    (status, headers(server, current_index(server)), body).into_response()
}

fn current_index(server: &EtcdServer) -> u64 {
    server
        .applier
        .read()
        .expect("applier")
        .v2_store()
        .lock()
        .expect("v2 store")
        .index()
}

async fn keys_root(
    state: State<V2State>,
    caller: Caller,
    method: Method,
    query: RawQuery,
    body: Bytes,
) -> Response {
    handle(state, caller, method, String::new(), query, body).await
}

async fn keys(
    state: State<V2State>,
    caller: Caller,
    method: Method,
    Path(key): Path<String>,
    query: RawQuery,
    body: Bytes,
) -> Response {
    handle(state, caller, method, key, query, body).await
}

/// Who sent a `/v2/keys` request: its headers (basic auth) and connection (certificate CN).
struct Caller {
    headers: HeaderMap,
    conn: Option<ConnInfo>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            headers: parts.headers.clone(),
            conn: parts.extensions.get::<ConnInfo>().cloned(),
        })
    }
}

async fn handle(
    State(state): State<V2State>,
    caller: Caller,
    method: Method,
    key: String,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let server = &state.server;
    let key = format!("/{key}");
    let p = params(query.as_deref(), &body);
    if let Some(refusal) = super::v2_auth::check_key_access(
        server,
        state.client_cert_auth,
        &caller.headers,
        caller.conn.as_ref(),
        &method,
        &key,
        flag(&p, "recursive"),
    ) {
        return refusal;
    }
    match method {
        Method::GET | Method::HEAD => read(&state, &key, &p).await,
        Method::PUT | Method::POST | Method::DELETE => {
            let request = match write_request(server, method.as_str(), &key, &p) {
                Ok(r) => r,
                Err(e) => return v2_error(server, &e),
            };
            match server.propose(raft_request::Request::V2(request)).await {
                Ok(Applied::V2(Ok(event))) => {
                    // etcd's Event.IsCreated: a create, or a set that made a new node.
                    let created = event.action == "create"
                        || (event.action == "set" && event.prev_node.is_none());
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    (status, headers(server, event.index()), event.to_json()).into_response()
                }
                Ok(Applied::V2(Err(e))) => v2_error(server, &e),
                Ok(_) => etcd_error(
                    server,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unexpected response",
                ),
                Err(status) => {
                    etcd_error(server, StatusCode::INTERNAL_SERVER_ERROR, status.message())
                }
            }
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response(),
    }
}

fn write_request(
    server: &EtcdServer,
    method: &str,
    key: &str,
    p: &HashMap<String, String>,
) -> Result<V2Request, V2Error> {
    let index = current_index(server);
    let ttl = match p.get("ttl").map(String::as_str) {
        None | Some("") => None,
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| V2Error::new(TTL_NAN, "ttl", index))?,
        ),
    };
    let prev_index = match p.get("prevIndex").map(String::as_str) {
        None | Some("") => 0,
        Some(i) => i
            .parse::<u64>()
            .map_err(|_| V2Error::new(INDEX_NAN, "prevIndex", index))?,
    };
    let prev_value = p.get("prevValue").cloned();
    if prev_value.as_deref() == Some("") {
        return Err(V2Error::new(PREV_VALUE_REQUIRED, "prevValue", index));
    }
    let prev_exist = match p.get("prevExist").map(String::as_str) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    Ok(V2Request {
        method: method.to_string(),
        path: key.to_string(),
        value: p.get("value").cloned().unwrap_or_default(),
        dir: flag(p, "dir"),
        prev_value,
        prev_index,
        prev_exist,
        expiration_unix_nanos: ttl.map_or(0, |t| now_nanos() + (t as i64) * 1_000_000_000),
        refresh: flag(p, "refresh"),
        recursive: flag(p, "recursive"),
        now_unix_nanos: 0,
    })
}

async fn read(state: &V2State, key: &str, p: &HashMap<String, String>) -> Response {
    let server = &state.server;
    let recursive = flag(p, "recursive");
    if flag(p, "wait") {
        return wait(state, key, recursive, p).await;
    }
    if flag(p, "quorum") {
        if let Err(status) = server.linearizable_barrier().await {
            return etcd_error(server, StatusCode::INTERNAL_SERVER_ERROR, status.message());
        }
    }
    let result = {
        let applier = server.applier.read().expect("applier");
        let store = applier.v2_store().lock().expect("v2 store");
        store
            .get(key, recursive, flag(p, "sorted"), now_nanos())
            .map(|e| (e, store.index()))
    };
    match result {
        Ok((event, index)) => {
            (StatusCode::OK, headers(server, index), event.to_json()).into_response()
        }
        Err(e) => v2_error(server, &e),
    }
}

/// A long-poll: the first event at or after `waitIndex` (default: the next one) on the key.
async fn wait(
    state: &V2State,
    key: &str,
    recursive: bool,
    p: &HashMap<String, String>,
) -> Response {
    let server = &state.server;
    let Ok(_permit) = state.waiters.clone().try_acquire_owned() else {
        return etcd_error(server, StatusCode::SERVICE_UNAVAILABLE, "too many watchers");
    };
    let mut from = match p.get("waitIndex").map(String::as_str) {
        None | Some("") => current_index(server) + 1,
        Some(i) => match i.parse::<u64>() {
            Ok(i) => i,
            Err(_) => {
                return v2_error(
                    server,
                    &V2Error::new(INDEX_NAN, "waitIndex", current_index(server)),
                )
            }
        },
    };
    let mut applied = server.applied.clone();
    loop {
        let found = {
            let applier = server.applier.read().expect("applier");
            let store = applier.v2_store().lock().expect("v2 store");
            store
                .event_since(key, recursive, from)
                .map(|e| (e, store.index()))
        };
        match found {
            Err(e) => return v2_error(server, &e),
            Ok((Some(event), index)) => {
                return (StatusCode::OK, headers(server, index), event.to_json()).into_response()
            }
            // Everything up to `index` was looked at: only newer events can match now.
            Ok((None, index)) => from = from.max(index + 1),
        }
        let _ = tokio::time::timeout(WAIT_POLL, applied.changed()).await;
    }
}

fn member_json(m: &crate::membership::Member) -> serde_json::Value {
    serde_json::json!({
        "id": format!("{:x}", m.id),
        "name": m.name,
        "peerURLs": m.peer_urls,
        "clientURLs": m.client_urls,
    })
}

async fn members_leader(State(state): State<V2State>) -> Response {
    let server = &state.server;
    match server.membership.get(server.raft.status().leader()) {
        Some(m) => (
            StatusCode::OK,
            headers(server, current_index(server)),
            member_json(&m).to_string(),
        )
            .into_response(),
        None => etcd_error(
            server,
            StatusCode::SERVICE_UNAVAILABLE,
            "During leader election",
        ),
    }
}

async fn members(State(state): State<V2State>) -> Response {
    let server = &state.server;
    // Catch up with what is committed (members publish their URLs through Raft), but answer
    // from the local view when there is no quorum: a health check must still get the list.
    let _ = tokio::time::timeout(Duration::from_secs(1), server.linearizable_barrier()).await;
    let members: Vec<serde_json::Value> = server
        .membership
        .members()
        .iter()
        .map(member_json)
        .collect();
    let body = serde_json::json!({ "members": members }).to_string();
    (StatusCode::OK, headers(server, current_index(server)), body).into_response()
}

async fn stats_self(State(state): State<V2State>) -> Response {
    let server = &state.server;
    let status = server.raft.status();
    let name = server
        .membership
        .get(server.member_id)
        .map(|m| m.name)
        .unwrap_or_default();
    let body = serde_json::json!({
        "name": name,
        "id": format!("{:x}", server.member_id),
        "state": if status.is_leader() { "StateLeader" } else { "StateFollower" },
        "leaderInfo": { "leader": format!("{:x}", status.leader()) },
    })
    .to_string();
    (StatusCode::OK, headers(server, current_index(server)), body).into_response()
}

async fn stats_leader(State(state): State<V2State>) -> Response {
    let server = &state.server;
    if !server.raft.status().is_leader() {
        return etcd_error(server, StatusCode::FORBIDDEN, "not current leader");
    }
    let followers: serde_json::Map<String, serde_json::Value> = server
        .membership
        .ids()
        .into_iter()
        .filter(|id| *id != server.member_id)
        .map(|id| (format!("{id:x}"), serde_json::json!({})))
        .collect();
    let body = serde_json::json!({
        "leader": format!("{:x}", server.member_id),
        "followers": followers,
    })
    .to_string();
    (StatusCode::OK, headers(server, current_index(server)), body).into_response()
}

async fn stats_store(State(state): State<V2State>) -> Response {
    let server = &state.server;
    let body = serde_json::json!({ "watchers": MAX_WAITERS - state.waiters.available_permits() })
        .to_string();
    (StatusCode::OK, headers(server, current_index(server)), body).into_response()
}

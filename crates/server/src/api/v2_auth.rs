//! etcd 3.4's v2 auth API (`/v2/auth/enable`, `/v2/auth/users[/NAME]`, `/v2/auth/roles[/NAME]`)
//! and the access check of `/v2/keys` requests while it is enabled. Answers, statuses and texts
//! are etcd's. Decisions (merging grants, hashing passwords) are made here on a copy of the
//! records, outside the store's lock (bcrypt is slow); the resulting writes go through Raft.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use base64::Engine as _;
use rampart_apply::Response as Applied;
use rampart_proto::internal::raft_request;
use rampart_tls::incoming::ConnInfo;
use rampart_v2store::{
    AuthError, AuthWrite, Role, User, V2Auth, V2Error, WriteConflict, UNAUTHORIZED,
};
use serde::Serialize;

use crate::etcdserver::EtcdServer;

#[derive(Clone)]
pub struct AuthState {
    pub server: Arc<EtcdServer>,
    /// `--client-cert-auth`: a request without credentials is the user its certificate's CN names.
    pub client_cert_auth: bool,
}

pub fn router(state: AuthState) -> Router {
    Router::new()
        .route("/v2/auth/enable", any(enable))
        .route("/v2/auth/users", any(users))
        .route("/v2/auth/users/", any(users))
        .route("/v2/auth/users/{name}", any(user))
        .route("/v2/auth/roles", any(roles))
        .route("/v2/auth/roles/", any(roles))
        .route("/v2/auth/roles/{name}", any(role))
        .with_state(state)
}

/// A copy of the auth records (small; taken so that bcrypt never runs under the store's lock).
pub fn records(server: &EtcdServer) -> V2Auth {
    let applier = server.applier.read().expect("applier");
    let store = applier.v2_store().lock().expect("v2 store");
    store.auth.clone()
}

fn auth_enabled(server: &EtcdServer) -> bool {
    let applier = server.applier.read().expect("applier");
    let store = applier.v2_store().lock().expect("v2 store");
    store.auth.enabled()
}

/// Basic-auth credentials of a request: Some((user, password)), or None without the header.
/// A malformed header yields an empty user, which no record matches.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().unwrap_or("");
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .unwrap_or_default();
    let (user, password) = decoded.split_once(':').unwrap_or(("", ""));
    Some((user.to_string(), password.to_string()))
}

/// Who the request is: Ok(Some(user)), Ok(None) for an anonymous request (guest), or Err for
/// credentials that name no user or a wrong password.
fn requester(
    auth: &V2Auth,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
    client_cert_auth: bool,
) -> Result<Option<User>, ()> {
    match basic_credentials(headers) {
        Some((name, password)) => auth.authenticate(&name, &password).map(Some).ok_or(()),
        None => {
            let by_cn = client_cert_auth
                .then(|| conn.and_then(|c| c.peer_common_name.clone()))
                .flatten()
                .and_then(|cn| auth.user(&cn).ok());
            Ok(by_cn)
        }
    }
}

/// etcd's hasRootAccess: anyone while auth is off, otherwise a user with the root role.
fn has_root_access(
    state: &AuthState,
    auth: &V2Auth,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> bool {
    if !auth.enabled() {
        return true;
    }
    match requester(auth, headers, conn, state.client_cert_auth) {
        Ok(Some(user)) => V2Auth::has_root_role(&user),
        _ => false,
    }
}

/// The check of a `/v2/keys` request (key as in the URL, "/" for the root); None = allowed,
/// Some(response) = etcd's 401.
pub fn check_key_access(
    server: &EtcdServer,
    client_cert_auth: bool,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
    method: &Method,
    key: &str,
    recursive: bool,
) -> Option<Response> {
    if !auth_enabled(server) {
        return None;
    }
    let auth = records(server);
    let write = !matches!(*method, Method::GET | Method::HEAD);
    let allowed = match requester(&auth, headers, conn, client_cert_auth) {
        Ok(user) => auth.has_key_access(user.as_ref(), key, write, recursive),
        Err(()) => false,
    };
    if allowed {
        return None;
    }
    let e = V2Error::new(UNAUTHORIZED, "Insufficient credentials", 0);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-etcd-index", HeaderValue::from_static("0"));
    Some((StatusCode::UNAUTHORIZED, headers, e.to_json()).into_response())
}

fn json_headers(server: &EtcdServer) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", server.cluster_id())) {
        h.insert("x-etcd-cluster-id", v);
    }
    h
}

/// A body as Go's json.Encoder writes it (with the trailing newline).
fn encode<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).expect("encodes");
    s.push('\n');
    s
}

fn message(status: u16, text: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (
        status,
        headers,
        encode(&serde_json::json!({ "message": text })),
    )
        .into_response()
}

fn auth_error(e: &AuthError) -> Response {
    message(e.status, &e.message)
}

fn no_auth() -> Response {
    message(401, "Insufficient credentials")
}

fn method_not_allowed(allowed: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("allow", HeaderValue::from_static(allowed));
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    (
        StatusCode::METHOD_NOT_ALLOWED,
        headers,
        "Method Not Allowed\n",
    )
        .into_response()
}

/// Replicates `writes` in order; a conflict (the records changed since the decision) is
/// answered as etcd answers the same race.
async fn replicate(server: &EtcdServer, writes: Vec<AuthWrite>) -> Result<(), Response> {
    for write in writes {
        let proto = rampart_apply::v2::auth_write_to_proto(&write);
        match server.propose(raft_request::Request::V2Auth(proto)).await {
            Ok(Applied::V2Auth(Ok(()))) => {}
            Ok(Applied::V2Auth(Err(conflict))) => {
                let (what, name) = match &write {
                    AuthWrite::PutUser { user, .. } => ("User", user.user.clone()),
                    AuthWrite::DeleteUser { name } => ("User", name.clone()),
                    AuthWrite::PutRole { role, .. } => ("Role", role.role.clone()),
                    AuthWrite::DeleteRole { name } => ("Role", name.clone()),
                    AuthWrite::SetEnabled(_) => ("Auth", String::new()),
                };
                return Err(match conflict {
                    WriteConflict::Exists => {
                        message(409, &format!("auth: {what} {name} already exists."))
                    }
                    WriteConflict::Missing => {
                        message(404, &format!("auth: {what} {name} does not exist."))
                    }
                });
            }
            Ok(_) => return Err(message(500, "unexpected response")),
            Err(status) => return Err(message(500, status.message())),
        }
    }
    Ok(())
}

/// The checks of `/v2/auth/users/NAME` and `/v2/auth/roles/NAME`, in etcd's order: the method,
/// then root access. Some(response) = refused.
fn refuse_record_request(
    state: &AuthState,
    auth: &V2Auth,
    method: &Method,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Option<Response> {
    if !matches!(*method, Method::GET | Method::PUT | Method::DELETE) {
        return Some(method_not_allowed("GET,PUT,DELETE"));
    }
    if !has_root_access(state, auth, headers, conn) {
        return Some(no_auth());
    }
    None
}

/// Replicates a record write and answers with the record (201 when it was created).
async fn replicate_and_answer<T: Serialize>(
    server: &EtcdServer,
    write: AuthWrite,
    created: bool,
    record: &T,
) -> Response {
    if let Err(r) = replicate(server, vec![write]).await {
        return r;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, json_headers(server), encode(record)).into_response()
}

/// Replicates a decided deletion; etcd answers an empty 200.
async fn replicate_deletion(
    server: &EtcdServer,
    decided: Result<AuthWrite, AuthError>,
) -> Response {
    match decided {
        Err(e) => auth_error(&e),
        Ok(write) => match replicate(server, vec![write]).await {
            Ok(()) => (StatusCode::OK, json_headers(server)).into_response(),
            Err(r) => r,
        },
    }
}

async fn enable(
    State(state): State<AuthState>,
    conn: Option<Extension<ConnInfo>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if !matches!(method, Method::GET | Method::PUT | Method::DELETE) {
        return method_not_allowed("GET,PUT,DELETE");
    }
    let server = &state.server;
    let auth = records(server);
    // etcd's hasWriteRootAccess: reading the flag needs nothing.
    if method != Method::GET && !has_root_access(&state, &auth, &headers, conn.as_deref()) {
        return no_auth();
    }
    let decided = match method {
        Method::GET => {
            let body = encode(&serde_json::json!({ "enabled": auth.enabled() }));
            return (StatusCode::OK, json_headers(server), body).into_response();
        }
        Method::PUT => auth.decide_enable(),
        _ => auth.decide_disable().map(|w| vec![w]),
    };
    match decided {
        Err(e) => auth_error(&e),
        Ok(writes) => match replicate(server, writes).await {
            Ok(()) => (StatusCode::OK, json_headers(server)).into_response(),
            Err(r) => r,
        },
    }
}

/// A user with its roles spelled out (etcd's userWithRoles).
#[derive(Serialize)]
struct UserWithRoles {
    user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Role>,
}

async fn users(
    State(state): State<AuthState>,
    conn: Option<Extension<ConnInfo>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET");
    }
    let auth = records(&state.server);
    if !has_root_access(&state, &auth, &headers, conn.as_deref()) {
        return no_auth();
    }
    let list: Vec<UserWithRoles> = auth
        .user_names()
        .into_iter()
        .filter_map(|name| auth.user(&name).ok())
        .map(|u| UserWithRoles {
            roles: u
                .roles
                .iter()
                .flatten()
                .filter_map(|r| auth.role(r).ok())
                .collect(),
            user: u.user,
        })
        .collect();
    #[derive(Serialize)]
    struct Users {
        users: Option<Vec<UserWithRoles>>,
    }
    let body = encode(&Users {
        users: (!list.is_empty()).then_some(list),
    });
    (StatusCode::OK, json_headers(&state.server), body).into_response()
}

async fn user(
    State(state): State<AuthState>,
    conn: Option<Extension<ConnInfo>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let server = &state.server;
    let auth = records(server);
    if let Some(refusal) = refuse_record_request(&state, &auth, &method, &headers, conn.as_deref())
    {
        return refusal;
    }
    match method {
        Method::GET => {
            let u = match auth.user(&name) {
                Ok(u) => u,
                Err(e) => return auth_error(&e),
            };
            let mut roles = Vec::new();
            for r in u.roles.iter().flatten() {
                match auth.role(r) {
                    Ok(role) => roles.push(role),
                    Err(e) => return auth_error(&e),
                }
            }
            let out = UserWithRoles {
                user: u.user,
                roles,
            };
            (StatusCode::OK, json_headers(server), encode(&out)).into_response()
        }
        Method::PUT => {
            let Ok(input) = serde_json::from_slice::<User>(&body) else {
                return message(400, "Invalid JSON in request body.");
            };
            if input.user != name {
                return message(400, "User JSON name does not match the name in the URL");
            }
            let has_changes = input.grant.as_ref().is_some_and(|g| !g.is_empty())
                || input.revoke.as_ref().is_some_and(|r| !r.is_empty());
            let given_roles = input.roles.as_ref().is_some_and(|r| !r.is_empty());
            let decided = if !has_changes {
                auth.decide_put_user(input)
            } else if given_roles {
                return message(400, "User JSON contains both roles and grant/revoke");
            } else {
                auth.decide_update_user(input).map(|w| (w, false))
            };
            let (write, created) = match decided {
                Ok(d) => d,
                Err(e) => return auth_error(&e),
            };
            let AuthWrite::PutUser { user: stored, .. } = &write else {
                unreachable!("a user write stores a user")
            };
            let mut out = stored.clone();
            out.password.clear();
            replicate_and_answer(server, write, created, &out).await
        }
        _ => replicate_deletion(server, auth.decide_delete_user(&name)).await,
    }
}

async fn roles(
    State(state): State<AuthState>,
    conn: Option<Extension<ConnInfo>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET");
    }
    let auth = records(&state.server);
    if !has_root_access(&state, &auth, &headers, conn.as_deref()) {
        return no_auth();
    }
    let list: Vec<Role> = auth
        .role_names()
        .into_iter()
        .filter_map(|name| auth.role(&name).ok())
        .collect();
    #[derive(Serialize)]
    struct Roles {
        roles: Vec<Role>,
    }
    let body = encode(&Roles { roles: list });
    (StatusCode::OK, json_headers(&state.server), body).into_response()
}

async fn role(
    State(state): State<AuthState>,
    conn: Option<Extension<ConnInfo>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let server = &state.server;
    let auth = records(server);
    if let Some(refusal) = refuse_record_request(&state, &auth, &method, &headers, conn.as_deref())
    {
        return refusal;
    }
    match method {
        Method::GET => match auth.role(&name) {
            Ok(role) => (StatusCode::OK, json_headers(server), encode(&role)).into_response(),
            Err(e) => auth_error(&e),
        },
        Method::PUT => {
            let Ok(input) = serde_json::from_slice::<Role>(&body) else {
                return message(400, "Invalid JSON in request body.");
            };
            if input.role != name {
                return message(400, "Role JSON name does not match the name in the URL");
            }
            let (write, created) = match auth.decide_put_role(input) {
                Ok(d) => d,
                Err(e) => return auth_error(&e),
            };
            let AuthWrite::PutRole { role: stored, .. } = &write else {
                unreachable!("a role write stores a role")
            };
            let out = stored.clone();
            replicate_and_answer(server, write, created, &out).await
        }
        _ => replicate_deletion(server, auth.decide_delete_role(&name)).await,
    }
}

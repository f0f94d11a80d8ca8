//! etcd's JSON gateway (grpc-gateway in etcd): `POST /v3/<service>/<method>` with the request as
//! JSON, answered with the response as JSON — proto field names, 64-bit integers as strings,
//! bytes as base64, default values left out, as etcd 3.4's gateway does. Streaming methods
//! (watch, lease keep-alive) read JSON requests from the body and answer with one
//! `{"result": ...}` object per response. `/v3beta/...` is accepted as an alias, as in etcd 3.4.

use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use futures::{Stream, StreamExt as _};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use rampart_proto::etcdserverpb::auth_server::Auth as _;
use rampart_proto::etcdserverpb::cluster_server::Cluster as _;
use rampart_proto::etcdserverpb::kv_server::Kv as _;
use rampart_proto::etcdserverpb::lease_server::Lease as _;
use rampart_proto::etcdserverpb::maintenance_server::Maintenance as _;
use rampart_proto::etcdserverpb::SnapshotRequest;
use rampart_proto::v3electionpb::election_server::Election as _;
use rampart_proto::v3electionpb::LeaderRequest;
use rampart_proto::v3lockpb::lock_server::Lock as _;
use rampart_tls::incoming::ConnInfo;
use tonic::{Code, Status};

use crate::api::v3::auth::AuthService;
use crate::api::v3::cluster::ClusterService;
use crate::api::v3::election::ElectionService;
use crate::api::v3::kv::KvService;
use crate::api::v3::lease::{serve_keep_alive_stream, LeaseService};
use crate::api::v3::lock::LockService;
use crate::api::v3::maintenance::MaintenanceService;
use crate::api::v3::watch::serve_watch_stream;
use crate::api::v3::Caller;
use crate::etcdserver::EtcdServer;

pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/v3/{*method}", post(call))
        .route("/v3beta/{*method}", post(call))
        .with_state(server)
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(rampart_proto::FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set decodes")
    })
}

/// An error as etcd's gateway sends it: `{"error", "message", "code"}` with the HTTP status of
/// the gRPC code.
fn error_response(status: &Status) -> Response {
    let http = match status.code() {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // Fields in etcd's order (clients and tests compare the text).
    let message = serde_json::Value::from(status.message()).to_string();
    let body = format!(
        "{{\"error\":{message},\"message\":{message},\"code\":{}}}",
        status.code() as i32
    );
    (http, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn from_json<T: prost::Message + Default>(type_name: &str, json: &[u8]) -> Result<T, Status> {
    let desc = pool()
        .get_message_by_name(type_name)
        .ok_or_else(|| Status::internal(format!("gateway: unknown message {type_name}")))?;
    let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        json
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let dynamic = DynamicMessage::deserialize(desc, &mut de)
        .map_err(|e| Status::invalid_argument(format!("invalid JSON for {type_name}: {e}")))?;
    T::decode(prost::Message::encode_to_vec(&dynamic).as_slice())
        .map_err(|e| Status::internal(format!("gateway: {e}")))
}

/// The message as JSON text, fields in field-number order as etcd's gateway writes them.
fn to_json<T: prost::Message>(type_name: &str, message: &T) -> String {
    let Some(desc) = pool().get_message_by_name(type_name) else {
        return "null".to_string();
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, message.encode_to_vec().as_slice()) else {
        return "null".to_string();
    };
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true)
        .skip_default_fields(true);
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    if dynamic
        .serialize_with_options(&mut serializer, &options)
        .is_err()
    {
        return "null".to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| "null".to_string())
}

fn json_response<T: prost::Message>(type_name: &str, result: Result<T, Status>) -> Response {
    match result {
        Ok(message) => (
            [(header::CONTENT_TYPE, "application/json")],
            to_json(type_name, &message),
        )
            .into_response(),
        Err(status) => error_response(&status),
    }
}

macro_rules! unary {
    ($ctx:expr, $body:expr, $req:literal, $resp:literal, $call:expr) => {{
        let result = match from_json($req, &$body) {
            Ok(request) => $call($ctx.request(request))
                .await
                .map(|r: tonic::Response<_>| r.into_inner()),
            Err(status) => Err(status),
        };
        json_response($resp, result)
    }};
}

/// JSON requests found in a request body, one after another.
fn requests_in<T: prost::Message + Default + 'static>(
    type_name: &'static str,
    body: Bytes,
) -> impl Stream<Item = Result<T, Status>> + Send + Unpin + 'static {
    let mut items = Vec::new();
    for value in serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>() {
        match value {
            Ok(v) => items.push(from_json::<T>(type_name, v.to_string().as_bytes())),
            Err(e) => {
                items.push(Err(Status::invalid_argument(format!("invalid JSON: {e}"))));
                break;
            }
        }
    }
    futures::stream::iter(items)
}

fn streaming<T: prost::Message + 'static>(
    type_name: &'static str,
    responses: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Response {
    let lines = responses.map(move |r| {
        let value = match r {
            Ok(m) => format!("{{\"result\":{}}}", to_json(type_name, &m)),
            Err(s) => serde_json::json!({
                "error": { "grpc_code": s.code() as i32, "http_code": 500,
                           "message": s.message(), "http_status": "" }
            })
            .to_string(),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{value}\n")))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn call(
    State(server): State<Arc<EtcdServer>>,
    Path(method): Path<String>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        metadata.insert("token", token);
    }
    // The token as etcd's gateway takes it (HTTP `Authorization`), and the connection.
    let ctx = Caller {
        metadata,
        conn: conn.map(|Extension(c)| c),
    };
    let auth = AuthService::new(server.clone());
    let election = ElectionService::new(server.clone());
    let lock = LockService::new(server.clone());
    let kv = KvService::new(server.clone());
    let lease = LeaseService::new(server.clone());
    let cluster = ClusterService::new(server.clone());
    let maintenance = MaintenanceService::new(server.clone());
    match method.trim_end_matches('/') {
        "kv/range" => unary!(
            ctx,
            body,
            "etcdserverpb.RangeRequest",
            "etcdserverpb.RangeResponse",
            |r| kv.range(r)
        ),
        "kv/put" => unary!(
            ctx,
            body,
            "etcdserverpb.PutRequest",
            "etcdserverpb.PutResponse",
            |r| kv.put(r)
        ),
        "kv/deleterange" => unary!(
            ctx,
            body,
            "etcdserverpb.DeleteRangeRequest",
            "etcdserverpb.DeleteRangeResponse",
            |r| kv.delete_range(r)
        ),
        "kv/txn" => unary!(
            ctx,
            body,
            "etcdserverpb.TxnRequest",
            "etcdserverpb.TxnResponse",
            |r| kv.txn(r)
        ),
        "kv/compaction" => unary!(
            ctx,
            body,
            "etcdserverpb.CompactionRequest",
            "etcdserverpb.CompactionResponse",
            |r| kv.compact(r)
        ),
        "lease/grant" => unary!(
            ctx,
            body,
            "etcdserverpb.LeaseGrantRequest",
            "etcdserverpb.LeaseGrantResponse",
            |r| lease.lease_grant(r)
        ),
        "lease/revoke" | "kv/lease/revoke" => unary!(
            ctx,
            body,
            "etcdserverpb.LeaseRevokeRequest",
            "etcdserverpb.LeaseRevokeResponse",
            |r| lease.lease_revoke(r)
        ),
        "lease/timetolive" | "kv/lease/timetolive" => unary!(
            ctx,
            body,
            "etcdserverpb.LeaseTimeToLiveRequest",
            "etcdserverpb.LeaseTimeToLiveResponse",
            |r| lease.lease_time_to_live(r)
        ),
        "lease/leases" | "kv/lease/leases" => unary!(
            ctx,
            body,
            "etcdserverpb.LeaseLeasesRequest",
            "etcdserverpb.LeaseLeasesResponse",
            |r| lease.lease_leases(r)
        ),
        "lease/keepalive" => streaming(
            "etcdserverpb.LeaseKeepAliveResponse",
            serve_keep_alive_stream(
                server.clone(),
                requests_in("etcdserverpb.LeaseKeepAliveRequest", body),
            ),
        ),
        "watch" => streaming(
            "etcdserverpb.WatchResponse",
            match server
                .requester_from(&ctx.metadata, ctx.conn.as_ref())
                .await
            {
                Ok(requester) => serve_watch_stream(
                    &server,
                    requester.map(|r| r.user),
                    requests_in("etcdserverpb.WatchRequest", body),
                ),
                Err(status) => return error_response(&status),
            },
        ),
        "cluster/member/list" => unary!(
            ctx,
            body,
            "etcdserverpb.MemberListRequest",
            "etcdserverpb.MemberListResponse",
            |r| cluster.member_list(r)
        ),
        "cluster/member/add" => unary!(
            ctx,
            body,
            "etcdserverpb.MemberAddRequest",
            "etcdserverpb.MemberAddResponse",
            |r| cluster.member_add(r)
        ),
        "cluster/member/remove" => unary!(
            ctx,
            body,
            "etcdserverpb.MemberRemoveRequest",
            "etcdserverpb.MemberRemoveResponse",
            |r| cluster.member_remove(r)
        ),
        "cluster/member/update" => unary!(
            ctx,
            body,
            "etcdserverpb.MemberUpdateRequest",
            "etcdserverpb.MemberUpdateResponse",
            |r| cluster.member_update(r)
        ),
        "cluster/member/promote" => unary!(
            ctx,
            body,
            "etcdserverpb.MemberPromoteRequest",
            "etcdserverpb.MemberPromoteResponse",
            |r| cluster.member_promote(r)
        ),
        "maintenance/status" => unary!(
            ctx,
            body,
            "etcdserverpb.StatusRequest",
            "etcdserverpb.StatusResponse",
            |r| maintenance.status(r)
        ),
        "maintenance/alarm" => unary!(
            ctx,
            body,
            "etcdserverpb.AlarmRequest",
            "etcdserverpb.AlarmResponse",
            |r| maintenance.alarm(r)
        ),
        "maintenance/hash" => unary!(
            ctx,
            body,
            "etcdserverpb.HashRequest",
            "etcdserverpb.HashResponse",
            |r| maintenance.hash(r)
        ),
        "maintenance/hashkv" => unary!(
            ctx,
            body,
            "etcdserverpb.HashKVRequest",
            "etcdserverpb.HashKVResponse",
            |r| maintenance.hash_kv(r)
        ),
        "maintenance/defragment" => unary!(
            ctx,
            body,
            "etcdserverpb.DefragmentRequest",
            "etcdserverpb.DefragmentResponse",
            |r| maintenance.defragment(r)
        ),
        "maintenance/transfer-leadership" => unary!(
            ctx,
            body,
            "etcdserverpb.MoveLeaderRequest",
            "etcdserverpb.MoveLeaderResponse",
            |r| maintenance.move_leader(r)
        ),
        "auth/enable" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthEnableRequest",
            "etcdserverpb.AuthEnableResponse",
            |r| auth.auth_enable(r)
        ),
        "auth/disable" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthDisableRequest",
            "etcdserverpb.AuthDisableResponse",
            |r| auth.auth_disable(r)
        ),
        "auth/authenticate" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthenticateRequest",
            "etcdserverpb.AuthenticateResponse",
            |r| auth.authenticate(r)
        ),
        "auth/user/add" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthUserAddRequest",
            "etcdserverpb.AuthUserAddResponse",
            |r| auth.user_add(r)
        ),
        "auth/user/get" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthUserGetRequest",
            "etcdserverpb.AuthUserGetResponse",
            |r| auth.user_get(r)
        ),
        "auth/user/list" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthUserListRequest",
            "etcdserverpb.AuthUserListResponse",
            |r| auth.user_list(r)
        ),
        "auth/user/delete" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthUserDeleteRequest",
            "etcdserverpb.AuthUserDeleteResponse",
            |r| auth.user_delete(r)
        ),
        "auth/user/changepw" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthUserChangePasswordRequest",
            "etcdserverpb.AuthUserChangePasswordResponse",
            |r| auth.user_change_password(r)
        ),
        "auth/user/grant" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthUserGrantRoleRequest",
            "etcdserverpb.AuthUserGrantRoleResponse",
            |r| auth.user_grant_role(r)
        ),
        "auth/user/revoke" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthUserRevokeRoleRequest",
            "etcdserverpb.AuthUserRevokeRoleResponse",
            |r| auth.user_revoke_role(r)
        ),
        "auth/role/add" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthRoleAddRequest",
            "etcdserverpb.AuthRoleAddResponse",
            |r| auth.role_add(r)
        ),
        "auth/role/get" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthRoleGetRequest",
            "etcdserverpb.AuthRoleGetResponse",
            |r| auth.role_get(r)
        ),
        "auth/role/list" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthRoleListRequest",
            "etcdserverpb.AuthRoleListResponse",
            |r| auth.role_list(r)
        ),
        "auth/role/delete" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthRoleDeleteRequest",
            "etcdserverpb.AuthRoleDeleteResponse",
            |r| auth.role_delete(r)
        ),
        "auth/role/grant" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthRoleGrantPermissionRequest",
            "etcdserverpb.AuthRoleGrantPermissionResponse",
            |r| auth.role_grant_permission(r)
        ),
        "auth/role/revoke" => unary!(
            ctx,
            body,
            "etcdserverpb.AuthRoleRevokePermissionRequest",
            "etcdserverpb.AuthRoleRevokePermissionResponse",
            |r| auth.role_revoke_permission(r)
        ),
        "election/campaign" => unary!(
            ctx,
            body,
            "v3electionpb.CampaignRequest",
            "v3electionpb.CampaignResponse",
            |r| election.campaign(r)
        ),
        "election/proclaim" => unary!(
            ctx,
            body,
            "v3electionpb.ProclaimRequest",
            "v3electionpb.ProclaimResponse",
            |r| election.proclaim(r)
        ),
        "election/leader" => unary!(
            ctx,
            body,
            "v3electionpb.LeaderRequest",
            "v3electionpb.LeaderResponse",
            |r| election.leader(r)
        ),
        "election/resign" => unary!(
            ctx,
            body,
            "v3electionpb.ResignRequest",
            "v3electionpb.ResignResponse",
            |r| election.resign(r)
        ),
        "lock/lock" => unary!(
            ctx,
            body,
            "v3lockpb.LockRequest",
            "v3lockpb.LockResponse",
            |r| lock.lock(r)
        ),
        "lock/unlock" => unary!(
            ctx,
            body,
            "v3lockpb.UnlockRequest",
            "v3lockpb.UnlockResponse",
            |r| lock.unlock(r)
        ),
        "election/observe" => match from_json::<LeaderRequest>("v3electionpb.LeaderRequest", &body)
        {
            Ok(request) => match election.observe(ctx.request(request)).await {
                Ok(stream) => streaming("v3electionpb.LeaderResponse", stream.into_inner()),
                Err(status) => error_response(&status),
            },
            Err(status) => error_response(&status),
        },
        "maintenance/snapshot" => {
            match from_json::<SnapshotRequest>("etcdserverpb.SnapshotRequest", &body) {
                Ok(request) => match maintenance.snapshot(ctx.request(request)).await {
                    Ok(stream) => streaming("etcdserverpb.SnapshotResponse", stream.into_inner()),
                    Err(status) => error_response(&status),
                },
                Err(status) => error_response(&status),
            }
        }
        // As etcd's gateway answers a path it has no method for.
        _ => (StatusCode::NOT_FOUND, "Not Found\n").into_response(),
    }
}

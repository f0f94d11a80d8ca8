//! Who a v3 request comes from, once auth is on, and the checks the API edge makes itself
//! (reads, watches, admin-only calls). Writes carry their requester into the Raft log and are
//! checked when applied (`rampart_apply::auth`).
//!
//! A request names its user by a token from Authenticate (gRPC metadata `token`, as etcd 3.4's
//! clients send it, or `authorization`, as the JSON gateway and newer clients do) or, without
//! one, by the CN of its client certificate: our acceptor asks for certificates only under
//! `--client-cert-auth`, which is when etcd uses the CN. Tokens are simple ones (a table on
//! every member) or, with `--auth-token jwt,...`, JWTs checked with the public key.

use rampart_auth::{AuthError, PermType};
use rampart_proto::internal::Requester;
use rampart_tls::incoming::ConnInfo;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::etcdserver::EtcdServer;

/// etcd's auth error as a gRPC status (exact text and code).
pub fn auth_status(e: &AuthError) -> Status {
    Status::new(e.grpc_code(), e.to_string())
}

/// The token a request carries, if any.
fn token_of(metadata: &MetadataMap) -> Option<&str> {
    ["token", "authorization"]
        .iter()
        .find_map(|name| metadata.get(*name))
        .and_then(|v| v.to_str().ok())
}

impl EtcdServer {
    fn auth_store(&self) -> std::sync::RwLockReadGuard<'_, rampart_auth::AuthStore> {
        self.auth.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn auth_enabled(&self) -> bool {
        self.auth_store().is_enabled()
    }

    /// The user `request` is made as (`None`: auth is off, or no user named), at the current
    /// auth revision. A token this member does not know may be one whose Authenticate it has
    /// not applied yet: it catches up with the leader once before calling the token invalid.
    pub async fn requester<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<Option<Requester>, Status> {
        self.requester_from(request.metadata(), request.extensions().get::<ConnInfo>())
            .await
    }

    pub async fn requester_from(
        &self,
        metadata: &MetadataMap,
        conn: Option<&ConnInfo>,
    ) -> Result<Option<Requester>, Status> {
        if !self.auth_enabled() {
            return Ok(None);
        }
        let Some(token) = token_of(metadata) else {
            return Ok(conn
                .and_then(|c| c.peer_common_name.clone())
                .map(|cn| self.auth_store().requester(cn)));
        };
        if let Some(jwt) = &self.jwt {
            // A JWT names the auth revision it was made at: after a change of users or roles
            // the request fails as "old revision" and the client authenticates again.
            return match jwt.verify(token) {
                Some((user, auth_revision)) => Ok(Some(Requester {
                    user,
                    auth_revision,
                })),
                None => Err(auth_status(&AuthError::InvalidAuthToken)),
            };
        }
        if let Some(user) = self.tokens.user_of(token) {
            return Ok(Some(self.auth_store().requester(user)));
        }
        self.linearizable_barrier().await?;
        match self.tokens.user_of(token) {
            Some(user) => Ok(Some(self.auth_store().requester(user))),
            None => Err(auth_status(&AuthError::InvalidAuthToken)),
        }
    }

    /// Only a root user may make this call once auth is on (etcd's IsAdminPermitted).
    pub async fn check_admin<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        let requester = self.requester(request).await?;
        self.auth_store()
            .check_admin(requester.as_ref())
            .map_err(|e| auth_status(&e))
    }

    /// Whether `requester` may read `[key, range_end)` by the auth state now.
    pub fn check_read(
        &self,
        requester: Option<&Requester>,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), Status> {
        self.auth_store()
            .check_keys(requester, key, range_end, PermType::Read)
            .map_err(|e| auth_status(&e))
    }

    /// The password hash of `name` (for Authenticate), and the auth revision it was read at.
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), Status> {
        let store = self.auth_store();
        store
            .password_hash(name)
            .map(|h| (h, store.revision()))
            .map_err(|e| auth_status(&e))
    }
}

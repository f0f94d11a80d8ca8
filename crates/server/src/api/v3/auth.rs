//! `etcdserverpb.Auth`: users, roles, permissions, enabling auth, and Authenticate. Every
//! request goes through Raft (reads too, so they see every change applied before them) and is
//! decided by `rampart_auth::AuthStore` when applied. Passwords are hashed, and checked, here,
//! off the async workers: bcrypt takes tens of milliseconds by design.

use std::sync::Arc;

use rampart_apply::Response;
use rampart_auth::{password, AuthError, AuthResponse, SimpleTokens};
use rampart_proto::etcdserverpb::auth_server::Auth;
use rampart_proto::etcdserverpb::*;
use rampart_proto::internal::auth_request::Request as AuthOp;
use rampart_proto::internal::raft_request::Request as Op;
use rampart_proto::internal::{
    AuthRequest, AuthenticateWithToken, UserAddHashed, UserChangePasswordHashed,
};
use tonic::{Request, Status};

use crate::auth::auth_status;
use crate::etcdserver::EtcdServer;

/// How often Authenticate checks the password again when users or roles changed between its
/// check and its entry being applied.
const AUTHENTICATE_ATTEMPTS: usize = 3;

pub struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    pub fn new(server: Arc<EtcdServer>) -> AuthService {
        AuthService { server }
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(self.server.current_header())
    }

    /// Proposes `op` as the request's user and waits for its answer.
    async fn propose<T>(&self, request: &Request<T>, op: AuthOp) -> Result<AuthResponse, Status> {
        let requester = self.server.requester(request).await?;
        self.propose_as(requester, op).await
    }

    async fn propose_as(
        &self,
        requester: Option<rampart_proto::internal::Requester>,
        op: AuthOp,
    ) -> Result<AuthResponse, Status> {
        let request = Op::Auth(AuthRequest { request: Some(op) });
        match self.server.propose_as(request, requester).await? {
            Response::Auth(answer) => Ok(answer),
            _ => Err(Status::internal(
                "etcdserver: unexpected response type for auth",
            )),
        }
    }

    /// A bcrypt hash of `password`, made on a blocking thread.
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.server.bcrypt_cost;
        tokio::task::spawn_blocking(move || password::hash(&password, cost))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("etcdserver: failed to hash password: {e}")))
    }
}

fn done<T>(
    answer: AuthResponse,
    respond: impl FnOnce() -> T,
) -> Result<tonic::Response<T>, Status> {
    match answer {
        AuthResponse::Done => Ok(tonic::Response::new(respond())),
        _ => Err(Status::internal("etcdserver: unexpected auth answer")),
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<tonic::Response<AuthEnableResponse>, Status> {
        let answer = self
            .propose(&request, AuthOp::Enable(*request.get_ref()))
            .await?;
        done(answer, || AuthEnableResponse {
            header: self.header(),
        })
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<tonic::Response<AuthDisableResponse>, Status> {
        let answer = self
            .propose(&request, AuthOp::Disable(*request.get_ref()))
            .await?;
        done(answer, || AuthDisableResponse {
            header: self.header(),
        })
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<tonic::Response<AuthenticateResponse>, Status> {
        let AuthenticateRequest { name, password } = request.into_inner();
        let old_revision = AuthError::AuthOldRevision.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (hashed, checked_revision) = self.server.password_hash(&name)?;
            let candidate = password.clone();
            let matches =
                tokio::task::spawn_blocking(move || password::verify(&candidate, &hashed))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
            if !matches {
                return Err(auth_status(&AuthError::AuthFailed));
            }
            let token = match &self.server.jwt {
                Some(jwt) => jwt
                    .sign(&name, checked_revision)
                    .map_err(|e| Status::failed_precondition(format!("etcdserver: {e}")))?,
                None => SimpleTokens::generate(self.server.next_request_id()),
            };
            let op = AuthOp::Authenticate(AuthenticateWithToken {
                name: name.clone(),
                token,
                checked_revision,
            });
            match self.propose_as(None, op).await {
                Ok(AuthResponse::Token(token)) => {
                    return Ok(tonic::Response::new(AuthenticateResponse {
                        header: self.header(),
                        token,
                    }))
                }
                Ok(_) => return Err(Status::internal("etcdserver: unexpected auth answer")),
                Err(e) if e.message() == old_revision && attempt < AUTHENTICATE_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<tonic::Response<AuthUserAddResponse>, Status> {
        // Checked before hashing, so that no one else can make the member hash passwords.
        self.server.check_admin(&request).await?;
        let requester = self.server.requester(&request).await?;
        let r = request.into_inner();
        if r.name.is_empty() {
            return Err(auth_status(&AuthError::UserEmpty));
        }
        let no_password = r.options.is_some_and(|o| o.no_password);
        let hashed_password = if no_password {
            String::new()
        } else {
            self.hash(r.password).await?
        };
        let op = AuthOp::UserAdd(UserAddHashed {
            name: r.name,
            hashed_password,
            no_password,
        });
        done(self.propose_as(requester, op).await?, || {
            AuthUserAddResponse {
                header: self.header(),
            }
        })
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<tonic::Response<AuthUserGetResponse>, Status> {
        match self
            .propose(&request, AuthOp::UserGet(request.get_ref().clone()))
            .await?
        {
            AuthResponse::Roles(roles) => Ok(tonic::Response::new(AuthUserGetResponse {
                header: self.header(),
                roles,
            })),
            _ => Err(Status::internal("etcdserver: unexpected auth answer")),
        }
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<tonic::Response<AuthUserListResponse>, Status> {
        match self
            .propose(&request, AuthOp::UserList(*request.get_ref()))
            .await?
        {
            AuthResponse::Users(users) => Ok(tonic::Response::new(AuthUserListResponse {
                header: self.header(),
                users,
            })),
            _ => Err(Status::internal("etcdserver: unexpected auth answer")),
        }
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<tonic::Response<AuthUserDeleteResponse>, Status> {
        let answer = self
            .propose(&request, AuthOp::UserDelete(request.get_ref().clone()))
            .await?;
        done(answer, || AuthUserDeleteResponse {
            header: self.header(),
        })
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<tonic::Response<AuthUserChangePasswordResponse>, Status> {
        self.server.check_admin(&request).await?;
        let requester = self.server.requester(&request).await?;
        let r = request.into_inner();
        let op = AuthOp::UserChangePassword(UserChangePasswordHashed {
            name: r.name,
            hashed_password: self.hash(r.password).await?,
        });
        done(self.propose_as(requester, op).await?, || {
            AuthUserChangePasswordResponse {
                header: self.header(),
            }
        })
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<tonic::Response<AuthUserGrantRoleResponse>, Status> {
        let op = AuthOp::UserGrantRole(request.get_ref().clone());
        done(self.propose(&request, op).await?, || {
            AuthUserGrantRoleResponse {
                header: self.header(),
            }
        })
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<tonic::Response<AuthUserRevokeRoleResponse>, Status> {
        let op = AuthOp::UserRevokeRole(request.get_ref().clone());
        done(self.propose(&request, op).await?, || {
            AuthUserRevokeRoleResponse {
                header: self.header(),
            }
        })
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<tonic::Response<AuthRoleAddResponse>, Status> {
        let op = AuthOp::RoleAdd(request.get_ref().clone());
        done(self.propose(&request, op).await?, || AuthRoleAddResponse {
            header: self.header(),
        })
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<tonic::Response<AuthRoleGetResponse>, Status> {
        match self
            .propose(&request, AuthOp::RoleGet(request.get_ref().clone()))
            .await?
        {
            AuthResponse::Permissions(perm) => Ok(tonic::Response::new(AuthRoleGetResponse {
                header: self.header(),
                perm,
            })),
            _ => Err(Status::internal("etcdserver: unexpected auth answer")),
        }
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<tonic::Response<AuthRoleListResponse>, Status> {
        match self
            .propose(&request, AuthOp::RoleList(*request.get_ref()))
            .await?
        {
            AuthResponse::Roles(roles) => Ok(tonic::Response::new(AuthRoleListResponse {
                header: self.header(),
                roles,
            })),
            _ => Err(Status::internal("etcdserver: unexpected auth answer")),
        }
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<tonic::Response<AuthRoleDeleteResponse>, Status> {
        let op = AuthOp::RoleDelete(request.get_ref().clone());
        done(self.propose(&request, op).await?, || {
            AuthRoleDeleteResponse {
                header: self.header(),
            }
        })
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<tonic::Response<AuthRoleGrantPermissionResponse>, Status> {
        let op = AuthOp::RoleGrantPermission(request.get_ref().clone());
        done(self.propose(&request, op).await?, || {
            AuthRoleGrantPermissionResponse {
                header: self.header(),
            }
        })
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<tonic::Response<AuthRoleRevokePermissionResponse>, Status> {
        let op = AuthOp::RoleRevokePermission(request.get_ref().clone());
        done(self.propose(&request, op).await?, || {
            AuthRoleRevokePermissionResponse {
                header: self.header(),
            }
        })
    }
}

//! The auth store's decisions, as etcd 3.4 makes them.

use rampart_auth::{AuthError, AuthResponse, AuthStore, PermType, SimpleTokens};
use rampart_proto::authpb::Permission;
use rampart_proto::etcdserverpb::*;
use rampart_proto::internal::auth_request::Request;
use rampart_proto::internal::{
    AuthenticateWithToken, Requester, UserAddHashed, UserChangePasswordHashed,
};

struct Fixture {
    store: AuthStore,
    tokens: SimpleTokens,
    /// Every record written so far, replayed by `reloaded`.
    records: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            store: AuthStore::default(),
            tokens: SimpleTokens::default(),
            records: Default::default(),
        }
    }

    fn apply_as(&mut self, who: Option<&str>, request: Request) -> Result<AuthResponse, AuthError> {
        let requester = who.map(|u| self.store.requester(u.to_string()));
        let (answer, changes) = self
            .store
            .apply(&request, requester.as_ref(), &self.tokens)?;
        for c in changes {
            match c.value {
                Some(v) => self.records.insert(c.key, v),
                None => self.records.remove(&c.key),
            };
        }
        Ok(answer)
    }

    fn root(&mut self, request: Request) -> Result<AuthResponse, AuthError> {
        self.apply_as(Some("root"), request)
    }

    fn reloaded(&self) -> AuthStore {
        AuthStore::load(self.records.clone()).unwrap()
    }
}

fn user_add(name: &str) -> Request {
    Request::UserAdd(UserAddHashed {
        name: name.into(),
        hashed_password: format!("hash-of-{name}"),
        no_password: false,
    })
}

fn role_add(name: &str) -> Request {
    Request::RoleAdd(AuthRoleAddRequest { name: name.into() })
}

fn grant(user: &str, role: &str) -> Request {
    Request::UserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

fn grant_perm(role: &str, key: &str, end: &str, t: PermType) -> Request {
    Request::RoleGrantPermission(AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission {
            perm_type: t as i32,
            key: key.into(),
            range_end: end.into(),
        }),
    })
}

fn enable() -> Request {
    Request::Enable(AuthEnableRequest {})
}

/// root (with the root role) and alice (role r1: read-write "foo"), auth on.
fn enabled() -> Fixture {
    let mut f = Fixture::new();
    for r in [
        user_add("root"),
        user_add("alice"),
        role_add("root"),
        role_add("r1"),
    ] {
        f.root(r).unwrap();
    }
    f.root(grant("root", "root")).unwrap();
    f.root(grant("alice", "r1")).unwrap();
    f.root(grant_perm("r1", "foo", "", PermType::Readwrite))
        .unwrap();
    f.root(enable()).unwrap();
    f
}

#[test]
fn enabling_needs_a_root_user_with_the_root_role() {
    let mut f = Fixture::new();
    assert_eq!(f.root(enable()), Err(AuthError::RootUserNotExist));
    f.root(user_add("root")).unwrap();
    assert_eq!(f.root(enable()), Err(AuthError::RootRoleNotExist));
    // The root role need not exist as a role record to be granted.
    f.root(grant("root", "root")).unwrap();
    assert_eq!(f.root(enable()), Ok(AuthResponse::Done));
    assert!(f.store.is_enabled());
    // Enabling again changes nothing.
    let revision = f.store.revision();
    f.root(enable()).unwrap();
    assert_eq!(f.store.revision(), revision);
    assert_eq!(f.reloaded(), f.store);
}

#[test]
fn with_auth_on_only_root_manages_users_and_roles() {
    let mut f = enabled();
    assert_eq!(
        f.apply_as(Some("alice"), user_add("bob")),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(f.apply_as(None, user_add("bob")), Err(AuthError::UserEmpty));
    assert_eq!(
        f.apply_as(Some("ghost"), user_add("bob")),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        f.apply_as(Some("alice"), Request::UserList(AuthUserListRequest {})),
        Err(AuthError::PermissionDenied)
    );
    // A user may read itself and its own roles.
    let own = Request::UserGet(AuthUserGetRequest {
        name: "alice".into(),
    });
    assert_eq!(
        f.apply_as(Some("alice"), own),
        Ok(AuthResponse::Roles(vec!["r1".into()]))
    );
    let other = Request::UserGet(AuthUserGetRequest {
        name: "root".into(),
    });
    assert_eq!(
        f.apply_as(Some("alice"), other),
        Err(AuthError::PermissionDenied)
    );
    let own_role = Request::RoleGet(AuthRoleGetRequest { role: "r1".into() });
    assert!(
        matches!(f.apply_as(Some("alice"), own_role), Ok(AuthResponse::Permissions(p)) if p.len() == 1)
    );
    let root_role = Request::RoleGet(AuthRoleGetRequest {
        role: "root".into(),
    });
    assert_eq!(
        f.apply_as(Some("alice"), root_role),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        f.root(Request::UserList(AuthUserListRequest {})),
        Ok(AuthResponse::Users(vec!["alice".into(), "root".into()]))
    );
}

#[test]
fn root_cannot_lose_its_powers_while_auth_is_on() {
    let mut f = enabled();
    let delete_root = Request::UserDelete(AuthUserDeleteRequest {
        name: "root".into(),
    });
    assert_eq!(f.root(delete_root.clone()), Err(AuthError::InvalidAuthMgmt));
    let revoke = Request::UserRevokeRole(AuthUserRevokeRoleRequest {
        name: "root".into(),
        role: "root".into(),
    });
    assert_eq!(f.root(revoke.clone()), Err(AuthError::InvalidAuthMgmt));
    let delete_role = Request::RoleDelete(AuthRoleDeleteRequest {
        role: "root".into(),
    });
    assert_eq!(f.root(delete_role.clone()), Err(AuthError::InvalidAuthMgmt));
    f.root(Request::Disable(AuthDisableRequest {})).unwrap();
    assert!(!f.store.is_enabled());
    assert_eq!(f.root(revoke), Ok(AuthResponse::Done));
    assert_eq!(f.root(delete_role), Ok(AuthResponse::Done));
    assert_eq!(f.root(delete_root), Ok(AuthResponse::Done));
    assert_eq!(f.reloaded(), f.store);
}

#[test]
fn permissions_follow_roles_and_a_change_makes_older_checks_stale() {
    let mut f = enabled();
    let alice = f.store.requester("alice".into());
    assert_eq!(
        f.store
            .check_keys(Some(&alice), b"foo", b"", PermType::Write),
        Ok(())
    );
    assert_eq!(
        f.store
            .check_keys(Some(&alice), b"foo1", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        f.store.check_keys(None, b"foo", b"", PermType::Read),
        Err(AuthError::UserEmpty)
    );
    // Granting the same key and range again updates the permission's type.
    f.root(grant_perm("r1", "foo", "", PermType::Read)).unwrap();
    assert_eq!(
        f.store
            .check_keys(Some(&alice), b"foo", b"", PermType::Write),
        Err(AuthError::AuthOldRevision)
    );
    let alice = f.store.requester("alice".into());
    assert_eq!(
        f.store
            .check_keys(Some(&alice), b"foo", b"", PermType::Write),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        f.store
            .check_keys(Some(&alice), b"foo", b"", PermType::Read),
        Ok(())
    );
    // Root may do anything.
    let root = f.store.requester("root".into());
    assert_eq!(
        f.store
            .check_keys(Some(&root), b"a", b"\0", PermType::Write),
        Ok(())
    );
    // Deleting a role takes it from its users.
    f.root(Request::RoleDelete(AuthRoleDeleteRequest {
        role: "r1".into(),
    }))
    .unwrap();
    f.root(role_add("r1")).unwrap();
    let get = Request::UserGet(AuthUserGetRequest {
        name: "alice".into(),
    });
    assert_eq!(f.root(get), Ok(AuthResponse::Roles(vec![])));
    assert_eq!(f.reloaded(), f.store);
}

#[test]
fn revoking_what_was_not_granted_fails() {
    let mut f = enabled();
    let revoke_perm = Request::RoleRevokePermission(AuthRoleRevokePermissionRequest {
        role: "r1".into(),
        key: b"bar".to_vec(),
        range_end: vec![],
    });
    assert_eq!(f.root(revoke_perm), Err(AuthError::PermissionNotGranted));
    let revoke_role = Request::UserRevokeRole(AuthUserRevokeRoleRequest {
        name: "alice".into(),
        role: "r2".into(),
    });
    assert_eq!(f.root(revoke_role), Err(AuthError::RoleNotGranted));
    assert_eq!(f.root(grant("alice", "r2")), Err(AuthError::RoleNotFound));
    assert_eq!(f.root(user_add("alice")), Err(AuthError::UserAlreadyExist));
    assert_eq!(f.root(user_add("")), Err(AuthError::UserEmpty));
    assert_eq!(f.root(role_add("")), Err(AuthError::RoleEmpty));
    assert_eq!(f.root(role_add("r1")), Err(AuthError::RoleAlreadyExist));
}

#[test]
fn authenticate_hands_out_tokens_that_password_changes_revoke() {
    let mut f = enabled();
    let revision = f.store.revision();
    let authenticate = |token: &str, checked_revision| {
        Request::Authenticate(AuthenticateWithToken {
            name: "alice".into(),
            token: token.into(),
            checked_revision,
        })
    };
    assert_eq!(
        f.apply_as(None, authenticate("t1", revision)),
        Ok(AuthResponse::Token("t1".into()))
    );
    assert_eq!(f.tokens.user_of("t1").as_deref(), Some("alice"));
    f.root(Request::UserChangePassword(UserChangePasswordHashed {
        name: "alice".into(),
        hashed_password: "new".into(),
    }))
    .unwrap();
    assert_eq!(f.tokens.user_of("t1"), None);
    // Checked before the change: checked again.
    assert_eq!(
        f.apply_as(None, authenticate("t2", revision)),
        Err(AuthError::AuthOldRevision)
    );
    assert_eq!(f.store.password_hash("alice"), Ok(b"new".to_vec()));
    assert_eq!(f.store.password_hash("ghost"), Err(AuthError::AuthFailed));
    f.root(Request::Disable(AuthDisableRequest {})).unwrap();
    assert_eq!(
        f.store.password_hash("alice"),
        Err(AuthError::AuthNotEnabled)
    );
    let revision = f.store.revision();
    assert_eq!(
        f.apply_as(None, authenticate("t3", revision)),
        Err(AuthError::AuthNotEnabled)
    );
}

#[test]
fn a_user_without_password_cannot_authenticate() {
    let mut f = enabled();
    f.root(Request::UserAdd(UserAddHashed {
        name: "svc".into(),
        hashed_password: String::new(),
        no_password: true,
    }))
    .unwrap();
    assert_eq!(f.store.password_hash("svc"), Err(AuthError::AuthFailed));
    let requester = Requester {
        user: "svc".into(),
        auth_revision: f.store.revision(),
    };
    // It can still act through its certificate's CN, with what its roles allow.
    assert_eq!(
        f.store
            .check_keys(Some(&requester), b"foo", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
}

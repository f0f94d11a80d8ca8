//! etcd 3.4's v2 authentication (`/v2/auth`): users with bcrypt-hashed passwords, roles with
//! read/write path patterns, the built-in `root` role, the `guest` role unauthenticated requests
//! get, and the enabled flag.
//!
//! A change is decided where the request arrives (merging grants, hashing the password, as etcd's
//! handler does) and replicated as a [`AuthWrite`]: the new record and the condition it was
//! decided under. [`V2Auth::apply`] applies one in log order on every member.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub const ROOT_ROLE: &str = "root";
pub const ROOT_USER: &str = "root";
pub const GUEST_ROLE: &str = "guest";

/// bcrypt cost of stored passwords (Go's `bcrypt.DefaultCost`, which etcd uses).
pub const BCRYPT_COST: u32 = 10;

/// Backend keys of the auth records; v2 nodes' keys start with "/", so these never collide.
const USER_KEY_PREFIX: &str = "auth/user/";
const ROLE_KEY_PREFIX: &str = "auth/role/";
const ENABLED_KEY: &str = "auth/enabled";

/// A user as etcd's v2 API writes it: `password` is the bcrypt hash when stored and absent in
/// answers; `roles` is null until roles are granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub role: String,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Permissions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Permissions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub kv: RwPermission,
}

/// Path patterns: "/a" is that key only, "/a/*" everything below "/a/" (etcd's matching).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RwPermission {
    #[serde(default)]
    pub read: Option<Vec<String>>,
    #[serde(default)]
    pub write: Option<Vec<String>>,
}

/// A refusal with etcd's HTTP status and text (`{"message": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub status: u16,
    pub message: String,
}

fn auth_err(status: u16, message: impl Into<String>) -> AuthError {
    AuthError {
        status,
        message: format!("auth: {}", message.into()),
    }
}

/// One replicated change of the auth records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthWrite {
    /// Stores `user` (a full record, password hashed); `create` requires that it is new,
    /// otherwise that it exists.
    PutUser {
        user: User,
        create: bool,
    },
    DeleteUser {
        name: String,
    },
    PutRole {
        role: Role,
        create: bool,
    },
    DeleteRole {
        name: String,
    },
    SetEnabled(bool),
}

/// Why a replicated write did not apply (the state changed since it was decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteConflict {
    Exists,
    Missing,
}

/// What a write changed in the backend: a key and its new value (None = removed).
pub type BackendChange = (String, Option<Vec<u8>>);

fn root_role() -> Role {
    Role {
        role: ROOT_ROLE.into(),
        permissions: all_paths(),
        ..Default::default()
    }
}

fn all_paths() -> Permissions {
    Permissions {
        kv: RwPermission {
            read: Some(vec!["/*".into()]),
            write: Some(vec!["/*".into()]),
        },
    }
}

/// The guest role made when auth is first enabled: everything, as in etcd.
pub fn default_guest_role() -> Role {
    Role {
        role: GUEST_ROLE.into(),
        permissions: all_paths(),
        ..Default::default()
    }
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    bcrypt::hash(password, BCRYPT_COST).map_err(|e| AuthError {
        status: 500,
        message: e.to_string(),
    })
}

pub fn check_password(user: &User, password: &str) -> bool {
    bcrypt::verify(password, &user.password).unwrap_or(false)
}

/// The auth records of the v2 key space.
#[derive(Debug, Clone, Default)]
pub struct V2Auth {
    enabled: bool,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl V2Auth {
    /// Whether `key` is a backend key of an auth record.
    pub fn is_record_key(key: &str) -> bool {
        key.starts_with("auth/")
    }

    /// Loads one stored record (see [`V2Auth::is_record_key`]).
    pub fn load_record(&mut self, key: &str, raw: &[u8]) -> Result<(), String> {
        if key == ENABLED_KEY {
            self.enabled = raw == b"true";
        } else if let Some(name) = key.strip_prefix(USER_KEY_PREFIX) {
            let user: User = serde_json::from_slice(raw).map_err(|e| format!("{key}: {e}"))?;
            self.users.insert(name.to_string(), user);
        } else if let Some(name) = key.strip_prefix(ROLE_KEY_PREFIX) {
            let role: Role = serde_json::from_slice(raw).map_err(|e| format!("{key}: {e}"))?;
            self.roles.insert(name.to_string(), role);
        } else {
            return Err(format!("unknown auth record {key}"));
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A user with the root role attached to `root`, as etcd reads it.
    pub fn user(&self, name: &str) -> Result<User, AuthError> {
        let mut user = self
            .users
            .get(name)
            .cloned()
            .ok_or_else(|| auth_err(404, format!("User {name} does not exist.")))?;
        if user.user == ROOT_USER {
            let roles = user.roles.get_or_insert_with(Vec::new);
            if !roles.iter().any(|r| r == ROOT_ROLE) {
                roles.push(ROOT_ROLE.into());
            }
        }
        Ok(user)
    }

    pub fn role(&self, name: &str) -> Result<Role, AuthError> {
        if name == ROOT_ROLE {
            return Ok(root_role());
        }
        self.roles
            .get(name)
            .cloned()
            .ok_or_else(|| auth_err(404, format!("Role {name} does not exist.")))
    }

    /// User names, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Role names with `root`, sorted.
    pub fn role_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.roles.keys().cloned().collect();
        names.insert(ROOT_ROLE.into());
        names.into_iter().collect()
    }

    /// Applies a committed write; returns the backend change, or the conflict that stopped it.
    pub fn apply(&mut self, write: &AuthWrite) -> Result<BackendChange, WriteConflict> {
        match write {
            AuthWrite::PutUser { user, create } => {
                check_condition(self.users.contains_key(&user.user), *create)?;
                self.users.insert(user.user.clone(), user.clone());
                Ok((
                    format!("{USER_KEY_PREFIX}{}", user.user),
                    Some(encode(user)),
                ))
            }
            AuthWrite::DeleteUser { name } => {
                self.users.remove(name).ok_or(WriteConflict::Missing)?;
                Ok((format!("{USER_KEY_PREFIX}{name}"), None))
            }
            AuthWrite::PutRole { role, create } => {
                check_condition(self.roles.contains_key(&role.role), *create)?;
                self.roles.insert(role.role.clone(), role.clone());
                Ok((
                    format!("{ROLE_KEY_PREFIX}{}", role.role),
                    Some(encode(role)),
                ))
            }
            AuthWrite::DeleteRole { name } => {
                self.roles.remove(name).ok_or(WriteConflict::Missing)?;
                Ok((format!("{ROLE_KEY_PREFIX}{name}"), None))
            }
            AuthWrite::SetEnabled(on) => {
                self.enabled = *on;
                Ok((
                    ENABLED_KEY.to_string(),
                    Some(if *on {
                        b"true".to_vec()
                    } else {
                        b"false".to_vec()
                    }),
                ))
            }
        }
    }

    // ---- Decisions of the HTTP handler (etcd's v2auth store), before replication. ----

    /// PUT /v2/auth/users/NAME without grant/revoke: creates the user, or updates its password
    /// when it exists and no roles are given. Returns the write and whether it creates.
    pub fn decide_put_user(&self, input: User) -> Result<(AuthWrite, bool), AuthError> {
        let given_roles = input.roles.as_ref().is_some_and(|r| !r.is_empty());
        if !given_roles && self.users.contains_key(&input.user) {
            return Ok((self.decide_update_user(input)?, false));
        }
        let mut user = input;
        if user.user == ROOT_USER {
            let roles = user.roles.get_or_insert_with(Vec::new);
            if !roles.iter().any(|r| r == ROOT_ROLE) {
                roles.push(ROOT_ROLE.into());
            }
        }
        if user.password.is_empty() {
            return Err(auth_err(
                400,
                format!("Cannot create user {} with an empty password", user.user),
            ));
        }
        if self.users.contains_key(&user.user) {
            return Err(auth_err(409, format!("User {} already exists.", user.user)));
        }
        user.password = hash_password(&user.password)?;
        user.grant = None;
        user.revoke = None;
        // etcd answers 201 only when it took the create-or-update path.
        Ok((AuthWrite::PutUser { user, create: true }, !given_roles))
    }

    /// PUT with grant/revoke (or a new password for an existing user).
    pub fn decide_update_user(&self, input: User) -> Result<AuthWrite, AuthError> {
        let old = self
            .user(&input.user)
            .map_err(|_| auth_err(404, format!("User {} doesn't exist.", input.user)))?;
        let mut roles: BTreeSet<String> =
            old.roles.clone().unwrap_or_default().into_iter().collect();
        for g in input.grant.iter().flatten() {
            if !roles.insert(g.clone()) {
                return Err(auth_err(
                    409,
                    format!("Granting duplicate role {g} for user {}", input.user),
                ));
            }
        }
        for r in input.revoke.iter().flatten() {
            if !roles.remove(r) {
                return Err(auth_err(
                    409,
                    format!("Revoking ungranted role {r} for user {}", input.user),
                ));
            }
        }
        let password = if input.password.is_empty() {
            old.password.clone()
        } else {
            hash_password(&input.password)?
        };
        let new = User {
            user: old.user.clone(),
            password,
            roles: Some(roles.into_iter().collect()),
            grant: None,
            revoke: None,
        };
        if new == old {
            return Err(auth_err(
                400,
                "User not updated. Use grant/revoke/password to update the user.",
            ));
        }
        Ok(AuthWrite::PutUser {
            user: new,
            create: false,
        })
    }

    pub fn decide_delete_user(&self, name: &str) -> Result<AuthWrite, AuthError> {
        if self.enabled && name == ROOT_USER {
            return Err(auth_err(
                403,
                "Cannot delete root user while auth is enabled.",
            ));
        }
        if !self.users.contains_key(name) {
            return Err(auth_err(404, format!("User {name} does not exist")));
        }
        Ok(AuthWrite::DeleteUser { name: name.into() })
    }

    /// PUT /v2/auth/roles/NAME: creates it, or applies grant/revoke.
    pub fn decide_put_role(&self, input: Role) -> Result<(AuthWrite, bool), AuthError> {
        let is_root = input.role == ROOT_ROLE;
        let root_refusal = || {
            auth_err(
                403,
                format!("Cannot modify role {}: is root role.", input.role),
            )
        };
        if is_empty(&input.grant) && is_empty(&input.revoke) {
            if is_root {
                return Err(root_refusal());
            }
            if self.roles.contains_key(&input.role) {
                return Err(auth_err(
                    409,
                    format!("Role {} already exists.", input.role),
                ));
            }
            let role = Role {
                grant: None,
                revoke: None,
                ..input
            };
            return Ok((AuthWrite::PutRole { role, create: true }, true));
        }
        if !is_empty(&Some(input.permissions.clone())) {
            return Err(AuthError {
                status: 400,
                message: "Role JSON contains both permissions and grant/revoke".into(),
            });
        }
        if is_root {
            return Err(root_refusal());
        }
        let old = self
            .roles
            .get(&input.role)
            .ok_or_else(|| auth_err(404, format!("Role {} doesn't exist.", input.role)))?;
        let mut read: BTreeSet<String> = old
            .permissions
            .kv
            .read
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut write: BTreeSet<String> = old
            .permissions
            .kv
            .write
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if let Some(grant) = &input.grant {
            for p in grant.kv.read.iter().flatten() {
                if !read.insert(p.clone()) {
                    return Err(auth_err(
                        409,
                        format!("Granting duplicate read permission {p}"),
                    ));
                }
            }
            for p in grant.kv.write.iter().flatten() {
                if !write.insert(p.clone()) {
                    return Err(auth_err(
                        409,
                        format!("Granting duplicate write permission {p}"),
                    ));
                }
            }
        }
        if let Some(revoke) = &input.revoke {
            // Revoking what was not granted is ignored, as in etcd.
            for p in revoke.kv.read.iter().flatten() {
                read.remove(p);
            }
            for p in revoke.kv.write.iter().flatten() {
                write.remove(p);
            }
        }
        let new = Role {
            role: old.role.clone(),
            permissions: Permissions {
                kv: RwPermission {
                    read: Some(read.into_iter().collect()),
                    write: Some(write.into_iter().collect()),
                },
            },
            grant: None,
            revoke: None,
        };
        // Compared as etcd does (a null list differs from an empty one).
        if new.permissions == old.permissions {
            return Err(auth_err(
                400,
                "Role not updated. Use grant/revoke to update the role.",
            ));
        }
        Ok((
            AuthWrite::PutRole {
                role: new,
                create: false,
            },
            false,
        ))
    }

    pub fn decide_delete_role(&self, name: &str) -> Result<AuthWrite, AuthError> {
        if name == ROOT_ROLE {
            return Err(auth_err(
                403,
                format!("Cannot modify role {name}: is root role."),
            ));
        }
        if !self.roles.contains_key(name) {
            return Err(auth_err(404, format!("Role {name} doesn't exist.")));
        }
        Ok(AuthWrite::DeleteRole { name: name.into() })
    }

    /// PUT /v2/auth/enable: the writes to replicate (a default guest role first, if missing).
    pub fn decide_enable(&self) -> Result<Vec<AuthWrite>, AuthError> {
        if self.enabled {
            return Err(auth_err(409, "already enabled"));
        }
        if !self.users.contains_key(ROOT_USER) {
            return Err(auth_err(409, "No root user available, please create one"));
        }
        let mut writes = Vec::new();
        if !self.roles.contains_key(GUEST_ROLE) {
            writes.push(AuthWrite::PutRole {
                role: default_guest_role(),
                create: true,
            });
        }
        writes.push(AuthWrite::SetEnabled(true));
        Ok(writes)
    }

    pub fn decide_disable(&self) -> Result<AuthWrite, AuthError> {
        if !self.enabled {
            return Err(auth_err(409, "already disabled"));
        }
        Ok(AuthWrite::SetEnabled(false))
    }

    // ---- Access checks of /v2/keys requests while auth is enabled. ----

    /// The user a request's basic-auth credentials name, if the password is right.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<User> {
        let user = self.user(name).ok()?;
        check_password(&user, password).then_some(user)
    }

    /// Whether `user` (None = guest) may read or write `key` (or everything below it when
    /// `recursive`).
    pub fn has_key_access(
        &self,
        user: Option<&User>,
        key: &str,
        write: bool,
        recursive: bool,
    ) -> bool {
        match user {
            None => self
                .role(GUEST_ROLE)
                .is_ok_and(|role| role_allows(&role, key, write, false)),
            Some(user) => user
                .roles
                .iter()
                .flatten()
                .filter_map(|name| self.role(name).ok())
                .any(|role| role_allows(&role, key, write, recursive)),
        }
    }

    pub fn has_root_role(user: &User) -> bool {
        user.roles.iter().flatten().any(|r| r == ROOT_ROLE)
    }
}

fn check_condition(exists: bool, create: bool) -> Result<(), WriteConflict> {
    match (exists, create) {
        (true, true) => Err(WriteConflict::Exists),
        (false, false) => Err(WriteConflict::Missing),
        _ => Ok(()),
    }
}

fn is_empty(p: &Option<Permissions>) -> bool {
    p.as_ref().is_none_or(|p| {
        p.kv.read.as_ref().is_none_or(Vec::is_empty)
            && p.kv.write.as_ref().is_none_or(Vec::is_empty)
    })
}

fn role_allows(role: &Role, key: &str, write: bool, recursive: bool) -> bool {
    if role.role == ROOT_ROLE {
        return true;
    }
    let patterns = if write {
        &role.permissions.kv.write
    } else {
        &role.permissions.kv.read
    };
    patterns.iter().flatten().any(|pattern| {
        match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            // A recursive request needs a wildcard pattern; a plain one names a single key.
            None => !recursive && key == pattern,
        }
    })
}

/// Records are stored as Go's encoding/json writes them.
fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("an auth record encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str) -> User {
        User {
            user: name.into(),
            password: password.into(),
            ..Default::default()
        }
    }

    fn applied(auth: &mut V2Auth, write: AuthWrite) {
        auth.apply(&write).expect("applies");
    }

    #[test]
    fn users_roles_and_enable_follow_etcds_rules() {
        let mut auth = V2Auth::default();
        assert_eq!(
            auth.decide_enable().unwrap_err().message,
            "auth: No root user available, please create one"
        );
        let (w, created) = auth.decide_put_user(user("foo", "pass")).unwrap();
        assert!(created);
        applied(&mut auth, w);
        assert!(auth.authenticate("foo", "pass").is_some());
        assert!(auth.authenticate("foo", "nope").is_none());

        let role: Role =
            serde_json::from_str(r#"{"role":"foo","permissions":{"kv":{"read":["/foo/*"]}}}"#)
                .unwrap();
        let (w, _) = auth.decide_put_role(role.clone()).unwrap();
        applied(&mut auth, w);
        assert_eq!(auth.decide_put_role(role).unwrap_err().status, 409);
        assert_eq!(
            serde_json::to_string(&auth.role("foo").unwrap()).unwrap(),
            r#"{"role":"foo","permissions":{"kv":{"read":["/foo/*"],"write":null}}}"#
        );

        let grant = User {
            user: "foo".into(),
            grant: Some(vec!["foo".into()]),
            ..Default::default()
        };
        let w = auth.decide_update_user(grant.clone()).unwrap();
        applied(&mut auth, w);
        assert_eq!(
            auth.decide_update_user(grant).unwrap_err().message,
            "auth: Granting duplicate role foo for user foo"
        );

        let (w, _) = auth.decide_put_user(user("root", "a")).unwrap();
        applied(&mut auth, w);
        assert_eq!(auth.user("root").unwrap().roles, Some(vec!["root".into()]));
        for w in auth.decide_enable().unwrap() {
            applied(&mut auth, w);
        }
        assert!(auth.enabled());
        assert_eq!(auth.role_names(), vec!["foo", "guest", "root"]);
        assert_eq!(auth.decide_delete_user("root").unwrap_err().status, 403);

        let foo = auth.authenticate("foo", "pass").unwrap();
        assert!(auth.has_key_access(Some(&foo), "/foo/x", false, false));
        assert!(!auth.has_key_access(Some(&foo), "/foo/x", true, false));
        assert!(!auth.has_key_access(Some(&foo), "/bar", false, false));
        assert!(auth.has_key_access(Some(&foo), "/foo/", false, true));
        assert!(!auth.has_key_access(Some(&foo), "/", false, true));
        // The default guest role may do everything until it is narrowed.
        assert!(auth.has_key_access(None, "/anything", true, false));
        let narrow: Role = serde_json::from_str(
            r#"{"role":"guest","revoke":{"kv":{"read":["/*"],"write":["/*"]}}}"#,
        )
        .unwrap();
        let (w, _) = auth.decide_put_role(narrow).unwrap();
        applied(&mut auth, w);
        assert!(!auth.has_key_access(None, "/anything", false, false));
    }

    #[test]
    fn a_replicated_write_decided_on_stale_state_does_not_apply() {
        let mut a = V2Auth::default();
        let (w, _) = a.decide_put_user(user("x", "p")).unwrap();
        applied(&mut a, w.clone());
        assert_eq!(a.apply(&w), Err(WriteConflict::Exists));
        applied(&mut a, AuthWrite::DeleteUser { name: "x".into() });
        assert_eq!(
            a.apply(&AuthWrite::DeleteUser { name: "x".into() }),
            Err(WriteConflict::Missing)
        );
    }

    #[test]
    fn records_survive_a_reload() {
        let mut a = V2Auth::default();
        let mut stored = BTreeMap::new();
        let (w, _) = a.decide_put_user(user("root", "pw")).unwrap();
        for w in [
            w,
            AuthWrite::PutRole {
                role: default_guest_role(),
                create: true,
            },
            AuthWrite::SetEnabled(true),
        ] {
            let (k, v) = a.apply(&w).unwrap();
            stored.insert(k, v.unwrap());
        }
        let mut b = V2Auth::default();
        for (k, v) in &stored {
            assert!(V2Auth::is_record_key(k));
            b.load_record(k, v).unwrap();
        }
        assert!(b.enabled());
        assert!(b.authenticate("root", "pw").is_some());
        assert_eq!(b.role_names(), vec!["guest", "root"]);
    }
}

//! The auth state every member holds: whether auth is on, its revision, users and roles. Only
//! the apply loop changes it (through [`AuthStore::apply`]), in Raft log order, so every member
//! decides every request the same way; the API edge reads it to check permissions.

use std::collections::BTreeMap;

use prost::Message as _;
use rampart_proto::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use rampart_proto::internal::auth_request::Request;
use rampart_proto::internal::Requester;

use crate::perm::PermissionSet;
use crate::tokens::SimpleTokens;
use crate::AuthError;

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

/// Record keys in the backend's auth table.
const KEY_ENABLED: &str = "enabled";
const KEY_REVISION: &str = "revision";
const USER_PREFIX: &str = "user/";
const ROLE_PREFIX: &str = "role/";

/// What an applied auth request answers (the server wraps it in etcd's response message).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthResponse {
    /// A request that answers nothing but its header.
    Done,
    Token(String),
    Roles(Vec<String>),
    Users(Vec<String>),
    Permissions(Vec<Permission>),
}

/// A change to persist in the backend's auth table (`None`: remove the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    /// Bumped by every change of users, roles or the enabled flag; a request checked at an
    /// older revision is refused when applied. Starts at 1 as etcd's (0 means "no user").
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for AuthStore {
    fn default() -> Self {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

impl AuthStore {
    /// The state the backend's auth records describe.
    pub fn load(records: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<AuthStore, String> {
        let mut store = AuthStore::default();
        for (key, value) in records {
            if key == KEY_ENABLED {
                store.enabled = value.first() == Some(&1);
            } else if key == KEY_REVISION {
                let bytes: [u8; 8] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| "auth revision record is not 8 bytes".to_string())?;
                store.revision = u64::from_be_bytes(bytes);
            } else if let Some(name) = key.strip_prefix(USER_PREFIX) {
                let user =
                    User::decode(value.as_slice()).map_err(|e| format!("user {name}: {e}"))?;
                store.users.insert(name.to_string(), user);
            } else if let Some(name) = key.strip_prefix(ROLE_PREFIX) {
                let role =
                    Role::decode(value.as_slice()).map_err(|e| format!("role {name}: {e}"))?;
                store.roles.insert(name.to_string(), role);
            } else {
                return Err(format!("unknown auth record {key:?}"));
            }
        }
        Ok(store)
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The requester a request is made as: `user` at the current revision.
    pub fn requester(&self, user: String) -> Requester {
        Requester {
            user,
            auth_revision: self.revision,
        }
    }

    /// The stored bcrypt hash of `name`'s password, for checking a password outside any lock.
    /// Fails as etcd's Authenticate does: auth off, no such user, or a user without password.
    pub fn password_hash(&self, name: &str) -> Result<Vec<u8>, AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if no_password(user) {
            return Err(AuthError::AuthFailed);
        }
        Ok(user.password.clone())
    }

    fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// etcd's IsAdminPermitted: with auth on, only a user with the root role.
    pub fn check_admin(&self, requester: Option<&Requester>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let name = requester
            .map(|r| r.user.as_str())
            .filter(|u| !u.is_empty())
            .ok_or(AuthError::UserEmpty)?;
        let user = self.users.get(name).ok_or(AuthError::UserNotFound)?;
        if !user.roles.iter().any(|r| r == ROOT_ROLE) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's isOpPermitted: whether `requester` may read (or write) the keys `[key,
    /// range_end)` (one key when `range_end` is empty; from `key` on when it is `"\0"`).
    pub fn check_keys(
        &self,
        requester: Option<&Requester>,
        key: &[u8],
        range_end: &[u8],
        wanted: PermType,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let requester = match requester {
            Some(r) if r.auth_revision != 0 => r,
            _ => return Err(AuthError::UserEmpty),
        };
        if requester.auth_revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let user = self
            .users
            .get(&requester.user)
            .ok_or(AuthError::PermissionDenied)?;
        if user.roles.iter().any(|r| r == ROOT_ROLE) {
            return Ok(());
        }
        let perms = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter());
        if PermissionSet::of(perms, wanted).allows(key, range_end) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Applies one auth request made by `requester`; returns the answer and the records to
    /// persist. `tokens` gets the token an Authenticate hands out, and loses those a change
    /// invalidates.
    pub fn apply(
        &mut self,
        request: &Request,
        requester: Option<&Requester>,
        tokens: &SimpleTokens,
    ) -> Result<(AuthResponse, Vec<Change>), AuthError> {
        let mut changes = Vec::new();
        let response = match request {
            Request::UserGet(r) => {
                if let Err(e) = self.check_admin(requester) {
                    if requester.is_none_or(|q| q.user != r.name) {
                        return Err(e);
                    }
                }
                let user = self.users.get(&r.name).ok_or(AuthError::UserNotFound)?;
                AuthResponse::Roles(user.roles.clone())
            }
            Request::RoleGet(r) => {
                if let Err(e) = self.check_admin(requester) {
                    if requester.is_none_or(|q| !self.has_role(&q.user, &r.role)) {
                        return Err(e);
                    }
                }
                let role = self.roles.get(&r.role).ok_or(AuthError::RoleNotFound)?;
                AuthResponse::Permissions(role.key_permission.clone())
            }
            Request::Authenticate(r) => {
                if !self.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                if r.checked_revision < self.revision {
                    // Users or roles changed since the password was checked: check again.
                    return Err(AuthError::AuthOldRevision);
                }
                let user = self.users.get(&r.name).ok_or(AuthError::AuthFailed)?;
                if no_password(user) {
                    return Err(AuthError::AuthFailed);
                }
                tokens.assign(&r.token, &r.name);
                AuthResponse::Token(r.token.clone())
            }
            other => {
                self.check_admin(requester)?;
                self.apply_admin(other, tokens, &mut changes)?
            }
        };
        Ok((response, changes))
    }

    /// The requests only a root user may make once auth is on.
    fn apply_admin(
        &mut self,
        request: &Request,
        tokens: &SimpleTokens,
        changes: &mut Vec<Change>,
    ) -> Result<AuthResponse, AuthError> {
        match request {
            Request::Enable(_) => {
                if self.enabled {
                    return Ok(AuthResponse::Done);
                }
                let root = self
                    .users
                    .get(ROOT_USER)
                    .ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.iter().any(|r| r == ROOT_ROLE) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.set_enabled(true, changes);
            }
            Request::Disable(_) => {
                if self.enabled {
                    self.set_enabled(false, changes);
                    tokens.clear();
                }
            }
            Request::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(&r.name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let user = User {
                    name: r.name.clone().into_bytes(),
                    password: if r.no_password {
                        Vec::new()
                    } else {
                        r.hashed_password.clone().into_bytes()
                    },
                    roles: Vec::new(),
                    options: Some(UserAddOptions {
                        no_password: r.no_password,
                    }),
                };
                self.put_user(user, changes);
            }
            Request::UserDelete(r) => {
                if self.enabled && r.name == ROOT_USER {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if self.users.remove(&r.name).is_none() {
                    return Err(AuthError::UserNotFound);
                }
                changes.push(Change {
                    key: format!("{USER_PREFIX}{}", r.name),
                    value: None,
                });
                self.bump(changes);
                tokens.invalidate_user(&r.name);
            }
            Request::UserChangePassword(r) => {
                let mut user = self
                    .users
                    .get(&r.name)
                    .cloned()
                    .ok_or(AuthError::UserNotFound)?;
                user.password = r.hashed_password.clone().into_bytes();
                self.put_user(user, changes);
                tokens.invalidate_user(&r.name);
            }
            Request::UserGrantRole(r) => {
                let mut user = self
                    .users
                    .get(&r.user)
                    .cloned()
                    .ok_or(AuthError::UserNotFound)?;
                if r.role != ROOT_ROLE && !self.roles.contains_key(&r.role) {
                    return Err(AuthError::RoleNotFound);
                }
                if let Err(at) = user.roles.binary_search(&r.role) {
                    user.roles.insert(at, r.role.clone());
                    self.put_user(user, changes);
                }
            }
            Request::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let mut user = self
                    .users
                    .get(&r.name)
                    .cloned()
                    .ok_or(AuthError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|role| *role != r.role);
                if user.roles.len() == before {
                    return Err(AuthError::RoleNotGranted);
                }
                self.put_user(user, changes);
            }
            Request::UserList(_) => {
                return Ok(AuthResponse::Users(self.users.keys().cloned().collect()));
            }
            Request::RoleList(_) => {
                return Ok(AuthResponse::Roles(self.roles.keys().cloned().collect()));
            }
            Request::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.put_role(
                    Role {
                        name: r.name.clone().into_bytes(),
                        key_permission: Vec::new(),
                    },
                    changes,
                );
            }
            Request::RoleDelete(r) => {
                if self.enabled && r.role == ROOT_ROLE {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if self.roles.remove(&r.role).is_none() {
                    return Err(AuthError::RoleNotFound);
                }
                changes.push(Change {
                    key: format!("{ROLE_PREFIX}{}", r.role),
                    value: None,
                });
                // Users lose the deleted role, so a new role of the same name is not granted
                // to them by surprise.
                let holders: Vec<User> = self
                    .users
                    .values()
                    .filter(|u| u.roles.contains(&r.role))
                    .cloned()
                    .collect();
                for mut user in holders {
                    user.roles.retain(|role| *role != r.role);
                    self.store_user(user, changes);
                }
                self.bump(changes);
            }
            Request::RoleGrantPermission(r) => {
                let mut role = self
                    .roles
                    .get(&r.name)
                    .cloned()
                    .ok_or(AuthError::RoleNotFound)?;
                let perm = r.perm.clone().unwrap_or_default();
                match role
                    .key_permission
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        let at = role.key_permission.partition_point(|p| p.key <= perm.key);
                        role.key_permission.insert(at, perm);
                    }
                }
                self.put_role(role, changes);
            }
            Request::RoleRevokePermission(r) => {
                let mut role = self
                    .roles
                    .get(&r.role)
                    .cloned()
                    .ok_or(AuthError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission
                    .retain(|p| p.key != r.key || p.range_end != r.range_end);
                if role.key_permission.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                self.put_role(role, changes);
            }
            Request::UserGet(_) | Request::RoleGet(_) | Request::Authenticate(_) => {
                unreachable!("answered by AuthStore::apply")
            }
        }
        Ok(AuthResponse::Done)
    }

    fn set_enabled(&mut self, enabled: bool, changes: &mut Vec<Change>) {
        self.enabled = enabled;
        changes.push(Change {
            key: KEY_ENABLED.to_string(),
            value: Some(vec![u8::from(enabled)]),
        });
        self.bump(changes);
    }

    fn bump(&mut self, changes: &mut Vec<Change>) {
        self.revision += 1;
        changes.push(Change {
            key: KEY_REVISION.to_string(),
            value: Some(self.revision.to_be_bytes().to_vec()),
        });
    }

    fn store_user(&mut self, user: User, changes: &mut Vec<Change>) {
        let name = String::from_utf8_lossy(&user.name).into_owned();
        changes.push(Change {
            key: format!("{USER_PREFIX}{name}"),
            value: Some(user.encode_to_vec()),
        });
        self.users.insert(name, user);
    }

    fn put_user(&mut self, user: User, changes: &mut Vec<Change>) {
        self.store_user(user, changes);
        self.bump(changes);
    }

    fn put_role(&mut self, role: Role, changes: &mut Vec<Change>) {
        let name = String::from_utf8_lossy(&role.name).into_owned();
        changes.push(Change {
            key: format!("{ROLE_PREFIX}{name}"),
            value: Some(role.encode_to_vec()),
        });
        self.roles.insert(name, role);
        self.bump(changes);
    }
}

fn no_password(user: &User) -> bool {
    user.options.as_ref().is_some_and(|o| o.no_password)
}

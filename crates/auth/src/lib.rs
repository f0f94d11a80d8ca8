//! etcd's v3 auth: users, roles, key permissions, the enabled flag, and simple tokens.
//!
//! Owns: the auth state and the meaning of the Auth service's requests ([`AuthStore`]), key
//! permission checks ([`perm`]), tokens ([`SimpleTokens`], [`jwt::JwtTokens`]), password hashes ([`password`]),
//! and etcd's auth error texts and codes ([`AuthError`]). Does not own: where the records are
//! stored (`rampart-mvcc`'s auth table, written by `rampart-apply`), or reading tokens and
//! client certificates off requests (`rampart-server`).

mod error;
pub mod jwt;
pub mod password;
pub mod perm;
mod store;
mod tokens;

pub use error::AuthError;
pub use rampart_proto::authpb::permission::Type as PermType;
pub use store::{AuthResponse, AuthStore, Change, ROOT_ROLE, ROOT_USER};
pub use tokens::{SimpleTokens, DEFAULT_TOKEN_TTL};

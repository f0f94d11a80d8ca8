//! `rampart server`: one member of a Raft-replicated, etcd-compatible key-value store.
//!
//! Owns: bootstrapping a member from its data dir ([`bootstrap`]), the server core that proposes
//! requests and waits for their results ([`etcdserver`]), the apply loop ([`apply_loop`]), the
//! client APIs ([`api`]) and the listeners ([`listen`]).
//! Does not own: Raft itself and the peer transport (`rampart-raft-node`), the WAL
//! (`rampart-wal`), the MVCC store and the meaning of KV requests (`rampart-mvcc`,
//! `rampart-apply`), TLS (`rampart-tls`), flag parsing (`rampart-config`).

pub mod api;
pub mod apply_loop;
pub mod auth;
pub mod bootstrap;
pub mod conf_recovery;
pub mod errors;
pub mod etcdserver;
pub mod ids;
pub mod leases;
pub mod listen;
pub mod membership;
pub mod quota;
pub mod run;
pub mod settings;
pub mod watch;

pub use errors::ServerError;
pub use run::{run, RunningServer};
pub use settings::ServerSettings;

/// The etcd server version Rampart speaks (clients check it for feature support).
pub const ETCD_API_VERSION: &str = "3.4.23";
/// The cluster version reported next to it.
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";

//! Server errors and their etcd wire form: the exact texts and gRPC codes of etcd's `rpctypes`,
//! because clients (etcdctl, clientv3, Kubernetes) match on them.

use tonic::{Code, Status};

/// etcd's texts for the errors the server itself raises (apply errors carry their own).
pub mod text {
    pub const NO_LEADER: &str = "etcdserver: no leader";
    pub const TIMEOUT: &str = "etcdserver: request timed out";
    pub const STOPPED: &str = "etcdserver: server stopped";
    pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
    pub const NOT_LEADER: &str = "etcdserver: not leader";
    pub const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
    pub const BAD_LEADER_TRANSFEREE: &str = "etcdserver: bad leader transferee";
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting or data-dir problem found at start; the text says what to do.
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Node(#[from] rampart_raft_node::NodeError),
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Wal(#[from] rampart_wal::WalError),
}

impl ServerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ServerError {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The gRPC status etcd returns for a consensus-layer failure.
pub fn node_status(e: &rampart_raft_node::NodeError) -> Status {
    use rampart_raft_node::NodeError;
    match e {
        NodeError::NoLeader => Status::new(Code::Unavailable, text::NO_LEADER),
        NodeError::Timeout => Status::new(Code::Unavailable, text::TIMEOUT),
        NodeError::Stopped => Status::new(Code::Unavailable, text::STOPPED),
        other => Status::new(Code::Unavailable, format!("etcdserver: {other}")),
    }
}

pub fn timeout() -> Status {
    Status::new(Code::Unavailable, text::TIMEOUT)
}

pub fn request_too_large() -> Status {
    Status::new(Code::InvalidArgument, text::REQUEST_TOO_LARGE)
}

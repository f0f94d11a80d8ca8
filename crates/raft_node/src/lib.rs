//! The consensus node and its peer transport.
//!
//! Owns: the Raft loop around raft-rs's `RawNode` ([`node`]), the in-memory Raft log rebuilt from
//! our WAL ([`storage`]), and the member-to-member transport over mutual TLS ([`transport`]).
//! Does not own: what the log entries mean (the server's apply loop decodes and applies them) or
//! how the WAL lays out bytes (`rampart-wal`).

pub mod logger;
pub mod node;
pub mod recovery;
pub mod storage;
pub mod transport;

pub use node::{
    start, Committed, ElectionTimeout, MessageSink, NodeConfig, NodeStatus, RaftCore, RaftHandle,
};
pub use storage::RaftStorage;

/// Errors of the consensus layer, as the server turns them into etcd's errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// No leader is known, so a proposal cannot be forwarded (etcd: "etcdserver: no leader").
    #[error("no leader")]
    NoLeader,
    #[error("the raft node has stopped")]
    Stopped,
    #[error("request timed out")]
    Timeout,
    #[error("raft: {0}")]
    Raft(String),
    #[error("raft log persistence failed: {0}")]
    Wal(String),
    #[error("cannot decode a raft log record: {0}")]
    Decode(String),
    #[error("the state machine could not install the snapshot: {0}")]
    StateMachine(String),
    #[error("cannot start the raft thread: {0}")]
    Thread(std::sync::Arc<std::io::Error>),
}

impl From<raft::Error> for NodeError {
    fn from(e: raft::Error) -> Self {
        match e {
            raft::Error::ProposalDropped => NodeError::NoLeader,
            other => NodeError::Raft(other.to_string()),
        }
    }
}

impl From<rampart_wal::WalError> for NodeError {
    fn from(e: rampart_wal::WalError) -> Self {
        NodeError::Wal(e.to_string())
    }
}

impl From<std::io::Error> for NodeError {
    fn from(e: std::io::Error) -> Self {
        NodeError::Thread(std::sync::Arc::new(e))
    }
}

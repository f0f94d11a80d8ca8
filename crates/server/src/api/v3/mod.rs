//! etcd's v3 gRPC services. Handlers validate, then either read locally (serializable, or after a
//! ReadIndex barrier) or propose through Raft and wait for the apply result.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod recipes;
pub mod watch;

use rampart_apply::ApplyError;
use tonic::Status;

/// An apply/validation error as etcd sends it: its exact text and gRPC code.
pub fn apply_status(e: &ApplyError) -> Status {
    Status::new(e.grpc_code(), e.to_string())
}

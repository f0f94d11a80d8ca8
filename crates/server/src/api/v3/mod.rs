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

/// Who made a request, as far as the member's own services need to know when they act for it
/// (the JSON gateway, the Lock and Election recipes): its metadata (the auth token) and its
/// connection (the client certificate's CN).
#[derive(Clone)]
pub struct Caller {
    pub metadata: tonic::metadata::MetadataMap,
    pub conn: Option<rampart_tls::incoming::ConnInfo>,
}

impl Caller {
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        Caller {
            metadata: request.metadata().clone(),
            conn: request
                .extensions()
                .get::<rampart_tls::incoming::ConnInfo>()
                .cloned(),
        }
    }

    /// `message` as a request of this caller.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        if let Some(conn) = &self.conn {
            request.extensions_mut().insert(conn.clone());
        }
        request
    }
}

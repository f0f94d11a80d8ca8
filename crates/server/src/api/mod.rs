//! Client-facing APIs: etcd's v3 gRPC services ([`v3`]) and the plain HTTP endpoints ([`http`])
//! served on the same client port.

pub mod gateway;
pub mod http;
pub mod v2;
pub mod v2_auth;
pub mod v3;

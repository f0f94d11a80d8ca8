//! etcd's v3 API as Rust types, generated from our own `.proto` files (written from etcd 3.4's
//! API reference, wire-identical): packages `etcdserverpb` (KV, Watch, Lease, Cluster,
//! Maintenance, Auth), `mvccpb`, `authpb`, `v3lockpb` (Lock) and `v3electionpb` (Election), plus
//! Rampart's internal messages (Raft log entries, peer transport).
//!
//! Owns: message and service definitions only. Does not own: what the requests mean (see
//! `rampart-apply`) or how they are served (`rampart-server`).

#![allow(clippy::all, clippy::pedantic)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// Rampart's own packages (`rampart.internal`, `rampart.peer`); nested as their package
/// names so generated paths to the etcd types resolve.
pub mod rampart {
    /// Rampart's Raft log entries.
    pub mod internal {
        tonic::include_proto!("rampart.internal");
    }

    /// Rampart's member-to-member protocol.
    pub mod peer {
        tonic::include_proto!("rampart.peer");
    }
}

pub use rampart::{internal, peer};

/// The encoded `FileDescriptorSet` of every file above (for reflection and the JSON gateway).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

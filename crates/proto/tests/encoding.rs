//! Our generated types against hand-computed protobuf bytes: the field numbers, wire types and
//! enum values must be etcd 3.4's exactly, or real etcd clients would misread every message.

use prost::Message;
use rampart_proto::etcdserverpb::{
    compare, request_op, watch_request, Compare, LeaseGrantRequest, Member, PutRequest, RequestOp,
    StatusResponse, TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use rampart_proto::internal::{raft_request, RaftRequest};
use rampart_proto::mvccpb::{event::EventType, Event, KeyValue};
use rampart_proto::v3electionpb::LeaderKey;
use rampart_proto::v3lockpb::LockRequest;

/// Encodes `message`, compares with `expected`, and checks the bytes decode back to `message`.
fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M, expected: &[u8]) {
    let encoded = message.encode_to_vec();
    assert_eq!(encoded, expected, "encoding of {message:?}");
    let decoded = M::decode(expected).expect("decode hand-computed bytes");
    assert_eq!(&decoded, message);
}

#[test]
fn put_request_fields_are_etcds() {
    let put = PutRequest {
        key: b"a".to_vec(),
        value: b"b".to_vec(),
        lease: 5,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    // key=1 (bytes), value=2 (bytes), lease=3 (varint), prev_kv=4, ignore_lease=6.
    assert_wire(
        &put,
        &[
            0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x18, 0x05, 0x20, 0x01, 0x30, 0x01,
        ],
    );
}

#[test]
fn compare_target_union_and_range_end_use_etcds_numbers() {
    let compare = Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Mod as i32,
        key: b"k".to_vec(),
        range_end: b"z".to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(7)),
    };
    // result=1 GREATER(1), target=2 MOD(2), key=3, mod_revision=6, range_end=64 (tag 0x82 0x04).
    assert_wire(
        &compare,
        &[
            0x08, 0x01, 0x10, 0x02, 0x1a, 0x01, b'k', 0x30, 0x07, 0x82, 0x04, 0x01, b'z',
        ],
    );

    // A oneof member is written even when it holds its default: `value = ""` must stay set.
    let empty_value = Compare {
        target: compare::CompareTarget::Value as i32,
        target_union: Some(compare::TargetUnion::Value(Vec::new())),
        ..Default::default()
    };
    assert_wire(&empty_value, &[0x10, 0x03, 0x3a, 0x00]);

    for (union, tag) in [
        (compare::TargetUnion::Version(1), 0x20),
        (compare::TargetUnion::CreateRevision(1), 0x28),
        (compare::TargetUnion::Lease(1), 0x40),
    ] {
        let compare = Compare {
            target_union: Some(union),
            ..Default::default()
        };
        assert_wire(&compare, &[tag, 0x01]);
    }
}

#[test]
fn txn_request_nests_ops_under_etcds_fields() {
    let txn = TxnRequest {
        compare: vec![],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(Default::default())),
        }],
    };
    // success=2 { request_put=2 { key=1 } }, failure=3 { request_delete_range=3 {} }.
    assert_wire(
        &txn,
        &[
            0x12, 0x05, 0x12, 0x03, 0x0a, 0x01, b'a', 0x1a, 0x02, 0x1a, 0x00,
        ],
    );
}

#[test]
fn watch_messages_use_etcds_fields() {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"k".to_vec(),
                filters: vec![
                    rampart_proto::etcdserverpb::watch_create_request::FilterType::Nodelete as i32,
                ],
                prev_kv: true,
                watch_id: 3,
                ..Default::default()
            },
        )),
    };
    // create_request=1 { key=1, filters=5 (packed), prev_kv=6, watch_id=7 }.
    assert_wire(
        &create,
        &[
            0x0a, 0x0a, 0x0a, 0x01, b'k', 0x2a, 0x01, 0x01, 0x30, 0x01, 0x38, 0x03,
        ],
    );

    let response = WatchResponse {
        watch_id: 2,
        compact_revision: 4,
        cancel_reason: "x".to_string(),
        fragment: true,
        events: vec![Event {
            r#type: EventType::Delete as i32,
            kv: None,
            prev_kv: None,
        }],
        ..Default::default()
    };
    // watch_id=2, compact_revision=5, cancel_reason=6, fragment=7, events=11 { type=1 DELETE(1) }.
    assert_wire(
        &response,
        &[
            0x10, 0x02, 0x28, 0x04, 0x32, 0x01, b'x', 0x38, 0x01, 0x5a, 0x02, 0x08, 0x01,
        ],
    );
}

#[test]
fn key_value_and_lease_and_member_and_status_fields() {
    let kv = KeyValue {
        key: b"k".to_vec(),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: b"v".to_vec(),
        lease: 6,
    };
    assert_wire(
        &kv,
        &[
            0x0a, 0x01, b'k', 0x10, 0x02, 0x18, 0x03, 0x20, 0x04, 0x2a, 0x01, b'v', 0x30, 0x06,
        ],
    );

    // TTL=1, ID=2.
    assert_wire(
        &LeaseGrantRequest { ttl: 10, id: 9 },
        &[0x08, 0x0a, 0x10, 0x09],
    );

    let member = Member {
        id: 1,
        name: "n".to_string(),
        peer_ur_ls: vec!["p".to_string()],
        client_ur_ls: vec!["c".to_string()],
        is_learner: true,
    };
    assert_wire(
        &member,
        &[
            0x08, 0x01, 0x12, 0x01, b'n', 0x1a, 0x01, b'p', 0x22, 0x01, b'c', 0x28, 0x01,
        ],
    );

    let status = StatusResponse {
        raft_applied_index: 1,
        errors: vec!["e".to_string()],
        db_size_in_use: 2,
        is_learner: true,
        ..Default::default()
    };
    // raftAppliedIndex=7, errors=8, dbSizeInUse=9, isLearner=10.
    assert_wire(
        &status,
        &[0x38, 0x01, 0x42, 0x01, b'e', 0x48, 0x02, 0x50, 0x01],
    );
}

#[test]
fn lock_and_election_fields() {
    assert_wire(
        &LockRequest {
            name: b"l".to_vec(),
            lease: 1,
        },
        &[0x0a, 0x01, b'l', 0x10, 0x01],
    );
    assert_wire(
        &LeaderKey {
            name: b"e".to_vec(),
            key: b"k".to_vec(),
            rev: 3,
            lease: 4,
        },
        &[0x0a, 0x01, b'e', 0x12, 0x01, b'k', 0x18, 0x03, 0x20, 0x04],
    );
}

#[test]
fn raft_request_envelope_fields() {
    let entry = RaftRequest {
        id: 1,
        request: Some(raft_request::Request::Put(PutRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })),
        requester: None,
    };
    // id=1, put=3 { key=1 }.
    assert_wire(&entry, &[0x08, 0x01, 0x1a, 0x03, 0x0a, 0x01, b'a']);

    let expired = RaftRequest {
        id: 0,
        request: Some(raft_request::Request::LeaseExpired(
            rampart_proto::internal::LeaseExpired { ids: vec![5, 6] },
        )),
        requester: None,
    };
    // lease_expired=10 { ids=1 packed }.
    assert_wire(&expired, &[0x52, 0x04, 0x0a, 0x02, 0x05, 0x06]);
}

#[test]
fn file_descriptor_set_describes_every_package_and_service() {
    let set = prost_types::FileDescriptorSet::decode(rampart_proto::FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET decodes");
    let mut services: Vec<String> = set
        .file
        .iter()
        .flat_map(|file| {
            let package = file.package().to_string();
            file.service
                .iter()
                .map(move |service| format!("{package}.{}", service.name()))
        })
        .collect();
    services.sort();
    for expected in [
        "etcdserverpb.Auth",
        "etcdserverpb.Cluster",
        "etcdserverpb.KV",
        "etcdserverpb.Lease",
        "etcdserverpb.Maintenance",
        "etcdserverpb.Watch",
        "v3electionpb.Election",
        "v3lockpb.Lock",
    ] {
        assert!(
            services.iter().any(|name| name == expected),
            "{expected} missing from {services:?}"
        );
    }
    let packages: Vec<&str> = set.file.iter().map(|file| file.package()).collect();
    for expected in ["mvccpb", "authpb", "rampart.internal"] {
        assert!(
            packages.contains(&expected),
            "{expected} missing from {packages:?}"
        );
    }
}

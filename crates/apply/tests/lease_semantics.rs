//! Leases through the Applier: grant, attach by put, revoke (keys deleted in one revision),
//! leader-decided expiry, and leases surviving a reopen and a snapshot restore.

mod common;

use common::{put_req, Harness};
use rampart_apply::{Applier, ApplyError, Response};
use rampart_mvcc::Durability;
use rampart_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
};
use rampart_proto::internal::{raft_request::Request, LeaseExpired, RaftRequest};
use tonic::Code;

fn grant(h: &mut Harness, id: i64, ttl: i64) -> Result<Response, ApplyError> {
    h.apply(Request::LeaseGrant(LeaseGrantRequest { ttl, id }))
}

fn put_with_lease(h: &mut Harness, key: &str, lease: i64) -> Result<Response, ApplyError> {
    h.apply(Request::Put(PutRequest {
        lease,
        ..put_req(key, "v")
    }))
}

fn live_keys(h: &Harness) -> Vec<String> {
    h.range(RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    })
    .unwrap()
    .kvs
    .into_iter()
    .map(|kv| String::from_utf8(kv.key).unwrap())
    .collect()
}

#[test]
fn grant_refuses_duplicates_and_huge_ttls_with_etcds_errors() {
    let mut h = Harness::new();
    let Response::LeaseGrant(g) = grant(&mut h, 5, 30).unwrap() else {
        panic!()
    };
    assert_eq!((g.id, g.ttl, g.error.as_str()), (5, 30, ""));
    let dup = grant(&mut h, 5, 30).unwrap_err();
    assert_eq!(dup.to_string(), "etcdserver: lease already exists");
    assert_eq!(dup.grpc_code(), Code::FailedPrecondition);
    let huge = grant(&mut h, 6, 9_000_000_001).unwrap_err();
    assert_eq!(huge.to_string(), "etcdserver: too large lease TTL");
    assert_eq!(huge.grpc_code(), Code::OutOfRange);
    assert_eq!(h.applier.current_revision(), 1, "grants write no revision");
    assert_eq!(h.applier.lessor().ids(), vec![5]);
}

#[test]
fn revoke_deletes_every_attached_key_in_one_revision() {
    let mut h = Harness::new();
    grant(&mut h, 7, 60).unwrap();
    grant(&mut h, 8, 60).unwrap();
    put_with_lease(&mut h, "a", 7).unwrap();
    put_with_lease(&mut h, "b", 7).unwrap();
    put_with_lease(&mut h, "c", 7).unwrap();
    // Overwriting moves "c" to lease 8; a plain put detaches "b".
    put_with_lease(&mut h, "c", 8).unwrap();
    h.put("b", "plain");
    h.put("d", "plain");
    assert_eq!(h.applier.lessor().keys(7).unwrap(), vec![b"a".to_vec()]);
    let before = h.applier.current_revision();
    let Response::LeaseRevoke(r) = h
        .apply(Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.header.unwrap().revision, before + 1);
    assert_eq!(live_keys(&h), vec!["b", "c", "d"]);
    let again = h
        .apply(Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }))
        .unwrap_err();
    assert_eq!(again.to_string(), "etcdserver: requested lease not found");
    assert_eq!(
        put_with_lease(&mut h, "x", 7).unwrap_err(),
        ApplyError::LeaseNotFound
    );
}

#[test]
fn expiry_revokes_each_lease_in_its_own_revision_and_skips_gone_ones() {
    let mut h = Harness::new();
    grant(&mut h, 1, 60).unwrap();
    grant(&mut h, 2, 60).unwrap();
    put_with_lease(&mut h, "one", 1).unwrap();
    put_with_lease(&mut h, "two", 2).unwrap();
    h.put("stay", "v");
    let before = h.applier.current_revision();
    h.apply(Request::LeaseExpired(LeaseExpired {
        ids: vec![1, 2, 99],
    }))
    .unwrap();
    assert_eq!(h.applier.current_revision(), before + 2);
    assert_eq!(live_keys(&h), vec!["stay"]);
    assert!(h.applier.lessor().ids().is_empty());
}

#[test]
fn leases_and_attachments_survive_reopen_and_snapshot_restore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let apply = |a: &mut Applier, index: u64, r: Request| {
        let entry = (
            index,
            RaftRequest {
                id: index,
                request: Some(r),
                requester: None,
            },
        );
        a.apply_batch(&[entry], index, Durability::Immediate)
            .unwrap()
            .pop()
            .unwrap()
            .result
            .unwrap()
    };
    let snapshot = {
        let mut a = Applier::open(&path).unwrap();
        apply(
            &mut a,
            1,
            Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 3 }),
        );
        apply(
            &mut a,
            2,
            Request::Put(PutRequest {
                lease: 3,
                ..put_req("k", "v")
            }),
        );
        a.snapshot_bytes().unwrap()
    };
    let reopened = Applier::open(&path).unwrap();
    assert_eq!(reopened.lessor().ids(), vec![3]);
    assert_eq!(reopened.lessor().keys(3).unwrap(), vec![b"k".to_vec()]);
    drop(reopened);

    let other = tempfile::tempdir().unwrap();
    let mut restored = Applier::open(&other.path().join("db")).unwrap();
    restored.restore(&snapshot).unwrap();
    assert_eq!(restored.lessor().keys(3).unwrap(), vec![b"k".to_vec()]);
    apply(
        &mut restored,
        3,
        Request::LeaseRevoke(LeaseRevokeRequest { id: 3 }),
    );
    let left = restored
        .range(&RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(left.count, 0);
}

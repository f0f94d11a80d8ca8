//! etcd 3.4's Range/Put/DeleteRange/Compact semantics through the Applier: every option and
//! error the task lists, checked against values worked out from etcd's rules (the sort quirk,
//! lease-before-key order and compaction errors also checked against a real etcd 3.4.23).

mod common;

use common::{filled, keys, put_req, Harness};
use rampart_apply::{validate, ApplyError, Response};
use rampart_proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use rampart_proto::internal::raft_request::Request;
use tonic::Code;

#[test]
fn puts_bump_revisions_and_versions_and_return_prev_kv() {
    let mut h = Harness::new();
    assert_eq!(h.applier.current_revision(), 1, "etcd starts at revision 1");
    assert_eq!(h.put("a", "1"), 2);
    let resp = h
        .apply(Request::Put(PutRequest {
            prev_kv: true,
            ..put_req("a", "2")
        }))
        .unwrap();
    let Response::Put(p) = resp else { panic!() };
    assert_eq!(p.header.unwrap().revision, 3);
    let prev = p.prev_kv.unwrap();
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision, prev.version),
        (&b"1"[..], 2, 1)
    );
    let got = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    let kv = &got.kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(got.header.unwrap().revision, 3);
}

#[test]
fn put_errors_follow_etcd_order_and_codes() {
    let mut h = Harness::new();
    let ignore_value = PutRequest {
        key: b"missing".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        h.apply(Request::Put(ignore_value.clone())),
        Err(ApplyError::KeyNotFound)
    );
    // The lease is checked before the key (etcd's order).
    let with_lease = PutRequest {
        lease: 7,
        ..ignore_value
    };
    let err = h.apply(Request::Put(with_lease)).unwrap_err();
    assert_eq!(err, ApplyError::LeaseNotFound);
    assert_eq!(err.to_string(), "etcdserver: requested lease not found");
    assert_eq!(err.grpc_code(), Code::NotFound);
    assert_eq!(
        ApplyError::KeyNotFound.to_string(),
        "etcdserver: key not found"
    );
    assert_eq!(ApplyError::KeyNotFound.grpc_code(), Code::InvalidArgument);
    assert_eq!(h.applier.current_revision(), 1, "failed puts write nothing");

    // ignore_value / ignore_lease keep the stored value / lease.
    h.put("k", "v1");
    let resp = h
        .apply(Request::Put(PutRequest {
            key: b"k".to_vec(),
            ignore_value: true,
            prev_kv: true,
            ..Default::default()
        }))
        .unwrap();
    let Response::Put(p) = resp else { panic!() };
    assert_eq!(p.prev_kv.unwrap().value, b"v1");
    let got = h
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (got.kvs[0].value.as_slice(), got.kvs[0].version),
        (&b"v1"[..], 2)
    );
}

#[test]
fn puts_may_name_only_granted_leases() {
    let mut h = Harness::new();
    let granted = h
        .apply(Request::LeaseGrant(
            rampart_proto::etcdserverpb::LeaseGrantRequest { ttl: 60, id: 42 },
        ))
        .unwrap();
    let Response::LeaseGrant(g) = granted else {
        panic!()
    };
    assert_eq!((g.id, g.ttl), (42, 60));
    assert!(h
        .apply(Request::Put(PutRequest {
            lease: 42,
            ..put_req("a", "v")
        }))
        .is_ok());
    assert_eq!(
        h.apply(Request::Put(PutRequest {
            lease: 43,
            ..put_req("a", "v")
        })),
        Err(ApplyError::LeaseNotFound)
    );
    let got = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(got.kvs[0].lease, 42);
}

#[test]
fn range_end_prefix_from_key_limit_count_and_more() {
    let h = filled();
    let all = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"e".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&all.kvs), ["a", "b", "c", "d"]);
    assert_eq!((all.count, all.more), (4, false));
    let from = h
        .range(RangeRequest {
            key: b"c".to_vec(),
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&from.kvs), ["c", "d", "other"]);
    let limited = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"e".to_vec(),
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&limited.kvs), ["a", "b"]);
    assert_eq!((limited.count, limited.more), (4, true));
    let exact = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"e".to_vec(),
            limit: 4,
            ..Default::default()
        })
        .unwrap();
    assert!(!exact.more);
    let count_only = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"e".to_vec(),
            limit: 1,
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert!(count_only.kvs.is_empty());
    assert_eq!((count_only.count, count_only.more), (4, false));
    let keys_only = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    assert!(keys_only.kvs[0].value.is_empty());
    assert_eq!(keys_only.kvs[0].version, 2);
    let backwards = h
        .range(RangeRequest {
            key: b"d".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert!(backwards.kvs.is_empty());
}

#[test]
fn sorting_follows_etcd_including_the_limit_quirk() {
    let h = filled();
    let base = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"e".to_vec(),
        ..Default::default()
    };
    let by_value_desc = h
        .range(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Value as i32,
            limit: 2,
            ..base.clone()
        })
        .unwrap();
    // An explicit order fetches everything, sorts, then truncates.
    assert_eq!(keys(&by_value_desc.kvs), ["c", "b"]);
    assert!(by_value_desc.more);
    // Target VALUE with order NONE sorts ascending, but only the first limit+1 keys by key.
    let quirk = h
        .range(RangeRequest {
            sort_target: SortTarget::Value as i32,
            limit: 2,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(
        keys(&quirk.kvs),
        ["a", "b"],
        "a=2, b=3, c=4 sorted by value, cut to 2"
    );
    assert!(quirk.more);
    let by_mod = h
        .range(RangeRequest {
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Mod as i32,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&by_mod.kvs), ["b", "d", "c", "a"]);
    let by_create_desc = h
        .range(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&by_create_desc.kvs), ["c", "d", "a", "b"]);
    let by_key_desc = h
        .range(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            limit: 1,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&by_key_desc.kvs), ["d"]);
    let by_version = h
        .range(RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Version as i32,
            limit: 1,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&by_version.kvs), ["a"]);
    let bad = RangeRequest {
        sort_order: 9,
        ..base
    };
    assert_eq!(validate::range(&bad), Err(ApplyError::InvalidSortOption));
    assert_eq!(
        ApplyError::InvalidSortOption.to_string(),
        "etcdserver: invalid sort option"
    );
}

#[test]
fn revision_filters_count_before_filtering() {
    let h = filled();
    let base = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"e".to_vec(),
        ..Default::default()
    };
    let min_mod = h
        .range(RangeRequest {
            min_mod_revision: 5,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&min_mod.kvs), ["a", "c"]);
    assert_eq!(
        min_mod.count, 4,
        "etcd's count ignores the revision filters"
    );
    let max_create = h
        .range(RangeRequest {
            max_create_revision: 3,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&max_create.kvs), ["a", "b"]);
    let window = h
        .range(RangeRequest {
            min_create_revision: 4,
            max_mod_revision: 4,
            ..base
        })
        .unwrap();
    assert_eq!(keys(&window.kvs), ["d"]);
}

#[test]
fn historical_compacted_and_future_revisions() {
    let mut h = filled();
    let old = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(old.kvs[0].value, b"5");
    assert_eq!(
        old.header.unwrap().revision,
        7,
        "the header carries the current revision"
    );
    let future = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 8,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        future.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(future.grpc_code(), Code::OutOfRange);
    let Response::Compaction(c) = h
        .apply(Request::Compaction(CompactionRequest {
            revision: 5,
            physical: true,
        }))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(c.header.unwrap().revision, 7);
    let compacted = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 4,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        compacted.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(compacted.grpc_code(), Code::OutOfRange);
    let at_compaction = h
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(at_compaction.kvs[0].value, b"5");
    assert_eq!(
        h.apply(Request::Compaction(CompactionRequest {
            revision: 5,
            physical: false
        })),
        Err(ApplyError::Compacted)
    );
    assert_eq!(
        h.apply(Request::Compaction(CompactionRequest {
            revision: 99,
            physical: false
        })),
        Err(ApplyError::FutureRevision)
    );
    assert!(
        matches!(h.applier.hash_kv(5), Err(ApplyError::Compacted)),
        "etcd refuses HashKV at the compacted revision"
    );
    assert_eq!(h.applier.hash_kv(0).unwrap().compact_revision, 5);
}

#[test]
fn delete_range_returns_prev_kvs_and_writes_nothing_when_nothing_matches() {
    let mut h = filled();
    let resp = h
        .apply(Request::DeleteRange(DeleteRangeRequest {
            key: b"x".to_vec(),
            ..Default::default()
        }))
        .unwrap();
    let Response::DeleteRange(d) = resp else {
        panic!()
    };
    assert_eq!((d.deleted, d.header.unwrap().revision), (0, 7));
    let resp = h
        .apply(Request::DeleteRange(DeleteRangeRequest {
            key: b"b".to_vec(),
            range_end: b"d".to_vec(),
            prev_kv: true,
        }))
        .unwrap();
    let Response::DeleteRange(d) = resp else {
        panic!()
    };
    assert_eq!((d.deleted, d.header.unwrap().revision), (2, 8));
    assert_eq!(keys(&d.prev_kvs), ["b", "c"]);
    let applied = h.apply(Request::Put(put_req("b", "again"))).unwrap();
    let Response::Put(_) = applied else { panic!() };
    let got = h
        .range(RangeRequest {
            key: b"b".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (got.kvs[0].version, got.kvs[0].create_revision),
        (1, 9),
        "a re-created key starts over"
    );
}

#[test]
fn a_batch_is_answered_once_with_every_request() {
    use rampart_proto::internal::RaftRequest;
    let mut h = Harness::new();
    let requests: Vec<(u64, RaftRequest)> = (1..=3)
        .map(|i| {
            (
                i,
                RaftRequest {
                    id: 100 + i,
                    request: Some(Request::Put(put_req(&format!("k{i}"), "v"))),
                    requester: None,
                },
            )
        })
        .collect();
    let mut answered = Vec::new();
    let mut calls = 0;
    let applied =
        h.applier
            .apply_batch_answering(&requests, 3, rampart_mvcc::Durability::None, |applied| {
                calls += 1;
                answered.extend(applied.iter().map(|a| (a.id, a.result.is_ok())));
            });
    assert_eq!(calls, 1);
    assert_eq!(answered, vec![(101, true), (102, true), (103, true)]);
    assert_eq!(applied.unwrap().len(), 3);
    assert_eq!(h.applier.current_revision(), 4);
    assert_eq!(h.applier.consistent_index(), 3);
}

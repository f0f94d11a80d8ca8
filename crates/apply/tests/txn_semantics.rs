//! etcd 3.4's Txn semantics through the Applier: compares, nested txns, one revision per txn,
//! all-or-nothing, and the validation done before proposing.

mod common;

use common::{filled, op, put_req, Harness};
use rampart_apply::{validate, ApplyError, Response};
use rampart_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use rampart_proto::internal::raft_request::Request;
use tonic::Code;

fn cmp(key: &str, target: CompareTarget, result: CompareResult, value: TargetUnion) -> Compare {
    Compare {
        key: key.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(value),
        range_end: Vec::new(),
    }
}

#[test]
fn txn_compares_every_target_and_writes_at_one_revision() {
    let mut h = filled();
    let holds = |h: &mut Harness, c: Compare| -> bool {
        let t = TxnRequest {
            compare: vec![c],
            ..Default::default()
        };
        let Response::Txn(t) = h.apply(Request::Txn(t)).unwrap() else {
            panic!()
        };
        t.succeeded
    };
    use CompareResult::*;
    use CompareTarget as T;
    assert!(holds(
        &mut h,
        cmp("a", T::Value, Equal, TargetUnion::Value(b"2".to_vec()))
    ));
    assert!(holds(
        &mut h,
        cmp("a", T::Value, Greater, TargetUnion::Value(b"1".to_vec()))
    ));
    assert!(holds(
        &mut h,
        cmp("a", T::Version, Equal, TargetUnion::Version(2))
    ));
    assert!(holds(
        &mut h,
        cmp("a", T::Create, Less, TargetUnion::CreateRevision(4))
    ));
    assert!(holds(
        &mut h,
        cmp("a", T::Mod, NotEqual, TargetUnion::ModRevision(3))
    ));
    assert!(holds(
        &mut h,
        cmp("a", T::Lease, Equal, TargetUnion::Lease(0))
    ));
    // A missing key: value compares fail, others compare against zero.
    assert!(!holds(
        &mut h,
        cmp("zz", T::Value, NotEqual, TargetUnion::Value(b"x".to_vec()))
    ));
    assert!(holds(
        &mut h,
        cmp("zz", T::Create, Equal, TargetUnion::CreateRevision(0))
    ));
    // With a range: every key must match.
    let mut ranged = cmp("a", T::Version, Greater, TargetUnion::Version(0));
    ranged.range_end = b"e".to_vec();
    assert!(holds(&mut h, ranged.clone()));
    ranged.target_union = Some(TargetUnion::Version(1));
    assert!(!holds(&mut h, ranged));
    assert_eq!(
        h.applier.current_revision(),
        7,
        "read-only txns do not bump the revision"
    );

    let t = TxnRequest {
        compare: vec![cmp("a", T::Value, Equal, TargetUnion::Value(b"2".to_vec()))],
        success: vec![
            op(request_op::Request::RequestPut(put_req("n1", "v"))),
            op(request_op::Request::RequestRange(RangeRequest {
                key: b"n1".to_vec(),
                ..Default::default()
            })),
            op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b"b".to_vec(),
                    ..Default::default()
                },
            )),
            op(request_op::Request::RequestPut(put_req("n2", "v"))),
        ],
        failure: vec![],
    };
    let Response::Txn(resp) = h.apply(Request::Txn(t)).unwrap() else {
        panic!()
    };
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 8);
    assert_eq!(h.applier.current_revision(), 8);
    let Some(response_op::Response::ResponseRange(r)) = &resp.responses[1].response else {
        panic!()
    };
    assert_eq!(
        r.kvs[0].mod_revision, 8,
        "reads inside a txn see its earlier writes"
    );
    let got = h
        .range(RangeRequest {
            key: b"n1".to_vec(),
            range_end: b"n3".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert!(got.kvs.iter().all(|kv| kv.mod_revision == 8));
}

#[test]
fn nested_txn_compares_see_the_state_before_the_txn() {
    let mut h = filled();
    let inner = TxnRequest {
        // After the outer put, a would be "new"; etcd decides the path before writing.
        compare: vec![cmp(
            "a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"2".to_vec()),
        )],
        success: vec![op(request_op::Request::RequestPut(put_req("then", "1")))],
        failure: vec![op(request_op::Request::RequestPut(put_req("else", "1")))],
    };
    let outer = TxnRequest {
        compare: vec![],
        success: vec![
            op(request_op::Request::RequestPut(put_req("a", "new"))),
            op(request_op::Request::RequestTxn(inner)),
        ],
        failure: vec![],
    };
    assert_eq!(validate::txn(&outer, 128), Ok(()));
    let Response::Txn(resp) = h.apply(Request::Txn(outer)).unwrap() else {
        panic!()
    };
    let Some(response_op::Response::ResponseTxn(nested)) = &resp.responses[1].response else {
        panic!()
    };
    assert!(nested.succeeded);
    assert!(
        h.range(RangeRequest {
            key: b"then".to_vec(),
            ..Default::default()
        })
        .unwrap()
        .count
            == 1
    );
    assert!(
        h.range(RangeRequest {
            key: b"else".to_vec(),
            ..Default::default()
        })
        .unwrap()
        .count
            == 0
    );
}

#[test]
fn a_failing_txn_writes_nothing() {
    let mut h = filled();
    let t = TxnRequest {
        success: vec![
            op(request_op::Request::RequestPut(put_req("x", "1"))),
            op(request_op::Request::RequestRange(RangeRequest {
                key: b"x".to_vec(),
                revision: 8,
                ..Default::default()
            })),
        ],
        ..Default::default()
    };
    assert_eq!(h.apply(Request::Txn(t)), Err(ApplyError::FutureRevision));
    let t = TxnRequest {
        success: vec![
            op(request_op::Request::RequestPut(put_req("x", "1"))),
            op(request_op::Request::RequestPut(PutRequest {
                key: b"y".to_vec(),
                ignore_value: true,
                ..Default::default()
            })),
        ],
        ..Default::default()
    };
    assert_eq!(h.apply(Request::Txn(t)), Err(ApplyError::KeyNotFound));
    assert_eq!(h.applier.current_revision(), 7);
    assert_eq!(
        h.range(RangeRequest {
            key: b"x".to_vec(),
            ..Default::default()
        })
        .unwrap()
        .count,
        0
    );
}

#[test]
fn txn_validation_matches_etcd() {
    let put = |k: &str| op(request_op::Request::RequestPut(put_req(k, "v")));
    let del = |k: &str, end: &[u8]| {
        op(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: k.into(),
                range_end: end.to_vec(),
                ..Default::default()
            },
        ))
    };
    let txn = |success: Vec<RequestOp>, failure: Vec<RequestOp>| TxnRequest {
        compare: vec![],
        success,
        failure,
    };
    // A nested txn gets only the budget its parent left.
    let inner = txn(vec![put("x"), put("y")], vec![]);
    let outer = txn(
        vec![put("a"), op(request_op::Request::RequestTxn(inner.clone()))],
        vec![],
    );
    assert_eq!(validate::txn(&outer, 4), Ok(()));
    assert_eq!(validate::txn(&outer, 3), Err(ApplyError::TooManyOps));
    assert_eq!(
        ApplyError::TooManyOps.to_string(),
        "etcdserver: too many operations in txn request"
    );
    // Compare keys and empty ops.
    let mut with_compare = txn(vec![], vec![]);
    with_compare.compare.push(Compare::default());
    assert_eq!(
        validate::txn(&with_compare, 128),
        Err(ApplyError::KeyNotProvided)
    );
    assert_eq!(
        validate::txn(&txn(vec![RequestOp::default()], vec![]), 128),
        Err(ApplyError::KeyNotFound)
    );
    // Overlapping deletes are fine; "\0" is literal in etcd's duplicate check.
    assert_eq!(
        validate::txn(&txn(vec![del("a", b"c"), del("b", b"d")], vec![]), 128),
        Ok(())
    );
    assert_eq!(
        validate::txn(&txn(vec![put("b"), del("a", &[0])], vec![]), 128),
        Ok(())
    );
    assert_eq!(
        validate::txn(&txn(vec![put("b"), del("a", b"c")], vec![]), 128),
        Err(ApplyError::DuplicateKey)
    );
    assert_eq!(
        validate::txn(&txn(vec![del("b", b""), put("b")], vec![]), 128),
        Err(ApplyError::DuplicateKey)
    );
    // A nested txn's then/else may share a key; a sibling put of it may not.
    let branches = txn(vec![put("k")], vec![put("k")]);
    assert_eq!(
        validate::txn(
            &txn(
                vec![op(request_op::Request::RequestTxn(branches.clone()))],
                vec![]
            ),
            128
        ),
        Ok(())
    );
    let clash = txn(
        vec![
            op(request_op::Request::RequestTxn(branches.clone())),
            put("k"),
        ],
        vec![],
    );
    assert_eq!(validate::txn(&clash, 128), Err(ApplyError::DuplicateKey));
    let deleted_below = txn(
        vec![
            op(request_op::Request::RequestTxn(txn(
                vec![del("j", b"l")],
                vec![],
            ))),
            put("k"),
        ],
        vec![],
    );
    assert_eq!(
        validate::txn(&deleted_below, 128),
        Err(ApplyError::DuplicateKey)
    );
    assert_eq!(
        ApplyError::DuplicateKey.to_string(),
        "etcdserver: duplicate key given in txn request"
    );
    assert_eq!(ApplyError::DuplicateKey.grpc_code(), Code::InvalidArgument);
    assert_eq!(
        validate::delete_range(&DeleteRangeRequest::default()),
        Err(ApplyError::KeyNotProvided)
    );
    assert_eq!(
        ApplyError::KeyNotProvided.to_string(),
        "etcdserver: key is not provided"
    );
    let lease_and_ignore = PutRequest {
        key: b"k".to_vec(),
        lease: 1,
        ignore_lease: true,
        ..Default::default()
    };
    assert_eq!(
        validate::put(&lease_and_ignore),
        Err(ApplyError::LeaseProvided)
    );
    assert_eq!(
        ApplyError::LeaseProvided.to_string(),
        "etcdserver: lease is provided"
    );
    assert_eq!(
        ApplyError::ValueProvided.to_string(),
        "etcdserver: value is provided"
    );
}

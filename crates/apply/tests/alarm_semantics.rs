//! etcd's alarms through the Applier: NOSPACE refuses what would grow the store (puts, txns with
//! puts, lease grants) but not reads, deletes or compaction; disarming lifts it; alarms survive
//! reopening the backend.

mod common;

use common::{op, put_req, Harness};
use rampart_apply::{Applier, ApplyError, Response};
use rampart_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmMember, AlarmRequest, AlarmType,
    DeleteRangeRequest, LeaseGrantRequest, RangeRequest, TxnRequest,
};
use rampart_proto::internal::raft_request::Request;

fn alarm(action: AlarmAction) -> Request {
    Request::Alarm(AlarmRequest {
        action: action as i32,
        member_id: 7,
        alarm: AlarmType::Nospace as i32,
    })
}

#[test]
fn nospace_refuses_growing_requests_until_disarmed() {
    let mut h = Harness::new();
    h.put("a", "1");
    let Ok(Response::Alarm(raised)) = h.apply(alarm(AlarmAction::Activate)) else {
        panic!("activate")
    };
    let nospace = AlarmMember {
        member_id: 7,
        alarm: AlarmType::Nospace as i32,
    };
    assert_eq!(raised.alarms, vec![nospace]);

    assert_eq!(
        h.apply(Request::Put(put_req("b", "2"))),
        Err(ApplyError::NoSpace)
    );
    assert_eq!(
        h.apply(Request::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 })),
        Err(ApplyError::NoSpace)
    );
    let txn_put = TxnRequest {
        success: vec![op(request_op::Request::RequestPut(put_req("c", "3")))],
        ..Default::default()
    };
    assert_eq!(
        h.apply(Request::Txn(txn_put.clone())),
        Err(ApplyError::NoSpace)
    );
    // Reads and deletes still work, so an operator can make room.
    let read_only = TxnRequest {
        success: vec![op(request_op::Request::RequestRange(RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        }))],
        ..Default::default()
    };
    assert!(h.apply(Request::Txn(read_only)).is_ok());
    assert!(h
        .apply(Request::DeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        }))
        .is_ok());

    let Ok(Response::Alarm(cleared)) = h.apply(alarm(AlarmAction::Deactivate)) else {
        panic!("deactivate")
    };
    assert_eq!(cleared.alarms.len(), 1);
    let Ok(Response::Alarm(again)) = h.apply(alarm(AlarmAction::Deactivate)) else {
        panic!("deactivate again")
    };
    assert!(again.alarms.is_empty(), "nothing left to clear");
    assert!(h.apply(Request::Txn(txn_put)).is_ok());
}

#[test]
fn alarms_survive_reopening_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let mut applier = Applier::open(&path).unwrap();
        let request = rampart_proto::internal::RaftRequest {
            id: 1,
            request: Some(alarm(AlarmAction::Activate)),
            requester: None,
        };
        applier
            .apply_batch(&[(1, request)], 1, rampart_mvcc::Durability::Immediate)
            .unwrap();
    }
    let applier = Applier::open(&path).unwrap();
    let raised: Vec<_> = applier.alarms().read().unwrap().iter().copied().collect();
    assert_eq!(raised, vec![(7, AlarmType::Nospace as i32)]);
}

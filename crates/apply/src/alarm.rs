//! etcd's alarms: raised and cleared through Raft, kept in the backend, and — while NOSPACE is
//! raised (the backend quota was exceeded) — refusing the requests that would grow the store, as
//! etcd's capped applier does: puts, transactions with puts, lease grants. Reads, deletes and
//! compaction still work, so an operator can make room and disarm.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rampart_mvcc::{MvccError, WriteBatch};
use rampart_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    TxnRequest,
};
use rampart_proto::internal::raft_request::Request;

/// Raised alarms: (member ID, `AlarmType`), shared with the API (alarm list, `/health`).
pub type SharedAlarms = Arc<RwLock<BTreeSet<(u64, i32)>>>;

/// Applies an alarm request; the response lists what it raised or cleared (etcd's answer), or
/// every raised alarm for GET.
pub fn apply(
    batch: &mut WriteBatch,
    alarms: &SharedAlarms,
    req: &AlarmRequest,
) -> Result<AlarmResponse, MvccError> {
    let member = |(member_id, alarm): (u64, i32)| AlarmMember { member_id, alarm };
    let mut raised = alarms.write().expect("alarms");
    let listed = match AlarmAction::try_from(req.action).unwrap_or(AlarmAction::Get) {
        AlarmAction::Get => raised.iter().copied().map(member).collect(),
        AlarmAction::Activate if req.alarm == AlarmType::None as i32 => vec![],
        AlarmAction::Activate => {
            batch.set_alarm(req.member_id, req.alarm, true)?;
            raised.insert((req.member_id, req.alarm));
            vec![member((req.member_id, req.alarm))]
        }
        AlarmAction::Deactivate => {
            if batch.set_alarm(req.member_id, req.alarm, false)? {
                raised.remove(&(req.member_id, req.alarm));
                vec![member((req.member_id, req.alarm))]
            } else {
                vec![]
            }
        }
    };
    Ok(AlarmResponse {
        header: None,
        alarms: listed,
    })
}

/// Whether a NOSPACE alarm refuses this request.
pub fn refuses(alarms: &SharedAlarms, request: &Request) -> bool {
    let grows = match request {
        Request::Put(_) | Request::LeaseGrant(_) => true,
        Request::Txn(txn) => txn_puts(txn),
        _ => false,
    };
    grows
        && alarms
            .read()
            .expect("alarms")
            .iter()
            .any(|(_, alarm)| *alarm == AlarmType::Nospace as i32)
}

fn txn_puts(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(inner)) => txn_puts(inner),
            _ => false,
        })
}

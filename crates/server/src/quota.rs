//! The backend quota (`--quota-backend-bytes`), as etcd enforces it: a request that would grow
//! the store past the quota is refused with "database space exceeded" and raises the NOSPACE
//! alarm, which then refuses every growing request (in the applier) until an operator makes room
//! (compact, defragment) and disarms it.
//!
//! etcd compares the bbolt file size. A redb file is never as small as a tiny quota, so the
//! bytes actually stored decide once the file is past the quota; they are measured again only
//! when something was applied since, since measuring takes the backend's write lock.

use std::path::PathBuf;
use std::sync::Mutex;

use rampart_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmRequest, AlarmType, PutRequest, TxnRequest,
};
use rampart_proto::internal::raft_request::Request as Op;
use tonic::Status;

use crate::etcdserver::EtcdServer;

/// etcd's estimate of a key's bookkeeping beyond its bytes.
const KV_OVERHEAD: u64 = 256;
/// etcd's estimate of a lease's size.
const LEASE_OVERHEAD: u64 = 64;

pub struct Quota {
    max_bytes: Option<u64>,
    /// The backend file, stat'ed without the applier's lock: the apply loop holds that lock
    /// while it applies a batch, and a put must not wait for a batch to learn the file size.
    db_path: PathBuf,
    /// (applied index, stored bytes) of the last measurement.
    measured: Mutex<Option<(u64, u64)>>,
}

impl Quota {
    pub fn new(max_bytes: Option<u64>, db_path: PathBuf) -> Quota {
        Quota {
            max_bytes,
            db_path,
            measured: Mutex::new(None),
        }
    }
}

pub fn put_cost(put: &PutRequest) -> u64 {
    (put.key.len() + put.value.len()) as u64 + KV_OVERHEAD
}

pub fn txn_cost(txn: &TxnRequest) -> u64 {
    txn.success
        .iter()
        .chain(&txn.failure)
        .map(|op| match &op.request {
            Some(request_op::Request::RequestPut(p)) => put_cost(p),
            Some(request_op::Request::RequestTxn(t)) => txn_cost(t),
            _ => 0,
        })
        .sum()
}

pub const LEASE_GRANT_COST: u64 = LEASE_OVERHEAD;

/// etcd's `ErrGRPCNoSpace`.
pub fn no_space() -> Status {
    Status::resource_exhausted("etcdserver: mvcc: database space exceeded")
}

impl EtcdServer {
    /// Refuses a request that would grow the store past the quota, raising NOSPACE first.
    pub async fn check_quota(&self, cost: u64) -> Result<(), Status> {
        let Some(max) = self.quota.max_bytes else {
            return Ok(());
        };
        if cost == 0 {
            return Ok(());
        }
        let file_size = std::fs::metadata(&self.quota.db_path)
            .map(|m| m.len())
            .unwrap_or(0);
        if file_size + cost < max || self.stored_bytes() + cost < max {
            return Ok(());
        }
        let raised = self
            .applier
            .read()
            .expect("applier")
            .alarms()
            .read()
            .expect("alarms")
            .contains(&(self.member_id, AlarmType::Nospace as i32));
        if !raised {
            tracing::warn!(
                quota_bytes = max,
                "backend quota exceeded: raising the NOSPACE alarm"
            );
            self.propose(Op::Alarm(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.member_id,
                alarm: AlarmType::Nospace as i32,
            }))
            .await?;
        }
        Err(no_space())
    }

    /// Bytes stored in the backend, measured again once something new was applied.
    fn stored_bytes(&self) -> u64 {
        let applied = self.applied_index();
        let mut measured = self.quota.measured.lock().expect("quota");
        match *measured {
            Some((at, bytes)) if at == applied => bytes,
            _ => {
                let bytes = self
                    .applier
                    .read()
                    .expect("applier")
                    .db_size_in_use()
                    .max(0) as u64;
                *measured = Some((applied, bytes));
                bytes
            }
        }
    }

    /// Whether any alarm is raised (`/health` reports false then, as etcd's does).
    pub fn has_alarms(&self) -> bool {
        !self
            .applier
            .read()
            .expect("applier")
            .alarms()
            .read()
            .expect("alarms")
            .is_empty()
    }
}

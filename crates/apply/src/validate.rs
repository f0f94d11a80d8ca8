//! Checks a request must pass before it is proposed (etcd's v3rpc checks), so a bad request
//! never enters the Raft log.

use std::collections::HashSet;

use rampart_mvcc::range_bounds;
use rampart_proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use crate::ApplyError;

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

pub fn range(r: &RangeRequest) -> Result<(), ApplyError> {
    if r.key.is_empty() {
        return Err(ApplyError::KeyNotProvided);
    }
    SortOrder::try_from(r.sort_order).map_err(|_| ApplyError::InvalidSortOption)?;
    SortTarget::try_from(r.sort_target).map_err(|_| ApplyError::InvalidSortOption)?;
    Ok(())
}

pub fn put(p: &PutRequest) -> Result<(), ApplyError> {
    if p.key.is_empty() {
        return Err(ApplyError::KeyNotProvided);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(ApplyError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(ApplyError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(d: &DeleteRangeRequest) -> Result<(), ApplyError> {
    if d.key.is_empty() {
        return Err(ApplyError::KeyNotProvided);
    }
    Ok(())
}

pub fn txn(t: &TxnRequest, max_txn_ops: usize) -> Result<(), ApplyError> {
    check_ops(t, max_txn_ops)?;
    for branch in [&t.success, &t.failure] {
        let mut puts = HashSet::new();
        let mut deletes = Vec::new();
        collect_writes(branch, &mut puts, &mut deletes)?;
    }
    Ok(())
}

fn check_ops(t: &TxnRequest, max: usize) -> Result<(), ApplyError> {
    if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
        return Err(ApplyError::TooManyOps);
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => range(r)?,
            Some(request_op::Request::RequestPut(p)) => put(p)?,
            Some(request_op::Request::RequestDeleteRange(d)) => delete_range(d)?,
            Some(request_op::Request::RequestTxn(inner)) => check_ops(inner, max)?,
            None => {}
        }
    }
    Ok(())
}

type Interval = (Vec<u8>, Vec<u8>);

fn overlaps_put(deletes: &[Interval], key: &[u8]) -> bool {
    deletes
        .iter()
        .any(|(start, end)| range_bounds(start, end).contains(key))
}

/// Collects the keys a branch puts and the ranges it deletes; a key written twice, or put and
/// deleted, is a duplicate (etcd's rule).
fn collect_writes(
    ops: &[RequestOp],
    puts: &mut HashSet<Vec<u8>>,
    deletes: &mut Vec<Interval>,
) -> Result<(), ApplyError> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => {
                if overlaps_put(deletes, &p.key) || !puts.insert(p.key.clone()) {
                    return Err(ApplyError::DuplicateKey);
                }
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                let interval = (d.key.clone(), d.range_end.clone());
                if puts
                    .iter()
                    .any(|k| range_bounds(&interval.0, &interval.1).contains(k))
                {
                    return Err(ApplyError::DuplicateKey);
                }
                deletes.push(interval);
            }
            Some(request_op::Request::RequestTxn(inner)) => {
                let mut merged_puts = HashSet::new();
                let mut merged_deletes = Vec::new();
                for branch in [&inner.success, &inner.failure] {
                    let mut p = puts.clone();
                    let mut d = deletes.clone();
                    collect_writes(branch, &mut p, &mut d)?;
                    merged_puts.extend(p);
                    merged_deletes.extend(d);
                }
                puts.extend(merged_puts);
                deletes.extend(merged_deletes);
            }
            Some(request_op::Request::RequestRange(_)) | None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_proto::etcdserverpb::RequestOp;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn duplicate_puts_and_put_inside_a_deleted_range_are_refused() {
        let t = TxnRequest {
            success: vec![put_op("a"), put_op("a")],
            ..Default::default()
        };
        assert_eq!(txn(&t, 128), Err(ApplyError::DuplicateKey));
        let t = TxnRequest {
            success: vec![del_op("a", "c"), put_op("b")],
            ..Default::default()
        };
        assert_eq!(txn(&t, 128), Err(ApplyError::DuplicateKey));
        // The same key in the two branches is fine: only one runs.
        let t = TxnRequest {
            success: vec![put_op("a")],
            failure: vec![put_op("a")],
            ..Default::default()
        };
        assert_eq!(txn(&t, 128), Ok(()));
    }

    #[test]
    fn nested_txn_writes_count_against_the_outer_branch() {
        let inner = TxnRequest {
            success: vec![put_op("x")],
            ..Default::default()
        };
        let t = TxnRequest {
            success: vec![
                put_op("x"),
                RequestOp {
                    request: Some(request_op::Request::RequestTxn(inner)),
                },
            ],
            ..Default::default()
        };
        assert_eq!(txn(&t, 128), Err(ApplyError::DuplicateKey));
    }

    #[test]
    fn too_many_ops_and_empty_keys() {
        let t = TxnRequest {
            success: (0..129).map(|i| put_op(&format!("k{i}"))).collect(),
            ..Default::default()
        };
        assert_eq!(txn(&t, 128), Err(ApplyError::TooManyOps));
        assert_eq!(
            put(&PutRequest::default()),
            Err(ApplyError::KeyNotProvided)
        );
        assert_eq!(
            put(&PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
            Err(ApplyError::ValueProvided)
        );
    }
}

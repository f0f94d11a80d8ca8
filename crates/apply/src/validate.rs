//! Checks a request must pass before it is proposed (etcd's v3rpc checks), so a bad request
//! never enters the Raft log.

use std::collections::HashSet;

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
    check_writes(&t.success)?;
    check_writes(&t.failure)?;
    Ok(())
}

/// etcd's op budget: the widest of compare/success/failure must fit `max`, and a nested txn
/// gets only what that width left over.
fn check_ops(t: &TxnRequest, max: usize) -> Result<(), ApplyError> {
    let width = t.compare.len().max(t.success.len()).max(t.failure.len());
    if width > max {
        return Err(ApplyError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(ApplyError::KeyNotProvided);
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => range(r)?,
            Some(request_op::Request::RequestPut(p)) => put(p)?,
            Some(request_op::Request::RequestDeleteRange(d)) => delete_range(d)?,
            Some(request_op::Request::RequestTxn(inner)) => check_ops(inner, max - width)?,
            // etcd answers an empty op with "key not found".
            None => return Err(ApplyError::KeyNotFound),
        }
    }
    Ok(())
}

/// A deleted interval as etcd's duplicate check sees it: `[start, end)`, or the single key when
/// `end` is empty. `end` is compared literally (etcd's check gives "\0" no special meaning).
#[derive(Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Vec<u8>,
}

impl Deleted {
    fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            key == self.start.as_slice()
        } else {
            key >= self.start.as_slice() && key < self.end.as_slice()
        }
    }
}

fn deleted_contains(deleted: &[Deleted], key: &[u8]) -> bool {
    deleted.iter().any(|d| d.contains(key))
}

/// etcd's duplicate-key rule for one branch: a key may be put once, and not inside a range the
/// same branch deletes. Nested txns' puts count at this level (their then/else may share keys,
/// as only one runs), and nested deletes cover this level's puts. Overlapping deletes are fine.
/// Returns the branch's puts and deletes for the enclosing level.
fn check_writes(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), ApplyError> {
    let mut deleted: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Deleted {
                start: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(inner)) = &op.request else {
            continue;
        };
        let (puts_then, deleted_then) = check_writes(&inner.success)?;
        let (puts_else, deleted_else) = check_writes(&inner.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted_contains(&deleted, key) {
                return Err(ApplyError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &puts_else {
            let clashes = puts.contains(key) && !puts_then.contains(key);
            if clashes || deleted_contains(&deleted, key) {
                return Err(ApplyError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        deleted.extend(deleted_then);
        deleted.extend(deleted_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted_contains(&deleted, &p.key) {
            return Err(ApplyError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, deleted))
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
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
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
        assert_eq!(put(&PutRequest::default()), Err(ApplyError::KeyNotProvided));
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

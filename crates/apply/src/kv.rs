//! Range, Put, DeleteRange, Txn and Compact with etcd's semantics.

use rampart_mvcc::{MvccError, RangeResult, ReadView, WriteBatch};
use rampart_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op, response_op, CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use rampart_proto::mvccpb::{Event, KeyValue};

use crate::{header, ApplyError, LeaseTable};

/// Something ranges can be read from: a read view or a write batch (seeing its own writes).
trait RangeSource {
    fn range_at(
        &self,
        key: &[u8],
        end: &[u8],
        rev: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError>;
}

impl RangeSource for ReadView {
    fn range_at(
        &self,
        key: &[u8],
        end: &[u8],
        rev: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError> {
        self.range(key, end, rev, limit)
    }
}

impl RangeSource for WriteBatch {
    fn range_at(
        &self,
        key: &[u8],
        end: &[u8],
        rev: i64,
        limit: usize,
    ) -> Result<RangeResult, MvccError> {
        self.range(key, end, rev, limit)
    }
}

pub fn range_in_view(view: &ReadView, r: &RangeRequest) -> Result<RangeResponse, ApplyError> {
    range(view, r)
}

pub fn range_in_batch(batch: &WriteBatch, r: &RangeRequest) -> Result<RangeResponse, ApplyError> {
    range(batch, r)
}

fn range(src: &dyn RangeSource, r: &RangeRequest) -> Result<RangeResponse, ApplyError> {
    let sort_order =
        SortOrder::try_from(r.sort_order).map_err(|_| ApplyError::InvalidSortOption)?;
    let sort_target =
        SortTarget::try_from(r.sort_target).map_err(|_| ApplyError::InvalidSortOption)?;
    // Sorting or filtering needs every key before the limit applies (etcd does the same).
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // etcd fetches everything only for an explicit sort order: a sort target with order NONE
    // sorts the first `limit + 1` keys (by key) ascending, a quirk clients can observe.
    let sorted = sort_order != SortOrder::None;
    let fetch_limit = if r.limit > 0 && !sorted && !filtered {
        r.limit as usize + 1
    } else {
        0
    };
    let result = src.range_at(&r.key, &r.range_end, r.revision, fetch_limit)?;
    let mut kvs = result.kvs;
    if filtered {
        kvs.retain(|kv| {
            (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
                && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
        });
    }
    let order = if sort_order == SortOrder::None && sort_target != SortTarget::Key {
        SortOrder::Ascend
    } else {
        sort_order
    };
    if order != SortOrder::None {
        let key_of = |kv: &KeyValue| -> SortKey {
            match sort_target {
                SortTarget::Key => SortKey::Bytes(kv.key.clone()),
                SortTarget::Version => SortKey::Int(kv.version),
                SortTarget::Create => SortKey::Int(kv.create_revision),
                SortTarget::Mod => SortKey::Int(kv.mod_revision),
                SortTarget::Value => SortKey::Bytes(kv.value.clone()),
            }
        };
        // Stable sort: ties keep key order, as etcd's.
        kvs.sort_by_key(key_of);
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    if r.count_only {
        // etcd's count-only range returns no keys, so `more` stays false.
        kvs.clear();
        more = false;
    }
    Ok(RangeResponse {
        header: header(result.revision),
        kvs,
        more,
        count: result.count,
    })
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Int(i64),
    Bytes(Vec<u8>),
}

fn latest(batch: &WriteBatch, key: &[u8]) -> Result<Option<KeyValue>, ApplyError> {
    Ok(batch.range(key, &[], 0, 1)?.kvs.pop())
}

/// Checks a put against the lease table and the key's current state, in etcd's order (the
/// lease first, then the key that ignore_value / ignore_lease needs).
fn check_put(
    batch: &WriteBatch,
    leases: &dyn LeaseTable,
    p: &PutRequest,
) -> Result<(), ApplyError> {
    if p.lease != 0 && !leases.contains(p.lease) {
        return Err(ApplyError::LeaseNotFound);
    }
    if (p.ignore_value || p.ignore_lease) && latest(batch, &p.key)?.is_none() {
        return Err(ApplyError::KeyNotFound);
    }
    Ok(())
}

pub fn put(
    batch: &mut WriteBatch,
    leases: &dyn LeaseTable,
    p: &PutRequest,
    events: &mut Vec<Event>,
) -> Result<PutResponse, ApplyError> {
    check_put(batch, leases, p)?;
    put_checked(batch, p, events)
}

fn put_checked(
    batch: &mut WriteBatch,
    p: &PutRequest,
    events: &mut Vec<Event>,
) -> Result<PutResponse, ApplyError> {
    let prev = latest(batch, &p.key)?;
    let value = match (&prev, p.ignore_value) {
        (Some(prev), true) => prev.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(prev), true) => prev.lease,
        _ => p.lease,
    };
    let (prev, event) = batch.put_over(&p.key, value, lease, prev)?;
    events.push(event);
    Ok(PutResponse {
        header: header(batch.pending_revision()),
        prev_kv: if p.prev_kv { prev } else { None },
    })
}

pub fn delete_range(
    batch: &mut WriteBatch,
    d: &DeleteRangeRequest,
    events: &mut Vec<Event>,
) -> Result<DeleteRangeResponse, ApplyError> {
    let mut evs = batch.delete_range(&d.key, &d.range_end)?;
    let revision = if evs.is_empty() {
        batch.read_revision()
    } else {
        batch.pending_revision()
    };
    let prev_kvs = if d.prev_kv {
        evs.iter().filter_map(|e| e.prev_kv.clone()).collect()
    } else {
        Vec::new()
    };
    let deleted = evs.len() as i64;
    events.append(&mut evs);
    Ok(DeleteRangeResponse {
        header: header(revision),
        deleted,
        prev_kvs,
    })
}

pub fn compact(
    batch: &mut WriteBatch,
    c: &CompactionRequest,
) -> Result<CompactionResponse, ApplyError> {
    batch.compact(c.revision)?;
    Ok(CompactionResponse {
        header: header(batch.read_revision()),
    })
}

fn compare_holds(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    // Unknown targets compare as equal and unknown results hold, as in etcd.
    let Ok(target) = CompareTarget::try_from(c.target) else {
        return CompareResult::try_from(c.result)
            .map_or(true, |r| matches!(r, CompareResult::Equal));
    };
    let ord: Ordering = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => {
            kv.value.as_slice().cmp(v.as_slice())
        }
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => kv.version.cmp(v),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => kv.create_revision.cmp(v),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => kv.mod_revision.cmp(v),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
        // A missing operand compares as its zero value.
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[][..]),
        (CompareTarget::Version, _) => kv.version.cmp(&0),
        (CompareTarget::Create, _) => kv.create_revision.cmp(&0),
        (CompareTarget::Mod, _) => kv.mod_revision.cmp(&0),
        (CompareTarget::Lease, _) => kv.lease.cmp(&0),
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

fn evaluate(batch: &WriteBatch, c: &Compare) -> Result<bool, ApplyError> {
    let kvs = batch.range(&c.key, &c.range_end, 0, 0)?.kvs;
    if kvs.is_empty() {
        // etcd: a value compare on a missing key is false; others compare against zero.
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_holds(c, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_holds(c, kv)))
}

fn all_hold(batch: &WriteBatch, compares: &[Compare]) -> Result<bool, ApplyError> {
    for c in compares {
        if !evaluate(batch, c)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Which branch every txn of the tree takes, in pre-order (the txn itself, then the nested txns
/// of its chosen branch). Like etcd, every compare, nested ones included, sees the state before
/// the txn writes anything.
fn branch_path(batch: &WriteBatch, t: &TxnRequest, path: &mut Vec<bool>) -> Result<(), ApplyError> {
    let succeeded = all_hold(batch, &t.compare)?;
    path.push(succeeded);
    for op in branch(t, succeeded) {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            branch_path(batch, inner, path)?;
        }
    }
    Ok(())
}

fn branch(t: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &t.success
    } else {
        &t.failure
    }
}

/// Takes the next txn's branch from the pre-computed path.
fn next_branch(path: &[bool], cursor: &mut usize) -> bool {
    debug_assert!(*cursor < path.len(), "txn path shorter than the txn tree");
    let succeeded = path.get(*cursor).copied().unwrap_or(false);
    *cursor += 1;
    succeeded
}

/// Everything that can make an op fail is checked before any op writes, so a failed txn
/// writes nothing.
fn precheck(
    batch: &WriteBatch,
    leases: &dyn LeaseTable,
    ops: &[RequestOp],
    path: &[bool],
    cursor: &mut usize,
) -> Result<(), ApplyError> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                if r.revision > 0 {
                    batch.range(&r.key, &r.range_end, r.revision, 1)?;
                }
            }
            Some(request_op::Request::RequestPut(p)) => check_put(batch, leases, p)?,
            Some(request_op::Request::RequestTxn(t)) => {
                let succeeded = next_branch(path, cursor);
                precheck(batch, leases, branch(t, succeeded), path, cursor)?;
            }
            Some(request_op::Request::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

pub fn txn(
    batch: &mut WriteBatch,
    leases: &dyn LeaseTable,
    t: &TxnRequest,
    events: &mut Vec<Event>,
) -> Result<TxnResponse, ApplyError> {
    let mut path = Vec::new();
    branch_path(batch, t, &mut path)?;
    let succeeded = path[0];
    let ops = branch(t, succeeded);
    precheck(batch, leases, ops, &path, &mut 1)?;
    let mut cursor = 1;
    let responses = execute(batch, ops, &path, &mut cursor, events)?;
    debug_assert_eq!(cursor, path.len(), "every nested txn consumed its branch");
    Ok(TxnResponse {
        header: header(batch.read_revision()),
        succeeded,
        responses,
    })
}

fn execute(
    batch: &mut WriteBatch,
    ops: &[RequestOp],
    path: &[bool],
    cursor: &mut usize,
    events: &mut Vec<Event>,
) -> Result<Vec<ResponseOp>, ApplyError> {
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                response_op::Response::ResponseRange(range(batch, r)?)
            }
            Some(request_op::Request::RequestPut(p)) => {
                response_op::Response::ResponsePut(put_checked(batch, p, events)?)
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                response_op::Response::ResponseDeleteRange(delete_range(batch, d, events)?)
            }
            Some(request_op::Request::RequestTxn(inner)) => {
                let succeeded = next_branch(path, cursor);
                let inner_ops = branch(inner, succeeded);
                let inner_responses = execute(batch, inner_ops, path, cursor, events)?;
                // etcd fills only the outermost header; nested ones stay empty.
                response_op::Response::ResponseTxn(TxnResponse {
                    header: Some(Default::default()),
                    succeeded,
                    responses: inner_responses,
                })
            }
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(responses)
}

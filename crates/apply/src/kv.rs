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

use crate::{header, ApplyError};

/// Something ranges can be read from: a read view or a write batch (seeing its own writes).
trait RangeSource {
    fn range_at(&self, key: &[u8], end: &[u8], rev: i64, limit: usize) -> Result<RangeResult, MvccError>;
}

impl RangeSource for ReadView {
    fn range_at(&self, key: &[u8], end: &[u8], rev: i64, limit: usize) -> Result<RangeResult, MvccError> {
        self.range(key, end, rev, limit)
    }
}

impl RangeSource for WriteBatch {
    fn range_at(&self, key: &[u8], end: &[u8], rev: i64, limit: usize) -> Result<RangeResult, MvccError> {
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
    let sort_order = SortOrder::try_from(r.sort_order).map_err(|_| ApplyError::InvalidSortOption)?;
    let sort_target = SortTarget::try_from(r.sort_target).map_err(|_| ApplyError::InvalidSortOption)?;
    // Sorting or filtering needs every key before the limit applies (etcd does the same).
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let sorted = sort_order != SortOrder::None
        || sort_target != SortTarget::Key;
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
        kvs.clear();
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

/// Checks a put that ignores its value or lease against the key's current state.
fn check_put(batch: &WriteBatch, p: &PutRequest) -> Result<(), ApplyError> {
    if (p.ignore_value || p.ignore_lease) && latest(batch, &p.key)?.is_none() {
        return Err(ApplyError::KeyNotFound);
    }
    if p.lease != 0 && !p.ignore_lease {
        // No lease can exist until the lease service is built.
        return Err(ApplyError::LeaseNotFound);
    }
    Ok(())
}

pub fn put(batch: &mut WriteBatch, p: &PutRequest, events: &mut Vec<Event>) -> Result<PutResponse, ApplyError> {
    check_put(batch, p)?;
    put_checked(batch, p, events)
}

fn put_checked(batch: &mut WriteBatch, p: &PutRequest, events: &mut Vec<Event>) -> Result<PutResponse, ApplyError> {
    let prev = latest(batch, &p.key)?;
    let value = match (&prev, p.ignore_value) {
        (Some(prev), true) => prev.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(prev), true) => prev.lease,
        _ => p.lease,
    };
    let (prev, event) = batch.put(&p.key, value, lease)?;
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
    let (deleted, mut evs) = batch.delete_range(&d.key, &d.range_end)?;
    let revision = if deleted.is_empty() {
        batch.read_revision()
    } else {
        batch.pending_revision()
    };
    events.append(&mut evs);
    Ok(DeleteRangeResponse {
        header: header(revision),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
    })
}

pub fn compact(batch: &mut WriteBatch, c: &CompactionRequest) -> Result<CompactionResponse, ApplyError> {
    batch.compact(c.revision)?;
    Ok(CompactionResponse {
        header: header(batch.read_revision()),
    })
}

fn compare_holds(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let ord: Ordering = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_slice().cmp(v.as_slice()),
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
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
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

/// Everything that can make an op fail is checked before any op writes, so a failed txn
/// writes nothing.
fn precheck(batch: &WriteBatch, ops: &[RequestOp]) -> Result<(), ApplyError> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                if r.revision > 0 {
                    batch.range(&r.key, &r.range_end, r.revision, 1)?;
                }
            }
            Some(request_op::Request::RequestPut(p)) => check_put(batch, p)?,
            Some(request_op::Request::RequestTxn(t)) => {
                let ok = all_hold(batch, &t.compare)?;
                precheck(batch, if ok { &t.success } else { &t.failure })?;
            }
            Some(request_op::Request::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

fn all_hold(batch: &WriteBatch, compares: &[Compare]) -> Result<bool, ApplyError> {
    for c in compares {
        if !evaluate(batch, c)? {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn txn(batch: &mut WriteBatch, t: &TxnRequest, events: &mut Vec<Event>) -> Result<TxnResponse, ApplyError> {
    let succeeded = all_hold(batch, &t.compare)?;
    let ops = if succeeded { &t.success } else { &t.failure };
    precheck(batch, ops)?;
    let responses = execute(batch, ops, events)?;
    Ok(TxnResponse {
        header: header(batch.read_revision()),
        succeeded,
        responses,
    })
}

fn execute(batch: &mut WriteBatch, ops: &[RequestOp], events: &mut Vec<Event>) -> Result<Vec<ResponseOp>, ApplyError> {
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
                let succeeded = all_hold(batch, &inner.compare)?;
                let inner_ops = if succeeded { &inner.success } else { &inner.failure };
                let inner_responses = execute(batch, inner_ops, events)?;
                response_op::Response::ResponseTxn(TxnResponse {
                    header: header(batch.read_revision()),
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

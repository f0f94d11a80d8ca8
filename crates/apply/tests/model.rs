//! Random sequences of puts, deletes, txns and compactions applied through the Applier, compared with
//! a plain model of etcd's semantics (every key's history as a list of versions).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rampart_apply::{Applier, Response};
use rampart_mvcc::Durability;
use rampart_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use rampart_proto::internal::{raft_request::Request, RaftRequest};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, u8),
    Compact,
    /// if version(k) == v then put(then_key, value) else delete(else_key)
    Txn {
        k: u8,
        v: i64,
        then_key: u8,
        value: u8,
        else_key: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..6).prop_map(Op::Delete),
        1 => (0u8..6, 0u8..7).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        1 => Just(Op::Compact),
        2 => (0u8..6, 0i64..3, 0u8..6, any::<u8>(), 0u8..6)
            .prop_map(|(k, v, then_key, value, else_key)| Op::Txn { k, v, then_key, value, else_key }),
    ]
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', b'0' + k]
}

/// key → list of (mod revision, Some((create, version, value)) or None for a deletion).
type Model = BTreeMap<Vec<u8>, Vec<(i64, Option<(i64, i64, Vec<u8>)>)>>;

/// (key, create revision, mod revision, version, value) of one live key.
type ModelKv = (Vec<u8>, i64, i64, i64, Vec<u8>);

fn model_range(m: &Model, rev: i64) -> Vec<ModelKv> {
    let mut out = Vec::new();
    for (k, hist) in m {
        if let Some((modr, Some((create, ver, val)))) = hist.iter().rev().find(|(r, _)| *r <= rev) {
            out.push((k.clone(), *create, *modr, *ver, val.clone()));
        }
    }
    out
}

fn live(m: &Model, k: &[u8]) -> Option<(i64, i64)> {
    m.get(k)
        .and_then(|h| h.last())
        .and_then(|(_, v)| v.as_ref().map(|(c, ver, _)| (*c, *ver)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn applier_matches_the_model(ops in proptest::collection::vec(op(), 1..40), reads in proptest::collection::vec(0i64..50, 5)) {
        let dir = tempfile::tempdir().unwrap();
        let mut applier = Applier::open(&dir.path().join("db")).unwrap();
        let mut model: Model = BTreeMap::new();
        let mut rev = 1i64;
        let mut compacted = 0i64;
        let mut index = 0u64;
        for o in ops {
            index += 1;
            let request = match &o {
                Op::Put(k, v) => Request::Put(PutRequest { key: key(*k), value: vec![*v], ..Default::default() }),
                Op::Delete(k) => Request::DeleteRange(DeleteRangeRequest { key: key(*k), ..Default::default() }),
                Op::DeleteRange(a, b) => Request::DeleteRange(DeleteRangeRequest { key: key(*a), range_end: key(*b), ..Default::default() }),
                Op::Compact => Request::Compaction(CompactionRequest { revision: rev, physical: true }),
                Op::Txn { k, v, then_key, value, else_key } => Request::Txn(TxnRequest {
                    compare: vec![Compare {
                        key: key(*k),
                        target: CompareTarget::Version as i32,
                        result: CompareResult::Equal as i32,
                        target_union: Some(TargetUnion::Version(*v)),
                        range_end: Vec::new(),
                    }],
                    success: vec![RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key: key(*then_key), value: vec![*value], ..Default::default() })) }],
                    failure: vec![RequestOp { request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest { key: key(*else_key), ..Default::default() })) }],
                }),
            };
            let applied = applier
                .apply_batch(&[(index, RaftRequest { id: index, request: Some(request), requester: None })], index, Durability::None)
                .unwrap();
            let result = &applied[0].result;
            match o {
                Op::Put(k, v) => {
                    rev += 1;
                    let (create, ver) = live(&model, &key(k)).map(|(c, v)| (c, v + 1)).unwrap_or((rev, 1));
                    model.entry(key(k)).or_default().push((rev, Some((create, ver, vec![v]))));
                    prop_assert!(matches!(result, Ok(Response::Put(_))));
                }
                Op::Delete(k) => {
                    if live(&model, &key(k)).is_some() {
                        rev += 1;
                        model.get_mut(&key(k)).unwrap().push((rev, None));
                    }
                }
                Op::DeleteRange(a, b) => {
                    let victims: Vec<Vec<u8>> = model.keys().filter(|k| **k >= key(a) && **k < key(b))
                        .filter(|k| live(&model, k).is_some()).cloned().collect();
                    if !victims.is_empty() {
                        rev += 1;
                        for v in victims { model.get_mut(&v).unwrap().push((rev, None)); }
                    }
                }
                Op::Txn { k, v, then_key, value, else_key } => {
                    let holds = live(&model, &key(k)).map(|(_, ver)| ver).unwrap_or(0) == v;
                    if holds {
                        rev += 1;
                        let (create, ver) = live(&model, &key(then_key)).map(|(c, v)| (c, v + 1)).unwrap_or((rev, 1));
                        model.entry(key(then_key)).or_default().push((rev, Some((create, ver, vec![value]))));
                    } else if live(&model, &key(else_key)).is_some() {
                        rev += 1;
                        model.get_mut(&key(else_key)).unwrap().push((rev, None));
                    }
                    let Ok(Response::Txn(t)) = result else { panic!("txn failed: {result:?}") };
                    prop_assert_eq!(t.succeeded, holds);
                    prop_assert_eq!(t.header.as_ref().unwrap().revision, rev);
                }
                Op::Compact => {
                    if rev > compacted { compacted = rev; prop_assert!(result.is_ok()); } else { prop_assert!(result.is_err()); }
                }
            }
            prop_assert_eq!(applier.current_revision(), rev);
        }
        for r in reads {
            let at = r.min(rev);
            let resp = applier.range(&RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), revision: at, ..Default::default() });
            if at > 0 && at < compacted {
                prop_assert!(resp.is_err());
                continue;
            }
            let resp = resp.unwrap();
            let got: Vec<_> = resp.kvs.iter().map(|kv| (kv.key.clone(), kv.create_revision, kv.mod_revision, kv.version, kv.value.clone())).collect();
            let want = model_range(&model, if at == 0 { rev } else { at });
            prop_assert_eq!(got, want, "at revision {}", at);
        }
        // The store resumes where it was after a restart.
        drop(applier);
        let reopened = Applier::open(&dir.path().join("db")).unwrap();
        prop_assert_eq!(reopened.consistent_index(), index);
        prop_assert_eq!(reopened.current_revision(), rev);
    }
}

#[test]
fn replaying_applied_entries_is_a_no_op_and_snapshots_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Applier::open(&dir.path().join("a")).unwrap();
    let put = |i: u64| {
        (
            i,
            RaftRequest {
                id: i,
                request: Some(Request::Put(PutRequest {
                    key: format!("k{i}").into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
                requester: None,
            },
        )
    };
    let batch: Vec<_> = (1..=5).map(put).collect();
    a.apply_batch(&batch, 5, Durability::Immediate).unwrap();
    assert_eq!(a.current_revision(), 6);
    let again = a.apply_batch(&batch, 5, Durability::None).unwrap();
    assert!(again.is_empty());
    assert_eq!(a.current_revision(), 6);
    let snap = a.snapshot_bytes().unwrap();
    let mut b = Applier::open(&dir.path().join("b")).unwrap();
    b.restore(&snap).unwrap();
    assert_eq!(b.consistent_index(), 5);
    assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
    let mut bad = snap.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(b.restore(&bad).is_err());
    assert_eq!(
        b.current_revision(),
        6,
        "a damaged snapshot must leave the store as it was"
    );
}

fn put_entry(i: u64) -> (u64, RaftRequest) {
    let key = format!("k{}", i % 7).into_bytes();
    let request = if i.is_multiple_of(5) {
        Request::DeleteRange(DeleteRangeRequest {
            key,
            ..Default::default()
        })
    } else {
        Request::Put(PutRequest {
            key,
            value: i.to_le_bytes().to_vec(),
            ..Default::default()
        })
    };
    (
        i,
        RaftRequest {
            id: i,
            request: Some(request),
            requester: None,
        },
    )
}

#[test]
fn a_crash_after_non_durable_commits_is_repaired_by_replaying_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (1..=60).map(put_entry).collect();
    let mut live = Applier::open(&dir.path().join("live")).unwrap();
    live.apply_batch(&entries[..20], 20, Durability::Immediate)
        .unwrap();
    for chunk in entries[20..].chunks(10) {
        live.apply_batch(chunk, chunk.last().unwrap().0, Durability::None)
            .unwrap();
    }
    // The file as a crash would leave it: the process dies with the database still open.
    let crashed = dir.path().join("crashed");
    std::fs::copy(dir.path().join("live"), &crashed).unwrap();
    let mut recovered = Applier::open(&crashed).unwrap();
    let resumed_at = recovered.consistent_index();
    // redb leaves non-durable commits out of a crashed file, so the store is behind the log
    // (which is why the apply loop may use Durability::None: the WAL is the durable copy).
    assert!(
        (20..60).contains(&resumed_at),
        "expected the last durable commit (20), got {resumed_at}"
    );
    // The node replays the whole log; entries the store already holds are skipped.
    recovered
        .apply_batch(&entries, 60, Durability::Immediate)
        .unwrap();
    assert_eq!(recovered.consistent_index(), 60);
    assert_eq!(recovered.current_revision(), live.current_revision());
    assert_eq!(recovered.hash_kv(0).unwrap(), live.hash_kv(0).unwrap());
}

#[test]
fn restart_resumes_at_the_consistent_index_and_hashes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (1..=40).map(put_entry).collect();
    let mut a = Applier::open(&dir.path().join("a")).unwrap();
    let mut b = Applier::open(&dir.path().join("b")).unwrap();
    a.apply_batch(&entries, 40, Durability::Immediate).unwrap();
    for chunk in entries.chunks(3) {
        b.apply_batch(chunk, chunk.last().unwrap().0, Durability::None)
            .unwrap();
    }
    b.apply_batch(&[], 40, Durability::Immediate).unwrap();
    assert_eq!(
        a.hash_kv(0).unwrap(),
        b.hash_kv(0).unwrap(),
        "batching must not change the result"
    );
    let revision = a.current_revision();
    drop(a);
    let mut a = Applier::open(&dir.path().join("a")).unwrap();
    assert_eq!((a.consistent_index(), a.current_revision()), (40, revision));
    assert!(a
        .apply_batch(&entries[30..], 40, Durability::None)
        .unwrap()
        .is_empty());
    let next = (
        41,
        RaftRequest {
            id: 41,
            request: Some(Request::Compaction(CompactionRequest {
                revision: 10,
                physical: true,
            })),
            requester: None,
        },
    );
    a.apply_batch(std::slice::from_ref(&next), 41, Durability::None)
        .unwrap();
    b.apply_batch(std::slice::from_ref(&next), 41, Durability::None)
        .unwrap();
    assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
    assert_eq!(a.hash_kv(0).unwrap().compact_revision, 10);
}

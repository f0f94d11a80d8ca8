//! Random sequences of puts, deletes and compactions applied through the Applier, compared with
//! a plain model of etcd's semantics (every key's history as a list of versions).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rampart_apply::{Applier, Response};
use rampart_mvcc::Durability;
use rampart_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
use rampart_proto::internal::{raft_request::Request, RaftRequest};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, u8),
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..6).prop_map(Op::Delete),
        1 => (0u8..6, 0u8..7).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        1 => Just(Op::Compact),
    ]
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', b'0' + k]
}

/// key → list of (mod revision, Some((create, version, value)) or None for a deletion).
type Model = BTreeMap<Vec<u8>, Vec<(i64, Option<(i64, i64, Vec<u8>)>)>>;

fn model_range(m: &Model, rev: i64) -> Vec<(Vec<u8>, i64, i64, i64, Vec<u8>)> {
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
            };
            let applied = applier
                .apply_batch(&[(index, RaftRequest { id: index, request: Some(request) })], index, Durability::None)
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
                    let victims: Vec<Vec<u8>> = model.keys().filter(|k| **k >= key(a) && **k < key(b)).cloned()
                        .filter(|k| live(&model, k).is_some()).collect();
                    if !victims.is_empty() {
                        rev += 1;
                        for v in victims { model.get_mut(&v).unwrap().push((rev, None)); }
                    }
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
        // Two stores fed the same entries hash the same after a restart.
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
    let put = |i: u64| (i, RaftRequest { id: i, request: Some(Request::Put(PutRequest { key: format!("k{i}").into_bytes(), value: b"v".to_vec(), ..Default::default() })) });
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
    assert_eq!(b.current_revision(), 6, "a damaged snapshot must leave the store as it was");
}

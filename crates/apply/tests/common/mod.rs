//! The test harness shared by the KV semantics tests: an Applier on a temporary store fed one
//! Raft entry per request.
#![allow(dead_code)] // each test file uses its own subset

use rampart_apply::{Applier, ApplyError, Response};
use rampart_mvcc::Durability;
use rampart_proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RangeResponse, RequestOp};
use rampart_proto::internal::{raft_request::Request, RaftRequest};

pub struct Harness {
    _dir: tempfile::TempDir,
    pub applier: Applier,
    index: u64,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let applier = Applier::open(&dir.path().join("db")).unwrap();
        Harness {
            _dir: dir,
            applier,
            index: 0,
        }
    }

    pub fn apply(&mut self, request: Request) -> Result<Response, ApplyError> {
        self.index += 1;
        let entry = (
            self.index,
            RaftRequest {
                id: self.index,
                request: Some(request),
                requester: None,
            },
        );
        let mut applied = self
            .applier
            .apply_batch(&[entry], self.index, Durability::None)
            .unwrap();
        assert_eq!(applied.len(), 1);
        applied.pop().unwrap().result
    }

    pub fn put(&mut self, key: &str, value: &str) -> i64 {
        match self.apply(Request::Put(put_req(key, value))).unwrap() {
            Response::Put(p) => p.header.unwrap().revision,
            other => panic!("{other:?}"),
        }
    }

    pub fn range(&self, r: RangeRequest) -> Result<RangeResponse, ApplyError> {
        self.applier.range(&r)
    }
}

pub fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

pub fn keys(kvs: &[rampart_proto::mvccpb::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

pub fn op(r: request_op::Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

pub fn filled() -> Harness {
    let mut h = Harness::new();
    // rev 2..=6: b=3, a=5, d=1, c=4, a=2 (a modified last)
    for (k, v) in [("b", "3"), ("a", "5"), ("d", "1"), ("c", "4"), ("a", "2")] {
        h.put(k, v);
    }
    h.put("other", "x");
    h
}

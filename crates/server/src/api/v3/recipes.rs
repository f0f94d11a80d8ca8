//! What the Lock and Election services are made of: etcd's client-side concurrency recipes
//! (`clientv3/concurrency`), run inside the member against its own KV, lease and watch services
//! with the caller's credentials, so auth applies to them as to the caller's own requests.
//!
//! An owner is a key `<name>/<lease in hex>` attached to a lease; owners queue in the order of
//! their keys' create revisions, and each waits until every key created before its own is gone.

use std::sync::Arc;

use futures::StreamExt as _;
use rampart_proto::etcdserverpb::kv_server::Kv as _;
use rampart_proto::etcdserverpb::lease_server::Lease as _;
use rampart_proto::etcdserverpb::{
    compare, range_request, request_op, watch_request, Compare, LeaseGrantRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use rampart_proto::mvccpb::{event::EventType, KeyValue};
use tonic::{Request, Status};

use super::kv::KvService;
use super::lease::LeaseService;
use super::watch::serve_watch_stream;
use super::Caller;
use crate::etcdserver::EtcdServer;

/// TTL of the lease a recipe grants when the caller names none (etcd's session default); the
/// lease is not kept alive, so an abandoned lock or candidacy ends after this long.
const SESSION_TTL: i64 = 60;

/// The member's own services, called as the client whose request is being served.
pub struct Recipes {
    server: Arc<EtcdServer>,
    caller: Caller,
}

/// `<name>/<lease in hex>`, an owner's key.
pub fn owner_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix(name);
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A compare "create revision of `key` is `revision`".
pub fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// A txn operation reading the owner of `name` (the key under `name/` created first).
pub fn first_created_op(name: &[u8]) -> RequestOp {
    let prefix = prefix(name);
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            limit: 1,
            sort_order: range_request::SortOrder::Ascend as i32,
            sort_target: range_request::SortTarget::Create as i32,
            ..Default::default()
        })),
    }
}

/// The first key of a range answer inside a txn answer, at `index`.
pub fn range_kv(resp: &TxnResponse, index: usize) -> Option<KeyValue> {
    match resp.responses.get(index)?.response.as_ref()? {
        rampart_proto::etcdserverpb::response_op::Response::ResponseRange(r) => {
            r.kvs.first().cloned()
        }
        _ => None,
    }
}

impl Recipes {
    /// The recipes as the client of `request` (its token and certificate).
    pub fn for_request<T>(server: Arc<EtcdServer>, request: &Request<T>) -> Recipes {
        Recipes {
            server,
            caller: Caller::of(request),
        }
    }

    /// `message` as a request of the caller.
    pub fn request<T>(&self, message: T) -> Request<T> {
        self.caller.request(message)
    }

    /// `lease`, or a new lease of [`SESSION_TTL`] when it is 0.
    pub async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let grant = LeaseGrantRequest {
            ttl: SESSION_TTL,
            id: 0,
        };
        let granted = LeaseService::new(self.server.clone())
            .lease_grant(self.request(grant))
            .await?;
        Ok(granted.into_inner().id)
    }

    pub async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, Status> {
        let kv = KvService::new(self.server.clone());
        Ok(kv.txn(self.request(txn)).await?.into_inner())
    }

    async fn range(&self, range: RangeRequest) -> Result<RangeResponse, Status> {
        let kv = KvService::new(self.server.clone());
        Ok(kv.range(self.request(range)).await?.into_inner())
    }

    /// The key under `name/` created first (the owner), with the read's header.
    pub async fn first_created(
        &self,
        name: &[u8],
    ) -> Result<(Option<ResponseHeader>, Option<KeyValue>), Status> {
        self.by_create_revision(name, range_request::SortOrder::Ascend, 0)
            .await
    }

    async fn by_create_revision(
        &self,
        name: &[u8],
        order: range_request::SortOrder,
        max_create_revision: i64,
    ) -> Result<(Option<ResponseHeader>, Option<KeyValue>), Status> {
        let prefix = prefix(name);
        let resp = self
            .range(RangeRequest {
                range_end: prefix_end(&prefix),
                key: prefix,
                limit: 1,
                sort_order: order as i32,
                sort_target: range_request::SortTarget::Create as i32,
                max_create_revision,
                ..Default::default()
            })
            .await?;
        Ok((resp.header, resp.kvs.into_iter().next()))
    }

    /// Waits until no key under `name/` created at or before `max_create_revision` is left
    /// (etcd's waitDeletes); answers with the header of the read that found none.
    pub async fn wait_deletes(
        &self,
        name: &[u8],
        max_create_revision: i64,
    ) -> Result<Option<ResponseHeader>, Status> {
        loop {
            let (header, last) = self
                .by_create_revision(name, range_request::SortOrder::Descend, max_create_revision)
                .await?;
            let Some(last) = last else {
                return Ok(header);
            };
            let from = header.map(|h| h.revision).unwrap_or(0);
            let mut events = self.watch(&last.key, &[], from).await?;
            'watching: loop {
                match events.next().await {
                    Some(resp) => {
                        if resp.canceled {
                            return Err(Status::unknown(resp.cancel_reason));
                        }
                        if resp
                            .events
                            .iter()
                            .any(|e| e.r#type == EventType::Delete as i32)
                        {
                            break 'watching;
                        }
                    }
                    None => return Err(Status::unavailable("etcdserver: server stopped")),
                }
            }
        }
    }

    /// A watch on `[key, range_end)` from `start_revision`, as the caller.
    pub async fn watch(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<impl futures::Stream<Item = WatchResponse> + Send + Unpin + 'static, Status> {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.to_vec(),
                    range_end: range_end.to_vec(),
                    start_revision,
                    ..Default::default()
                },
            )),
        };
        let user = self
            .server
            .requester_from(&self.caller.metadata, self.caller.conn.as_ref())
            .await?
            .map(|r| r.user);
        Ok(
            serve_watch_stream(&self.server, user, futures::stream::iter(vec![Ok(create)]))
                .filter_map(|r| async move { r.ok() })
                .boxed(),
        )
    }
}

//! `v3lockpb.Lock`: a distributed mutex held through a key, etcd's `concurrency.Mutex` run in
//! the member. Lock blocks until the caller owns `name`; Unlock deletes the owner's key.

use std::sync::Arc;

use rampart_proto::etcdserverpb::kv_server::Kv as _;
use rampart_proto::etcdserverpb::DeleteRangeRequest;
use rampart_proto::v3lockpb::lock_server::Lock;
use rampart_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Status};

use super::kv::KvService;
use super::recipes::{created_at, first_created_op, get_op, owner_key, put_op, range_kv, Recipes};
use super::Caller;
use crate::etcdserver::EtcdServer;

pub struct LockService {
    server: Arc<EtcdServer>,
}

impl LockService {
    pub fn new(server: Arc<EtcdServer>) -> LockService {
        LockService { server }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(
        &self,
        request: Request<LockRequest>,
    ) -> Result<tonic::Response<LockResponse>, Status> {
        let recipes = Recipes::for_request(self.server.clone(), &request);
        let LockRequest { name, lease } = request.into_inner();
        let lease = recipes.session_lease(lease).await?;
        let key = owner_key(&name, lease);
        // Queue up (or find this lease's place in the queue), and read the owner.
        let owner_of = first_created_op(&name);
        let resp = recipes
            .txn(rampart_proto::etcdserverpb::TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put_op(&key, b"", lease), owner_of.clone()],
                failure: vec![get_op(&key), owner_of],
            })
            .await?;
        let my_revision = if resp.succeeded {
            resp.header.as_ref().map(|h| h.revision).unwrap_or(0)
        } else {
            range_kv(&resp, 0).map(|kv| kv.create_revision).unwrap_or(0)
        };
        let owner = range_kv(&resp, 1);
        let header = match owner {
            Some(owner) if owner.create_revision != my_revision => {
                recipes.wait_deletes(&name, my_revision - 1).await?
            }
            _ => resp.header,
        };
        Ok(tonic::Response::new(LockResponse { header, key }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<tonic::Response<UnlockResponse>, Status> {
        let delete = Caller::of(&request).request(DeleteRangeRequest {
            key: request.get_ref().key.clone(),
            ..Default::default()
        });
        let resp = KvService::new(self.server.clone())
            .delete_range(delete)
            .await?
            .into_inner();
        Ok(tonic::Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}

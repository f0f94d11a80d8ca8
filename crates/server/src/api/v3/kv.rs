//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use prost::Message as _;
use rampart_apply::{validate, Response};
use rampart_proto::etcdserverpb::kv_server::Kv;
use rampart_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use rampart_proto::internal::raft_request::Request as Op;
use tonic::{Request, Status};

use super::apply_status;
use crate::etcdserver::EtcdServer;

pub struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    pub fn new(server: Arc<EtcdServer>) -> KvService {
        KvService { server }
    }

    /// Fills the member-level header fields apply cannot know.
    fn finish_header(&self, header: &mut Option<rampart_proto::etcdserverpb::ResponseHeader>) {
        let revision = header.as_ref().map(|h| h.revision).unwrap_or(0);
        *header = Some(self.server.header(revision));
    }
}

fn unexpected(kind: &str) -> Status {
    Status::internal(format!("etcdserver: unexpected response type for {kind}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<tonic::Response<RangeResponse>, Status> {
        let requester = self.server.requester(&request).await?;
        let req = request.into_inner();
        self.server.check_size(req.encoded_len())?;
        validate::range(&req).map_err(|e| apply_status(&e))?;
        if !req.serializable {
            self.server.linearizable_barrier().await?;
        }
        self.server
            .check_read(requester.as_ref(), &req.key, &req.range_end)?;
        let mut resp = self
            .server
            .applier
            .read()
            .expect("applier")
            .range(&req)
            .map_err(|e| apply_status(&e))?;
        self.finish_header(&mut resp.header);
        Ok(tonic::Response::new(resp))
    }

    async fn put(
        &self,
        request: Request<PutRequest>,
    ) -> Result<tonic::Response<PutResponse>, Status> {
        let requester = self.server.requester(&request).await?;
        let req = request.into_inner();
        validate::put(&req).map_err(|e| apply_status(&e))?;
        self.server
            .check_quota(crate::quota::put_cost(&req))
            .await?;
        match self.server.propose_as(Op::Put(req), requester).await? {
            Response::Put(mut resp) => {
                self.finish_header(&mut resp.header);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<tonic::Response<DeleteRangeResponse>, Status> {
        let requester = self.server.requester(&request).await?;
        let req = request.into_inner();
        validate::delete_range(&req).map_err(|e| apply_status(&e))?;
        match self
            .server
            .propose_as(Op::DeleteRange(req), requester)
            .await?
        {
            Response::DeleteRange(mut resp) => {
                self.finish_header(&mut resp.header);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected("delete range")),
        }
    }

    async fn txn(
        &self,
        request: Request<TxnRequest>,
    ) -> Result<tonic::Response<TxnResponse>, Status> {
        let requester = self.server.requester(&request).await?;
        let req = request.into_inner();
        validate::txn(&req, self.server.limits.max_txn_ops).map_err(|e| apply_status(&e))?;
        self.server
            .check_quota(crate::quota::txn_cost(&req))
            .await?;
        match self.server.propose_as(Op::Txn(req), requester).await? {
            Response::Txn(mut resp) => {
                self.finish_header(&mut resp.header);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected("txn")),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<tonic::Response<CompactionResponse>, Status> {
        let requester = self.server.requester(&request).await?;
        let req = request.into_inner();
        match self
            .server
            .propose_as(Op::Compaction(req), requester)
            .await?
        {
            Response::Compaction(mut resp) => {
                self.finish_header(&mut resp.header);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected("compaction")),
        }
    }
}

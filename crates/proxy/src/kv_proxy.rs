//! `etcdserverpb.KV` served by the proxy: reads are retried on another member when theirs
//! fails, serializable ranges may be answered from [`RangeCache`], and writes invalidate it.

use std::sync::Arc;

use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::kv_server::Kv;
use rampart_proto::etcdserverpb::request_op::Request as Op;
use rampart_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::metrics::ProxyMetrics;
use crate::range_cache::RangeCache;
use crate::upstream::Upstreams;
use crate::upstream_call::{self, Retry};

pub struct KvProxy {
    upstreams: Arc<Upstreams>,
    metrics: Arc<ProxyMetrics>,
    cache: Option<RangeCache>,
}

impl KvProxy {
    pub fn new(
        upstreams: Arc<Upstreams>,
        metrics: Arc<ProxyMetrics>,
        cache: Option<RangeCache>,
    ) -> KvProxy {
        KvProxy {
            upstreams,
            metrics,
            cache,
        }
    }

    async fn pass<Req: Clone, Resp, F, Fut>(
        &self,
        retry: Retry,
        request: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: Fn(KvClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let metadata = upstream_call::forwarded_metadata(request.metadata());
        upstream_call::call(
            &self.upstreams,
            &self.metrics,
            retry,
            &metadata,
            request.into_inner(),
            |channel, req| {
                call(
                    KvClient::new(channel)
                        .max_decoding_message_size(usize::MAX)
                        .max_encoding_message_size(usize::MAX),
                    req,
                )
            },
        )
        .await
    }
}

/// Does the transaction only read (so sending it again changes nothing)?
fn txn_only_reads(txn: &TxnRequest) -> bool {
    fn op_reads(op: &RequestOp) -> bool {
        match &op.request {
            Some(Op::RequestRange(_)) | None => true,
            Some(Op::RequestTxn(inner)) => txn_only_reads(inner),
            Some(Op::RequestPut(_)) | Some(Op::RequestDeleteRange(_)) => false,
        }
    }
    txn.success.iter().chain(txn.failure.iter()).all(op_reads)
}

#[tonic::async_trait]
impl Kv for KvProxy {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let token = upstream_call::auth_token(request.metadata());
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(request.get_ref(), token.as_deref()) {
                return Ok(Response::new(hit));
            }
        }
        let asked = request.get_ref().clone();
        let answer = self
            .pass(
                Retry::Safe,
                request,
                |mut c, r| async move { c.range(r).await },
            )
            .await?;
        if let Some(cache) = &self.cache {
            cache.put(&asked, token.as_deref(), answer.get_ref());
        }
        Ok(answer)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let key = request.get_ref().key.clone();
        let answer = self
            .pass(Retry::OnlyIfNotSent, request, |mut c, r| async move {
                c.put(r).await
            })
            .await;
        // Whatever the answer, the write may have been applied.
        if let Some(cache) = &self.cache {
            cache.invalidate(&key, b"");
        }
        answer
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let (key, end) = (
            request.get_ref().key.clone(),
            request.get_ref().range_end.clone(),
        );
        let answer = self
            .pass(Retry::OnlyIfNotSent, request, |mut c, r| async move {
                c.delete_range(r).await
            })
            .await;
        if let Some(cache) = &self.cache {
            cache.invalidate(&key, &end);
        }
        answer
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let reads_only = txn_only_reads(request.get_ref());
        let retry = if reads_only {
            Retry::Safe
        } else {
            Retry::OnlyIfNotSent
        };
        let answer = self
            .pass(retry, request, |mut c, r| async move { c.txn(r).await })
            .await;
        if !reads_only {
            if let Some(cache) = &self.cache {
                cache.invalidate_all();
            }
        }
        answer
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let answer = self
            .pass(Retry::OnlyIfNotSent, request, |mut c, r| async move {
                c.compact(r).await
            })
            .await;
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_proto::etcdserverpb::RequestOp;

    fn op(request: Op) -> RequestOp {
        RequestOp {
            request: Some(request),
        }
    }

    #[test]
    fn only_transactions_without_writes_are_reads() {
        let read = op(Op::RequestRange(RangeRequest::default()));
        let write = op(Op::RequestPut(PutRequest::default()));
        let reads = TxnRequest {
            success: vec![read.clone()],
            failure: vec![read.clone()],
            ..Default::default()
        };
        assert!(txn_only_reads(&reads));
        let writes_on_failure = TxnRequest {
            success: vec![read.clone()],
            failure: vec![write.clone()],
            ..Default::default()
        };
        assert!(!txn_only_reads(&writes_on_failure));
        let nested = TxnRequest {
            success: vec![op(Op::RequestTxn(writes_on_failure))],
            ..Default::default()
        };
        assert!(!txn_only_reads(&nested));
    }
}

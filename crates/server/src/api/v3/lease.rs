//! `etcdserverpb.Lease`: grant and revoke go through Raft; keep-alives and time-to-live are the
//! leader's (forwarded when this member is not it); the list is local.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use rampart_apply::Response;
use rampart_lease::MAX_LEASE_TTL;
use rampart_proto::etcdserverpb::lease_server::Lease;
use rampart_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use rampart_proto::internal::raft_request::Request as Op;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::{Request, Status, Streaming};

use crate::etcdserver::EtcdServer;

/// Keep-alive responses queued per stream before the stream stops reading requests.
const KEEPALIVE_QUEUE: usize = 16;

pub struct LeaseService {
    server: Arc<EtcdServer>,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> LeaseService {
        LeaseService { server }
    }
}

fn unexpected(kind: &str) -> Status {
    Status::internal(format!("etcdserver: unexpected response type for {kind}"))
}

/// Serves one keep-alive stream: each request renews its lease (used by the gRPC service and by
/// the JSON gateway).
pub fn serve_keep_alive_stream<S>(
    server: Arc<EtcdServer>,
    mut incoming: S,
) -> impl Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static
where
    S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE);
    tokio::spawn(async move {
        while let Some(next) = incoming.next().await {
            let Ok(req) = next else { break };
            let reply = match server.lease_renew(req.id).await {
                Ok(ttl) => Ok(LeaseKeepAliveResponse {
                    header: Some(server.current_header()),
                    id: req.id,
                    ttl,
                }),
                Err(status) => Err(status),
            };
            let failed = reply.is_err();
            if tx.send(reply).await.is_err() || failed {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<tonic::Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        // As etcd: the member that takes the request picks the ID (positive, unused).
        while req.id == 0 {
            let id = (self.server.next_request_id() & (i64::MAX as u64)) as i64;
            if id != 0 && !self.server.lessor.contains(id) {
                req.id = id;
            }
        }
        self.server
            .check_quota(crate::quota::LEASE_GRANT_COST)
            .await?;
        match self.server.propose(Op::LeaseGrant(req)).await? {
            Response::LeaseGrant(mut resp) => {
                let revision = resp.header.map(|h| h.revision).unwrap_or(0);
                resp.header = Some(self.server.header(revision));
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected("lease grant")),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<tonic::Response<LeaseRevokeResponse>, Status> {
        let requester = self.server.requester(&request).await?;
        let req = request.into_inner();
        match self
            .server
            .propose_as(Op::LeaseRevoke(req), requester)
            .await?
        {
            Response::LeaseRevoke(mut resp) => {
                let revision = resp.header.map(|h| h.revision).unwrap_or(0);
                resp.header = Some(self.server.header(revision));
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected("lease revoke")),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<tonic::Response<Self::LeaseKeepAliveStream>, Status> {
        let responses = serve_keep_alive_stream(self.server.clone(), request.into_inner());
        Ok(tonic::Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<LeaseTimeToLiveResponse>, Status> {
        let resp = self.server.lease_time_to_live(request.into_inner()).await?;
        Ok(tonic::Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<tonic::Response<LeaseLeasesResponse>, Status> {
        let leases = self
            .server
            .lessor
            .ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(tonic::Response::new(LeaseLeasesResponse {
            header: Some(self.server.current_header()),
            leases,
        }))
    }
}

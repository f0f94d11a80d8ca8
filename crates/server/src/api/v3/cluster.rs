//! `etcdserverpb.Cluster`: the member list, and membership changes through Raft (add, remove,
//! update, promote), with etcd's errors.

use std::sync::Arc;

use raft::eraftpb::ConfChangeType;
use rampart_apply::Response as Applied;
use rampart_proto::etcdserverpb::cluster_server::Cluster;
use rampart_proto::etcdserverpb::{
    Member as MemberProto, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use rampart_proto::internal::{raft_request, MemberUpdate};
use tonic::{Request, Response, Status};

use crate::errors::text;
use crate::etcdserver::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> ClusterService {
        ClusterService { server }
    }

    fn members(&self) -> Vec<MemberProto> {
        self.server
            .membership
            .members()
            .iter()
            .map(|m| m.to_proto())
            .collect()
    }

    fn header(&self) -> Option<rampart_proto::etcdserverpb::ResponseHeader> {
        Some(self.server.current_header())
    }

    fn check_peer_urls(&self, urls: &[String], except: Option<u64>) -> Result<(), Status> {
        for u in urls {
            url::Url::parse(u).map_err(|e| {
                Status::invalid_argument(format!("etcdserver: invalid peer URL {u:?}: {e}"))
            })?;
        }
        let taken = self
            .server
            .membership
            .members()
            .into_iter()
            .any(|m| Some(m.id) != except && m.peer_urls.iter().any(|p| urls.contains(p)));
        if taken {
            return Err(Status::failed_precondition(
                "etcdserver: Peer URLs already exists",
            ));
        }
        Ok(())
    }

    fn not_found() -> Status {
        Status::not_found(text::MEMBER_NOT_FOUND)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        // Changing membership is for root users once auth is on (etcd 3.4).
        self.server.check_admin(&request).await?;
        let req = request.into_inner();
        self.check_peer_urls(&req.peer_ur_ls, None)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // As etcd: the ID hashes the peer URLs, the cluster and the time of the request.
        let token = format!("{:x}-{now}", self.server.cluster_id());
        let member = MemberProto {
            id: crate::ids::member_id(&req.peer_ur_ls, &token),
            name: String::new(),
            peer_ur_ls: req.peer_ur_ls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: req.is_learner,
        };
        let change = if req.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        self.server
            .propose_membership(change, member.clone())
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members: self.members(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        // Changing membership is for root users once auth is on (etcd 3.4).
        self.server.check_admin(&request).await?;
        let id = request.into_inner().id;
        let member = self.server.membership.get(id).ok_or_else(Self::not_found)?;
        self.server
            .propose_membership(ConfChangeType::RemoveNode, member.to_proto())
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: self.members(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        // Changing membership is for root users once auth is on (etcd 3.4).
        self.server.check_admin(&request).await?;
        let req = request.into_inner();
        if self.server.membership.get(req.id).is_none() {
            return Err(Self::not_found());
        }
        self.check_peer_urls(&req.peer_ur_ls, Some(req.id))?;
        let update = MemberUpdate {
            member_id: req.id,
            peer_urls: req.peer_ur_ls,
        };
        match self
            .server
            .propose(raft_request::Request::MemberUpdate(update))
            .await?
        {
            Applied::Done => Ok(Response::new(MemberUpdateResponse {
                header: self.header(),
                members: self.members(),
            })),
            _ => Err(Status::internal(
                "etcdserver: unexpected response to member update",
            )),
        }
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let _ = request;
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        // Changing membership is for root users once auth is on (etcd 3.4).
        self.server.check_admin(&request).await?;
        let id = request.into_inner().id;
        let member = self.server.membership.get(id).ok_or_else(Self::not_found)?;
        if !member.is_learner {
            return Err(Status::failed_precondition(
                "etcdserver: can only promote a learner member",
            ));
        }
        // Raft refuses to count a learner's vote until it is a voter; promoting one that has not
        // caught up is what etcd refuses too.
        if !self.server.raft.status().is_leader() {
            return Err(Status::failed_precondition(
                "etcdserver: can only promote a learner member which is in sync with leader",
            ));
        }
        let mut promoted = member.to_proto();
        promoted.is_learner = false;
        self.server
            .propose_membership(ConfChangeType::AddNode, promoted)
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: self.members(),
        }))
    }
}

/// The member list on the peer port, for a proxy that knows only peer URLs (etcd's
/// `--proxy on`), authenticated by the peer TLS settings.
pub struct PeerInfoService {
    cluster: ClusterService,
}

impl PeerInfoService {
    pub fn new(
        server: Arc<EtcdServer>,
    ) -> rampart_proto::peer::peer_info_server::PeerInfoServer<PeerInfoService> {
        rampart_proto::peer::peer_info_server::PeerInfoServer::new(PeerInfoService {
            cluster: ClusterService::new(server),
        })
    }
}

#[tonic::async_trait]
impl rampart_proto::peer::peer_info_server::PeerInfo for PeerInfoService {
    async fn members(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        self.cluster.member_list(request).await
    }
}

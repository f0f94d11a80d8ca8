//! `etcdserverpb.Cluster`: the member list. Changing membership (add/remove/update/promote) is
//! not built yet; those calls say so with etcd's wording for an unsupported request.

use std::sync::Arc;

use rampart_proto::etcdserverpb::cluster_server::Cluster;
use rampart_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::etcdserver::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> ClusterService {
        ClusterService { server }
    }

    fn membership_changes_unavailable(&self, what: &str) -> Status {
        Status::failed_precondition(format!(
            "rampart: {what} is not available yet: membership is fixed at bootstrap by --initial-cluster"
        ))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(self.membership_changes_unavailable("member add"))
    }

    async fn member_remove(
        &self,
        _request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(self.membership_changes_unavailable("member remove"))
    }

    async fn member_update(
        &self,
        _request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(self.membership_changes_unavailable("member update"))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let _ = request;
        let members = self
            .server
            .membership
            .members()
            .iter()
            .map(|m| m.to_proto())
            .collect();
        let revision = self
            .server
            .applier
            .read()
            .expect("applier")
            .current_revision();
        Ok(Response::new(MemberListResponse {
            header: Some(self.server.header(revision)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(self.membership_changes_unavailable("member promote"))
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

//! The leader's side of leases: keeping the lease table's role in step with Raft leadership,
//! proposing the revocation of expired leases, and answering keep-alives and time-to-live
//! queries — locally on the leader, forwarded to it over the peer port from any other member.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_lease::{LeaseError, Lessor};
use rampart_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use rampart_proto::internal::{raft_request, LeaseExpired};
use rampart_proto::peer::lease_forward_client::LeaseForwardClient;
use rampart_proto::peer::lease_forward_server::{LeaseForward, LeaseForwardServer};
use rampart_raft_node::transport::PeerConnector;
use rampart_raft_node::RaftHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::errors::{self, text};
use crate::etcdserver::EtcdServer;

/// How often the leader looks for expired leases (etcd checks every 500 ms).
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Expired leases revoked by one Raft entry at most (bounds one entry's size).
pub const MAX_EXPIRED_PER_PROPOSAL: usize = 1000;

/// Pause before asking again when there is no leader or it is not ready for leases yet.
const FORWARD_RETRY: Duration = Duration::from_millis(100);

/// Cached peer channels to the leader, for forwarded lease requests.
pub struct LeaseForwarder {
    connect: PeerConnector,
    channels: Mutex<HashMap<String, Channel>>,
}

impl LeaseForwarder {
    pub fn new(connect: PeerConnector) -> LeaseForwarder {
        LeaseForwarder {
            connect,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, url: &str) -> Result<LeaseForwardClient<Channel>, Status> {
        let mut channels = self.channels.lock().expect("lease channels");
        let channel = match channels.get(url) {
            Some(c) => c.clone(),
            None => {
                let c = (self.connect)(url).map_err(|e| {
                    Status::unavailable(format!(
                        "etcdserver: cannot reach the leader at {url}: {e}"
                    ))
                })?;
                channels.insert(url.to_string(), c.clone());
                c
            }
        };
        Ok(LeaseForwardClient::new(channel))
    }
}

/// What one attempt at a leader-only lease request came to.
enum Attempt<T> {
    Done(T),
    NotFound,
    /// No leader, or the leader is not (yet) tracking leases: try again shortly.
    Retry(Status),
}

impl EtcdServer {
    /// Puts the lease table in the role Raft gives this member: the leader tracks expiry, and a
    /// new leader gives every lease its full TTL plus an election timeout.
    pub fn sync_lease_role(&self) {
        sync_lease_role(&self.lessor, &self.raft, self.election_timeout);
    }

    /// A keep-alive: the lease's TTL, or 0 when the lease is unknown or expired (what etcd sends).
    pub async fn lease_renew(&self, id: i64) -> Result<i64, Status> {
        self.leader_only(
            |server| match server.local_renew(id) {
                Ok(ttl) => Attempt::Done(ttl),
                Err(LeaseError::NotPrimary) => Attempt::Retry(not_leader()),
                Err(_) => Attempt::NotFound,
            },
            |mut client| async move {
                client
                    .keep_alive(LeaseKeepAliveRequest { id })
                    .await
                    .map(|r| r.into_inner().ttl)
            },
        )
        .await
        .map(|ttl| ttl.unwrap_or(0))
    }

    /// A time-to-live query; an unknown lease reports TTL -1 (what etcd sends).
    pub async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        let id = req.id;
        let found = self
            .leader_only(
                |server| match server.local_time_to_live(&req) {
                    Ok(resp) => Attempt::Done(resp),
                    Err(LeaseError::NotPrimary) => Attempt::Retry(not_leader()),
                    Err(_) => Attempt::NotFound,
                },
                |mut client| async move { client.time_to_live(req).await.map(|r| r.into_inner()) },
            )
            .await?;
        let mut resp = found.unwrap_or(LeaseTimeToLiveResponse {
            id,
            ttl: -1,
            ..Default::default()
        });
        resp.header = Some(self.current_header());
        Ok(resp)
    }

    fn local_renew(&self, id: i64) -> Result<i64, LeaseError> {
        self.sync_lease_role();
        self.lessor.renew(id)
    }

    fn local_time_to_live(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, LeaseError> {
        self.sync_lease_role();
        let t = self.lessor.time_to_live(req.id)?;
        Ok(LeaseTimeToLiveResponse {
            header: None,
            id: req.id,
            ttl: t.remaining,
            granted_ttl: t.granted_ttl,
            keys: if req.keys { t.keys } else { Vec::new() },
        })
    }

    /// Runs `local` on the leader, or `remote` against the leader from another member, retrying
    /// through leader changes until the request timeout. `Ok(None)` means the lease is unknown.
    async fn leader_only<T, F, Fut>(
        &self,
        local: impl Fn(&EtcdServer) -> Attempt<T>,
        remote: F,
    ) -> Result<Option<T>, Status>
    where
        F: Fn(LeaseForwardClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut last = Status::unavailable(text::NO_LEADER);
        while tokio::time::Instant::now() < deadline {
            let leader = self.raft.status().leader();
            let attempt = if leader == 0 {
                Attempt::Retry(Status::unavailable(text::NO_LEADER))
            } else if leader == self.member_id {
                local(self)
            } else {
                match self.forward_to(leader, &remote).await {
                    Ok(v) => Attempt::Done(v),
                    Err(s) if s.code() == Code::NotFound => Attempt::NotFound,
                    Err(s) => Attempt::Retry(s),
                }
            };
            match attempt {
                Attempt::Done(v) => return Ok(Some(v)),
                Attempt::NotFound => return Ok(None),
                Attempt::Retry(status) => last = status,
            }
            tokio::time::sleep(FORWARD_RETRY).await;
        }
        Err(if last.message() == text::NO_LEADER {
            last
        } else {
            errors::timeout()
        })
    }

    async fn forward_to<T, F, Fut>(&self, leader: u64, remote: &F) -> Result<T, Status>
    where
        F: Fn(LeaseForwardClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let member = self
            .membership
            .get(leader)
            .ok_or_else(|| Status::unavailable(text::NO_LEADER))?;
        let mut last = Status::unavailable(text::NO_LEADER);
        for url in &member.peer_urls {
            let client = self.lease_forwarder.client(url)?;
            match remote(client).await {
                Ok(v) => return Ok(v),
                Err(s) if s.code() == Code::NotFound => return Err(s),
                Err(s) => last = s,
            }
        }
        Err(last)
    }
}

/// Promotes or demotes `lessor` to match this member's Raft role (called by the apply loop before
/// each batch, so a grant applied on the leader starts its clock at once, and by lease requests).
pub fn sync_lease_role(lessor: &Lessor, raft: &RaftHandle, extend: Duration) {
    let leader = raft.status().is_leader();
    if leader != lessor.is_primary() {
        if leader {
            lessor.promote(extend);
            tracing::info!("became leader: lease expiry is tracked here now");
        } else {
            lessor.demote();
        }
    }
}

fn not_leader() -> Status {
    Status::unavailable(text::NOT_LEADER)
}

/// Proposes the revocation of expired leases while this member leads; runs until the server stops.
pub async fn run_lease_expiry(server: Arc<EtcdServer>) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        server.sync_lease_role();
        sync_v2_clock(&server).await;
        let ids = server.lessor.expired(MAX_EXPIRED_PER_PROPOSAL);
        if ids.is_empty() {
            continue;
        }
        tracing::debug!(count = ids.len(), "revoking expired leases");
        if let Err(status) = server
            .propose_without_waiting(raft_request::Request::LeaseExpired(LeaseExpired { ids }))
            .await
        {
            tracing::debug!(error = %status.message(), "revocation of expired leases will be retried");
        }
    }
}

/// On the leader, while some v2 key has a TTL: proposes the leader's clock, at which every member
/// removes the v2 keys that are due (etcd's SYNC).
async fn sync_v2_clock(server: &EtcdServer) {
    if !server.raft.status().is_leader() {
        return;
    }
    let expiring = server
        .applier
        .read()
        .expect("applier")
        .v2_store()
        .lock()
        .expect("v2 store")
        .has_expiring();
    if !expiring {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let sync = rampart_proto::internal::V2Request {
        method: "SYNC".into(),
        now_unix_nanos: now,
        ..Default::default()
    };
    if let Err(status) = server
        .propose_without_waiting(raft_request::Request::V2(sync))
        .await
    {
        tracing::debug!(error = %status.message(), "v2 clock sync will be retried");
    }
}

/// The leader's end of forwarded lease requests (served on the peer port).
pub struct LeaseForwardService {
    server: Arc<EtcdServer>,
}

impl LeaseForwardService {
    pub fn new(server: Arc<EtcdServer>) -> LeaseForwardServer<LeaseForwardService> {
        LeaseForwardServer::new(LeaseForwardService { server })
    }
}

fn lease_status(e: LeaseError) -> Status {
    match e {
        LeaseError::NotPrimary => not_leader(),
        other => Status::not_found(other.to_string()),
    }
}

#[tonic::async_trait]
impl LeaseForward for LeaseForwardService {
    async fn keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl = self.server.local_renew(id).map_err(lease_status)?;
        Ok(Response::new(LeaseKeepAliveResponse {
            header: None,
            id,
            ttl,
        }))
    }

    async fn time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.server
            .local_time_to_live(&request.into_inner())
            .map(Response::new)
            .map_err(lease_status)
    }
}

//! `etcdserverpb.Maintenance`: Status, Hash, HashKV, alarms and leader transfer.

use std::sync::Arc;
use std::time::Duration;

use rampart_apply::Response as ApplyResponse;
use rampart_proto::etcdserverpb::alarm_request::AlarmAction;
use rampart_proto::etcdserverpb::maintenance_server::Maintenance;
use rampart_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use rampart_proto::internal::raft_request::Request as Op;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::apply_status;
use crate::errors::text;
use crate::etcdserver::EtcdServer;

/// Bytes per snapshot message (etcd sends 32 KiB).
const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub fn new(server: Arc<EtcdServer>) -> MaintenanceService {
        MaintenanceService { server }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// GET lists what this member has applied; ACTIVATE and DEACTIVATE go through Raft.
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let req = request.into_inner();
        if req.action == AlarmAction::Get as i32 {
            let alarms = self
                .server
                .applier
                .read()
                .expect("applier")
                .alarms()
                .read()
                .expect("alarms")
                .iter()
                .map(|(member_id, alarm)| AlarmMember {
                    member_id: *member_id,
                    alarm: *alarm,
                })
                .collect();
            return Ok(Response::new(AlarmResponse {
                header: Some(self.server.current_header()),
                alarms,
            }));
        }
        match self.server.propose(Op::Alarm(req)).await? {
            ApplyResponse::Alarm(mut resp) => {
                resp.header = Some(self.server.current_header());
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal("unexpected response to an alarm request")),
        }
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let (revision, db_size, db_size_in_use) = {
            let applier = self.server.applier.read().expect("applier");
            (
                applier.current_revision(),
                applier.db_size(),
                applier.db_size_in_use(),
            )
        };
        let raft = self.server.raft.status();
        let mut errors = Vec::new();
        if raft.leader() == 0 {
            errors.push(text::NO_LEADER.to_string());
        }
        Ok(Response::new(StatusResponse {
            header: Some(self.server.header(revision)),
            version: self.server.version.to_string(),
            db_size,
            leader: raft.leader(),
            raft_index: raft.commit_index(),
            raft_term: raft.term(),
            raft_applied_index: self.server.applied_index(),
            errors,
            db_size_in_use,
            is_learner: false,
        }))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.server.check_admin(&request).await?;
        // Local to this member, like etcd's; writes wait while the file is rewritten.
        let applier = self.server.applier.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || applier.write().expect("applier").defragment())
            .await
            .map_err(|e| Status::internal(format!("etcdserver: defragment task failed: {e}")))?
            .map_err(|e| Status::internal(format!("etcdserver: defragment failed: {e}")))?;
        tracing::info!(took = ?started.elapsed(), "finished defragmenting the backend");
        Ok(Response::new(DefragmentResponse {
            header: Some(self.server.current_header()),
        }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.server.check_admin(&request).await?;
        let applier = self.server.applier.read().expect("applier");
        let revision = applier.current_revision();
        let hash = applier.hash_kv(0).map_err(|e| apply_status(&e))?;
        Ok(Response::new(HashResponse {
            header: Some(self.server.header(revision)),
            hash: hash.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.server.check_admin(&request).await?;
        let req = request.into_inner();
        let applier = self.server.applier.read().expect("applier");
        let hash = applier
            .hash_kv(req.revision)
            .map_err(|e| apply_status(&e))?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.server.header(hash.hash_revision)),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
        }))
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    /// The store as an etcd 3.4 backend file (bbolt), streamed in chunks and followed by its
    /// SHA-256, as etcd sends it: `etcdctl snapshot save/status/restore` work on it unchanged.
    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.server.check_admin(&request).await?;
        let applier = self.server.applier.clone();
        let file = tokio::task::spawn_blocking(move || {
            let buckets = applier
                .read()
                .expect("applier")
                .store()
                .etcd_buckets()
                .map_err(|e| Status::internal(e.to_string()))?;
            rampart_bbolt::write_db(&buckets).map_err(|e| Status::internal(e.to_string()))
        })
        .await
        .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))??;
        let header = self.server.current_header();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&file);
            let mut sent = 0usize;
            for chunk in file.chunks(SNAPSHOT_CHUNK_BYTES) {
                sent += chunk.len();
                let resp = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (file.len() - sent) as u64,
                    blob: chunk.to_vec(),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
            let _ = tx
                .send(Ok(SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: 0,
                    blob: digest.to_vec(),
                }))
                .await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let raft = self.server.raft.status();
        if !raft.is_leader() {
            return Err(Status::failed_precondition(text::NOT_LEADER));
        }
        if self.server.membership.get(target).is_none() {
            return Err(Status::failed_precondition(text::BAD_LEADER_TRANSFEREE));
        }
        self.server.raft.transfer_leader(target);
        let deadline = tokio::time::Instant::now() + self.server.request_timeout;
        while self.server.raft.status().leader() != target {
            if tokio::time::Instant::now() >= deadline {
                return Err(crate::errors::timeout());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.server.current_header()),
        }))
    }
}

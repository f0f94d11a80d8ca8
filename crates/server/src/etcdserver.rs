//! The server core the API handlers call: propose a request through Raft and wait for its
//! result, wait for a linearizable read point, and build response headers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prost::Message as _;
use rampart_apply::{Applier, ApplyError, Response};
use rampart_proto::etcdserverpb::ResponseHeader;
use rampart_proto::internal::{raft_request, RaftRequest};
use rampart_raft_node::RaftHandle;
use tokio::sync::{oneshot, watch};
use tonic::Status;

use crate::errors;
use crate::ids::RequestIds;
use crate::leases::LeaseForwarder;
use crate::membership::Membership;
use crate::watch::WatchHub;
use rampart_lease::Lessor;

/// Result of applying one proposed request, delivered to the handler that proposed it.
pub type ApplyResult = Result<Response, ApplyError>;

/// How a proposal ended for the handler that made it.
pub enum Outcome {
    /// Committed and applied on this member.
    Applied(ApplyResult),
    /// Raft did not take it (no leader, or the member is stopping).
    Refused(rampart_raft_node::NodeError),
}

/// Handlers waiting for their proposal to be applied, by request ID.
#[derive(Default)]
pub struct Waiters {
    pending: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    /// The last Raft index of the batch the apply loop is applying (0 between batches).
    applying: AtomicU64,
}

impl Waiters {
    /// The apply loop starts applying committed entries up to `last_index`.
    pub fn begin_batch(&self, last_index: u64) {
        self.applying.store(last_index, Ordering::Release);
    }

    /// The apply loop finished its batch (and answered every waiter in it).
    pub fn end_batch(&self) {
        self.applying.store(0, Ordering::Release);
    }

    fn batch_in_flight(&self) -> Option<u64> {
        match self.applying.load(Ordering::Acquire) {
            0 => None,
            last => Some(last),
        }
    }

    fn register(&self, id: u64) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("waiters").insert(id, tx);
        rx
    }

    fn forget(&self, id: u64) {
        self.pending.lock().expect("waiters").remove(&id);
    }

    /// Hands an applied result to its waiter, if this member proposed it and it still waits.
    pub fn trigger(&self, id: u64, result: ApplyResult) {
        self.finish(id, Outcome::Applied(result));
    }

    /// Waits up to `timeout` for request `id`'s outcome (`applied` is its receiver); `None` when
    /// it timed out (and the request is forgotten). `Some(Err)` when the member stopped.
    ///
    /// A request still in the batch being applied when the timeout passes is waited for: it is
    /// committed, so its outcome is certain (a prefix delete of 100,000s of keys takes seconds to
    /// apply), and "timed out" would be wrong about a write that happens anyway. The timeout is
    /// for proposals that may never commit (no leader, a partition).
    async fn outcome(
        &self,
        id: u64,
        mut applied: oneshot::Receiver<Outcome>,
        timeout: Duration,
        mut applied_index: watch::Receiver<u64>,
    ) -> Option<Result<Outcome, oneshot::error::RecvError>> {
        if let Ok(outcome) = tokio::time::timeout(timeout, &mut applied).await {
            return Some(outcome);
        }
        if let Some(last) = self.batch_in_flight() {
            let _ = applied_index.wait_for(|a| *a >= last).await;
            if let Ok(outcome) = applied.try_recv() {
                return Some(Ok(outcome));
            }
        }
        self.forget(id);
        None
    }

    fn finish(&self, id: u64, outcome: Outcome) {
        if let Some(tx) = self.pending.lock().expect("waiters").remove(&id) {
            let _ = tx.send(outcome);
        }
    }
}

/// Explicit limits on client requests (etcd's `--max-request-bytes`, `--max-txn-ops`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes` (`None`: no quota).
    pub quota_backend_bytes: Option<u64>,
}

/// What a server core is made of (built by `run`).
pub struct ServerParts {
    pub member_id: u64,
    pub membership: Arc<Membership>,
    pub raft: RaftHandle,
    pub applier: Arc<RwLock<Applier>>,
    pub waiters: Arc<Waiters>,
    pub applied: watch::Receiver<u64>,
    pub limits: Limits,
    pub election_timeout: Duration,
    pub lease_forwarder: LeaseForwarder,
    pub watch_hub: Arc<WatchHub>,
    /// `--bcrypt-cost`, `--auth-token-ttl` and `--auth-token jwt,...`.
    pub bcrypt_cost: u32,
    pub auth_token_ttl: Duration,
    pub jwt: Option<Arc<rampart_auth::jwt::JwtTokens>>,
}

pub struct EtcdServer {
    pub member_id: u64,
    pub membership: Arc<Membership>,
    pub raft: RaftHandle,
    pub applier: Arc<RwLock<Applier>>,
    pub lessor: Arc<Lessor>,
    /// The v3 auth state and this member's tokens (shared with the applier, which alone
    /// changes them).
    pub auth: rampart_apply::auth::SharedAuth,
    pub tokens: Arc<rampart_auth::SimpleTokens>,
    /// JWTs instead of simple tokens (`--auth-token jwt,...`).
    pub jwt: Option<Arc<rampart_auth::jwt::JwtTokens>>,
    pub bcrypt_cost: u32,
    pub waiters: Arc<Waiters>,
    pub applied: watch::Receiver<u64>,
    pub limits: Limits,
    pub election_timeout: Duration,
    pub request_timeout: Duration,
    pub version: &'static str,
    pub lease_forwarder: LeaseForwarder,
    pub watch_hub: Arc<WatchHub>,
    pub(crate) quota: crate::quota::Quota,
    ids: RequestIds,
}

impl EtcdServer {
    pub fn new(parts: ServerParts) -> EtcdServer {
        let lessor = parts.applier.read().expect("applier").lessor().clone();
        let auth = parts.applier.read().expect("applier").auth().clone();
        let tokens = parts.applier.read().expect("applier").tokens().clone();
        tokens.set_ttl(parts.auth_token_ttl);
        if parts.jwt.is_some() {
            tokens.turn_off();
        }
        let db_path = parts
            .applier
            .read()
            .expect("applier")
            .store()
            .path()
            .to_owned();
        let quota = crate::quota::Quota::new(parts.limits.quota_backend_bytes, db_path);
        EtcdServer {
            member_id: parts.member_id,
            membership: parts.membership,
            raft: parts.raft,
            applier: parts.applier,
            lessor,
            auth,
            tokens,
            jwt: parts.jwt,
            bcrypt_cost: parts.bcrypt_cost,
            waiters: parts.waiters,
            applied: parts.applied,
            limits: parts.limits,
            election_timeout: parts.election_timeout,
            request_timeout: crate::settings::request_timeout(parts.election_timeout),
            version: crate::ETCD_API_VERSION,
            lease_forwarder: parts.lease_forwarder,
            watch_hub: parts.watch_hub,
            quota,
            ids: RequestIds::new(parts.member_id),
        }
    }

    /// A fresh ID, unique across the cluster (request IDs, generated lease IDs).
    pub fn next_request_id(&self) -> u64 {
        self.ids.next()
    }

    pub fn cluster_id(&self) -> u64 {
        self.membership.cluster_id()
    }

    /// A response header for this member at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id(),
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status().term(),
        }
    }

    /// A response header at the store's current revision.
    pub fn current_header(&self) -> ResponseHeader {
        let revision = self.applier.read().expect("applier").current_revision();
        self.header(revision)
    }

    /// Rejects a request whose encoded size is over `--max-request-bytes`.
    pub fn check_size(&self, encoded_len: usize) -> Result<(), Status> {
        if encoded_len > self.limits.max_request_bytes {
            return Err(errors::request_too_large());
        }
        Ok(())
    }

    /// Proposes `request` through Raft and waits until this member has applied it.
    pub async fn propose(&self, request: raft_request::Request) -> Result<Response, Status> {
        self.propose_as(request, None).await
    }

    /// [`EtcdServer::propose`] for a client's request made as `requester` (auth on): applying
    /// it checks the requester's permissions at that point in the log.
    pub async fn propose_as(
        &self,
        request: raft_request::Request,
        requester: Option<rampart_proto::internal::Requester>,
    ) -> Result<Response, Status> {
        let id = self.ids.next();
        let envelope = RaftRequest {
            id,
            request: Some(request),
            requester,
        };
        let data = envelope.encode_to_vec();
        // The size limit covers what goes into the log, as etcd's does.
        self.check_size(data.len())?;
        let applied = self.waiters.register(id);
        // One wake-up per request: the apply loop's answer, or the Raft thread's refusal.
        let waiters = self.waiters.clone();
        let refused = move |e| waiters.finish(id, Outcome::Refused(e));
        if let Err(e) = self.raft.propose_detached(data, refused) {
            self.waiters.forget(id);
            return Err(errors::node_status(&e));
        }
        let outcome = self
            .waiters
            .outcome(id, applied, self.request_timeout, self.applied.clone())
            .await
            .ok_or_else(errors::timeout)?;
        match outcome {
            Ok(Outcome::Applied(Ok(response))) => Ok(response),
            Ok(Outcome::Applied(Err(apply_error))) => {
                Err(crate::api::v3::apply_status(&apply_error))
            }
            Ok(Outcome::Refused(e)) => Err(errors::node_status(&e)),
            Err(_) => Err(Status::unavailable(errors::text::STOPPED)),
        }
    }

    /// Proposes a membership change for `member` and waits until this member applied it.
    pub async fn propose_membership(
        &self,
        change_type: raft::eraftpb::ConfChangeType,
        member: rampart_proto::etcdserverpb::Member,
    ) -> Result<(), Status> {
        let id = self.ids.next();
        let context = rampart_proto::internal::ConfChangeContext {
            member: Some(member.clone()),
            request_id: id,
        };
        let mut change = raft::eraftpb::ConfChange::default();
        change.set_change_type(change_type);
        change.node_id = member.id;
        change.context = context.encode_to_vec().into();
        let applied = self.waiters.register(id);
        if let Err(e) = self.raft.propose_conf_change(change).await {
            self.waiters.forget(id);
            return Err(errors::node_status(&e));
        }
        match tokio::time::timeout(self.request_timeout, applied).await {
            Ok(Ok(Outcome::Applied(Ok(_)))) => Ok(()),
            Ok(Ok(Outcome::Applied(Err(apply_error)))) => {
                Err(crate::api::v3::apply_status(&apply_error))
            }
            Ok(Ok(Outcome::Refused(e))) => Err(errors::node_status(&e)),
            Ok(Err(_)) => Err(Status::unavailable(errors::text::STOPPED)),
            Err(_) => {
                self.waiters.forget(id);
                Err(errors::timeout())
            }
        }
    }

    /// Appends `request` to the Raft log without waiting for it to be applied (for requests whose
    /// effect the caller observes some other way).
    pub async fn propose_without_waiting(
        &self,
        request: raft_request::Request,
    ) -> Result<(), Status> {
        let data = RaftRequest {
            id: self.ids.next(),
            request: Some(request),
            requester: None,
        }
        .encode_to_vec();
        self.raft
            .propose(data)
            .await
            .map_err(|e| errors::node_status(&e))
    }

    /// Waits until this member has applied everything committed when the read arrived, so a
    /// local read afterwards is linearizable (Raft ReadIndex).
    pub async fn linearizable_barrier(&self) -> Result<(), Status> {
        let wait = async {
            let index = self
                .raft
                .read_index()
                .await
                .map_err(|e| errors::node_status(&e))?;
            self.wait_applied(index).await
        };
        match tokio::time::timeout(self.request_timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(errors::timeout()),
        }
    }

    /// Waits until the apply loop reached `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), Status> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|a| *a >= index)
            .await
            .map(|_| ())
            .map_err(|_| Status::unavailable(errors::text::STOPPED))
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_apply::Response;

    const TIMEOUT: Duration = Duration::from_millis(50);

    fn done() -> Outcome {
        Outcome::Applied(Ok(Response::Done))
    }

    #[tokio::test]
    async fn a_request_in_the_batch_being_applied_outlives_the_timeout() {
        let waiters = Arc::new(Waiters::default());
        let (index_tx, index_rx) = watch::channel(0u64);
        let rx = waiters.register(7);
        waiters.begin_batch(10);
        let apply = {
            let waiters = waiters.clone();
            tokio::spawn(async move {
                // The batch takes four timeouts to apply.
                tokio::time::sleep(TIMEOUT * 4).await;
                waiters.trigger(7, Ok(Response::Done));
                index_tx.send(10).unwrap();
                waiters.end_batch();
            })
        };
        let outcome = waiters.outcome(7, rx, TIMEOUT, index_rx).await;
        assert!(matches!(outcome, Some(Ok(Outcome::Applied(Ok(_))))));
        apply.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_outside_the_batch_being_applied_times_out() {
        let waiters = Arc::new(Waiters::default());
        let (index_tx, index_rx) = watch::channel(0u64);
        let rx = waiters.register(7);
        // A batch is applied, but request 7 is not in it (never committed).
        waiters.begin_batch(10);
        let apply = tokio::spawn(async move {
            tokio::time::sleep(TIMEOUT * 2).await;
            index_tx.send(10).unwrap();
        });
        assert!(waiters.outcome(7, rx, TIMEOUT, index_rx).await.is_none());
        apply.await.unwrap();
        // Forgotten: a late answer finds no waiter.
        assert!(waiters.pending.lock().unwrap().is_empty());
        waiters.finish(7, done());
    }

    #[tokio::test]
    async fn with_no_batch_being_applied_the_timeout_holds() {
        let waiters = Waiters::default();
        let (_index_tx, index_rx) = watch::channel(0u64);
        let rx = waiters.register(7);
        let started = std::time::Instant::now();
        assert!(waiters.outcome(7, rx, TIMEOUT, index_rx).await.is_none());
        assert!(started.elapsed() < TIMEOUT * 10);
    }
}

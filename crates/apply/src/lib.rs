//! The meaning of etcd's v3 KV requests, applied to the MVCC store.
//!
//! Owns: validation done before a request enters Raft ([`validate`]), applying committed
//! requests in batches with etcd's semantics ([`Applier::apply_batch`]), serving reads outside
//! Raft ([`Applier::range`]), and etcd's error texts and gRPC codes ([`ApplyError`]).
//! Does not own: storage layout (`rampart-mvcc`), consensus, or the gRPC transport.

pub mod alarm;
pub mod auth;
mod error;
mod kv;
mod lease;
pub mod v2;
pub mod validate;

use std::path::Path;
use std::sync::Arc;

use rampart_lease::Lessor;

use rampart_mvcc::{Durability, HashKv, MvccError, Store};
use rampart_proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnResponse,
};
use rampart_proto::internal::{raft_request::Request, RaftRequest};
use rampart_proto::mvccpb::Event;

pub use error::ApplyError;
pub use validate::DEFAULT_MAX_TXN_OPS;

/// The response to one applied request (headers carry only the revision; the server fills in
/// cluster, member and term).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// A v2 write: the event, or etcd's v2 error (both are answers, not failures).
    V2(Result<rampart_v2store::Event, rampart_v2store::V2Error>),
    /// A v2 auth write: applied, or the conflict with what was applied since it was decided.
    V2Auth(Result<(), rampart_v2store::WriteConflict>),
    /// The alarms an alarm request raised or cleared.
    Alarm(rampart_proto::etcdserverpb::AlarmResponse),
    /// An Auth service request's answer.
    Auth(rampart_auth::AuthResponse),
    /// Applied with nothing to report (member attributes).
    Done,
}

/// One applied request: who waits for it, what it returned, what changed.
#[derive(Debug)]
pub struct Applied {
    pub id: u64,
    pub result: Result<Response, ApplyError>,
    pub events: Vec<Event>,
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The leases a put may attach a key to.
pub trait LeaseTable: Send + Sync {
    /// Whether lease `id` is granted and not yet revoked.
    fn contains(&self, id: i64) -> bool;
}

impl LeaseTable for Lessor {
    fn contains(&self, id: i64) -> bool {
        Lessor::contains(self, id)
    }
}

/// Applies committed requests to the store; the only writer of the store.
pub struct Applier {
    store: Store,
    lessor: Arc<Lessor>,
    v2: v2::SharedV2Store,
    alarms: alarm::SharedAlarms,
    auth: auth::SharedAuth,
    tokens: Arc<rampart_auth::SimpleTokens>,
}

impl Applier {
    /// Opens the store with a lease table of its own (minimum TTL 1 s).
    pub fn open(path: &Path) -> Result<Applier, MvccError> {
        Applier::open_with_lessor(path, Arc::new(Lessor::new(1)))
    }

    /// Opens the store and loads its leases into `lessor`, which the server shares for
    /// keep-alives and expiry.
    pub fn open_with_lessor(path: &Path, lessor: Arc<Lessor>) -> Result<Applier, MvccError> {
        let applier = Applier {
            store: Store::open(path)?,
            lessor,
            v2: Default::default(),
            alarms: Default::default(),
            auth: Default::default(),
            tokens: Default::default(),
        };
        applier.load_side_tables()?;
        Ok(applier)
    }

    /// Loads the leases and the v2 key space from the backend.
    fn load_side_tables(&self) -> Result<(), MvccError> {
        let view = self.store.read()?;
        self.lessor.load(&view.leases()?, view.lease_attachments()?);
        *self.v2.lock().expect("v2 store") = v2::load(&view)?;
        *self.alarms.write().expect("alarms") = self.store.alarms()?.into_iter().collect();
        *self.auth.write().unwrap_or_else(|p| p.into_inner()) = auth::load(&view)?;
        Ok(())
    }

    /// Raised alarms (shared: the API lists them and refuses writes early while NOSPACE is on).
    pub fn alarms(&self) -> &alarm::SharedAlarms {
        &self.alarms
    }

    /// The v3 auth state (only the applier writes it).
    pub fn auth(&self) -> &auth::SharedAuth {
        &self.auth
    }

    /// The simple tokens Authenticate hands out on this member.
    pub fn tokens(&self) -> &Arc<rampart_auth::SimpleTokens> {
        &self.tokens
    }

    /// The v2 key space (reads lock it briefly; only the applier writes it).
    pub fn v2_store(&self) -> &v2::SharedV2Store {
        &self.v2
    }

    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The last Raft index whose effects are in the store.
    pub fn consistent_index(&self) -> u64 {
        self.store.read().map(|r| r.consistent_index()).unwrap_or(0)
    }

    pub fn current_revision(&self) -> i64 {
        self.store.read().map(|r| r.current_revision()).unwrap_or(0)
    }

    pub fn db_size(&self) -> i64 {
        self.store.file_size()
    }

    pub fn db_size_in_use(&self) -> i64 {
        self.store.bytes_in_use()
    }

    /// Applies `requests` (Raft index, request) in order in one backend transaction, skipping
    /// indexes the store already holds (replay after a restart), and records `last_index` as
    /// the consistent index. An `Err` means the store itself failed; request-level failures
    /// are in each [`Applied::result`].
    pub fn apply_batch(
        &mut self,
        requests: &[(u64, RaftRequest)],
        last_index: u64,
        durability: Durability,
    ) -> Result<Vec<Applied>, MvccError> {
        self.apply_batch_answering(requests, last_index, durability, |_| {})
    }

    /// [`Applier::apply_batch`], calling `answer` with the applied requests before the backend
    /// commit, so that clients need not wait for it. The requests are committed in the Raft log
    /// already (the backend commit is not what makes them durable), and whoever holds the
    /// applier exclusively keeps readers of the backend out until the commit is done.
    pub fn apply_batch_answering(
        &mut self,
        requests: &[(u64, RaftRequest)],
        last_index: u64,
        durability: Durability,
        answer: impl FnOnce(&mut [Applied]),
    ) -> Result<Vec<Applied>, MvccError> {
        let mut batch = self.store.write()?;
        let already = batch.meta().consistent_index;
        if last_index <= already && matches!(durability, Durability::None) {
            return Ok(Vec::new());
        }
        let mut applied = Vec::with_capacity(requests.len());
        let mut previous_index = already;
        for (index, request) in requests {
            if *index <= already {
                continue;
            }
            debug_assert!(
                *index > previous_index,
                "Raft indexes must increase within a batch"
            );
            debug_assert!(
                *index <= last_index,
                "entry {index} is beyond the batch's last index"
            );
            previous_index = *index;
            let mut events = Vec::new();
            let requester = request.requester.as_ref();
            let refused_by_auth = request.request.as_ref().and_then(|r| {
                let store = self.auth.read().unwrap_or_else(|p| p.into_inner());
                auth::check(&store, &self.lessor, r, requester).err()
            });
            let result = match (&request.request, refused_by_auth) {
                (_, Some(refusal)) => Err(ApplyError::Auth(refusal)),
                (request, None) => match request {
                    Some(r) if alarm::refuses(&self.alarms, r) => Err(ApplyError::NoSpace),
                    Some(Request::Auth(a)) => {
                        auth::apply(&mut batch, &self.auth, &self.tokens, a, requester)?
                            .map(Response::Auth)
                    }
                    Some(Request::Alarm(a)) => {
                        Ok(Response::Alarm(alarm::apply(&mut batch, &self.alarms, a)?))
                    }
                    Some(Request::Put(put)) => {
                        kv::put(&mut batch, self.lessor.as_ref(), put, &mut events)
                            .map(Response::Put)
                    }
                    Some(Request::DeleteRange(del)) => {
                        kv::delete_range(&mut batch, del, &mut events).map(Response::DeleteRange)
                    }
                    Some(Request::Txn(txn)) => {
                        kv::txn(&mut batch, self.lessor.as_ref(), txn, &mut events)
                            .map(Response::Txn)
                    }
                    Some(Request::Range(range)) => {
                        kv::range_in_batch(&batch, range).map(Response::Range)
                    }
                    Some(Request::Compaction(c)) => {
                        kv::compact(&mut batch, c).map(Response::Compaction)
                    }
                    Some(Request::LeaseGrant(g)) => {
                        lease::grant(&mut batch, &self.lessor, g).map(Response::LeaseGrant)
                    }
                    Some(Request::LeaseRevoke(r)) => {
                        lease::revoke(&mut batch, &self.lessor, r, &mut events)
                            .map(Response::LeaseRevoke)
                    }
                    Some(Request::LeaseExpired(e)) => {
                        lease::expire(&mut batch, &self.lessor, &e.ids, &mut events)
                            .map(Response::LeaseRevoke)
                    }
                    Some(Request::V2(r)) => Ok(Response::V2(v2::apply(&mut batch, &self.v2, r)?)),
                    Some(Request::V2Auth(w)) => {
                        Ok(Response::V2Auth(v2::apply_auth(&mut batch, &self.v2, w)?))
                    }
                    Some(Request::MemberAttributes(_)) | Some(Request::MemberUpdate(_)) => {
                        // Membership lives beside the store (the apply loop keeps it); etcd counts
                        // these writes in the v2 index.
                        v2::bump(&mut batch, &self.v2);
                        Ok(Response::Done)
                    }
                    None => Err(ApplyError::Unsupported("empty request")),
                },
            };
            if result.is_err() {
                // A failed request writes nothing.
                debug_assert!(events.is_empty());
            }
            lease::track_attachments(&self.lessor, &events);
            batch.end_request();
            applied.push(Applied {
                id: request.id,
                result,
                events,
            });
        }
        answer(&mut applied);
        batch.commit(last_index.max(already), durability)?;
        Ok(applied)
    }

    /// A read outside Raft (serializable, or after a ReadIndex barrier).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, ApplyError> {
        let view = self.store.read().map_err(ApplyError::from)?;
        kv::range_in_view(&view, request)
    }

    pub fn hash_kv(&self, revision: i64) -> Result<HashKv, ApplyError> {
        self.store
            .read()
            .and_then(|v| v.hash_kv(revision))
            .map_err(ApplyError::from)
    }

    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, MvccError> {
        self.store.snapshot_bytes()
    }

    /// Rewrites the backend file compactly (etcd's defragment).
    pub fn defragment(&mut self) -> Result<(), MvccError> {
        self.store.defragment()
    }

    /// Replaces the store with a leader's snapshot.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), MvccError> {
        self.store.restore(bytes)?;
        self.load_side_tables()
    }
}

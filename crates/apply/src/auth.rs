//! v3 auth in the apply loop: Auth service requests change the auth state and its backend
//! records in the batch's transaction, and writes are checked against the auth state at their
//! point in the log (etcd's authApplierV3), so a permission revoked before a write was applied
//! refuses that write on every member alike.

use std::sync::{Arc, RwLock};

use rampart_auth::{AuthError, AuthResponse, AuthStore, PermType, SimpleTokens};
use rampart_lease::Lessor;
use rampart_mvcc::{MvccError, ReadView, WriteBatch};
use rampart_proto::etcdserverpb::{request_op, Compare, RequestOp, TxnRequest};
use rampart_proto::internal::{raft_request::Request, AuthRequest, Requester};

use crate::ApplyError;

/// The auth state: written by the apply loop only, read by the API edge.
pub type SharedAuth = Arc<RwLock<AuthStore>>;

pub fn load(view: &ReadView) -> Result<AuthStore, MvccError> {
    AuthStore::load(view.auth_records()?).map_err(MvccError::BadSnapshot)
}

/// Applies one Auth service request.
pub fn apply(
    batch: &mut WriteBatch,
    auth: &SharedAuth,
    tokens: &SimpleTokens,
    request: &AuthRequest,
    requester: Option<&Requester>,
) -> Result<Result<AuthResponse, ApplyError>, MvccError> {
    let Some(request) = &request.request else {
        return Ok(Err(ApplyError::Unsupported("empty auth")));
    };
    let mut store = auth.write().unwrap_or_else(|p| p.into_inner());
    match store.apply(request, requester, tokens) {
        Ok((response, changes)) => {
            for change in &changes {
                batch.auth_put(&change.key, change.value.as_deref())?;
            }
            Ok(Ok(response))
        }
        Err(e) => Ok(Err(e.into())),
    }
}

/// Key permission checks of one requester against the auth state now.
struct KeyChecks<'a> {
    store: &'a AuthStore,
    requester: Option<&'a Requester>,
}

impl KeyChecks<'_> {
    fn read(&self, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.store
            .check_keys(self.requester, key, range_end, PermType::Read)
    }

    fn write(&self, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.store
            .check_keys(self.requester, key, range_end, PermType::Write)
    }

    /// A lease's keys are deleted with it, and a put moves a key to it: the user must be able
    /// to write every key the lease holds.
    fn lease_keys(&self, lessor: &Lessor, lease: i64) -> Result<(), AuthError> {
        if lease == 0 {
            return Ok(());
        }
        for key in lessor.keys(lease).unwrap_or_default() {
            self.write(&key, &[])?;
        }
        Ok(())
    }

    fn txn(&self, txn: &TxnRequest) -> Result<(), AuthError> {
        for Compare { key, range_end, .. } in &txn.compare {
            self.read(key, range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            self.op(op)?;
        }
        Ok(())
    }

    fn op(&self, op: &RequestOp) -> Result<(), AuthError> {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => self.read(&r.key, &r.range_end),
            Some(request_op::Request::RequestPut(p)) => {
                self.write(&p.key, &[])?;
                if p.prev_kv {
                    self.read(&p.key, &[])?;
                }
                Ok(())
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    self.read(&d.key, &d.range_end)?;
                }
                self.write(&d.key, &d.range_end)
            }
            Some(request_op::Request::RequestTxn(t)) => self.txn(t),
            None => Ok(()),
        }
    }
}

/// Whether `requester` may make `request` (a client's write, or a read inside a batch), by the
/// auth state now. Requests that are not a client's (lease expiry, member attributes, v2)
/// pass.
pub fn check(
    store: &AuthStore,
    lessor: &Lessor,
    request: &Request,
    requester: Option<&Requester>,
) -> Result<(), AuthError> {
    if !store.is_enabled() {
        return Ok(());
    }
    let checks = KeyChecks { store, requester };
    match request {
        Request::Range(r) => checks.read(&r.key, &r.range_end),
        Request::Put(p) => {
            checks.write(&p.key, &[])?;
            checks.lease_keys(lessor, p.lease)?;
            if p.prev_kv {
                checks.read(&p.key, &[])?;
            }
            Ok(())
        }
        Request::DeleteRange(d) => {
            checks.write(&d.key, &d.range_end)?;
            if d.prev_kv {
                checks.read(&d.key, &d.range_end)?;
            }
            Ok(())
        }
        Request::Txn(t) => checks.txn(t),
        Request::LeaseRevoke(r) => checks.lease_keys(lessor, r.id),
        _ => Ok(()),
    }
}

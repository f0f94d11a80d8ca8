//! LeaseGrant, LeaseRevoke and the leader's expiry decisions, applied in log order, and keeping
//! the lease table's key attachments in step with the writes.

use rampart_lease::{LeaseError, Lessor};
use rampart_mvcc::WriteBatch;
use rampart_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
};
use rampart_proto::mvccpb::{event::EventType, Event};

use crate::{header, ApplyError};

impl From<LeaseError> for ApplyError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::NotFound | LeaseError::NotPrimary => ApplyError::LeaseNotFound,
            LeaseError::Exists => ApplyError::LeaseExists,
            LeaseError::TtlTooLarge => ApplyError::LeaseTtlTooLarge,
        }
    }
}

pub fn grant(
    batch: &mut WriteBatch,
    lessor: &Lessor,
    g: &LeaseGrantRequest,
) -> Result<LeaseGrantResponse, ApplyError> {
    if g.id == 0 {
        // The proposing member picks an ID before proposing; zero never reaches the log.
        return Err(ApplyError::LeaseNotFound);
    }
    if lessor.contains(g.id) {
        return Err(ApplyError::LeaseExists);
    }
    let ttl = lessor.granted_ttl(g.ttl)?;
    batch.put_lease(g.id, ttl)?;
    lessor.grant(g.id, ttl)?;
    Ok(LeaseGrantResponse {
        header: header(batch.read_revision()),
        id: g.id,
        ttl,
        error: String::new(),
    })
}

/// Deletes the lease's keys (all in one revision) and forgets the lease.
pub fn revoke(
    batch: &mut WriteBatch,
    lessor: &Lessor,
    r: &LeaseRevokeRequest,
    events: &mut Vec<Event>,
) -> Result<LeaseRevokeResponse, ApplyError> {
    let keys = lessor.keys(r.id).ok_or(ApplyError::LeaseNotFound)?;
    for key in &keys {
        let mut evs = batch.delete_range(key, &[])?;
        events.append(&mut evs);
    }
    batch.remove_lease(r.id)?;
    lessor.revoke(r.id)?;
    Ok(LeaseRevokeResponse {
        header: header(batch.read_revision()),
    })
}

/// Revokes leases the leader found expired, each in its own revision as etcd does; leases
/// already gone (revoked meanwhile) are skipped.
pub fn expire(
    batch: &mut WriteBatch,
    lessor: &Lessor,
    ids: &[i64],
    events: &mut Vec<Event>,
) -> Result<LeaseRevokeResponse, ApplyError> {
    for (i, id) in ids.iter().enumerate() {
        if !lessor.contains(*id) {
            continue;
        }
        if i > 0 {
            batch.end_request();
        }
        revoke(batch, lessor, &LeaseRevokeRequest { id: *id }, events)?;
    }
    Ok(LeaseRevokeResponse {
        header: header(batch.read_revision()),
    })
}

/// Moves keys between leases as `events` changed them (a put names its lease, the version it
/// replaced or deleted named the old one).
pub fn track_attachments(lessor: &Lessor, events: &[Event]) {
    for e in events {
        if let Some(prev) = &e.prev_kv {
            if prev.lease != 0 {
                lessor.detach(prev.lease, &prev.key);
            }
        }
        if e.r#type == EventType::Put as i32 {
            if let Some(kv) = &e.kv {
                if kv.lease != 0 {
                    lessor.attach(kv.lease, &kv.key);
                }
            }
        }
    }
}

//! The backend quota (`--quota-backend-bytes`), as etcd enforces it: a request that would grow
//! the store past the quota is refused with "database space exceeded" and raises the NOSPACE
//! alarm, which then refuses every growing request (in the applier) until an operator makes room
//! (compact, defragment) and disarms it.
//!
//! etcd compares the bbolt file size. redb grows its file ahead of use, leaving holes, so the
//! disk space the file occupies is compared first: stat'ing it needs no lock, and it is never
//! less than what is stored. Only past the quota do the bytes actually stored decide (a redb
//! file is never as small as a tiny quota). Measuring them walks the whole backend inside a
//! write transaction, which holds the apply loop up: it runs off the async workers, one request
//! at a time, again only once something was applied since, and at most a tenth of the time.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rampart_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmRequest, AlarmType, PutRequest, TxnRequest,
};
use rampart_proto::internal::raft_request::Request as Op;
use tonic::Status;

use crate::etcdserver::EtcdServer;

/// etcd's estimate of a key's bookkeeping beyond its bytes.
const KV_OVERHEAD: u64 = 256;
/// etcd's estimate of a lease's size.
const LEASE_OVERHEAD: u64 = 64;

pub struct Quota {
    max_bytes: Option<u64>,
    /// The backend file, stat'ed without the applier's lock: the apply loop holds that lock
    /// while it applies a batch, and a put must not wait for a batch to learn the file size.
    db_path: PathBuf,
    /// The last measurement of the bytes stored. An async lock: requests past the quota wait
    /// for the measurement in progress without holding a worker thread.
    measured: tokio::sync::Mutex<Option<Measurement>>,
}

/// Bytes stored in the backend, as measured at one applied index.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    applied: u64,
    bytes: u64,
    at: Instant,
    /// How long the walk took.
    took: Duration,
}

/// Measuring takes at most this share of the time (1/N): a large backend takes about a second
/// to walk, and the apply loop waits meanwhile.
const MEASURING_SHARE: u32 = 10;

impl Measurement {
    /// Still good at `applied`: nothing was applied since, or the last walk was too recent
    /// for its cost. A small backend (tests with a quota of a few pages) is measured again
    /// after every change; a large one near its quota at most every ten walks' time.
    fn is_current(&self, applied: u64, now: Instant) -> bool {
        self.applied == applied || now.duration_since(self.at) < self.took * MEASURING_SHARE
    }
}

impl Quota {
    pub fn new(max_bytes: Option<u64>, db_path: PathBuf) -> Quota {
        Quota {
            max_bytes,
            db_path,
            measured: tokio::sync::Mutex::new(None),
        }
    }
}

pub fn put_cost(put: &PutRequest) -> u64 {
    (put.key.len() + put.value.len()) as u64 + KV_OVERHEAD
}

pub fn txn_cost(txn: &TxnRequest) -> u64 {
    txn.success
        .iter()
        .chain(&txn.failure)
        .map(|op| match &op.request {
            Some(request_op::Request::RequestPut(p)) => put_cost(p),
            Some(request_op::Request::RequestTxn(t)) => txn_cost(t),
            _ => 0,
        })
        .sum()
}

pub const LEASE_GRANT_COST: u64 = LEASE_OVERHEAD;

/// Bytes of disk the backend file occupies: at least what is stored in it. Its length where
/// that is less, or where the file system counts no blocks.
fn file_space(path: &std::path::Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.blocks() > 0 => m.len().min(m.blocks() * 512),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// etcd's `ErrGRPCNoSpace`.
pub fn no_space() -> Status {
    Status::resource_exhausted("etcdserver: mvcc: database space exceeded")
}

impl EtcdServer {
    /// Refuses a request that would grow the store past the quota, raising NOSPACE first.
    pub async fn check_quota(&self, cost: u64) -> Result<(), Status> {
        let Some(max) = self.quota.max_bytes else {
            return Ok(());
        };
        if cost == 0 {
            return Ok(());
        }
        if file_space(&self.quota.db_path) + cost < max || self.stored_bytes().await + cost < max {
            return Ok(());
        }
        let raised = self
            .applier
            .read()
            .expect("applier")
            .alarms()
            .read()
            .expect("alarms")
            .contains(&(self.member_id, AlarmType::Nospace as i32));
        if !raised {
            tracing::warn!(
                quota_bytes = max,
                "backend quota exceeded: raising the NOSPACE alarm"
            );
            self.propose(Op::Alarm(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.member_id,
                alarm: AlarmType::Nospace as i32,
            }))
            .await?;
        }
        Err(no_space())
    }

    /// Bytes stored in the backend, measured again once something new was applied (see
    /// [`Measurement::is_current`]).
    async fn stored_bytes(&self) -> u64 {
        let applied = self.applied_index();
        let mut measured = self.quota.measured.lock().await;
        if let Some(m) = *measured {
            if m.is_current(applied, Instant::now()) {
                return m.bytes;
            }
        }
        let applier = self.applier.clone();
        let measuring = tokio::task::spawn_blocking(move || {
            let applier = applier.read().expect("applier");
            let started = Instant::now();
            let bytes = applier.db_size_in_use().max(0) as u64;
            (bytes, started.elapsed())
        });
        match measuring.await {
            Ok((bytes, took)) => {
                *measured = Some(Measurement {
                    applied,
                    bytes,
                    at: Instant::now(),
                    took,
                });
                bytes
            }
            // The measurement panicked: count the store as full rather than let it grow unchecked.
            Err(_) => u64::MAX / 2,
        }
    }

    /// Whether any alarm is raised (`/health` reports false then, as etcd's does).
    pub fn has_alarms(&self) -> bool {
        !self
            .applier
            .read()
            .expect("applier")
            .alarms()
            .read()
            .expect("alarms")
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_measurement_is_redone_after_a_change_but_at_most_a_tenth_of_the_time() {
        let at = Instant::now();
        let measured = |took| Measurement {
            applied: 7,
            bytes: 1,
            at,
            took,
        };
        let cheap = measured(Duration::from_micros(10));
        assert!(
            cheap.is_current(7, at + Duration::from_secs(60)),
            "nothing applied since"
        );
        assert!(!cheap.is_current(8, at + Duration::from_millis(1)));
        let costly = measured(Duration::from_secs(1));
        assert!(costly.is_current(8, at + Duration::from_secs(9)));
        assert!(!costly.is_current(8, at + Duration::from_secs(10)));
    }

    #[test]
    fn a_file_grown_ahead_of_use_counts_the_space_it_occupies_not_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&[1u8; 64 * 1024]).unwrap();
        file.sync_all().unwrap();
        // As redb does: the file is made longer than what has been written into it.
        file.set_len(4 << 30).unwrap();
        let space = file_space(&path);
        assert!(
            (64 * 1024..4 << 30).contains(&space),
            "{space} bytes for 64 KiB written into a 4 GiB file"
        );
        assert_eq!(file_space(&dir.path().join("missing")), 0);
    }
}

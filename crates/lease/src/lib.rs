//! Lease lifetimes: which leases exist, which keys hang on them, and — on the leader only — when
//! each one expires.
//!
//! Owns: the in-memory lease table every member keeps in step with the Raft log (grants,
//! revocations and key attachments are made by the apply path, in log order), and the leader's
//! clocks: renewals (keep-alives), remaining TTLs, finding expired leases, and extending every
//! lease when a member becomes leader so that a failover never makes a lease expire early.
//! Does not own: persistence (the MVCC store keeps the granted leases and the keys name their
//! lease) or proposing revocations (the server proposes what [`Lessor::expired`] returns).
//!
//! As in etcd, only the leader ("primary") tracks expiry; followers hold every lease as
//! never-expiring and forward keep-alives and time-to-live queries to the leader.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest TTL a lease may have, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How long the leader waits before proposing the revocation of an expired lease again, when
/// the previous proposal did not take effect (etcd's `expiredLeaseRetryInterval`).
pub const EXPIRED_RETRY_INTERVAL: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("etcdserver: requested lease not found")]
    NotFound,
    #[error("etcdserver: lease already exists")]
    Exists,
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
    /// This member is not the leader; the request belongs to the leader.
    #[error("lease: not the leader")]
    NotPrimary,
}

/// What a time-to-live query reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// Seconds left (rounded down, never negative).
    pub remaining: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Lease {
    ttl: i64,
    /// When the lease expires; `None` while this member is not the leader.
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
    /// When this member applied the grant (or loaded the lease), for ordering lists.
    granted_at: Instant,
    /// When the leader last proposed revoking this (expired) lease.
    revoke_proposed: Option<Instant>,
}

impl Lease {
    fn new(ttl: i64, now: Instant, primary: bool) -> Lease {
        Lease {
            ttl,
            expiry: primary.then(|| now + secs(ttl)),
            keys: BTreeSet::new(),
            granted_at: now,
            revoke_proposed: None,
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    leases: HashMap<i64, Lease>,
    primary: bool,
}

/// The lease table of one member. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Lessor {
    table: Mutex<Table>,
    min_ttl: i64,
}

impl Lessor {
    /// `min_ttl` in seconds: shorter grants are raised to it (etcd derives it from the election
    /// timeout, see [`min_ttl_seconds`]).
    pub fn new(min_ttl: i64) -> Lessor {
        Lessor {
            table: Mutex::new(Table::default()),
            min_ttl: min_ttl.max(1),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("lease table")
    }

    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    /// Replaces the whole table (at start and after a snapshot): the granted leases and the
    /// live keys attached to them. On the leader every lease starts a fresh TTL.
    pub fn load(&self, leases: &[(i64, i64)], attachments: Vec<(i64, Vec<u8>)>) {
        let mut t = self.table();
        let now = Instant::now();
        let primary = t.primary;
        t.leases = leases
            .iter()
            .map(|&(id, ttl)| (id, Lease::new(ttl, now, primary)))
            .collect();
        for (id, key) in attachments {
            if let Some(l) = t.leases.get_mut(&id) {
                l.keys.insert(key);
            }
        }
    }

    pub fn contains(&self, id: i64) -> bool {
        self.table().leases.contains_key(&id)
    }

    /// The TTL a grant of `ttl` seconds gets, or why it cannot be granted.
    pub fn granted_ttl(&self, ttl: i64) -> Result<i64, LeaseError> {
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        Ok(ttl.max(self.min_ttl))
    }

    /// Applies a grant (from the Raft log). Returns the granted TTL.
    pub fn grant(&self, id: i64, ttl: i64) -> Result<i64, LeaseError> {
        if id == 0 {
            return Err(LeaseError::NotFound);
        }
        let ttl = self.granted_ttl(ttl)?;
        let mut t = self.table();
        if t.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let primary = t.primary;
        t.leases
            .insert(id, Lease::new(ttl, Instant::now(), primary));
        Ok(ttl)
    }

    /// Applies a revocation: forgets the lease and returns its keys (to be deleted).
    pub fn revoke(&self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let mut t = self.table();
        let lease = t.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        Ok(lease.keys.into_iter().collect())
    }

    /// The keys attached to a lease, in key order.
    pub fn keys(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.table()
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
    }

    pub fn attach(&self, id: i64, key: &[u8]) {
        if let Some(l) = self.table().leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    pub fn detach(&self, id: i64, key: &[u8]) {
        if let Some(l) = self.table().leases.get_mut(&id) {
            l.keys.remove(key);
        }
    }

    /// Every lease ID, soonest to expire first, as etcd lists them (a follower, which keeps no
    /// clocks, orders by grant time plus TTL).
    pub fn ids(&self) -> Vec<i64> {
        let t = self.table();
        let mut ids: Vec<(Instant, i64)> = t
            .leases
            .iter()
            .map(|(id, l)| (l.expiry.unwrap_or(l.granted_at + secs(l.ttl)), *id))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    pub fn is_primary(&self) -> bool {
        self.table().primary
    }

    /// This member became leader: every lease gets its full TTL plus `extend` (the election
    /// timeout) from now, since the old leader's clocks are lost and a lease must not expire
    /// early because of the failover (etcd's `Promote`).
    pub fn promote(&self, extend: Duration) {
        let mut t = self.table();
        if t.primary {
            return;
        }
        t.primary = true;
        let now = Instant::now();
        for l in t.leases.values_mut() {
            l.expiry = Some(now + extend + secs(l.ttl));
            l.revoke_proposed = None;
        }
    }

    /// This member is no longer leader: stop tracking expiry.
    pub fn demote(&self) {
        let mut t = self.table();
        t.primary = false;
        for l in t.leases.values_mut() {
            l.expiry = None;
            l.revoke_proposed = None;
        }
    }

    /// A keep-alive (leader only): restarts the lease's TTL and returns it.
    pub fn renew(&self, id: i64) -> Result<i64, LeaseError> {
        let mut t = self.table();
        if !t.primary {
            return Err(LeaseError::NotPrimary);
        }
        let now = Instant::now();
        let lease = t.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        // An expired lease is as good as revoked, even before its revocation is applied.
        if lease.expiry.is_some_and(|e| e <= now) {
            return Err(LeaseError::NotFound);
        }
        lease.expiry = Some(now + secs(lease.ttl));
        Ok(lease.ttl)
    }

    /// What is left of a lease (leader only).
    pub fn time_to_live(&self, id: i64) -> Result<TimeToLive, LeaseError> {
        let t = self.table();
        if !t.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = t.leases.get(&id).ok_or(LeaseError::NotFound)?;
        let remaining = lease
            .expiry
            .map(|e| e.saturating_duration_since(Instant::now()).as_secs() as i64)
            .unwrap_or(lease.ttl);
        Ok(TimeToLive {
            remaining,
            granted_ttl: lease.ttl,
            keys: lease.keys.iter().cloned().collect(),
        })
    }

    /// Expired leases whose revocation should be proposed now (leader only), at most `limit`.
    /// Each is returned again only after [`EXPIRED_RETRY_INTERVAL`] if it is still there.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        let mut t = self.table();
        if !t.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, l) in t.leases.iter_mut() {
            if out.len() >= limit {
                break;
            }
            let due = l.expiry.is_some_and(|e| e <= now);
            let retry = l
                .revoke_proposed
                .is_none_or(|p| now.duration_since(p) >= EXPIRED_RETRY_INTERVAL);
            if due && retry {
                l.revoke_proposed = Some(now);
                out.push(*id);
            }
        }
        out.sort_unstable();
        out
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

/// etcd's minimum lease TTL: 1.5 election timeouts, rounded up to whole seconds.
pub fn min_ttl_seconds(heartbeat: Duration, election_ticks: u64) -> i64 {
    let min = heartbeat * ((3 * election_ticks / 2) as u32);
    let ms = min.as_millis() as i64;
    ((ms + 999) / 1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_matches_etcd_defaults() {
        // 100 ms heartbeat, 10 ticks (1 s election timeout) → 1.5 s → 2 s.
        assert_eq!(min_ttl_seconds(Duration::from_millis(100), 10), 2);
        assert_eq!(min_ttl_seconds(Duration::from_millis(100), 20), 3);
    }

    #[test]
    fn grant_raises_short_ttls_and_refuses_duplicates_and_huge_ones() {
        let l = Lessor::new(2);
        assert_eq!(l.grant(1, 1), Ok(2));
        assert_eq!(l.grant(1, 10), Err(LeaseError::Exists));
        assert_eq!(l.grant(2, MAX_LEASE_TTL + 1), Err(LeaseError::TtlTooLarge));
        assert_eq!(l.grant(0, 10), Err(LeaseError::NotFound));
    }

    #[test]
    fn followers_do_not_renew_or_expire() {
        let l = Lessor::new(1);
        l.grant(7, 1).unwrap();
        assert_eq!(l.renew(7), Err(LeaseError::NotPrimary));
        assert_eq!(l.time_to_live(7), Err(LeaseError::NotPrimary));
        assert!(l.expired(10).is_empty());
    }

    #[test]
    fn leader_expires_and_retries_only_after_the_interval() {
        let l = Lessor::new(1);
        l.promote(Duration::ZERO);
        l.grant(7, 1).unwrap();
        assert!(l.expired(10).is_empty());
        assert_eq!(l.renew(7), Ok(1));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.expired(10), vec![7]);
        assert!(
            l.expired(10).is_empty(),
            "not proposed twice within the retry interval"
        );
        assert_eq!(
            l.renew(7),
            Err(LeaseError::NotFound),
            "an expired lease cannot be renewed"
        );
    }

    #[test]
    fn promotion_gives_every_lease_its_full_ttl_plus_the_extension() {
        let l = Lessor::new(1);
        l.grant(7, 5).unwrap();
        l.promote(Duration::from_secs(1));
        let ttl = l.time_to_live(7).unwrap();
        assert!(ttl.remaining >= 5, "{ttl:?}");
        l.demote();
        assert!(!l.is_primary());
    }

    #[test]
    fn attachments_follow_keys_and_revoke_returns_them() {
        let l = Lessor::new(1);
        l.grant(7, 5).unwrap();
        l.attach(7, b"b");
        l.attach(7, b"a");
        l.attach(8, b"x"); // unknown lease: ignored
        l.detach(7, b"b");
        assert_eq!(l.keys(7), Some(vec![b"a".to_vec()]));
        assert_eq!(l.revoke(7), Ok(vec![b"a".to_vec()]));
        assert_eq!(l.revoke(7), Err(LeaseError::NotFound));
    }

    #[test]
    fn load_rebuilds_from_the_store() {
        let l = Lessor::new(1);
        l.grant(1, 5).unwrap();
        l.load(
            &[(2, 10), (3, 20)],
            vec![(2, b"k".to_vec()), (9, b"z".to_vec())],
        );
        assert_eq!(l.ids(), vec![2, 3], "soonest expiry first");
        assert_eq!(l.keys(2), Some(vec![b"k".to_vec()]));
    }
}

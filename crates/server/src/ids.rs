//! Member and cluster IDs, derived the way etcd derives them, so a Rampart cluster started with
//! the same `--initial-cluster` and `--initial-cluster-token` shows the same IDs as etcd would.

use sha1::{Digest, Sha1};

/// A member's ID: the first 8 bytes (big-endian) of SHA-1 over its sorted peer URLs joined
/// together, followed by the cluster token.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut hasher = Sha1::new();
    for u in urls {
        hasher.update(u.as_bytes());
    }
    hasher.update(cluster_token.as_bytes());
    first_u64(&hasher.finalize())
}

/// The cluster's ID: SHA-1 over the sorted member IDs, each as 8 big-endian bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// Request IDs unique across restarts of this member: the low 16 bits of the member ID, then
/// the start time in milliseconds, then a counter (etcd's `idutil` layout).
pub struct RequestIds {
    next: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    pub fn new(member_id: u64) -> RequestIds {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let start = ((member_id & 0xffff) << 48) | ((millis & 0xff_ffff_ffff) << 8);
        RequestIds {
            next: std::sync::atomic::AtomicU64::new(start),
        }
    }

    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcds_for_the_default_single_member() {
        // `etcd` with no flags reports member 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }

    #[test]
    fn member_id_ignores_url_order() {
        let a = member_id(&["https://a:1".into(), "https://b:2".into()], "t");
        let b = member_id(&["https://b:2".into(), "https://a:1".into()], "t");
        assert_eq!(a, b);
    }

    #[test]
    fn request_ids_are_distinct_and_carry_the_member() {
        let ids = RequestIds::new(0xabcd_0000_0000_1234);
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x1234);
    }
}

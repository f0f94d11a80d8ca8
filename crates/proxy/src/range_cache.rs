//! A short-lived cache of serializable Range responses (off unless `--serializable-cache-ttl`
//! is given). A serializable read may be stale by definition; the cache bounds how stale (its
//! TTL) and forgets every entry a write through the proxy may have changed, so a client that
//! writes through the proxy reads its own writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use rampart_proto::etcdserverpb::{RangeRequest, RangeResponse};

use crate::metrics::ProxyMetrics;

/// Entries held at most (the oldest is dropped first).
pub const MAX_ENTRIES: usize = 1024;
/// Responses larger than this are not cached.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Parses a cache TTL as the flag takes it: "500ms", "2s", "1m", or whole seconds ("2").
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use e.g. 500ms, 2s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!(
            "invalid duration {text:?}: use e.g. 500ms, 2s or 1m"
        )),
    }
}

/// A key range `[start, end)`; `end` None means "to the end of the key space".
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyRange {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl KeyRange {
    /// As etcd reads (key, range_end): empty end = the key alone, "\0" = every key from key on.
    fn of(key: &[u8], range_end: &[u8]) -> KeyRange {
        let end = match range_end {
            [] => {
                let mut next = key.to_vec();
                next.push(0);
                Some(next)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        // etcd reads key "\0" with range_end "\0" as the whole key space.
        let start = if key == [0] && range_end == [0] {
            Vec::new()
        } else {
            key.to_vec()
        };
        KeyRange { start, end }
    }

    fn overlaps(&self, other: &KeyRange) -> bool {
        let before_end =
            |start: &Vec<u8>, end: &Option<Vec<u8>>| end.as_ref().is_none_or(|e| start < e);
        before_end(&self.start, &other.end) && before_end(&other.start, &self.end)
    }
}

struct Entry {
    stored: Instant,
    range: KeyRange,
    response: RangeResponse,
}

#[derive(Default)]
struct Entries {
    by_request: HashMap<Vec<u8>, Entry>,
    /// Insertion order, for dropping the oldest.
    order: VecDeque<Vec<u8>>,
}

pub struct RangeCache {
    ttl: Duration,
    entries: Mutex<Entries>,
    metrics: Arc<ProxyMetrics>,
}

/// What identifies a cached answer: the whole request and who asked (auth token).
fn cache_key(request: &RangeRequest, token: Option<&str>) -> Vec<u8> {
    let mut key = request.encode_to_vec();
    key.push(0xff);
    key.extend_from_slice(token.unwrap_or_default().as_bytes());
    key
}

impl RangeCache {
    pub fn new(ttl: Duration, metrics: Arc<ProxyMetrics>) -> RangeCache {
        RangeCache {
            ttl,
            entries: Mutex::new(Entries::default()),
            metrics,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().expect("range cache")
    }

    fn update_gauge(&self, e: &Entries) {
        let now = e.by_request.len() as i64;
        let shown = self.metrics.range_cache_entries.get();
        self.metrics.range_cache_entries.add(now - shown);
    }

    /// A cached answer to a serializable request, if one is fresh.
    pub fn get(&self, request: &RangeRequest, token: Option<&str>) -> Option<RangeResponse> {
        if !request.serializable {
            return None;
        }
        let key = cache_key(request, token);
        let mut e = self.entries();
        let fresh = match e.by_request.get(&key) {
            Some(entry) if entry.stored.elapsed() < self.ttl => Some(entry.response.clone()),
            Some(_) => {
                e.by_request.remove(&key);
                None
            }
            None => None,
        };
        self.update_gauge(&e);
        match fresh {
            Some(_) => self.metrics.range_cache_hits.inc(),
            None => self.metrics.range_cache_misses.inc(),
        }
        fresh
    }

    pub fn put(&self, request: &RangeRequest, token: Option<&str>, response: &RangeResponse) {
        if !request.serializable || response.encoded_len() > MAX_RESPONSE_BYTES {
            return;
        }
        let key = cache_key(request, token);
        let mut e = self.entries();
        while e.by_request.len() >= MAX_ENTRIES {
            let Some(oldest) = e.order.pop_front() else {
                break;
            };
            e.by_request.remove(&oldest);
        }
        if e.by_request
            .insert(
                key.clone(),
                Entry {
                    stored: Instant::now(),
                    range: KeyRange::of(&request.key, &request.range_end),
                    response: response.clone(),
                },
            )
            .is_none()
        {
            e.order.push_back(key);
        }
        // Keys removed by expiry or invalidation linger in `order`; bound it too.
        if e.order.len() > 2 * MAX_ENTRIES {
            let Entries { by_request, order } = &mut *e;
            order.retain(|k| by_request.contains_key(k));
        }
        self.update_gauge(&e);
    }

    /// A write to `[key, range_end)` went through the proxy: forget what it may have changed.
    pub fn invalidate(&self, key: &[u8], range_end: &[u8]) {
        let written = KeyRange::of(key, range_end);
        let mut e = self.entries();
        e.by_request
            .retain(|_, entry| !entry.range.overlaps(&written));
        self.update_gauge(&e);
    }

    /// A write whose keys are not worth working out (a transaction, a compaction).
    pub fn invalidate_all(&self) {
        let mut e = self.entries();
        e.by_request.clear();
        e.order.clear();
        self.update_gauge(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &str, end: &str, serializable: bool) -> RangeRequest {
        RangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
            serializable,
            ..Default::default()
        }
    }

    fn answer(count: i64) -> RangeResponse {
        RangeResponse {
            count,
            ..Default::default()
        }
    }

    #[test]
    fn only_serializable_reads_are_cached_and_only_for_the_ttl() {
        let metrics = Arc::new(ProxyMetrics::default());
        let cache = RangeCache::new(Duration::from_millis(100), metrics.clone());
        let linearizable = range("a", "", false);
        cache.put(&linearizable, None, &answer(1));
        assert!(cache.get(&linearizable, None).is_none());
        let serializable = range("a", "", true);
        cache.put(&serializable, None, &answer(2));
        assert_eq!(cache.get(&serializable, None).map(|r| r.count), Some(2));
        assert!(cache.get(&serializable, Some("other-user")).is_none());
        std::thread::sleep(Duration::from_millis(150));
        assert!(cache.get(&serializable, None).is_none());
        assert_eq!(metrics.range_cache_hits.get(), 1);
    }

    #[test]
    fn a_write_forgets_exactly_the_ranges_it_overlaps() {
        let cache = RangeCache::new(Duration::from_secs(60), Arc::new(ProxyMetrics::default()));
        let single = range("foo", "", true);
        let prefix = range("foo", "fop", true);
        let other = range("zzz", "", true);
        let from_b = range("b", "\0", true);
        for r in [&single, &prefix, &other, &from_b] {
            cache.put(r, None, &answer(1));
        }
        cache.invalidate(b"foo/bar", b"");
        assert!(cache.get(&single, None).is_some(), "foo is not foo/bar");
        assert!(cache.get(&prefix, None).is_none());
        assert!(cache.get(&from_b, None).is_none(), "[b, end) holds foo/bar");
        assert!(cache.get(&other, None).is_some());
        cache.invalidate(b"a", b"c");
        assert!(cache.get(&single, None).is_some());
        cache.invalidate(b"\0", b"\0");
        assert!(cache.get(&single, None).is_none());
        assert!(cache.get(&other, None).is_none());
    }

    #[test]
    fn ttl_flag_values() {
        assert_eq!(parse_ttl("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_ttl("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_ttl("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_ttl("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_ttl("2h").is_err());
        assert!(parse_ttl("ms").is_err());
    }

    #[test]
    fn the_cache_holds_at_most_max_entries() {
        let cache = RangeCache::new(Duration::from_secs(60), Arc::new(ProxyMetrics::default()));
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(&range(&format!("k{i}"), "", true), None, &answer(1));
        }
        assert_eq!(cache.entries().by_request.len(), MAX_ENTRIES);
        assert!(cache.get(&range("k0", "", true), None).is_none());
        assert!(cache
            .get(&range(&format!("k{}", MAX_ENTRIES + 9), "", true), None)
            .is_some());
    }
}

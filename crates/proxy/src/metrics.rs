//! The proxy's own metrics, served as Prometheus text on `/metrics` (the members' metrics are on
//! the members' ports).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct ProxyMetrics {
    /// Client watch streams open on the proxy.
    pub client_watch_streams: Gauge,
    /// Client watches (each watch ID of each client stream).
    pub watchers: Gauge,
    /// Watch streams the proxy holds open to members (one per shared or passed-through watch).
    pub upstream_watch_streams: Gauge,
    /// Client watches that joined an upstream watch another client had opened.
    pub watchers_coalesced: Gauge,
    /// Client watch streams ended because they could not keep up with their events.
    pub slow_watch_streams_canceled: Counter,
    /// Keep-alive requests received from clients, and the ones sent to members.
    pub lease_keepalives_received: Counter,
    pub lease_keepalives_forwarded: Counter,
    /// Client keep-alive streams open on the proxy.
    pub client_lease_keepalive_streams: Gauge,
    /// Unary requests the proxy sent to members, and the ones sent again to another member.
    pub requests_forwarded: Counter,
    pub requests_retried: Counter,
    /// Serializable ranges answered from the cache, and the ones that missed it.
    pub range_cache_hits: Counter,
    pub range_cache_misses: Counter,
    /// Entries in the range cache.
    pub range_cache_entries: Gauge,
}

impl ProxyMetrics {
    /// The Prometheus text exposition of every metric; `members` is (known, believed up).
    pub fn render(&self, members: (usize, usize)) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: i64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        };
        gauge(
            "rampart_proxy_client_watch_streams",
            "Client watch streams open on the proxy.",
            self.client_watch_streams.get(),
        );
        gauge(
            "rampart_proxy_watchers",
            "Client watches served by the proxy.",
            self.watchers.get(),
        );
        gauge(
            "rampart_proxy_upstream_watch_streams",
            "Watch streams the proxy holds open to members.",
            self.upstream_watch_streams.get(),
        );
        gauge(
            "rampart_proxy_watchers_coalesced",
            "Client watches sharing an upstream watch opened for another client.",
            self.watchers_coalesced.get(),
        );
        gauge(
            "rampart_proxy_client_lease_keepalive_streams",
            "Client lease keep-alive streams open on the proxy.",
            self.client_lease_keepalive_streams.get(),
        );
        gauge(
            "rampart_proxy_range_cache_entries",
            "Serializable range responses held in the cache.",
            self.range_cache_entries.get(),
        );
        gauge(
            "rampart_proxy_members",
            "Members the proxy knows.",
            members.0 as i64,
        );
        gauge(
            "rampart_proxy_members_up",
            "Members the proxy believes reachable.",
            members.1 as i64,
        );
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        };
        counter(
            "rampart_proxy_slow_watch_streams_canceled_total",
            "Client watch streams ended because their buffer overflowed.",
            self.slow_watch_streams_canceled.get(),
        );
        counter(
            "rampart_proxy_lease_keepalives_received_total",
            "Lease keep-alive requests received from clients.",
            self.lease_keepalives_received.get(),
        );
        counter(
            "rampart_proxy_lease_keepalives_forwarded_total",
            "Lease keep-alive requests sent to members.",
            self.lease_keepalives_forwarded.get(),
        );
        counter(
            "rampart_proxy_requests_forwarded_total",
            "Unary requests the proxy sent to members.",
            self.requests_forwarded.get(),
        );
        counter(
            "rampart_proxy_requests_retried_total",
            "Requests sent again to another member after one failed.",
            self.requests_retried.get(),
        );
        counter(
            "rampart_proxy_range_cache_hits_total",
            "Serializable ranges answered from the cache.",
            self.range_cache_hits.get(),
        );
        counter(
            "rampart_proxy_range_cache_misses_total",
            "Serializable ranges the cache could not answer.",
            self.range_cache_misses.get(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_each_metric_once_with_its_value() {
        let m = ProxyMetrics::default();
        m.watchers.inc();
        m.watchers.inc();
        m.watchers.dec();
        m.range_cache_hits.add(7);
        let text = m.render((3, 2));
        assert!(text.contains("\nrampart_proxy_watchers 1\n"), "{text}");
        assert!(
            text.contains("\nrampart_proxy_range_cache_hits_total 7\n"),
            "{text}"
        );
        assert!(text.contains("\nrampart_proxy_members 3\n"), "{text}");
        assert!(text.contains("\nrampart_proxy_members_up 2\n"), "{text}");
        assert_eq!(
            text.matches("# TYPE rampart_proxy_watchers gauge").count(),
            1
        );
    }
}

//! The table of etcd 3.4's server flags: name, kind, default, and whether Rampart honours it.
//! Flip `honoured` when a feature lands; unhonoured flags that are set produce a warning naming
//! them, so existing etcd configurations still start.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Text,
}

#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub honoured: bool,
}

const fn text(name: &'static str, default: &'static str, honoured: bool) -> Flag {
    Flag {
        name,
        kind: Kind::Text,
        default,
        honoured,
    }
}

const fn boolean(name: &'static str, default: &'static str, honoured: bool) -> Flag {
    Flag {
        name,
        kind: Kind::Bool,
        default,
        honoured,
    }
}

/// Every flag `etcd --help` (3.4.23) lists, plus the legacy and Rampart ones the issues name.
pub const FLAGS: &[Flag] = &[
    text("name", "default", true),
    text("data-dir", "", true),
    text("wal-dir", "", true),
    text("snapshot-count", "100000", true),
    text("heartbeat-interval", "100", true),
    text("election-timeout", "1000", true),
    boolean("initial-election-tick-advance", "true", true),
    text("listen-peer-urls", "http://localhost:2380", true),
    text("listen-client-urls", "http://localhost:2379", true),
    text("max-snapshots", "5", false),
    text("max-wals", "5", false),
    text("quota-backend-bytes", "0", true),
    text("backend-batch-interval", "", false),
    text("backend-batch-limit", "0", false),
    text("max-txn-ops", "128", true),
    text("max-request-bytes", "1572864", true),
    text("max-concurrent-streams", "4294967295", false),
    text("grpc-keepalive-min-time", "5s", false),
    text("grpc-keepalive-interval", "2h", false),
    text("grpc-keepalive-timeout", "20s", false),
    text("initial-advertise-peer-urls", "http://localhost:2380", true),
    text("initial-cluster", "", true),
    text("initial-cluster-state", "new", true),
    text("initial-cluster-token", "etcd-cluster", true),
    text("advertise-client-urls", "http://localhost:2379", true),
    text("discovery", "", false),
    text("discovery-fallback", "proxy", false),
    text("discovery-proxy", "", false),
    text("discovery-srv", "", false),
    text("discovery-srv-name", "", false),
    boolean("strict-reconfig-check", "true", true),
    // Rampart always runs Raft with pre-vote (and check-quorum); the flag is accepted.
    boolean("pre-vote", "false", true),
    text("auto-compaction-retention", "0", false),
    text("auto-compaction-mode", "periodic", false),
    boolean("enable-v2", "false", true),
    text("cert-file", "", true),
    text("key-file", "", true),
    boolean("client-cert-auth", "false", true),
    text("client-crl-file", "", true),
    text("client-cert-allowed-hostname", "", true),
    text("trusted-ca-file", "", true),
    boolean("auto-tls", "false", true),
    text("peer-cert-file", "", true),
    text("peer-key-file", "", true),
    boolean("peer-client-cert-auth", "false", true),
    text("peer-trusted-ca-file", "", true),
    text("peer-cert-allowed-cn", "", true),
    text("peer-cert-allowed-hostname", "", true),
    boolean("peer-auto-tls", "false", true),
    text("peer-crl-file", "", true),
    text("cipher-suites", "", true),
    text("cors", "*", false),
    text("host-whitelist", "*", false),
    text("auth-token", "simple", true),
    text("bcrypt-cost", "10", true),
    text("auth-token-ttl", "300", true),
    boolean("enable-pprof", "false", false),
    text("metrics", "basic", true),
    text("listen-metrics-urls", "", false),
    text("logger", "capnslog", true),
    text("log-outputs", "default", true),
    text("log-level", "info", true),
    text("proxy", "off", false),
    text("proxy-failure-wait", "5000", false),
    text("proxy-refresh-interval", "30000", false),
    text("proxy-dial-timeout", "1000", false),
    text("proxy-write-timeout", "5000", false),
    text("proxy-read-timeout", "0", false),
    boolean("experimental-initial-corrupt-check", "false", false),
    text("experimental-corrupt-check-time", "0s", false),
    text("experimental-enable-v2v3", "", false),
    text("experimental-backend-bbolt-freelist-type", "array", false),
    boolean("experimental-enable-lease-checkpoint", "false", false),
    text("experimental-compaction-batch-limit", "1000", false),
    boolean(
        "experimental-peer-skip-client-san-verification",
        "false",
        false,
    ),
    text("experimental-watch-progress-notify-interval", "10m", true),
    text("experimental-warning-apply-duration", "100ms", false),
    boolean("force-new-cluster", "false", true),
    boolean("debug", "false", true),
    text("log-package-levels", "", false),
    text("config-file", "", true),
    // Legacy (etcd 2.x) names still used by tutorials: CA file implies client-cert-auth.
    text("ca-file", "", true),
    text("peer-ca-file", "", true),
    // From etcd 3.5, named by the issues.
    text("tls-min-version", "TLS1.2", true),
    // Rampart's own: allow plaintext on non-loopback addresses (refused by default).
    boolean("insecure-allow-plaintext", "false", true),
];

pub fn lookup(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The closest known flag name, for "did you mean" hints.
pub fn closest(name: &str) -> Option<&'static str> {
    FLAGS
        .iter()
        .map(|f| (edit_distance(name, f.name), f.name))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

//! A lease across a leader failover: with `etcdctl lease keep-alive` running, killing the leader
//! loses neither the lease nor its key (the new leader gives every lease a fresh TTL); once the
//! keep-alives stop, the key vanishes within TTL + election timeout.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::Cluster;

const TTL_SECS: u64 = 5;
const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);

fn key_present(cluster: &Cluster, member: usize) -> Option<bool> {
    let out = cluster.ctl(member, &["get", "leased", "--print-value-only"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).contains("value"))
}

#[test]
fn cluster_lease_survives_leader_failover_and_expires_after_keepalives_stop() {
    let mut cluster = Cluster::start(3);
    let granted = cluster.ctl_ok(0, &["lease", "grant", &TTL_SECS.to_string()]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    cluster.ctl_ok(1, &["put", "--lease", &id, "leased", "value"]);

    let mut keepalive = cluster
        .etcdctl(&cluster.endpoints())
        .args(["lease", "keep-alive", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));

    let leader = cluster.leader();
    cluster.kill(leader);
    let survivor = (leader + 1) % 3;
    // Two TTLs with keep-alives going through the failover: the key stays.
    let until = Instant::now() + Duration::from_secs(2 * TTL_SECS);
    while Instant::now() < until {
        if let Some(present) = key_present(&cluster, survivor) {
            assert!(
                present,
                "the leased key vanished during the failover\n{}",
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let ttl = cluster.ctl_ok(survivor, &["lease", "timetolive", &id]);
    assert!(ttl.contains("remaining("), "{ttl}");

    let _ = keepalive.kill();
    let _ = keepalive.wait();
    let stopped = Instant::now();
    let limit = Duration::from_secs(TTL_SECS) + ELECTION_TIMEOUT;
    loop {
        if key_present(&cluster, survivor) == Some(false) {
            break;
        }
        assert!(
            stopped.elapsed() < limit + Duration::from_secs(1),
            "the key outlived its lease: {:?} after the keep-alives stopped\n{}",
            stopped.elapsed(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "leased key gone {:.2?} after keep-alives stopped (TTL {TTL_SECS}s + election timeout {:?})",
        stopped.elapsed(),
        ELECTION_TIMEOUT
    );
    let gone = cluster.ctl_ok(survivor, &["lease", "timetolive", &id]);
    assert!(gone.contains("already expired"), "{gone}");
}

//! Crash tests of a 3-member mutual-TLS cluster under a write load, driven by the real etcdctl:
//! `kill -9` of the leader, of a follower, and of all members. Every acknowledged write must be on
//! every member afterwards, with equal HashKV at the same revision.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Cluster;

/// Writes `load-<n>` keys through etcdctl (with its own retries) until stopped; returns the keys
/// whose put was acknowledged.
fn start_load(cluster: &Cluster, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    let mut cmd_base = Vec::new();
    cmd_base.push(format!("--endpoints={}", cluster.endpoints()));
    cmd_base.push(format!("--cacert={}", cluster.pki.file("ca.pem")));
    cmd_base.push(format!("--cert={}", cluster.pki.file("client.pem")));
    cmd_base.push(format!("--key={}", cluster.pki.file("client-key.pem")));
    cmd_base.push("--command-timeout=5s".to_string());
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut n = 0u32;
        // Bounded: at most 2000 writes or until told to stop.
        while !stop.load(Ordering::Relaxed) && n < 2000 {
            let key = format!("load-{n:05}");
            let out = std::process::Command::new(support::etcdctl_bin())
                .env("ETCDCTL_API", "3")
                .args(&cmd_base)
                .args(["put", &key, "v"])
                .output()
                .expect("etcdctl");
            if out.status.success() {
                acked.push(key);
            }
            n += 1;
        }
        acked
    })
}

fn wait_for_new_leader(cluster: &Cluster, old: usize, within: Duration) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        for i in 0..cluster.members.len() {
            if i == old || cluster.members[i].child.is_none() {
                continue;
            }
            let out = cluster.ctl(i, &["endpoint", "status", "-w", "json"]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let st = &v[0]["Status"];
                let leader = st["leader"].as_u64().unwrap_or(0);
                if leader != 0 && st["leader"] == st["header"]["member_id"] {
                    return (i, start.elapsed());
                }
            }
        }
        assert!(
            start.elapsed() < within,
            "no new leader within {within:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every acknowledged key on every member (serializable reads, after catching up), and equal
/// HashKV at the same revision.
fn check_all_members(cluster: &Cluster, acked: &[String]) {
    // A linearizable write through the cluster, then every member must catch up to it.
    cluster.ctl_ok(0, &["put", "final-marker", "x"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    'members: for i in 0..cluster.members.len() {
        loop {
            let out = cluster.ctl(i, &["get", "final-marker", "--consistency=s"]);
            if String::from_utf8_lossy(&out.stdout).contains("final-marker") {
                continue 'members;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} did not catch up\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut revisions = Vec::new();
    for i in 0..cluster.members.len() {
        let keys = cluster.ctl_ok(
            i,
            &["get", "--prefix", "load-", "--keys-only", "--consistency=s"],
        );
        let present: std::collections::HashSet<&str> =
            keys.lines().filter(|l| !l.is_empty()).collect();
        for k in acked {
            assert!(
                present.contains(k.as_str()),
                "member {i} lost acknowledged key {k}"
            );
        }
        let status = cluster.ctl_ok(i, &["get", "final-marker", "--consistency=s", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        revisions.push(v["header"]["revision"].as_i64().unwrap());
    }
    assert!(
        revisions.windows(2).all(|w| w[0] == w[1]),
        "revisions differ: {revisions:?}"
    );
    let rev = revisions[0].to_string();
    let mut hashes = Vec::new();
    for i in 0..cluster.members.len() {
        let out = cluster.ctl_ok(i, &["endpoint", "hashkv", "--rev", &rev, "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        hashes.push(v[0]["HashKV"]["hash"].as_u64().unwrap());
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "HashKV differs: {hashes:?}"
    );
}

fn crash_under_load(victims: &dyn Fn(&Cluster) -> Vec<usize>, expect_new_leader: bool) {
    let mut cluster = Cluster::start(3);
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&cluster, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let leader = cluster.leader();
    let killed = victims(&cluster);
    for &v in &killed {
        cluster.kill(v);
    }
    if expect_new_leader {
        let (_, took) = wait_for_new_leader(&cluster, leader, Duration::from_secs(3));
        eprintln!("new leader elected {took:?} after kill -9 of the leader");
    }
    std::thread::sleep(Duration::from_secs(2));
    for &v in &killed {
        cluster.start_member(v);
    }
    cluster.wait_healthy(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let acked = load.join().unwrap();
    assert!(
        acked.len() > 10,
        "the load made too little progress: {} writes",
        acked.len()
    );
    let acked = Arc::new(Mutex::new(acked));
    check_all_members(&cluster, &acked.lock().unwrap());
}

#[test]
fn cluster_survives_kill_of_the_leader() {
    crash_under_load(&|c| vec![c.leader()], true);
}

#[test]
fn cluster_survives_kill_of_a_follower() {
    crash_under_load(&|c| vec![(c.leader() + 1) % 3], false);
}

#[test]
fn cluster_survives_kill_of_all_members() {
    crash_under_load(&|_| vec![0, 1, 2], false);
}

/// A follower that was down while the log was compacted past it catches up by snapshot.
#[test]
fn cluster_follower_far_behind_catches_up_by_snapshot() {
    let mut cluster = Cluster::start_with(
        3,
        &["--snapshot-count=20"],
        &[("RAMPART_SNAPSHOT_CATCH_UP_ENTRIES", "5")],
    );
    let follower = (cluster.leader() + 1) % 3;
    let writer = (follower + 1) % 3;
    cluster.kill(follower);
    let mut acked = Vec::new();
    for i in 0..60 {
        let key = format!("load-{i:05}");
        cluster.ctl_ok(writer, &["put", &key, "v"]);
        acked.push(key);
    }
    cluster.start_member(follower);
    cluster.wait_healthy(Duration::from_secs(30));
    check_all_members(&cluster, &acked);
    let log = std::fs::read_to_string(&cluster.members[follower].log).unwrap();
    assert!(
        log.contains("installing snapshot from leader"),
        "the follower caught up without a snapshot; the test did not exercise snapshot transfer"
    );
}

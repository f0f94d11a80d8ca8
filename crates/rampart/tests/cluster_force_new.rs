//! Recovering from the loss of quorum: `--force-new-cluster` restarts one member's data as a
//! one-member cluster (etcd's disaster-recovery flow), and restarts after membership changes
//! hand Raft the configuration at the applied index, not the older one of the last snapshot.

mod support;

use std::time::{Duration, Instant};

use support::Cluster;

/// Retries `get` on member `i` until it answers (a restarted member needs an election first).
fn wait_serving(cluster: &Cluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.ctl(i, &["put", "probe", "x"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "member {i} does not serve writes\n{}",
            std::fs::read_to_string(&cluster.members[i].log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until member `i` has applied `count` keys named `key-*`.
fn wait_keys(cluster: &Cluster, i: usize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cluster.ctl(
            i,
            &["get", "--consistency=s", "--prefix", "key-", "--keys-only"],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.lines().filter(|l| !l.is_empty()).count() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} did not catch up: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_force_new_cluster_recovers_one_member_with_its_data() {
    // A small snapshot count puts a snapshot (with the three-member configuration) in the WAL.
    let mut cluster = Cluster::start_with(3, &["--snapshot-count=10"], &[]);
    for i in 0..30 {
        cluster.ctl_ok(i % 3, &["put", &format!("key-{i}"), &format!("v{i}")]);
    }
    // The member forced alone must hold the data: a follower may not have every write yet.
    wait_keys(&cluster, 0, 30);
    for i in 0..3 {
        cluster.kill(i);
    }

    // Quorum is lost for good: member 0 alone, forced into a new one-member cluster.
    cluster.extra_args.push("--force-new-cluster".into());
    cluster.start_member(0);
    wait_serving(&cluster, 0);
    let keys = cluster.ctl_ok(0, &["get", "--prefix", "key-", "--keys-only"]);
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 30, "{keys}");
    let list = cluster.ctl_ok(0, &["member", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains("m0"), "{list}");
    cluster.ctl_ok(0, &["put", "after-force", "yes"]);

    // A later restart without the flag stays a working one-member cluster.
    cluster.kill(0);
    cluster.extra_args.pop();
    cluster.start_member(0);
    wait_serving(&cluster, 0);
    assert_eq!(
        cluster.ctl_ok(0, &["get", "after-force", "--print-value-only"]),
        "yes\n"
    );
    assert_eq!(cluster.ctl_ok(0, &["member", "list"]).lines().count(), 1);
}

#[test]
fn cluster_restart_after_removals_uses_the_configuration_at_the_applied_index() {
    let mut cluster = Cluster::start_with(3, &["--snapshot-count=10"], &[]);
    for i in 0..30 {
        cluster.ctl_ok(0, &["put", &format!("key-{i}"), "v"]);
    }
    // Remove members 1 and 2 after the last snapshot: member 0 is the whole cluster. It leads
    // first, so no removal waits for an election.
    let list = cluster.ctl_ok(0, &["member", "list"]);
    let id_of = |name: &str| {
        list.lines()
            .find(|l| l.contains(&format!(", {name}, ")))
            .and_then(|l| l.split(',').next())
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .to_string()
    };
    let leader = cluster.leader();
    if leader != 0 {
        cluster.ctl_ok(leader, &["move-leader", &id_of("m0")]);
    }
    for name in ["m1", "m2"] {
        cluster.ctl_ok(0, &["member", "remove", &id_of(name)]);
    }
    cluster.kill(1);
    cluster.kill(2);
    // A removed leader leaves member 0 to elect itself first.
    wait_serving(&cluster, 0);
    // Applied past the removals (fewer than a snapshot's worth), so a restart does not see them
    // again as unapplied entries.
    cluster.ctl_ok(0, &["put", "after", "v"]);
    // Restarted, it must not wait for a quorum of the old three-member configuration.
    cluster.kill(0);
    cluster.start_member(0);
    wait_serving(&cluster, 0);
    assert_eq!(cluster.ctl_ok(0, &["member", "list"]).lines().count(), 1);
}

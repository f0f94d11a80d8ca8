//! Membership changes with the real etcdctl: `member add` a fourth member, start it with
//! `--initial-cluster-state=existing` (it finds the cluster over the peer port and receives the
//! log), see it serve the data written before it joined; `member update` its peer URLs; and
//! `member remove` it — the removed member stops and the three others go on.

mod support;

use std::time::{Duration, Instant};

use support::Cluster;

/// Waits until member `i` serves `count` keys under "before-" from its own store.
fn wait_for_keys(cluster: &Cluster, i: usize, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let out = cluster.ctl(
            i,
            &[
                "get",
                "--consistency=s",
                "--prefix",
                "before-",
                "--keys-only",
            ],
        );
        let keys = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && keys.lines().filter(|l| !l.is_empty()).count() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new member did not catch up: {keys}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn cluster_member_add_join_update_and_remove() {
    let mut cluster = Cluster::start(3);
    for i in 0..20 {
        cluster.ctl_ok(i % 3, &["put", &format!("before-{i}"), "v"]);
    }
    let new = cluster.new_joining_member();
    let peer = cluster.members[new].peer_url.clone();
    let added = cluster.ctl_ok(0, &["member", "add", "m3", &format!("--peer-urls={peer}")]);
    assert!(added.contains("added to cluster"), "{added}");
    assert!(
        added.contains(&format!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"")),
        "{added}"
    );
    let id = added.split_whitespace().nth(1).unwrap().to_string();

    cluster.start_member(new);
    wait_for_keys(&cluster, new, 20, Duration::from_secs(30));
    // Writes through the new member reach everyone.
    cluster.ctl_ok(new, &["put", "from-new", "yes"]);
    assert_eq!(
        cluster.ctl_ok(1, &["get", "from-new", "--print-value-only"]),
        "yes\n"
    );
    let list = cluster.ctl_ok(2, &["member", "list"]);
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(
        list.contains(&format!("{id}, started, m3, {peer}")),
        "{list}"
    );

    let updated = cluster.ctl_ok(
        0,
        &["member", "update", &id, &format!("--peer-urls={peer}")],
    );
    assert!(updated.contains("updated in cluster"), "{updated}");

    let removed = cluster.ctl_ok(0, &["member", "remove", &id]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exited = cluster.members[new]
            .child
            .as_mut()
            .map(|c| c.try_wait().unwrap().is_some())
            .unwrap_or(true);
        if exited {
            break;
        }
        assert!(Instant::now() < deadline, "the removed member kept running");
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.members[new].child = None;
    cluster.ctl_ok(0, &["put", "after-remove", "ok"]);
    assert_eq!(cluster.ctl_ok(2, &["member", "list"]).lines().count(), 3);
    let missing = cluster.ctl(0, &["member", "remove", &id]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("member not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

/// A member added after the log was compacted needs a snapshot, and the snapshot must list it
/// (its Raft refuses one that does not). With no writes after `member add`, no routine snapshot
/// comes: the membership change itself must make one.
#[test]
fn cluster_member_added_after_compaction_catches_up_from_a_snapshot_in_a_quiet_cluster() {
    let mut cluster = Cluster::start_with(
        3,
        &["--snapshot-count=20"],
        &[("RAMPART_SNAPSHOT_CATCH_UP_ENTRIES", "5")],
    );
    for i in 0..60 {
        cluster.ctl_ok(i % 3, &["put", &format!("before-{i:02}"), "v"]);
    }
    let new = cluster.new_joining_member();
    let peer = cluster.members[new].peer_url.clone();
    let added = cluster.ctl_ok(0, &["member", "add", "m3", &format!("--peer-urls={peer}")]);
    assert!(added.contains("added to cluster"), "{added}");
    cluster.start_member(new);
    // No writes from here on.
    wait_for_keys(&cluster, new, 60, Duration::from_secs(20));
}

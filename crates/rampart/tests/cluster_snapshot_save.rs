//! `etcdctl snapshot save` against a Rampart cluster gives etcd's own backend file: the real
//! etcdctl saves and reads it (`snapshot status`), restores it, and the real etcd 3.4 serves the
//! restored data — keys with their revisions, tombstones, leases, the compaction point and v3
//! auth's users and roles. (It is also how a Rampart cluster's data moves to etcd.)

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{etcdctl_bin, free_port, Cluster};

fn plain_ctl(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .args(args)
        .output()
        .expect("run etcdctl")
}

#[test]
fn cluster_snapshot_save_restores_into_a_real_etcd() {
    let cluster = Cluster::start(3);
    cluster.ctl_ok(0, &["put", "a", "1"]);
    cluster.ctl_ok(1, &["put", "b", "2"]);
    cluster.ctl_ok(2, &["put", "a", "3"]);
    cluster.ctl_ok(0, &["del", "b"]);
    let granted = cluster.ctl_ok(0, &["lease", "grant", "300"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_string();
    cluster.ctl_ok(0, &["put", "withlease", "x", &format!("--lease={lease}")]);
    cluster.ctl_ok(0, &["compaction", "3"]);
    cluster.ctl_ok(1, &["user", "add", "alice:pw"]);
    cluster.ctl_ok(1, &["role", "add", "app"]);
    cluster.ctl_ok(
        1,
        &[
            "role",
            "grant-permission",
            "--prefix",
            "app",
            "readwrite",
            "/app/",
        ],
    );
    cluster.ctl_ok(1, &["user", "grant-role", "alice", "app"]);

    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.db");
    // The snapshot is the member's own state: a linearizable read there first makes sure it has
    // applied every write above.
    cluster.ctl_ok(1, &["get", "a"]);
    let saved = cluster.ctl_ok(1, &["snapshot", "save", snap.to_str().unwrap()]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    let status = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", snap.to_str().unwrap(), "-w", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["revision"], 6, "{status}");

    let restored = dir.path().join("restored");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let client = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", snap.to_str().unwrap()])
        .arg(format!("--data-dir={}", restored.display()))
        .args(["--name=r", &format!("--initial-cluster=r={peer}")])
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut etcd = Command::new("/usr/bin/etcd")
        .args(["--name=r", &format!("--data-dir={}", restored.display())])
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=r={peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !plain_ctl(&client, &["endpoint", "health"]).status.success() {
        assert!(Instant::now() < deadline, "restored etcd not healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = plain_ctl(&client, &["get", "--prefix", "", "-w", "json"]);
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let kvs = got["kvs"].as_array().unwrap();
    assert_eq!(kvs.len(), 2, "{got}");
    assert_eq!(got["header"]["revision"], 6);
    // a = "3" created at 2, modified at 4; withlease carries the lease.
    assert_eq!(kvs[0]["create_revision"], 2);
    assert_eq!(kvs[0]["mod_revision"], 4);
    assert_eq!(kvs[0]["value"], "Mw==");
    assert_eq!(
        format!("{:016x}", kvs[1]["lease"].as_i64().unwrap()),
        lease.to_lowercase()
    );
    let leases =
        String::from_utf8_lossy(&plain_ctl(&client, &["lease", "list"]).stdout).into_owned();
    assert!(leases.contains(&lease.to_lowercase()), "{leases}");
    let old = plain_ctl(&client, &["get", "a", "--rev=2"]);
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted"),
        "the compaction point survives"
    );
    let users = plain_ctl(&client, &["user", "get", "alice"]);
    assert_eq!(
        String::from_utf8_lossy(&users.stdout),
        "User: alice\nRoles: app\n"
    );
    let role = plain_ctl(&client, &["role", "get", "app"]);
    assert!(
        String::from_utf8_lossy(&role.stdout).contains("[/app/, /app0) (prefix /app/)"),
        "{}",
        String::from_utf8_lossy(&role.stdout)
    );
    let _ = etcd.kill();
    let _ = etcd.wait();
}

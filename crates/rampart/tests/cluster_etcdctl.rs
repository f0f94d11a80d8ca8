//! The real `etcdctl` 3.4 against a 3-member mutual-TLS Rampart cluster, compared with the same
//! commands against the real etcd 3.4 (same certificates), output for output.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, Cluster};

/// A 1-member real etcd with client mTLS, using the same CA and certificates.
struct RealEtcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl RealEtcd {
    fn start(cluster: &Cluster) -> RealEtcd {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("https://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let pki = &cluster.pki;
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=ref")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ref={peer}"))
            .arg(format!("--cert-file={}", pki.file("member.pem")))
            .arg(format!("--key-file={}", pki.file("member-key.pem")))
            .arg(format!("--trusted-ca-file={}", pki.file("ca.pem")))
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let etcd = RealEtcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster
            .etcdctl(&etcd.url)
            .args(["endpoint", "health"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "reference etcd did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a command printed, with run-specific numbers (IDs, terms, timings) masked.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        for key in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"] {
            while let Some(pos) = l.find(key) {
                let start = pos + key.len();
                let end = l[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map(|e| start + e)
                    .unwrap_or(l.len());
                l = format!("{}{}N{}", &l[..pos], key.replace(':', "="), &l[end..]);
            }
        }
        l = mask_after(&l, "\"ts\":\"", |c: char| c == '"');
        l = mask_after(&l, "client-", |c: char| c == '/');
        l = mask_after(&l, "127.0.0.1:", |c: char| !c.is_ascii_digit());
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Replaces what follows each `marker` up to `stop` with `*`.
fn mask_after(line: &str, marker: &str, stop: impl Fn(char) -> bool + Copy) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find(marker) {
        out.push_str(&rest[..pos + marker.len()]);
        out.push('*');
        let tail = &rest[pos + marker.len()..];
        let end = tail.find(stop).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn transcript(
    cluster: &Cluster,
    endpoint_for: &dyn Fn(usize) -> String,
    steps: &[(&[&str], Option<&str>)],
) -> Vec<String> {
    let mut results = Vec::new();
    for (i, (args, stdin)) in steps.iter().enumerate() {
        let mut cmd = cluster.etcdctl(&endpoint_for(i));
        cmd.args(*args);
        let out = if let Some(input) = stdin {
            use std::io::Write;
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        } else {
            cmd.output().unwrap()
        };
        results.push(format!(
            "$ etcdctl {}\nexit={}\n{}{}",
            args.join(" "),
            out.status.code().unwrap_or(-1),
            normalize(&String::from_utf8_lossy(&out.stdout)),
            normalize(&String::from_utf8_lossy(&out.stderr)),
        ));
    }
    results
}

#[test]
fn cluster_etcdctl_kv_commands_match_real_etcd() {
    let cluster = Cluster::start(3);
    let etcd = RealEtcd::start(&cluster);
    let txn_input = "mod(\"k1\") > \"0\"\n\nput k1 \"txn-yes\"\n\nput k1 \"txn-no\"\n\n";
    let steps: Vec<(&[&str], Option<&str>)> = vec![
        (&["put", "foo", "bar"], None),
        (&["put", "foo1", "bar1"], None),
        (&["put", "foo2", "bar2"], None),
        (&["put", "k1", "v1"], None),
        (&["put", "zoo", "animal"], None),
        (&["put", "foo", "bar-again"], None),
        (&["get", "foo"], None),
        (&["get", "--prefix", "foo"], None),
        (&["get", "foo", "foo3"], None),
        (&["get", "--prefix", "--limit=2", "foo"], None),
        (&["get", "--rev=2", "foo"], None),
        (
            &["get", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", ""],
            None,
        ),
        (&["get", "--from-key", "k"], None),
        (&["get", "--prefix", "--keys-only", "foo"], None),
        (&["get", "--prefix", "--count-only", "foo"], None),
        (&["get", "--print-value-only", "foo"], None),
        (&["get", "-w", "json", "foo"], None),
        (&["get", "--consistency=s", "foo"], None),
        (&["get", "missing"], None),
        (&["del", "foo2"], None),
        (&["del", "--prev-kv", "--prefix", "foo"], None),
        (&["del", "nothing"], None),
        (&["txn", "--interactive=false"], Some(txn_input)),
        (&["get", "k1"], None),
        (
            &["txn", "-w", "json"],
            Some("value(\"k1\") = \"nope\"\n\nput a b\n\nget k1\n\n"),
        ),
        (&["compaction", "3"], None),
        (&["get", "--rev=2", "foo"], None),
        (&["get", "--rev=100", "foo"], None),
        (&["compaction", "2"], None),
        (&["put", "", "empty-key"], None),
    ];
    let ours = transcript(
        &cluster,
        &|i| cluster.members[i % 3].client_url.clone(),
        &steps,
    );
    let reference = transcript(&cluster, &|_| etcd.url.clone(), &steps);
    for (a, b) in ours.iter().zip(reference.iter()) {
        assert_eq!(
            a,
            b,
            "rampart (left) and etcd (right) differ\n{}",
            cluster.logs()
        );
    }
}

#[test]
fn cluster_etcdctl_member_and_endpoint_commands() {
    let cluster = Cluster::start(3);
    let list = cluster.ctl_ok(1, &["member", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    for m in &cluster.members {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!(", {}, ", m.name)))
            .unwrap_or_else(|| panic!("{} missing from\n{list}", m.name));
        // "<id>, started, <name>, <peer urls>, <client urls>, false"
        assert!(line.contains(", started, "), "{line}");
        assert!(line.contains(&m.peer_url), "{line}");
        assert!(line.contains(&m.client_url), "{line}");
        assert!(line.ends_with(", false"), "{line}");
    }
    let health = cluster
        .etcdctl(&cluster.endpoints())
        .args(["endpoint", "health"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&health.stdout).into_owned()
        + &String::from_utf8_lossy(&health.stderr);
    assert!(health.status.success(), "{text}");
    for m in &cluster.members {
        assert!(
            text.contains(&format!(
                "{} is healthy: successfully committed proposal: took = ",
                m.client_url
            )),
            "{text}"
        );
    }
    let status = cluster.ctl_ok(0, &["endpoint", "status", "--cluster", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3, "{status}");
    let leaders: std::collections::BTreeSet<String> = arr
        .iter()
        .map(|s| s["Status"]["leader"].to_string())
        .collect();
    assert_eq!(leaders.len(), 1, "members disagree on the leader: {status}");
    assert_eq!(arr[0]["Status"]["version"], "3.4.23");
    let table = cluster.ctl_ok(0, &["endpoint", "status", "-w", "table"]);
    assert!(
        table.contains(" ENDPOINT ") && table.contains("RAFT APPLIED INDEX"),
        "{table}"
    );
}

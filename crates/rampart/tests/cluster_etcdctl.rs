//! The real `etcdctl` 3.4 against a 3-member mutual-TLS Rampart cluster, compared with the same
//! commands against the real etcd 3.4 (same certificates), output for output.

mod support;

use std::process::Stdio;

use support::real_etcd::{normalize, RealEtcd};
use support::Cluster;

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

//! Our `etcdctl` (the `rampart` binary through a link of that name) against the real etcdctl
//! 3.4: the same command script runs (1) with the real etcdctl against a real etcd, (2) with
//! ours against a second real etcd, (3) with ours against a 3-member mutual-TLS Rampart
//! cluster; the three transcripts must be identical once run-specific numbers are masked.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::real_etcd::{mask_after, normalize, RealEtcd};
use support::{etcdctl_bin, our_etcdctl, Cluster};

/// One scripted command: arguments (`{lease}` is the last granted lease), standard input, and
/// whether to stop it after a moment (watches run until interrupted).
struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    stop_after: Option<Duration>,
}

const fn step(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        stop_after: None,
    }
}

fn script() -> Vec<Step> {
    let txn = "mod(\"k1\") > \"0\"\n\nput k1 \"txn-yes\"\n\nput k1 \"txn-no\"\n\n";
    vec![
        step(&["put", "foo", "bar"]),
        step(&["put", "foo1", "bar1"]),
        step(&["put", "foo2", "bar2"]),
        step(&["put", "k1", "v1"]),
        step(&["put", "foo", "bar-again", "--prev-kv"]),
        step(&["get", "foo"]),
        step(&["get", "--prefix", "foo"]),
        step(&["get", "foo", "foo3"]),
        step(&["get", "--prefix", "--limit=2", "foo"]),
        step(&["get", "--rev=2", "foo"]),
        step(&["get", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", ""]),
        step(&["get", "--from-key", "k"]),
        step(&["get", "--prefix", "--keys-only", "foo"]),
        step(&["get", "--print-value-only", "foo"]),
        step(&["get", "--hex", "foo"]),
        step(&["get", "-w", "json", "foo"]),
        step(&["get", "-w", "fields", "--prefix", "foo"]),
        step(&["get", "--consistency=s", "foo"]),
        step(&["get", "missing"]),
        step(&["get", "--order=SIDEWAYS", "foo"]),
        step(&["get"]),
        step(&["put", "-w", "json", "j", "v"]),
        step(&["del", "foo2"]),
        step(&["del", "--prev-kv", "--prefix", "foo"]),
        step(&["del", "nothing", "-w", "fields"]),
        Step {
            args: &["txn", "--interactive=false"],
            stdin: Some(txn),
            stop_after: None,
        },
        Step {
            args: &["txn", "-w", "json"],
            stdin: Some("value(\"k1\") = \"nope\"\n\nput a b\n\nget k1\n\n"),
            stop_after: None,
        },
        Step {
            args: &["txn", "-w", "fields"],
            stdin: Some("version(\"k1\") = \"2\"\n\ndel k1\n\n\n"),
            stop_after: None,
        },
        Step {
            args: &["txn"],
            stdin: Some("bogus(\"k1\") = \"2\"\n\n\n\n"),
            stop_after: None,
        },
        Step {
            args: &["txn"],
            stdin: Some("\nfrob a b\n\n\n"),
            stop_after: None,
        },
        Step {
            args: &["watch", "--prefix", "--rev=1", ""],
            stdin: None,
            stop_after: Some(Duration::from_secs(2)),
        },
        Step {
            args: &["watch", "--prev-kv", "--rev=5", "foo", "-w", "json"],
            stdin: None,
            stop_after: Some(Duration::from_secs(2)),
        },
        step(&["compaction", "3"]),
        step(&["get", "--rev=2", "foo"]),
        step(&["get", "--rev=100", "foo"]),
        step(&["compaction", "2"]),
        step(&["lease", "grant", "600"]),
        step(&["lease", "timetolive", "{lease}"]),
        step(&["put", "leased", "v", "--lease={lease}"]),
        step(&["lease", "timetolive", "--keys", "{lease}"]),
        step(&["lease", "timetolive", "-w", "json", "{lease}"]),
        step(&["lease", "keep-alive", "--once", "{lease}"]),
        step(&["lease", "list"]),
        step(&["lease", "revoke", "{lease}"]),
        step(&["lease", "timetolive", "{lease}"]),
        step(&["get", "leased"]),
        step(&["lease", "revoke", "{lease}"]),
        step(&["lease", "grant", "x"]),
        step(&["put", "k", "v", "--lease=zz"]),
        step(&["alarm", "list"]),
        step(&["version"]),
        step(&["no-such-command"]),
    ]
}

/// Masks what differs between runs and servers: IDs, terms, timings, lease IDs, the zap
/// warnings grpc-go's retry logger writes on failed calls.
fn mask(text: &str, lease: &str) -> String {
    let mut out = String::new();
    for line in normalize(text).lines() {
        if line.starts_with("{\"level\":") {
            continue;
        }
        let mut l = line.to_string();
        for field in ["\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "] {
            if l.starts_with(field) {
                l = format!("{field}N");
            }
        }
        if !lease.is_empty() {
            l = l.replace(lease, "LEASE");
            if let Ok(dec) = i64::from_str_radix(lease, 16) {
                l = l.replace(&dec.to_string(), "LEASE");
            }
        }
        for key in ["\"ID\":", "\"id\":", "\"ttl\":", "\"TTL\":"] {
            l = mask_after(&l, key, |c: char| !c.is_ascii_digit() && c != '-');
        }
        l = mask_after(&l, "remaining(", |c: char| c == 's');
        l = mask_after(&l, "keepalived with TTL(", |c: char| c == ')');
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn run_script(bin: &Path, cluster: &Cluster, endpoint: &str) -> Vec<String> {
    let mut lease = String::new();
    let mut transcript = Vec::new();
    for s in script() {
        let args: Vec<String> = s
            .args
            .iter()
            .map(|a| a.replace("{lease}", &lease))
            .collect();
        let mut cmd = cluster.etcdctl_using(bin, endpoint);
        cmd.args(&args)
            .stdin(if s.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run etcdctl");
        if let Some(input) = s.stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = match s.stop_after {
            Some(d) => {
                std::thread::sleep(d);
                let _ = child.kill();
                child.wait_with_output().unwrap()
            }
            None => child.wait_with_output().unwrap(),
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if args.first().map(String::as_str) == Some("lease")
            && args.get(1).map(String::as_str) == Some("grant")
        {
            if let Some(id) = stdout.split_whitespace().nth(1) {
                lease = id.to_string();
            }
        }
        let code = if s.stop_after.is_some() {
            "killed".to_string()
        } else {
            out.status.code().unwrap_or(-1).to_string()
        };
        transcript.push(format!(
            "$ etcdctl {}\nexit={code}\n{}{}",
            mask(&args.join(" "), &lease).trim_end(),
            mask(&stdout, &lease),
            mask(&String::from_utf8_lossy(&out.stderr), &lease),
        ));
    }
    transcript
}

fn assert_same(left: &[String], right: &[String], what: &str) {
    for (a, b) in left.iter().zip(right.iter()) {
        assert_eq!(a, b, "{what}: left and right differ");
    }
    assert_eq!(left.len(), right.len());
}

#[test]
fn ctl_our_etcdctl_matches_the_real_one_against_etcd_and_rampart() {
    let cluster = Cluster::start(3);
    let etcd_a = RealEtcd::start(&cluster);
    let etcd_b = RealEtcd::start(&cluster);
    let reference = run_script(&etcdctl_bin(), &cluster, &etcd_a.url);
    let ours_on_etcd = run_script(&our_etcdctl(), &cluster, &etcd_b.url);
    assert_same(
        &reference,
        &ours_on_etcd,
        "real etcdctl (left) vs ours (right), both against etcd 3.4",
    );
    let ours_on_rampart = run_script(&our_etcdctl(), &cluster, &cluster.members[1].client_url);
    assert_same(
        &reference,
        &ours_on_rampart,
        "real etcdctl on etcd (left) vs ours on rampart (right)",
    );
}

#[test]
fn ctl_member_endpoint_and_maintenance_commands_on_a_cluster() {
    let cluster = Cluster::start(3);
    let ours = our_etcdctl();
    let run = |endpoints: &str, args: &[&str]| {
        let out = cluster
            .etcdctl_using(&ours, endpoints)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let real = |endpoints: &str, args: &[&str]| {
        let out = cluster.etcdctl(endpoints).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = cluster.members[0].client_url.clone();
    // Member list, in every format, as the real etcdctl prints it.
    for format in ["simple", "json", "table", "fields"] {
        let (code, stdout, stderr) = run(&first, &["member", "list", "-w", format]);
        assert_eq!(code, 0, "{stderr}");
        let want = real(&first, &["member", "list", "-w", format]);
        assert_eq!(
            normalize(&stdout),
            normalize(&want),
            "member list -w {format}"
        );
    }
    // Endpoint status and hash over the whole cluster (--cluster), table and json.
    let (code, table, stderr) = run(&first, &["endpoint", "status", "--cluster", "-w", "table"]);
    assert_eq!(code, 0, "{stderr}");
    for m in &cluster.members {
        assert!(table.contains(&m.client_url), "{table}");
    }
    let (_, hashes, _) = run(&first, &["endpoint", "hashkv", "--cluster"]);
    let distinct: std::collections::BTreeSet<&str> = hashes
        .lines()
        .filter_map(|l| l.split(", ").nth(1))
        .collect();
    assert_eq!(
        distinct.len(),
        1,
        "members disagree on the KV hash: {hashes}"
    );
    // Health on all three, on stderr as etcdctl prints it; one dead endpoint makes it fail.
    let (code, _, stderr) = run(&cluster.endpoints(), &["endpoint", "health"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr
            .matches("is healthy: successfully committed proposal: took = ")
            .count(),
        3,
        "{stderr}"
    );
    let dead = format!("{},https://127.0.0.1:{}", first, support::free_port());
    let (code, _, stderr) = run(&dead, &["endpoint", "health", "--dial-timeout=1s"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is unhealthy: failed to commit proposal: ")
            && stderr.contains("Error: unhealthy cluster"),
        "{stderr}"
    );
    // Failover: the first endpoint is down, the command still works.
    let (code, stdout, stderr) = run(
        &dead.split(',').rev().collect::<Vec<_>>().join(","),
        &["put", "failover", "ok"],
    );
    assert_eq!((code, stdout.as_str()), (0, "OK\n"), "{stderr}");
    // Defragment every member, and move the leadership.
    let (code, stdout, stderr) = run(&first, &["defrag", "--cluster"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout
            .matches("Finished defragmenting etcd member[")
            .count(),
        3,
        "{stdout}"
    );
    let status = real(&cluster.endpoints(), &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let leader = v[0]["Status"]["leader"].as_u64().unwrap();
    let target = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Status"]["header"]["member_id"].as_u64().unwrap())
        .find(|id| *id != leader)
        .unwrap();
    let (code, stdout, stderr) = run(
        &cluster.endpoints(),
        &["move-leader", &format!("{target:x}")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!("Leadership transferred from {leader:x} to {target:x}\n")
    );
}

#[test]
fn ctl_explains_tls_mistakes_in_one_line() {
    let cluster = Cluster::start(1);
    let url = &cluster.members[0].client_url;
    let ours = our_etcdctl();
    let out = std::process::Command::new(&ours)
        .args([
            &format!("--endpoints={url}"),
            "--dial-timeout=2s",
            "get",
            "x",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("server certificate signed by an unknown authority: pass --cacert"),
        "{stderr}"
    );
    let out = std::process::Command::new(&ours)
        .args([
            &format!("--endpoints={url}"),
            &format!("--cacert={}", cluster.pki.file("ca.pem")),
            "get",
            "x",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("client certificate: pass --cert and --key"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Seed 003's check: the v3 `member list` configured only by `ETCDCTL_*` variables.
#[test]
fn ctl_seed_003_member_list_from_etcdctl_variables() {
    let cluster = Cluster::start(3);
    let run = |bin: &Path| {
        let out = std::process::Command::new(bin)
            .env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", cluster.endpoints())
            .env("ETCDCTL_CACERT", cluster.pki.file("ca.pem"))
            .env("ETCDCTL_CERT", cluster.pki.file("client.pem"))
            .env("ETCDCTL_KEY", cluster.pki.file("client-key.pem"))
            .args(["member", "list"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ours = run(&our_etcdctl());
    assert_eq!(ours, run(&etcdctl_bin()));
    assert_eq!(ours.lines().count(), 3, "{ours}");
}

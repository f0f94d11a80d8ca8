//! etcd's v2 API on a 3-member mutual-TLS cluster started with `--enable-v2`: seed 001's commands
//! verbatim (`etcdctl set /foo bar`, `etcdctl get /foo` with the `ETCDCTL_*_FILE` variables, and
//! its `curl ... /v2/keys/foo`), `cluster-health`, and a session of v2 etcdctl commands whose
//! output matches the real etcd 3.4's (indexes masked: etcd's v2 index also counts its internal
//! membership writes). Each runs with the real etcdctl and with ours (`rampart` as `etcdctl`).
//! The v2 auth API (`/v2/auth`, and access checks on `/v2/keys` while it is enabled) answers a
//! curl session with the same statuses and bodies as the real etcd.

mod support;

use std::process::{Command, Output};

use std::path::Path;
use support::real_etcd::{normalize, RealEtcd};

use support::{etcdctl_bin, our_etcdctl, Cluster};

fn v2ctl_using(bin: &Path, cluster: &Cluster, peers: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .env("ETCDCTL_API", "2")
        .env("ETCDCTL_CERT_FILE", cluster.pki.file("client.pem"))
        .env("ETCDCTL_KEY_FILE", cluster.pki.file("client-key.pem"))
        .env("ETCDCTL_CA_FILE", cluster.pki.file("ca.pem"))
        .env("ETCDCTL_PEERS", peers)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Masks v2 indexes ("[12]" after errors, "modifiedIndex":12 in JSON).
fn mask_indexes(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find(|c: char| c.is_ascii_digit()) {
        let (head, tail) = rest.split_at(pos);
        let end = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        let indexed =
            head.ends_with('[') || head.ends_with("Index\":") || head.ends_with("X-Etcd-Index: ");
        out.push_str(head);
        out.push_str(if indexed { "N" } else { &tail[..end] });
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn cluster_v2_seed_001_commands_and_cluster_health() {
    let cluster = Cluster::start_with(3, &["--enable-v2"], &[]);
    let peers = cluster.endpoints();
    for bin in [etcdctl_bin(), our_etcdctl()] {
        seed_001(&cluster, &peers, &bin);
    }
}

fn seed_001(cluster: &Cluster, peers: &str, bin: &Path) {
    let v2ctl = |_: &Cluster, peers: &str, args: &[&str]| v2ctl_using(bin, cluster, peers, args);
    let set = v2ctl(cluster, peers, &["set", "/foo", "bar"]);
    assert!(
        set.status.success() && text(&set) == "bar\n",
        "{}",
        text(&set)
    );
    let get = v2ctl(cluster, peers, &["get", "/foo"]);
    assert_eq!(text(&get), "bar\n");
    for m in &cluster.members {
        let curl = Command::new("curl")
            .args(["-s", "--cacert", &cluster.pki.file("ca.pem")])
            .args(["--cert", &cluster.pki.file("client.pem")])
            .args(["--key", &cluster.pki.file("client-key.pem")])
            .args(["-L", &format!("{}/v2/keys/foo", m.client_url)])
            .output()
            .unwrap();
        let body = text(&curl);
        assert!(
            body.starts_with(r#"{"action":"get","node":{"key":"/foo","value":"bar","#),
            "{}: {body}",
            m.name
        );
    }
    let health = v2ctl(cluster, peers, &["cluster-health"]);
    let out = text(&health);
    assert!(health.status.success(), "{out}");
    for m in &cluster.members {
        assert!(
            out.contains(&format!(
                "is healthy: got healthy result from {}",
                m.client_url
            )),
            "{out}"
        );
    }
    assert!(out.ends_with("cluster is healthy\n"), "{out}");
}

#[test]
fn cluster_v2_etcdctl_session_matches_real_etcd() {
    let cluster = Cluster::start_with(3, &["--enable-v2"], &[]);
    let etcd = RealEtcd::start_with(&cluster, &["--enable-v2"]);
    let steps: &[&[&str]] = &[
        &["set", "/dir/a", "1"],
        &["get", "/dir/a"],
        &["mk", "/dir/a", "2"],
        &["mk", "/dir/b", "2"],
        &["mkdir", "/empty"],
        &["ls", "--sort", "/"],
        &["ls", "--sort", "--recursive", "/dir"],
        &["update", "/dir/a", "3"],
        &["update", "/missing", "3"],
        &["set", "--swap-with-value", "3", "/dir/a", "4"],
        &["set", "--swap-with-value", "nope", "/dir/a", "5"],
        &["get", "/dir/a"],
        &["rm", "/dir"],
        &["rmdir", "/dir"],
        &["rm", "/dir/a"],
        &["rm", "--recursive", "/dir"],
        &["rmdir", "/empty"],
        &["get", "/dir/b"],
        &["set", "/ttl", "v", "--ttl", "100"],
        &["get", "/ttl"],
        &["-o", "json", "get", "/ttl"],
        // Leaves the key space empty: each run starts from the same state.
        &["rm", "/ttl"],
    ];
    let run = |bin: &Path, peers: &str| -> Vec<String> {
        steps
            .iter()
            .enumerate()
            .map(|(i, args)| {
                let peer = peers.split(',').nth(i % peers.split(',').count()).unwrap();
                let o = v2ctl_using(bin, &cluster, peer, args);
                let shown = mask_indexes(&normalize(&text(&o)));
                // Remaining TTL and expiry time depend on the moment.
                let shown = shown
                    .split(',')
                    .filter(|f| !f.contains("\"expiration\"") && !f.contains("\"ttl\""))
                    .collect::<Vec<_>>()
                    .join(",");
                format!(
                    "$ etcdctl {}\nexit={}\n{shown}",
                    args.join(" "),
                    o.status.code().unwrap_or(-1)
                )
            })
            .collect()
    };
    let reference = run(&etcdctl_bin(), &etcd.url);
    let on_rampart = run(&etcdctl_bin(), &cluster.endpoints());
    let ours_on_rampart = run(&our_etcdctl(), &cluster.endpoints());
    for (i, (a, b)) in on_rampart.iter().zip(reference.iter()).enumerate() {
        assert_eq!(
            a,
            b,
            "rampart (left) and etcd (right) differ\n{}",
            cluster.logs()
        );
        assert_eq!(
            &ours_on_rampart[i], b,
            "our etcdctl on rampart (left) and the real one on etcd (right) differ"
        );
    }
}

/// One `curl` against `url`: "STATUS body" (indexes masked). `user` is "name:password" for
/// basic auth; without it the client certificate's CN ("root") may name the user, as etcd does
/// with `--client-cert-auth`.
fn curl(cluster: &Cluster, url: &str, method: &str, path: &str, body: &str, user: &str) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "-X", method])
        .args(["--cacert", &cluster.pki.file("ca.pem")])
        .args(["--cert", &cluster.pki.file("client.pem")])
        .args(["--key", &cluster.pki.file("client-key.pem")]);
    if !user.is_empty() {
        cmd.args(["-u", user]);
    }
    if !body.is_empty() {
        cmd.args(["-d", body]);
    }
    let out = text(&cmd.arg(format!("{url}{path}")).output().unwrap());
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    format!("{status} {}", mask_indexes(body.trim_end()))
}

#[test]
fn cluster_v2_auth_api_matches_real_etcd() {
    let cluster = Cluster::start_with(3, &["--enable-v2"], &[]);
    let etcd = RealEtcd::start_with(&cluster, &["--enable-v2"]);
    let user_foo = r#"{"user":"foo","password":"pass"}"#;
    let role_foo = r#"{"role":"foo","permissions":{"kv":{"read":["/foo/*"]}}}"#;
    let grant_foo = r#"{"user":"foo","grant":["foo"]}"#;
    // (method, path, body, basic-auth user)
    let steps: &[(&str, &str, &str, &str)] = &[
        ("GET", "/v2/auth/enable", "", ""),
        ("PUT", "/v2/auth/enable", "", ""),
        ("GET", "/v2/auth/users", "", ""),
        ("PUT", "/v2/auth/users/foo", user_foo, ""),
        ("PUT", "/v2/auth/users/foo", user_foo, ""),
        ("GET", "/v2/auth/users/foo", "", ""),
        ("GET", "/v2/auth/users/nope", "", ""),
        ("PUT", "/v2/auth/roles/foo", role_foo, ""),
        ("PUT", "/v2/auth/roles/foo", role_foo, ""),
        ("PUT", "/v2/auth/users/foo", grant_foo, ""),
        ("PUT", "/v2/auth/users/foo", grant_foo, ""),
        (
            "PUT",
            "/v2/auth/users/foo",
            r#"{"user":"foo","revoke":["r9"]}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/foo",
            r#"{"role":"foo","grant":{"kv":{"write":["/bar"]}}}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/foo",
            r#"{"role":"foo","revoke":{"kv":{"read":["/zz"]}}}"#,
            "",
        ),
        ("PUT", "/v2/auth/roles/root", r#"{"role":"root"}"#, ""),
        ("GET", "/v2/auth/users", "", ""),
        ("GET", "/v2/auth/roles", "", ""),
        ("GET", "/v2/auth/roles/root", "", ""),
        ("GET", "/v2/auth/roles/guest", "", ""),
        (
            "PUT",
            "/v2/auth/users/root",
            r#"{"user":"root","password":"a"}"#,
            "",
        ),
        ("PUT", "/v2/keys/foo/x", "value=1", ""),
        ("PUT", "/v2/auth/enable", "", ""),
        ("PUT", "/v2/auth/enable", "", ""),
        ("GET", "/v2/auth/enable", "", ""),
        ("GET", "/v2/auth/roles", "", "root:a"),
        ("GET", "/v2/keys/foo/x", "", "foo:pass"),
        ("GET", "/v2/keys/foo/x", "", "foo:wrong"),
        ("GET", "/v2/keys/foo/x", "", "nobody:x"),
        ("PUT", "/v2/keys/foo/y", "value=2", "foo:pass"),
        ("GET", "/v2/keys/foo?recursive=true", "", "foo:pass"),
        ("GET", "/v2/keys/bar", "", "foo:pass"),
        // No basic auth: the certificate's CN, "root", is the user.
        ("GET", "/v2/auth/users", "", ""),
        ("GET", "/v2/auth/users", "", "foo:pass"),
        ("DELETE", "/v2/auth/users/root", "", "root:a"),
        ("DELETE", "/v2/auth/roles/root", "", "root:a"),
        ("DELETE", "/v2/auth/enable", "", "foo:pass"),
        ("DELETE", "/v2/auth/enable", "", "root:a"),
        ("DELETE", "/v2/auth/enable", "", ""),
        ("GET", "/v2/auth/enable", "", ""),
        ("PUT", "/v2/auth/users/bad", "notjson", ""),
        (
            "PUT",
            "/v2/auth/users/bad",
            r#"{"user":"other","password":"x"}"#,
            "",
        ),
        ("PUT", "/v2/auth/users/nopw", r#"{"user":"nopw"}"#, ""),
        ("POST", "/v2/auth/users/bad", "{}", ""),
        (
            "PUT",
            "/v2/auth/users/foo2",
            r#"{"user":"foo2","password":"x","roles":["r1"]}"#,
            "",
        ),
        // Leaves the records and keys as they were: each run starts from the same state.
        ("DELETE", "/v2/auth/users/foo2", "", ""),
        ("DELETE", "/v2/auth/users/foo", "", ""),
        ("DELETE", "/v2/auth/users/foo", "", ""),
        ("DELETE", "/v2/auth/roles/foo", "", ""),
        ("DELETE", "/v2/auth/roles/guest", "", ""),
        ("DELETE", "/v2/auth/users/root", "", ""),
        ("GET", "/v2/auth/roles", "", ""),
        ("DELETE", "/v2/keys/foo?recursive=true", "", ""),
    ];
    let run = |urls: &[String]| -> Vec<String> {
        steps
            .iter()
            .enumerate()
            .map(|(i, (method, path, body, user))| {
                let url = &urls[i % urls.len()];
                let got = curl(&cluster, url, method, path, body, user);
                format!("$ {method} {path} {body} {user}\n{got}")
            })
            .collect()
    };
    let reference = run(std::slice::from_ref(&etcd.url));
    // Consecutive steps go to different members, so each decision reads records that another
    // member wrote: they went through Raft.
    let urls: Vec<String> = cluster
        .members
        .iter()
        .map(|m| m.client_url.clone())
        .collect();
    let on_rampart = run(&urls);
    for (ours, theirs) in on_rampart.iter().zip(&reference) {
        assert_eq!(ours, theirs, "rampart (left) and etcd (right) differ");
    }
}

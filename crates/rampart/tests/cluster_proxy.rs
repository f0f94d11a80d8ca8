//! Seed 000: three members with TLS among themselves and a proxy in front of them, started as
//! `etcd --proxy=on` with the seed's flags (members found from `--initial-cluster` over the peer
//! port, with the peer certificate). Clients talk only to the proxy: v3 KV, watch, lease and
//! member list pass through, `cluster-health` (v2) through the proxy reports every member, and
//! the proxy keeps serving when a member dies.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{etcdctl_bin, free_port, rampart_bin, Cluster};

struct Proxy {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_proxy(cluster: &Cluster, dir: &std::path::Path) -> Proxy {
    let url = format!("https://127.0.0.1:{}", free_port());
    let initial_cluster = cluster
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    let log = dir.join("proxy.log");
    let out = std::fs::File::create(&log).unwrap();
    let pki = &cluster.pki;
    // Seed 000's command line (etcd-node.pem → member.pem, etcd-proxy.pem → member.pem).
    let child = Command::new(rampart_bin())
        .arg("server")
        .arg("--name=proxy")
        .arg("--proxy=on")
        .args(["--listen-client-urls", &url])
        .args(["--initial-cluster", &initial_cluster])
        .arg(format!("--peer-cert-file={}", pki.file("member.pem")))
        .arg(format!("--peer-key-file={}", pki.file("member-key.pem")))
        .arg(format!("--peer-trusted-ca-file={}", pki.file("ca.pem")))
        .arg("--peer-client-cert-auth=true")
        .arg(format!("--ca-file={}", pki.file("ca.pem")))
        .arg(format!("--cert-file={}", pki.file("member.pem")))
        .arg(format!("--key-file={}", pki.file("member-key.pem")))
        .arg(format!("--data-dir={}", dir.join("proxy").display()))
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let proxy = Proxy { child, url, log };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cluster
        .etcdctl(&proxy.url)
        .args(["endpoint", "health"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "proxy not healthy:\n{}",
            std::fs::read_to_string(&proxy.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    proxy
}

fn through(cluster: &Cluster, proxy: &Proxy, args: &[&str]) -> String {
    let out = cluster.etcdctl(&proxy.url).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?} through the proxy failed: {}{}\n--- proxy ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&proxy.log).unwrap_or_default()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cluster_proxy_seed_000_clients_know_only_the_proxy() {
    let mut cluster = Cluster::start_with(3, &["--enable-v2"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_proxy(&cluster, dir.path());

    assert_eq!(through(&cluster, &proxy, &["put", "via", "proxy"]), "OK\n");
    assert_eq!(
        through(&cluster, &proxy, &["get", "via", "--print-value-only"]),
        "proxy\n"
    );
    let members = through(&cluster, &proxy, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");

    // A watch stream and a lease keep-alive stream pass through.
    let mut watch = cluster
        .etcdctl(&proxy.url)
        .args(["watch", "watched"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    through(&cluster, &proxy, &["put", "watched", "seen"]);
    let lease = through(&cluster, &proxy, &["lease", "grant", "30"]);
    let id = lease.split_whitespace().nth(1).unwrap().to_string();
    let kept = through(&cluster, &proxy, &["lease", "keep-alive", "--once", &id]);
    assert!(kept.contains("keepalived with TTL(30)"), "{kept}");
    std::thread::sleep(Duration::from_millis(800));
    let _ = watch.kill();
    let watched = watch.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&watched.stdout),
        "PUT\nwatched\nseen\n"
    );

    // cluster-health (v2 etcdctl) through the proxy: every member reported.
    let health = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "2")
        .arg(format!("--cert-file={}", cluster.pki.file("client.pem")))
        .arg(format!("--key-file={}", cluster.pki.file("client-key.pem")))
        .arg(format!("--ca-file={}", cluster.pki.file("ca.pem")))
        .arg(format!("--endpoints={}", proxy.url))
        .arg("cluster-health")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&health.stdout);
    assert!(
        health.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&health.stderr)
    );
    for m in &cluster.members {
        assert!(
            text.contains(&format!("got healthy result from {}", m.client_url)),
            "{text}"
        );
    }
    assert!(text.ends_with("cluster is healthy\n"), "{text}");

    // The proxy refuses clients without a certificate and with one from another CA.
    let bare = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", proxy.url))
        .arg(format!("--cacert={}", cluster.pki.file("ca.pem")))
        .args(["--dial-timeout=2s", "--command-timeout=3s", "get", "via"])
        .output()
        .unwrap();
    assert!(
        !bare.status.success(),
        "a client without a certificate got through"
    );
    let other = support::Pki::new(&dir.path().join("other-ca"));
    let foreign = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", proxy.url))
        .arg(format!("--cacert={}", cluster.pki.file("ca.pem")))
        .arg(format!("--cert={}", other.file("client.pem")))
        .arg(format!("--key={}", other.file("client-key.pem")))
        .args(["--dial-timeout=2s", "--command-timeout=3s", "get", "via"])
        .output()
        .unwrap();
    assert!(
        !foreign.status.success(),
        "a client certificate from another CA got through"
    );

    // A member dies: the proxy sends requests to the others.
    cluster.kill(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    for i in 0..10 {
        let key = format!("after-kill-{i}");
        loop {
            let out = cluster
                .etcdctl(&proxy.url)
                .args(["put", &key, "v"])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "writes through the proxy did not resume: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let keys = through(
        &cluster,
        &proxy,
        &["get", "--prefix", "--keys-only", "after-kill-"],
    );
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 10, "{keys}");
}

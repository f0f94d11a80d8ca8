//! The proxy in front of a real etcd 3.4 cluster (3 members, client and peer mutual TLS).
//! - Seed 000's flow with the seed's command line (`--proxy=on`, members found from
//!   `--initial-cluster` over the peer port with the peer certificate — etcd answers there with
//!   its gRPC Cluster.MemberList): member list, endpoint health of every member, put/get, watch,
//!   lease, clients without a certificate or with one of another CA refused, and the member the
//!   proxy uses killed while requests keep working.
//! - Watch fan-out: 200 clients through `rampart proxy` cost the etcd members one watch stream
//!   (etcd's own `etcd_debugging_mvcc_watch_stream_total`), and each gets every event.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::{
    watch_request::RequestUnion, PutRequest, WatchCreateRequest, WatchRequest,
};
use support::proxy::{etcdctl, member_metrics, metric, GrpcProxy};
use support::real_etcd::RealEtcdCluster;
use support::{etcdctl_bin, free_port, rampart_bin, Pki};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct SeedProxy {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for SeedProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SeedProxy {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `rampart server --proxy=on` with seed 000's flags.
fn start_seed_proxy(pki: &Pki, initial_cluster: &str, dir: &std::path::Path) -> SeedProxy {
    let url = format!("https://127.0.0.1:{}", free_port());
    let log = dir.join("proxy.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(rampart_bin())
        .arg("server")
        .arg("--name=proxy")
        .arg("--proxy=on")
        .args(["--listen-client-urls", &url])
        .args(["--initial-cluster", initial_cluster])
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
    let proxy = SeedProxy { child, url, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !etcdctl(pki, &proxy.url)
        .args(["endpoint", "health"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "proxy not healthy:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    proxy
}

fn through(pki: &Pki, proxy: &SeedProxy, args: &[&str]) -> String {
    let out = etcdctl(pki, &proxy.url).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?} through the proxy failed: {}{}\n--- proxy ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.log_text()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cluster_proxy_real_etcd_seed_000_flow() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("tls"));
    let mut etcd = RealEtcdCluster::start(&pki, 3);
    let proxy = start_seed_proxy(&pki, &etcd.initial_cluster(), dir.path());

    let members = through(&pki, &proxy, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    for m in &etcd.members {
        assert!(members.contains(&m.client_url), "{members}");
    }
    // etcdctl 3.4 prints endpoint health on stderr.
    let out = etcdctl(&pki, &proxy.url)
        .args(["endpoint", "health", "--cluster"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let health =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for m in &etcd.members {
        assert!(
            health.contains(&format!("{} is healthy", m.client_url)),
            "{health}"
        );
    }
    assert_eq!(through(&pki, &proxy, &["put", "via", "proxy"]), "OK\n");
    assert_eq!(
        through(&pki, &proxy, &["get", "via", "--print-value-only"]),
        "proxy\n"
    );

    let mut watch = etcdctl(&pki, &proxy.url)
        .args(["watch", "watched"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    through(&pki, &proxy, &["put", "watched", "seen"]);
    let lease = through(&pki, &proxy, &["lease", "grant", "30"]);
    let id = lease.split_whitespace().nth(1).unwrap().to_string();
    let kept = through(&pki, &proxy, &["lease", "keep-alive", "--once", &id]);
    assert!(kept.contains("keepalived with TTL(30)"), "{kept}");
    std::thread::sleep(Duration::from_millis(800));
    let _ = watch.kill();
    let watched = watch.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&watched.stdout),
        "PUT\nwatched\nseen\n"
    );

    let bare = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", proxy.url))
        .arg(format!("--cacert={}", pki.file("ca.pem")))
        .args(["--dial-timeout=2s", "--command-timeout=3s", "get", "via"])
        .output()
        .unwrap();
    assert!(
        !bare.status.success(),
        "a client without a certificate got through"
    );
    let other = Pki::new(&dir.path().join("other-ca"));
    let foreign = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", proxy.url))
        .arg(format!("--cacert={}", pki.file("ca.pem")))
        .arg(format!("--cert={}", other.file("client.pem")))
        .arg(format!("--key={}", other.file("client-key.pem")))
        .args(["--dial-timeout=2s", "--command-timeout=3s", "get", "via"])
        .output()
        .unwrap();
    assert!(
        !foreign.status.success(),
        "a client certificate from another CA got through"
    );

    // Every member in turn was used (requests go round); kill one: requests keep working.
    etcd.kill(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..10 {
        let key = format!("after-kill-{i}");
        loop {
            let out = etcdctl(&pki, &proxy.url)
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
        &pki,
        &proxy,
        &["get", "--prefix", "--keys-only", "after-kill-"],
    );
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 10, "{keys}");
}

const CLIENTS: usize = 200;

#[test]
fn cluster_proxy_real_etcd_watch_fanout_costs_one_watch_stream() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("tls"));
    let etcd = RealEtcdCluster::start(&pki, 3);
    let proxy = GrpcProxy::start(&pki, &etcd.endpoints(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let channels: Vec<_> = (0..4).map(|_| proxy.channel(&pki)).collect();
    let mut streams = runtime.block_on(async {
        let mut streams = Vec::new();
        for i in 0..CLIENTS {
            let (tx, rx) = mpsc::channel(4);
            tx.send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: b"fan/".to_vec(),
                    range_end: b"fan0".to_vec(),
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
            let mut responses = WatchClient::new(channels[i % 4].clone())
                .watch(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let created = responses.next().await.unwrap().unwrap();
            assert!(created.created && !created.canceled, "{created:?}");
            streams.push((tx, responses));
        }
        streams
    });
    let total = |name: &str| -> f64 {
        etcd.members
            .iter()
            .map(|m| {
                let text = member_metrics(&pki, &m.client_url).unwrap();
                metric(&text, name).unwrap_or_else(|| panic!("{name} missing"))
            })
            .sum()
    };
    let streams_on_members = total("etcd_debugging_mvcc_watch_stream_total");
    let watchers_on_members = total("etcd_debugging_mvcc_watcher_total");
    println!(
        "{CLIENTS} clients through the proxy: etcd members hold {streams_on_members} watch \
         streams, {watchers_on_members} watchers"
    );
    assert_eq!(streams_on_members, 1.0);
    assert_eq!(watchers_on_members, 1.0);
    let expected = runtime.block_on(async {
        let mut kv = KvClient::new(channels[0].clone());
        let mut expected = Vec::new();
        for i in 0..10 {
            let key = format!("fan/{i}").into_bytes();
            let r = kv
                .put(PutRequest {
                    key: key.clone(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            expected.push((key, r.header.unwrap().revision));
        }
        expected
    });
    runtime.block_on(async {
        for (_, responses) in streams.iter_mut() {
            let mut seen = Vec::new();
            while seen.len() < expected.len() {
                let r = tokio::time::timeout(Duration::from_secs(20), responses.next())
                    .await
                    .expect("events within 20 s")
                    .unwrap()
                    .unwrap();
                for e in r.events {
                    let kv = e.kv.unwrap();
                    seen.push((kv.key, kv.mod_revision));
                }
            }
            assert_eq!(seen, expected);
        }
    });
}

/// Auth passes through: a user's token reaches the members with each request the proxy serves
/// itself (KV, watch) or forwards (Auth), so the user's permissions apply. The proxy's own
/// certificate has CN root, which etcd would take as the user if the token were dropped: the
/// refused write proves it is not.
#[test]
fn cluster_proxy_real_etcd_auth_tokens_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("tls"));
    let etcd = RealEtcdCluster::start(&pki, 3);
    let direct = |args: &[&str]| {
        let out = etcdctl(&pki, &etcd.members[0].client_url)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    };
    direct(&["user", "add", "root", "--new-user-password=rootpw"]);
    direct(&["role", "add", "alice-role"]);
    direct(&[
        "role",
        "grant-permission",
        "alice-role",
        "readwrite",
        "alice/",
        "--prefix=true",
    ]);
    direct(&["user", "add", "alice", "--new-user-password=alicepw"]);
    direct(&["user", "grant-role", "alice", "alice-role"]);
    direct(&["auth", "enable"]);

    let proxy = GrpcProxy::start(&pki, &etcd.endpoints(), &[]);
    let as_alice = |args: &[&str]| {
        etcdctl(&pki, &proxy.url)
            .arg("--user=alice:alicepw")
            .args(args)
            .output()
            .unwrap()
    };
    let mut watch = etcdctl(&pki, &proxy.url)
        .arg("--user=alice:alicepw")
        .args(["watch", "--prefix", "alice/"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let put = as_alice(&["put", "alice/x", "1"]);
    assert!(put.status.success(), "{put:?}");
    let got = as_alice(&["get", "alice/x", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "1\n", "{got:?}");
    let refused = as_alice(&["put", "bob/x", "1"]);
    assert!(!refused.status.success(), "alice wrote outside her prefix");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("permission denied"),
        "{refused:?}"
    );
    let wrong = etcdctl(&pki, &proxy.url)
        .args(["--user=alice:nope", "get", "alice/x"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("authentication failed"),
        "{wrong:?}"
    );
    std::thread::sleep(Duration::from_millis(800));
    let _ = watch.kill();
    let watched = watch.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&watched.stdout),
        "PUT\nalice/x\n1\n"
    );
}

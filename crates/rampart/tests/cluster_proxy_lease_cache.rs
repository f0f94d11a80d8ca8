//! Lease keep-alive coalescing and the serializable range cache of the proxy.
//! - 50 clients keeping one lease alive 10 times a second cost the members one renewal per
//!   renewal cadence (a third of the TTL), seen in the proxy's metrics; every answer carries a
//!   TTL the lease really has left, and the lease stays alive.
//! - The range cache is off by default (a serializable read sees a write made elsewhere at
//!   once); with `--serializable-cache-ttl` it answers repeated serializable reads for the TTL,
//!   and a write through the proxy is read back at once.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rampart_proto::etcdserverpb::lease_client::LeaseClient;
use rampart_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use support::proxy::{etcdctl, metric, GrpcProxy};
use support::{run_ok, Cluster};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const KEEPALIVE_CLIENTS: usize = 50;
const TTL: i64 = 6;

#[test]
fn cluster_proxy_lease_keepalives_of_many_clients_are_coalesced() {
    let cluster = Cluster::start(3);
    let proxy = GrpcProxy::start(&cluster.pki, &cluster.endpoints(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let channel = proxy.channel(&cluster.pki);
    let mut lease = LeaseClient::new(channel.clone());
    let id = runtime.block_on(async {
        lease
            .lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 })
            .await
            .unwrap()
            .into_inner()
            .id
    });
    let run_for = Duration::from_secs(4);
    let ttls: Vec<i64> = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..KEEPALIVE_CLIENTS {
            let channel = channel.clone();
            clients.push(tokio::spawn(async move {
                let (tx, rx) = mpsc::channel(1);
                let mut answers = LeaseClient::new(channel)
                    .lease_keep_alive(ReceiverStream::new(rx))
                    .await
                    .unwrap()
                    .into_inner();
                let begun = Instant::now();
                let mut ttls = Vec::new();
                while begun.elapsed() < run_for {
                    tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
                    let answer = answers.next().await.unwrap().unwrap();
                    assert_eq!(answer.id, id);
                    ttls.push(answer.ttl);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                ttls
            }));
        }
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.unwrap());
        }
        all
    });
    let metrics = proxy.metrics();
    let received = metric(&metrics, "rampart_proxy_lease_keepalives_received_total").unwrap();
    let forwarded = metric(&metrics, "rampart_proxy_lease_keepalives_forwarded_total").unwrap();
    println!(
        "{} keep-alives from {KEEPALIVE_CLIENTS} clients over {run_for:?}: proxy received {received}, \
         sent {forwarded} to the members; TTLs answered: {}..={}",
        ttls.len(),
        ttls.iter().min().unwrap(),
        ttls.iter().max().unwrap()
    );
    assert_eq!(received as usize, ttls.len());
    // Renewals at most once per TTL/3 = 2 s over 4 s (plus the first).
    assert!(
        (1.0..=3.0).contains(&forwarded),
        "renewals sent to the members: {forwarded}"
    );
    // A cached answer is at most a cadence old: the TTL left is at least 2/3 of the granted.
    assert!(
        ttls.iter().all(|t| (TTL * 2 / 3..=TTL).contains(t)),
        "{ttls:?}"
    );
    let left = runtime.block_on(async {
        lease
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
            .await
            .unwrap()
            .into_inner()
            .ttl
    });
    assert!(left > 0, "the lease is alive: TTL {left}");

    // Revoked through the proxy: the next keep-alive is not answered from the cache.
    let after_revoke = runtime.block_on(async {
        lease.lease_revoke(LeaseRevokeRequest { id }).await.unwrap();
        let (tx, rx) = mpsc::channel(1);
        let mut answers = lease
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
        answers.next().await.unwrap().unwrap().ttl
    });
    assert_eq!(after_revoke, 0, "a revoked lease has no TTL left");
}

fn get(cluster: &Cluster, endpoint: &str, key: &str, serializable: bool) -> String {
    let consistency = if serializable { "s" } else { "l" };
    let out = run_ok(etcdctl(&cluster.pki, endpoint).args([
        "get",
        key,
        "--print-value-only",
        &format!("--consistency={consistency}"),
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn put(cluster: &Cluster, endpoint: &str, key: &str, value: &str) {
    run_ok(etcdctl(&cluster.pki, endpoint).args(["put", key, value]));
}

#[test]
fn cluster_proxy_range_cache_is_off_by_default_and_correct_when_on() {
    let cluster = Cluster::start(1);
    let member = cluster.members[0].client_url.clone();

    // Off by default: a serializable read through the proxy sees a write made elsewhere.
    let plain = GrpcProxy::start(&cluster.pki, &cluster.endpoints(), &[]);
    put(&cluster, &plain.url, "c", "v1");
    assert_eq!(get(&cluster, &plain.url, "c", true), "v1");
    put(&cluster, &member, "c", "v2");
    assert_eq!(get(&cluster, &plain.url, "c", true), "v2");
    let metrics = plain.metrics();
    assert_eq!(
        metric(&metrics, "rampart_proxy_range_cache_hits_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "rampart_proxy_range_cache_entries"),
        Some(0.0)
    );
    drop(plain);

    // On: repeated serializable reads are answered from the cache for the TTL.
    let cached = GrpcProxy::start(
        &cluster.pki,
        &cluster.endpoints(),
        &["--serializable-cache-ttl=3s"],
    );
    let filled = Instant::now();
    assert_eq!(get(&cluster, &cached.url, "c", true), "v2");
    put(&cluster, &member, "c", "v3");
    assert_eq!(
        get(&cluster, &cached.url, "c", true),
        "v2",
        "a serializable read within the TTL is the cached one"
    );
    assert_eq!(
        get(&cluster, &cached.url, "c", false),
        "v3",
        "linearizable reads never come from the cache"
    );
    let metrics = cached.metrics();
    assert_eq!(
        metric(&metrics, "rampart_proxy_range_cache_hits_total"),
        Some(1.0)
    );
    assert!(
        filled.elapsed() < Duration::from_secs(3),
        "too slow to show the cache"
    );

    // A write through the proxy is read back at once.
    put(&cluster, &cached.url, "c", "v4");
    assert_eq!(get(&cluster, &cached.url, "c", true), "v4");

    // After the TTL, a write made elsewhere is seen.
    put(&cluster, &member, "c", "v5");
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(get(&cluster, &cached.url, "c", true), "v5");
}

//! Watch fan-out through the proxy: 1,000 clients (1,000 watch streams over 8 HTTP/2
//! connections) watching one prefix through `rampart proxy` cost the members one watch stream
//! and one watcher (read from the members' `/metrics`), and every client gets every event —
//! including two events of one transaction — exactly once, in order, under its own watch ID.
//! When the clients leave, the upstream watch is closed too.
//!
//! `--no-capture` prints the measured figures.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::request_op::Request as Op;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::{
    watch_request::RequestUnion, PutRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest,
};
use support::proxy::{member_metrics, metric, GrpcProxy};
use support::Cluster;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CLIENTS: usize = 1000;
const CONNECTIONS: usize = 8;
const PUTS: usize = 20;

/// Sum of a metric over the running members.
fn members_total(cluster: &Cluster, name: &str) -> f64 {
    cluster
        .members
        .iter()
        .filter(|m| m.child.is_some())
        .map(|m| {
            let text = member_metrics(&cluster.pki, &m.client_url)
                .unwrap_or_else(|e| panic!("{} /metrics: {e}", m.client_url));
            metric(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        })
        .sum()
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_proxy_1000_watchers_cost_the_members_one_watch_stream() {
    let cluster = Cluster::start(3);
    let proxy = GrpcProxy::start(&cluster.pki, &cluster.endpoints(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let _in_runtime = runtime.enter();
    let channels: Vec<_> = (0..CONNECTIONS)
        .map(|_| proxy.channel(&cluster.pki))
        .collect();

    // Open every stream and wait for its "created".
    let mut streams = Vec::new();
    runtime.block_on(async {
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
            let channel = channels[i % CONNECTIONS].clone();
            streams.push(tokio::spawn(async move {
                let mut responses = WatchClient::new(channel)
                    .watch(ReceiverStream::new(rx))
                    .await
                    .expect("watch through the proxy")
                    .into_inner();
                let created = responses.next().await.unwrap().unwrap();
                assert!(created.created && !created.canceled, "{created:?}");
                assert_eq!(created.watch_id, 0, "each client has its own watch IDs");
                (tx, responses)
            }));
        }
    });
    let streams: Vec<_> = runtime.block_on(async {
        let mut out = Vec::new();
        for s in streams {
            out.push(s.await.unwrap());
        }
        out
    });
    let opened_in = started.elapsed();

    let member_streams = members_total(&cluster, "etcd_debugging_mvcc_watch_stream_total");
    let member_watchers = members_total(&cluster, "etcd_debugging_mvcc_watcher_total");
    let proxy_metrics = proxy.metrics();
    println!(
        "{CLIENTS} client watch streams opened through the proxy in {opened_in:?}; members: \
         etcd_debugging_mvcc_watch_stream_total={member_streams} \
         etcd_debugging_mvcc_watcher_total={member_watchers}; proxy: rampart_proxy_watchers={:?} \
         rampart_proxy_upstream_watch_streams={:?} rampart_proxy_watchers_coalesced={:?}",
        metric(&proxy_metrics, "rampart_proxy_watchers"),
        metric(&proxy_metrics, "rampart_proxy_upstream_watch_streams"),
        metric(&proxy_metrics, "rampart_proxy_watchers_coalesced"),
    );
    assert_eq!(member_streams, 1.0, "the members hold one watch stream");
    assert_eq!(member_watchers, 1.0, "the members hold one watcher");
    assert_eq!(
        metric(&proxy_metrics, "rampart_proxy_watchers"),
        Some(CLIENTS as f64)
    );
    assert_eq!(
        metric(&proxy_metrics, "rampart_proxy_upstream_watch_streams"),
        Some(1.0)
    );
    assert_eq!(
        metric(&proxy_metrics, "rampart_proxy_watchers_coalesced"),
        Some((CLIENTS - 1) as f64)
    );

    // Writes through the proxy: single puts and one transaction writing two keys at one
    // revision, plus a key outside the prefix nobody watches.
    let expected: Vec<(Vec<u8>, i64)> = runtime.block_on(async {
        let mut kv = KvClient::new(channels[0].clone());
        let mut expected = Vec::new();
        for i in 0..PUTS {
            let key = format!("fan/{i:03}").into_bytes();
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
            if i == PUTS / 2 {
                let put = |k: &str| RequestOp {
                    request: Some(Op::RequestPut(PutRequest {
                        key: k.as_bytes().to_vec(),
                        value: b"t".to_vec(),
                        ..Default::default()
                    })),
                };
                let r = kv
                    .txn(TxnRequest {
                        success: vec![put("fan/txn-a"), put("other/x"), put("fan/txn-b")],
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let rev = r.header.unwrap().revision;
                expected.push((b"fan/txn-a".to_vec(), rev));
                expected.push((b"fan/txn-b".to_vec(), rev));
            }
        }
        expected
    });

    // Every client: exactly the expected events, in order.
    let delivered_in = runtime.block_on(async {
        let begun = Instant::now();
        let mut readers = Vec::new();
        for (tx, mut responses) in streams {
            let expected = expected.clone();
            readers.push(tokio::spawn(async move {
                let mut seen: Vec<(Vec<u8>, i64)> = Vec::new();
                while seen.len() < expected.len() {
                    let r = tokio::time::timeout(Duration::from_secs(20), responses.next())
                        .await
                        .expect("events within 20 s")
                        .expect("stream open")
                        .expect("no error");
                    assert_eq!(r.watch_id, 0);
                    for e in r.events {
                        let kv = e.kv.unwrap();
                        seen.push((kv.key, kv.mod_revision));
                    }
                }
                assert_eq!(seen, expected, "every event once, in order");
                // Nothing more arrives (no duplicates after the last one).
                let extra =
                    tokio::time::timeout(Duration::from_millis(300), responses.next()).await;
                assert!(extra.is_err(), "unexpected response: {extra:?}");
                drop(tx);
            }));
        }
        for r in readers {
            r.await.unwrap();
        }
        begun.elapsed()
    });
    println!(
        "{} events delivered to each of {CLIENTS} clients in {delivered_in:?}",
        expected.len()
    );

    // The clients leave: the proxy closes its upstream watch, the members' stream goes.
    drop(channels);
    drop(_in_runtime);
    runtime.shutdown_timeout(Duration::from_secs(2));
    wait_for(
        "the proxy to drop its upstream watch",
        Duration::from_secs(10),
        || metric(&proxy.metrics(), "rampart_proxy_upstream_watch_streams") == Some(0.0),
    );
    wait_for(
        "the members to drop the watch stream",
        Duration::from_secs(10),
        || members_total(&cluster, "etcd_debugging_mvcc_watch_stream_total") == 0.0,
    );
    assert_eq!(
        metric(&proxy.metrics(), "rampart_proxy_watchers"),
        Some(0.0)
    );
    println!("whole test: {:?}", started.elapsed());
}

//! The member the proxy uses dies: requests through the proxy keep working (reads on another
//! member, writes once the cluster has a leader), and watches shared through the proxy move to
//! another member without a gap or a repeated event.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::{
    watch_request::RequestUnion, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use support::proxy::{member_metrics, metric, GrpcProxy};
use support::Cluster;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const WATCHERS: usize = 20;

#[test]
fn cluster_proxy_member_used_by_the_proxy_dies_and_requests_and_watches_continue() {
    let mut cluster = Cluster::start(3);
    let proxy = GrpcProxy::start(&cluster.pki, &cluster.endpoints(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let channel = proxy.channel(&cluster.pki);

    let mut streams = runtime.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..WATCHERS {
            let (tx, rx) = mpsc::channel(4);
            tx.send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: b"k/".to_vec(),
                    range_end: b"k0".to_vec(),
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
            let mut responses = WatchClient::new(channel.clone())
                .watch(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let created = responses.next().await.unwrap().unwrap();
            assert!(created.created);
            streams.push((tx, responses));
        }
        streams
    });

    // The member holding the proxy's upstream watch is the one the proxy uses: kill it.
    let used = (0..3)
        .find(|i| {
            let text = member_metrics(&cluster.pki, &cluster.members[*i].client_url).unwrap();
            metric(&text, "etcd_debugging_mvcc_watch_stream_total") == Some(1.0)
        })
        .expect("one member holds the proxy's watch");
    let mut kv = KvClient::new(channel.clone());
    let before = runtime.block_on(async {
        kv.put(PutRequest {
            key: b"k/before".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision
    });
    cluster.kill(used);
    let killed_at = Instant::now();

    // Reads work at once (retried on another member).
    let read = runtime.block_on(async {
        kv.range(RangeRequest {
            key: b"k/before".to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await
    });
    assert_eq!(read.expect("read after the kill").into_inner().count, 1);

    // Writes work once the cluster has a leader (it may have been the leader).
    let mut expected = vec![(b"k/before".to_vec(), before)];
    runtime.block_on(async {
        for i in 0..10 {
            let key = format!("k/after-{i}").into_bytes();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let put = kv
                    .put(PutRequest {
                        key: key.clone(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })
                    .await;
                match put {
                    Ok(r) => {
                        expected.push((key, r.into_inner().header.unwrap().revision));
                        break;
                    }
                    Err(status) => {
                        assert_eq!(
                            status.code(),
                            tonic::Code::Unavailable,
                            "a failed write fails with Unavailable: {status:?}"
                        );
                        assert!(
                            Instant::now() < deadline,
                            "writes did not resume: {status:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    });
    println!(
        "writes through the proxy resumed {:?} after the kill",
        killed_at.elapsed()
    );

    // Every watcher: every event once, in order, across the move to another member.
    runtime.block_on(async {
        for (_, responses) in streams.iter_mut() {
            let mut seen = Vec::new();
            while seen.len() < expected.len() {
                let r = tokio::time::timeout(Duration::from_secs(20), responses.next())
                    .await
                    .expect("events within 20 s")
                    .expect("stream open")
                    .expect("no error");
                for e in r.events {
                    let kv = e.kv.unwrap();
                    seen.push((kv.key, kv.mod_revision));
                }
            }
            assert_eq!(seen, expected);
        }
    });
    let metrics = proxy.metrics();
    assert_eq!(
        metric(&metrics, "rampart_proxy_upstream_watch_streams"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "rampart_proxy_members_up"), Some(2.0));
    let moved = (0..3)
        .filter(|i| *i != used)
        .map(|i| {
            let text = member_metrics(&cluster.pki, &cluster.members[i].client_url).unwrap();
            metric(&text, "etcd_debugging_mvcc_watch_stream_total").unwrap()
        })
        .sum::<f64>();
    assert_eq!(
        moved, 1.0,
        "the upstream watch moved to one surviving member"
    );
    drop(streams);
}

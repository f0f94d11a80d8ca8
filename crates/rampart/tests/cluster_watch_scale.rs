//! Many watchers on one member: 10,000 watchers (on 50 streams) receive every event of a burst of
//! writes, in revision order, exactly once; and a stream whose reader stops does not make the
//! server's memory grow with the writes — its watchers fall behind, then catch up from the store
//! without gaps or duplicates once it reads again.
//!
//! Prints the measured resident memory (`cargo nextest run -p rampart --test cluster_watch_scale
//! --no-capture`).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::{
    watch_request::RequestUnion, PutRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use support::Cluster;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const STREAMS: usize = 50;
const WATCHERS_PER_STREAM: usize = 200;
const BURST: usize = 300;

fn channel(cluster: &Cluster, member: usize) -> Channel {
    cluster.grpc_channel(member)
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Opens a watch stream with `count` prefix watchers on "burst/"; returns the request sender and
/// the response stream once every watcher is created.
async fn open_stream(
    channel: Channel,
    count: usize,
) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>) {
    let (tx, rx) = mpsc::channel(count + 1);
    for _ in 0..count {
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"burst/".to_vec(),
                range_end: b"burst0".to_vec(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    }
    let mut responses = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut created = 0;
    while created < count {
        let r = responses.message().await.unwrap().unwrap();
        assert!(r.created && !r.canceled, "{r:?}");
        created += 1;
    }
    (tx, responses)
}

/// Reads until every watcher of the stream has `expected.len()` events; checks they are exactly
/// the expected revisions, in order.
async fn collect(
    responses: &mut tonic::Streaming<WatchResponse>,
    watchers: usize,
    expected: &[i64],
) {
    let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut complete = 0;
    while complete < watchers {
        let r = tokio::time::timeout(Duration::from_secs(60), responses.message())
            .await
            .expect("events stopped arriving")
            .unwrap()
            .unwrap();
        let revs = seen.entry(r.watch_id).or_default();
        let before = revs.len();
        revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
        if before < expected.len() && revs.len() >= expected.len() {
            complete += 1;
        }
    }
    assert_eq!(seen.len(), watchers);
    for (id, revs) in seen {
        assert_eq!(
            revs, expected,
            "watcher {id}: events missing, duplicated or out of order"
        );
    }
}

async fn burst(channel: Channel, count: usize, value_len: usize) -> Vec<i64> {
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut kv = KvClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in (t..count).step_by(8) {
                let resp = kv
                    .put(PutRequest {
                        key: format!("burst/{}", i % 16).into_bytes(),
                        value: vec![b'x'; value_len],
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                revs.push(resp.header.unwrap().revision);
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ten_thousand_watchers_get_every_event_and_a_stalled_reader_stays_bounded() {
    let cluster = Cluster::start(3);
    let pid = cluster.members[0].child.as_ref().unwrap().id();
    let watch_channel = channel(&cluster, 0);
    let write_channel = channel(&cluster, 1);

    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        streams.push(open_stream(watch_channel.clone(), WATCHERS_PER_STREAM).await);
    }
    let rss_watchers = resident_kib(pid);
    println!(
        "{} watchers created in {:.1?}; member RSS {} MiB",
        STREAMS * WATCHERS_PER_STREAM,
        started.elapsed(),
        rss_watchers / 1024
    );

    // Every stream is read concurrently: they share one HTTP/2 connection, whose flow-control
    // window an unread stream would fill.
    let started = Instant::now();
    let (revisions_tx, revisions_rx) = tokio::sync::watch::channel(Vec::new());
    let mut readers = Vec::new();
    for (requests, mut responses) in streams {
        let mut revisions_rx = revisions_rx.clone();
        readers.push(tokio::spawn(async move {
            let expected = revisions_rx
                .wait_for(|r| !r.is_empty())
                .await
                .unwrap()
                .clone();
            collect(&mut responses, WATCHERS_PER_STREAM, &expected).await;
            drop(requests);
        }));
    }
    let revisions = burst(write_channel.clone(), BURST, 64).await;
    revisions_tx.send(revisions).unwrap();
    for r in readers {
        r.await.unwrap();
    }
    println!(
        "{BURST} writes delivered to all {} watchers in {:.1?}",
        STREAMS * WATCHERS_PER_STREAM,
        started.elapsed()
    );

    // A stream with 100 watchers whose reader stops; 20 MiB of writes go past it.
    let (_stalled_tx, mut stalled) = open_stream(watch_channel.clone(), 100).await;
    let rss_before = resident_kib(pid);
    let big = burst(write_channel.clone(), 5_000, 4096).await;
    let rss_after = resident_kib(pid);
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    println!(
        "stalled reader: RSS {} MiB before, {} MiB after 5000 x 4 KiB writes (+{growth_mib} MiB); \
         unbounded buffering would hold about 100 x 20 MiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        growth_mib < 256,
        "memory grew by {growth_mib} MiB while a reader was stalled"
    );
    // Reading again, every stalled watcher catches up with exactly the missed events.
    collect(&mut stalled, 100, &big).await;
}

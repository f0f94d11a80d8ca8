//! A watcher resumes across a restart of the member it watches: with `start_revision` = last seen
//! + 1 it gets exactly the events it missed — none lost, none repeated — while writes go on
//! through the other members.

mod support;

use std::time::Duration;

use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::{
    watch_request::RequestUnion, PutRequest, WatchCreateRequest, WatchRequest,
};
use support::Cluster;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn channel(cluster: &Cluster, member: usize) -> Channel {
    cluster.grpc_channel(member)
}

/// Watches prefix "r/" on `member` from `start`, collecting revisions until `stop_after` events
/// (or until the stream breaks).
async fn watch_revisions(channel: Channel, start: i64, stop_after: usize) -> Vec<i64> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"r/".to_vec(),
            range_end: b"r0".to_vec(),
            start_revision: start,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut revs = Vec::new();
    let Ok(resp) = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
    else {
        return revs;
    };
    let mut stream = resp.into_inner();
    while revs.len() < stop_after {
        match tokio::time::timeout(Duration::from_secs(20), stream.message()).await {
            Ok(Ok(Some(r))) => {
                let mut last = revs.last().copied().unwrap_or(0);
                for e in r.events {
                    let rev = e.kv.unwrap().mod_revision;
                    assert!(
                        rev > last,
                        "revision {rev} after {last}: out of order or repeated"
                    );
                    last = rev;
                    revs.push(rev);
                }
            }
            _ => break,
        }
    }
    drop(tx);
    revs
}

async fn put(kv: &mut KvClient<Channel>, i: usize) -> i64 {
    kv.put(PutRequest {
        key: format!("r/{}", i % 5).into_bytes(),
        value: i.to_string().into_bytes(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .header
    .unwrap()
    .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_watch_resumes_after_the_watched_member_restarts() {
    let mut cluster = Cluster::start(3);
    // Watch a follower and write through the leader, so the crash does not disturb the writes
    // (a write in flight when its leader dies has an unknown outcome, which would blur the check).
    let leader = cluster.leader();
    let watched = (leader + 1) % 3;
    let mut kv = KvClient::new(channel(&cluster, leader));
    let watcher = tokio::spawn(watch_revisions(channel(&cluster, watched), 0, usize::MAX));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut written = Vec::new();
    for i in 0..50 {
        written.push(put(&mut kv, i).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(watched); // the watched member crashes; its stream breaks
    let before_crash = watcher.await.unwrap();
    assert!(!before_crash.is_empty(), "no events before the crash");
    for i in 50..100 {
        written.push(put(&mut kv, i).await);
    }
    cluster.start_member(watched);
    cluster.wait_healthy(Duration::from_secs(20));
    let last_seen = *before_crash.last().unwrap();
    let missing: Vec<i64> = written.iter().copied().filter(|r| *r > last_seen).collect();
    let resumed = watch_revisions(channel(&cluster, watched), last_seen + 1, missing.len()).await;
    assert_eq!(
        resumed, missing,
        "the resumed watch must deliver exactly the missed events"
    );
    let mut all = before_crash.clone();
    all.extend(&resumed);
    assert_eq!(all, written);
}

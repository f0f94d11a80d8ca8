//! The Watch API's options over gRPC against a 3-member mutual-TLS cluster: client-chosen IDs and
//! the duplicate-ID error, an empty range, cancel, NOPUT/NODELETE filters, prev_kv, progress
//! notifications (periodic, with the interval shortened by etcd's flag) and progress requests,
//! fragments, and a start revision that was compacted away.

mod support;

use std::time::Duration;

use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::watch_create_request::FilterType;
use rampart_proto::etcdserverpb::{
    watch_request::RequestUnion, CompactionRequest, DeleteRangeRequest, PutRequest,
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use support::Cluster;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn channel(cluster: &Cluster, member: usize) -> Channel {
    cluster.grpc_channel(member)
}

struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

impl Stream {
    async fn open(channel: Channel) -> Stream {
        let (requests, rx) = mpsc::channel(16);
        let responses = WatchClient::new(channel)
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Stream {
            requests,
            responses,
        }
    }

    async fn send(&self, r: RequestUnion) {
        self.requests
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .unwrap();
    }

    async fn create(&mut self, c: WatchCreateRequest) -> WatchResponse {
        self.send(RequestUnion::CreateRequest(c)).await;
        self.next().await
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.responses.message())
            .await
            .expect("no watch response within 10 s")
            .unwrap()
            .unwrap()
    }
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    kv.put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .header
    .unwrap()
    .revision
}

fn keys(r: &WatchResponse) -> Vec<(i32, String, Option<String>)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                e.prev_kv
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(&p.value).into_owned()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_watch_api_options_behave_as_etcd() {
    let cluster = Cluster::start_with(
        3,
        &["--experimental-watch-progress-notify-interval=500ms"],
        &[],
    );
    let mut kv = KvClient::new(channel(&cluster, 1));
    let mut s = Stream::open(channel(&cluster, 0)).await;

    // Client-chosen ID, then the same ID again: refused with etcd's reason.
    let created = s
        .create(WatchCreateRequest {
            key: b"a".to_vec(),
            watch_id: 7,
            prev_kv: true,
            filters: vec![FilterType::Nodelete as i32],
            ..Default::default()
        })
        .await;
    assert!(
        created.created && !created.canceled && created.watch_id == 7,
        "{created:?}"
    );
    let dup = s
        .create(WatchCreateRequest {
            key: b"b".to_vec(),
            watch_id: 7,
            ..Default::default()
        })
        .await;
    assert!(dup.created && dup.canceled, "{dup:?}");
    assert_eq!(
        dup.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    let empty = s
        .create(WatchCreateRequest {
            key: b"z".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(empty.canceled, "{empty:?}");
    assert_eq!(empty.cancel_reason, "mvcc: watcher range is empty");
    // Auto IDs start at 0 and skip taken ones; NOPUT on a prefix.
    let deletes = s
        .create(WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            filters: vec![FilterType::Noput as i32],
            ..Default::default()
        })
        .await;
    assert_eq!(deletes.watch_id, 0, "{deletes:?}");

    put(&mut kv, "a", "1").await;
    put(&mut kv, "a", "2").await;
    kv.delete_range(DeleteRangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut by_watcher: std::collections::BTreeMap<i64, Vec<_>> = Default::default();
    while by_watcher.values().map(Vec::len).sum::<usize>() < 3 {
        let r = s.next().await;
        by_watcher.entry(r.watch_id).or_default().extend(keys(&r));
    }
    assert_eq!(
        by_watcher[&7],
        vec![(0, "a".into(), None), (0, "a".into(), Some("1".into()))],
        "puts only, with prev_kv"
    );
    assert_eq!(by_watcher[&0], vec![(1, "a".into(), None)], "deletes only");

    // Cancel: acknowledged; then no more events for it.
    s.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 7,
    }))
    .await;
    let cancelled = s.next().await;
    assert!(
        cancelled.canceled && cancelled.watch_id == 7,
        "{cancelled:?}"
    );

    // A progress request is answered with the member's current revision and watch ID -1. The put
    // goes through the watch's own member: another member acknowledges a write once it applied it,
    // which may be before this one has.
    let mut kv_of_watch_member = KvClient::new(channel(&cluster, 0));
    let current = put(&mut kv_of_watch_member, "other", "x").await;
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let progress = s.next().await;
    assert_eq!(progress.watch_id, -1, "{progress:?}");
    assert!(progress.events.is_empty());
    assert_eq!(progress.header.unwrap().revision, current);

    // Periodic progress notifications (interval shortened to 500 ms by the flag).
    let mut p = Stream::open(channel(&cluster, 2)).await;
    let created = p
        .create(WatchCreateRequest {
            key: b"quiet".to_vec(),
            progress_notify: true,
            ..Default::default()
        })
        .await;
    assert!(created.created);
    let notified = p.next().await;
    assert!(
        notified.events.is_empty() && notified.watch_id == created.watch_id,
        "{notified:?}"
    );
    assert_eq!(notified.header.unwrap().revision, current);

    // Fragments: a delete of many big keys arrives in pieces below the request limit.
    let mut f = Stream::open(channel(&cluster, 0)).await;
    f.create(WatchCreateRequest {
        key: b"big/".to_vec(),
        range_end: b"big0".to_vec(),
        fragment: true,
        prev_kv: true,
        ..Default::default()
    })
    .await;
    let value = "v".repeat(512 * 1024);
    for i in 0..6 {
        put(&mut kv, &format!("big/{i}"), &value).await;
    }
    let mut seen = 0;
    while seen < 6 {
        seen += f.next().await.events.len();
    }
    kv.delete_range(DeleteRangeRequest {
        key: b"big/".to_vec(),
        range_end: b"big0".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (mut pieces, mut deleted) = (0, 0);
    loop {
        let r = f.next().await;
        pieces += 1;
        deleted += r.events.len();
        if !r.fragment {
            break;
        }
    }
    assert_eq!(deleted, 6);
    assert!(pieces > 1, "6 x 512 KiB of prev_kv must come in fragments");

    // A start revision below the compacted one: created, then cancelled with compact_revision.
    let compact_at = put(&mut kv, "c", "1").await;
    kv.compact(CompactionRequest {
        revision: compact_at,
        physical: true,
    })
    .await
    .unwrap();
    let mut c = Stream::open(channel(&cluster, 1)).await;
    let created = c
        .create(WatchCreateRequest {
            key: b"c".to_vec(),
            start_revision: 2,
            ..Default::default()
        })
        .await;
    assert!(created.created);
    let compacted = c.next().await;
    assert!(compacted.canceled, "{compacted:?}");
    assert_eq!(compacted.compact_revision, compact_at);
}

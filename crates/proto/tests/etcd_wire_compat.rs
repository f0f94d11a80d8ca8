//! Our generated tonic clients against the real etcd 3.4 (`/usr/bin/etcd`): if a field number,
//! enum value, package, service or method name differed from etcd's, these calls would fail or
//! come back with the wrong values.
//!
//! CI installs etcd (`apt-get install etcd-server`); without it this test fails on purpose.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_proto::etcdserverpb::cluster_client::ClusterClient;
use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::lease_client::LeaseClient;
use rampart_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, watch_request, CompactionRequest, Compare,
    DeleteRangeRequest, HashKvRequest, LeaseGrantRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, MemberListRequest, PutRequest, RangeRequest, RequestOp, StatusRequest,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use rampart_proto::mvccpb::event::EventType;
use rampart_proto::v3electionpb::election_client::ElectionClient;
use rampart_proto::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use rampart_proto::v3lockpb::lock_client::LockClient;
use rampart_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;

const ETCD_BINARY: &str = "/usr/bin/etcd";
/// How long a fresh single-member etcd gets to elect itself and answer.
const ETCD_STARTUP_LIMIT: Duration = Duration::from_secs(30);
/// Upper bound on waiting for any one watch message, so a wire mismatch cannot hang the test.
const WATCH_MESSAGE_LIMIT: Duration = Duration::from_secs(10);

/// The etcd child process; killed and reaped on drop so a failing assertion leaves no etcd behind.
struct EtcdProcess {
    child: Child,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_etcd(data_dir: &Path, client_port: u16, peer_port: u16) -> EtcdProcess {
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(data_dir.join("etcd.log")).expect("create etcd log");
    let child = Command::new(ETCD_BINARY)
        .arg("--name=wire-test")
        .arg(format!("--data-dir={}", data_dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=wire-test={peer_url}"))
        .arg("--logger=zap")
        .arg("--log-outputs=stderr")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .expect("spawn /usr/bin/etcd");
    EtcdProcess { child }
}

/// Connects once etcd answers Status, or panics with etcd's log after the startup limit.
async fn connect_when_ready(process: &mut EtcdProcess, port: u16, data_dir: &Path) -> Channel {
    let deadline = Instant::now() + ETCD_STARTUP_LIMIT;
    let endpoint = format!("http://127.0.0.1:{port}");
    loop {
        if let Some(status) = process.child.try_wait().expect("poll etcd") {
            panic!(
                "etcd exited early ({status}); log:\n{}",
                std::fs::read_to_string(data_dir.join("etcd.log")).unwrap_or_default()
            );
        }
        if let Ok(channel) = Channel::from_shared(endpoint.clone())
            .expect("valid endpoint")
            .connect()
            .await
        {
            let mut maintenance = MaintenanceClient::new(channel.clone());
            if let Ok(status) = maintenance.status(StatusRequest {}).await {
                if status.get_ref().leader != 0 {
                    return channel;
                }
            }
        }
        if Instant::now() > deadline {
            panic!(
                "etcd did not become ready within {ETCD_STARTUP_LIMIT:?}; log:\n{}",
                std::fs::read_to_string(data_dir.join("etcd.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_clients_talk_to_real_etcd() {
    assert!(
        Path::new(ETCD_BINARY).exists(),
        "{ETCD_BINARY} not found: install etcd 3.4 with `apt-get install etcd-server etcd-client` \
         (CI installs it); this test checks wire compatibility against the real etcd"
    );
    let temp = tempfile::tempdir().expect("tempdir");
    let client_port = rampart_testkit::free_port();
    let peer_port = rampart_testkit::free_port();
    let mut etcd = start_etcd(temp.path(), client_port, peer_port);
    let channel = connect_when_ready(&mut etcd, client_port, temp.path()).await;

    let mut kv = KvClient::new(channel.clone());
    let mut lease = LeaseClient::new(channel.clone());
    let mut watch = WatchClient::new(channel.clone());
    let mut cluster = ClusterClient::new(channel.clone());
    let mut maintenance = MaintenanceClient::new(channel.clone());

    // Put, with prev_kv on an overwrite.
    let first = kv.put(put("p/a", "1")).await.expect("put").into_inner();
    let first_revision = first.header.expect("put header").revision;
    assert!(
        first_revision >= 2,
        "revision after first put: {first_revision}"
    );
    kv.put(put("p/b", "2")).await.expect("put p/b");
    kv.put(put("p/c", "3")).await.expect("put p/c");
    kv.put(put("q", "outside")).await.expect("put q");
    let overwrite = kv
        .put(PutRequest {
            prev_kv: true,
            ..put("p/a", "10")
        })
        .await
        .expect("put with prev_kv")
        .into_inner();
    let prev = overwrite.prev_kv.expect("prev_kv returned");
    assert_eq!(prev.value, b"1");
    assert_eq!(prev.version, 1);
    assert_eq!(prev.create_revision, first_revision);

    // Range over the "p/" prefix, sorted by key descending, limited to 2.
    let range = kv
        .range(RangeRequest {
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
            limit: 2,
            sort_order: range_request::SortOrder::Descend as i32,
            sort_target: range_request::SortTarget::Key as i32,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let keys: Vec<&[u8]> = range.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![b"p/c".as_slice(), b"p/b".as_slice()]);
    assert!(range.more);
    assert_eq!(range.count, 3);
    let count_only = kv
        .range(RangeRequest {
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("count-only range")
        .into_inner();
    assert!(count_only.kvs.is_empty());
    assert_eq!(count_only.count, 3);

    // DeleteRange with prev_kv.
    let deleted = kv
        .delete_range(DeleteRangeRequest {
            key: b"p/b".to_vec(),
            range_end: b"p/c\0".to_vec(),
            prev_kv: true,
        })
        .await
        .expect("delete range")
        .into_inner();
    assert_eq!(deleted.deleted, 2);
    let deleted_values: Vec<&[u8]> = deleted
        .prev_kvs
        .iter()
        .map(|kv| kv.value.as_slice())
        .collect();
    assert_eq!(deleted_values, vec![b"2".as_slice(), b"3".as_slice()]);

    // Txn: mod_revision and value compares on p/a, taking the success branch.
    let current = kv
        .range(RangeRequest {
            key: b"p/a".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range p/a")
        .into_inner();
    let p_a = current.kvs.first().expect("p/a exists");
    let txn = kv
        .txn(TxnRequest {
            compare: vec![
                Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: b"p/a".to_vec(),
                    target_union: Some(compare::TargetUnion::ModRevision(p_a.mod_revision)),
                    ..Default::default()
                },
                Compare {
                    result: compare::CompareResult::Greater as i32,
                    target: compare::CompareTarget::Value as i32,
                    key: b"p/a".to_vec(),
                    target_union: Some(compare::TargetUnion::Value(b"0".to_vec())),
                    ..Default::default()
                },
            ],
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestPut(put("txn", "yes"))),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: b"p/a".to_vec(),
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put("txn", "no"))),
            }],
        })
        .await
        .expect("txn")
        .into_inner();
    assert!(txn.succeeded);
    assert_eq!(txn.responses.len(), 2);
    match &txn.responses[1].response {
        Some(response_op::Response::ResponseRange(range)) => {
            assert_eq!(range.kvs[0].value, b"10");
        }
        other => panic!("expected a range response, got {other:?}"),
    }
    let failed = kv
        .txn(TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Version as i32,
                key: b"p/a".to_vec(),
                target_union: Some(compare::TargetUnion::Version(99)),
                ..Default::default()
            }],
            success: vec![],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put("txn", "no"))),
            }],
        })
        .await
        .expect("failing txn")
        .into_inner();
    assert!(!failed.succeeded);
    assert!(matches!(
        failed.responses[0].response,
        Some(response_op::Response::ResponsePut(_))
    ));

    // Leases: grant, attach a key, time-to-live with keys, revoke (which deletes the key).
    let granted = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("lease grant")
        .into_inner();
    assert!(granted.id != 0);
    assert_eq!(granted.ttl, 60);
    assert!(granted.error.is_empty());
    kv.put(PutRequest {
        lease: granted.id,
        ..put("leased", "v")
    })
    .await
    .expect("put with lease");
    let ttl = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: granted.id,
            keys: true,
        })
        .await
        .expect("lease time to live")
        .into_inner();
    assert_eq!(ttl.id, granted.id);
    assert_eq!(ttl.granted_ttl, 60);
    assert!(ttl.ttl > 0 && ttl.ttl <= 60, "ttl {}", ttl.ttl);
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
    lease
        .lease_revoke(LeaseRevokeRequest { id: granted.id })
        .await
        .expect("lease revoke");
    let gone = kv
        .range(RangeRequest {
            key: b"leased".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range leased")
        .into_inner();
    assert_eq!(gone.count, 0);
    let revoked_status = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: granted.id,
            keys: false,
        })
        .await
        .expect("time to live of revoked lease")
        .into_inner();
    assert_eq!(revoked_status.ttl, -1);

    // Watch: create on a key, then a put on it arrives as a PUT event with prev_kv.
    let (requests, request_stream) = tokio::sync::mpsc::channel(4);
    requests
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"watched".to_vec(),
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        })
        .await
        .expect("queue watch create");
    let mut responses = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(request_stream))
        .await
        .expect("open watch stream")
        .into_inner();
    let created = tokio::time::timeout(WATCH_MESSAGE_LIMIT, responses.message())
        .await
        .expect("watch created in time")
        .expect("watch stream ok")
        .expect("watch created message");
    assert!(created.created);
    kv.put(put("watched", "old")).await.expect("put watched");
    kv.put(put("watched", "new"))
        .await
        .expect("put watched again");
    let mut events = Vec::new();
    while events.len() < 2 {
        let message = tokio::time::timeout(WATCH_MESSAGE_LIMIT, responses.message())
            .await
            .expect("watch event in time")
            .expect("watch stream ok")
            .expect("watch event message");
        assert_eq!(message.watch_id, created.watch_id);
        events.extend(message.events);
    }
    assert_eq!(events[0].r#type, EventType::Put as i32);
    assert_eq!(events[0].kv.as_ref().expect("event kv").value, b"old");
    assert_eq!(events[1].r#type, EventType::Put as i32);
    assert_eq!(events[1].kv.as_ref().expect("event kv").value, b"new");
    assert_eq!(
        events[1].prev_kv.as_ref().expect("event prev_kv").value,
        b"old"
    );
    drop(requests);

    // Compact to the current revision, then HashKV reports the compaction.
    let revision = kv
        .range(RangeRequest {
            key: b"p/a".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range for revision")
        .into_inner()
        .header
        .expect("range header")
        .revision;
    kv.compact(CompactionRequest {
        revision,
        physical: true,
    })
    .await
    .expect("compact");
    let old_read = kv
        .range(RangeRequest {
            key: b"p/a".to_vec(),
            revision: first_revision,
            ..Default::default()
        })
        .await
        .expect_err("reading a compacted revision fails");
    assert_eq!(
        old_read.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let hash = maintenance
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .expect("hash kv")
        .into_inner();
    assert_eq!(hash.compact_revision, revision);
    assert_ne!(hash.hash, 0);

    // Cluster and maintenance.
    let members = cluster
        .member_list(MemberListRequest {})
        .await
        .expect("member list")
        .into_inner();
    assert_eq!(members.members.len(), 1);
    let member = &members.members[0];
    assert_eq!(member.name, "wire-test");
    assert_eq!(
        member.peer_ur_ls,
        vec![format!("http://127.0.0.1:{peer_port}")]
    );
    assert_eq!(
        member.client_ur_ls,
        vec![format!("http://127.0.0.1:{client_port}")]
    );
    assert!(!member.is_learner);
    let status = maintenance
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(
        status.version.starts_with("3.4."),
        "version {}",
        status.version
    );
    assert_eq!(status.leader, member.id);
    assert_eq!(status.header.expect("status header").member_id, member.id);
    assert!(status.db_size > 0 && status.db_size_in_use > 0);
    assert!(status.raft_applied_index > 0 && status.raft_index > 0);
    assert!(!status.is_learner);
    assert!(status.errors.is_empty());

    // Lock and Election services, served by etcd on the client port too.
    let session = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("lease grant for lock")
        .into_inner()
        .id;
    let mut lock = LockClient::new(channel.clone());
    let held = lock
        .lock(LockRequest {
            name: b"mutex".to_vec(),
            lease: session,
        })
        .await
        .expect("lock")
        .into_inner();
    assert!(held.key.starts_with(b"mutex/"), "lock key {:?}", held.key);
    lock.unlock(UnlockRequest { key: held.key })
        .await
        .expect("unlock");
    let mut election = ElectionClient::new(channel.clone());
    let campaign = election
        .campaign(CampaignRequest {
            name: b"vote".to_vec(),
            lease: session,
            value: b"me".to_vec(),
        })
        .await
        .expect("campaign")
        .into_inner();
    let leader_key = campaign.leader.expect("leader key");
    assert_eq!(leader_key.name, b"vote");
    assert_eq!(leader_key.lease, session);
    let leader = election
        .leader(LeaderRequest {
            name: b"vote".to_vec(),
        })
        .await
        .expect("leader")
        .into_inner();
    let leader_kv = leader.kv.expect("leader kv");
    assert_eq!(leader_kv.value, b"me");
    assert_eq!(leader_kv.create_revision, leader_key.rev);
    election
        .resign(ResignRequest {
            leader: Some(leader_key),
        })
        .await
        .expect("resign");

    drop(etcd);
}

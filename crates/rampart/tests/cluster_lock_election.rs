//! The Lock and Election services over gRPC against a 3-member mutual-TLS cluster, each call
//! on a different member: a second locker waits until the first unlocks; a lock without a
//! lease gets one; a second candidate waits until the leader resigns, while an observer sees
//! every leader and every value proclaimed; a resigned leader can no longer proclaim.

mod support;

use std::time::Duration;

use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::lease_client::LeaseClient;
use rampart_proto::etcdserverpb::{LeaseGrantRequest, RangeRequest};
use rampart_proto::v3electionpb::election_client::ElectionClient;
use rampart_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use rampart_proto::v3lockpb::lock_client::LockClient;
use rampart_proto::v3lockpb::{LockRequest, UnlockRequest};
use support::Cluster;

async fn lease(cluster: &Cluster, member: usize) -> i64 {
    LeaseClient::new(cluster.grpc_channel(member))
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id
}

/// The value of the next leader update an observer sees.
async fn next_value(
    observer: &mut tonic::Streaming<rampart_proto::v3electionpb::LeaderResponse>,
) -> Vec<u8> {
    let resp = tokio::time::timeout(Duration::from_secs(10), observer.message())
        .await
        .expect("an observed leader")
        .unwrap()
        .unwrap();
    resp.kv.unwrap().value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lock_and_election_services_queue_owners_in_order() {
    let cluster = Cluster::start(3);
    let (la, lb) = (lease(&cluster, 0).await, lease(&cluster, 1).await);

    // Lock: the second locker waits for the first.
    let mut lock_a = LockClient::new(cluster.grpc_channel(0));
    let held = lock_a
        .lock(LockRequest {
            name: b"L".to_vec(),
            lease: la,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.key, format!("L/{la:x}").into_bytes());
    let mut lock_b = LockClient::new(cluster.grpc_channel(1));
    let waiting = tokio::spawn(async move {
        lock_b
            .lock(LockRequest {
                name: b"L".to_vec(),
                lease: lb,
            })
            .await
            .map(|r| r.into_inner().key)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "the second locker got the lock while it was held"
    );
    lock_a
        .unlock(UnlockRequest {
            key: held.key.clone(),
        })
        .await
        .unwrap();
    let key_b = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the second locker got the lock after the unlock")
        .unwrap()
        .unwrap();
    assert_eq!(key_b, format!("L/{lb:x}").into_bytes());

    // A lock without a lease gets one of its own.
    let own = LockClient::new(cluster.grpc_channel(2))
        .lock(LockRequest {
            name: b"M".to_vec(),
            lease: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let kv = KvClient::new(cluster.grpc_channel(2))
        .range(RangeRequest {
            key: own.key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .kvs;
    assert!(kv.len() == 1 && kv[0].lease != 0, "{kv:?}");

    // Election: a leader, an observer, a waiting candidate.
    let mut election_a = ElectionClient::new(cluster.grpc_channel(0));
    let leader_a = election_a
        .campaign(CampaignRequest {
            name: b"E".to_vec(),
            lease: la,
            value: b"a".to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .leader
        .unwrap();
    let mut observer = ElectionClient::new(cluster.grpc_channel(2))
        .observe(LeaderRequest {
            name: b"E".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_value(&mut observer).await, b"a");
    let mut election_b = ElectionClient::new(cluster.grpc_channel(1));
    let candidate = tokio::spawn(async move {
        election_b
            .campaign(CampaignRequest {
                name: b"E".to_vec(),
                lease: lb,
                value: b"b".to_vec(),
            })
            .await
            .map(|r| r.into_inner().leader.unwrap())
    });
    election_a
        .proclaim(ProclaimRequest {
            leader: Some(leader_a.clone()),
            value: b"a2".to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(next_value(&mut observer).await, b"a2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !candidate.is_finished(),
        "the second candidate led while the first did"
    );
    election_a
        .resign(ResignRequest {
            leader: Some(leader_a.clone()),
        })
        .await
        .unwrap();
    let leader_b: LeaderKey = tokio::time::timeout(Duration::from_secs(10), candidate)
        .await
        .expect("the second candidate leads after the resignation")
        .unwrap()
        .unwrap();
    assert_eq!(leader_b.key, format!("E/{lb:x}").into_bytes());
    assert_eq!(next_value(&mut observer).await, b"b");
    let now = election_a
        .leader(LeaderRequest {
            name: b"E".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.kv.unwrap().value, b"b");

    // The resigned leader cannot proclaim; a request without a leader is refused as etcd does.
    let stale = election_a
        .proclaim(ProclaimRequest {
            leader: Some(leader_a),
            value: b"late".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.message(), "election: not leader");
    let missing = election_a
        .proclaim(ProclaimRequest {
            leader: None,
            value: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unknown);
    assert_eq!(missing.message(), "\"leader\" field must be provided");
    let none = election_a
        .leader(LeaderRequest {
            name: b"nobody".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(none.message(), "election: no leader");
}

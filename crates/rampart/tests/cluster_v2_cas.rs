//! Compare-and-swap races on the v2 API: 50 concurrent clients, spread over the 3 members,
//! increment one key with `prevIndex` (read, then swap only if nobody wrote in between; retry on
//! "Compare failed"). No increment may be lost: the final value is the number of successful
//! swaps.

mod support;

use std::time::Duration;

use http_body_util::BodyExt as _;
use support::Cluster;
use tonic::transport::Channel;
use tower::ServiceExt as _;

const CLIENTS: usize = 50;
const INCREMENTS: usize = 10;

fn channel(cluster: &Cluster, member: usize) -> Channel {
    cluster.grpc_channel(member)
}

/// One HTTP request over the member's HTTP/2 connection; returns (status, JSON body).
async fn call(
    channel: &Channel,
    method: &str,
    uri: &str,
    form: Option<String>,
) -> (u16, serde_json::Value) {
    let mut builder = http::Request::builder().method(method).uri(uri);
    if form.is_some() {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    let body = tonic::body::Body::new(http_body_util::Full::new(tonic::codegen::Bytes::from(
        form.unwrap_or_default(),
    )));
    let resp = channel
        .clone()
        .oneshot(builder.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_v2_compare_and_swap_never_loses_an_increment() {
    let cluster = Cluster::start_with(3, &["--enable-v2"], &[]);
    let channels: Vec<Channel> = (0..3).map(|i| channel(&cluster, i)).collect();
    let (status, _) = call(
        &channels[0],
        "PUT",
        "/v2/keys/counter",
        Some("value=0".into()),
    )
    .await;
    // A set that creates the key answers 201 Created, as etcd does.
    assert_eq!(status, 201);

    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let ch = channels[c % 3].clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            let mut conflicts = 0;
            while done < INCREMENTS {
                let (_, got) = call(&ch, "GET", "/v2/keys/counter?quorum=true", None).await;
                let value: u64 = got["node"]["value"].as_str().unwrap().parse().unwrap();
                let index = got["node"]["modifiedIndex"].as_u64().unwrap();
                let (status, body) = call(
                    &ch,
                    "PUT",
                    &format!("/v2/keys/counter?prevIndex={index}"),
                    Some(format!("value={}", value + 1)),
                )
                .await;
                match status {
                    200 => done += 1,
                    412 => {
                        assert_eq!(body["errorCode"], 101, "{body}");
                        conflicts += 1;
                    }
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("clients finished")
            .unwrap();
    }
    for ch in &channels {
        let (_, got) = call(ch, "GET", "/v2/keys/counter?quorum=true", None).await;
        assert_eq!(
            got["node"]["value"].as_str().unwrap(),
            (CLIENTS * INCREMENTS).to_string(),
            "an increment was lost"
        );
    }
    println!(
        "{} increments by {CLIENTS} clients, {conflicts} compare failures retried",
        CLIENTS * INCREMENTS
    );
}

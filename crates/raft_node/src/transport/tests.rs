//! The peer transport between two endpoints on loopback: the Raft message stream, the gRPC stream
//! it falls back to for a member that lacks it, and a stream refused for the wrong cluster.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::eraftpb::{Message, MessageType};
use rampart_tls::TlsIncoming;

use super::wire::RAFT_ALPN;
use super::{PeerDialer, PeerService, PeerTransport};
use crate::node::{MessageSink, NodeMsg, RaftHandle};

const SENDER: u64 = 1;
const RECEIVER: u64 = 2;
const WAIT: Duration = Duration::from_secs(5);

/// How the receiving member listens.
enum Listens {
    /// Only the Raft message stream (nothing serves gRPC).
    StreamOnly,
    /// Only gRPC, as a member of a version without the Raft message stream.
    GrpcOnly,
}

async fn receiver(cluster_id: u64, listens: Listens) -> (String, Receiver<NodeMsg>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (handle, seen) = RaftHandle::detached(RECEIVER);
    let service = PeerService::new(cluster_id, handle);
    match listens {
        Listens::StreamOnly => {
            let incoming = TlsIncoming::new_diverting(listener, None, service.divert());
            // Connections it does not divert are never served.
            tokio::spawn(async move {
                let _incoming = incoming;
                std::future::pending::<()>().await
            });
        }
        Listens::GrpcOnly => {
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service.into_server())
                    .serve_with_incoming(TlsIncoming::new(listener, None)),
            );
        }
    }
    (url, seen)
}

fn sender(cluster_id: u64, receiver_url: &str) -> (Arc<PeerTransport>, Receiver<NodeMsg>) {
    let peers = HashMap::from([(RECEIVER, vec![receiver_url.to_string()])]);
    let dial: PeerDialer = Arc::new(|url: String| {
        Box::pin(async move { rampart_tls::dial(&url, None, RAFT_ALPN, WAIT).await })
    });
    let transport = PeerTransport::new(
        cluster_id,
        SENDER,
        &peers,
        Arc::new(|url: &str| {
            rampart_tls::connect_channel_lazy(url, None).map_err(|e| e.to_string())
        }),
        dial,
        Arc::new(|| Ok(Vec::new())),
        tokio::runtime::Handle::current(),
    );
    let (handle, seen) = RaftHandle::detached(SENDER);
    transport.attach(handle);
    (transport, seen)
}

fn append(index: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    m.from = SENDER;
    m.to = RECEIVER;
    m.index = index;
    m
}

/// The next message the loop behind `seen` got, waiting for it up to [`WAIT`].
async fn next(seen: &Receiver<NodeMsg>) -> Option<NodeMsg> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(m) = seen.try_recv() {
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Sends appends 1..=count (again while the stream is still being set up) and checks that the
/// receiver stepped them, in order, each once after the first.
async fn sends_in_order(transport: &PeerTransport, seen: &Receiver<NodeMsg>, count: u64) {
    // The first message may be dropped while the connection is made: resend it until it arrives.
    let deadline = Instant::now() + WAIT;
    let first = loop {
        transport.send(vec![append(1)]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(NodeMsg::Step(m)) = seen.try_recv() {
            break m;
        }
        assert!(Instant::now() < deadline, "the first message never arrived");
    };
    assert_eq!(*first, append(1));
    while let Ok(NodeMsg::Step(m)) = seen.try_recv() {
        assert_eq!(
            *m,
            append(1),
            "only resends of the first message before the rest"
        );
    }
    transport.send((2..=count).map(append).collect());
    for index in 2..=count {
        match next(seen).await {
            Some(NodeMsg::Step(m)) => assert_eq!(*m, append(index)),
            Some(_) => panic!("not a step"),
            None => panic!("message {index} never arrived"),
        }
    }
}

#[tokio::test]
async fn messages_reach_raft_over_the_message_stream() {
    let (url, seen) = receiver(7, Listens::StreamOnly).await;
    let (transport, _) = sender(7, &url);
    sends_in_order(&transport, &seen, 2000).await;
}

#[tokio::test]
async fn a_member_without_the_message_stream_gets_messages_over_grpc() {
    let (url, seen) = receiver(7, Listens::GrpcOnly).await;
    let (transport, _) = sender(7, &url);
    sends_in_order(&transport, &seen, 2000).await;
}

#[tokio::test]
async fn a_member_of_another_cluster_refuses_the_stream() {
    let (url, seen) = receiver(7, Listens::StreamOnly).await;
    let (transport, reports) = sender(8, &url);
    transport.send(vec![append(1)]);
    match next(&reports).await {
        Some(NodeMsg::Unreachable(peer)) => assert_eq!(peer, RECEIVER),
        _ => panic!("the refusal was not reported as unreachable"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.try_recv().is_err(),
        "a refused stream delivered a message"
    );
}

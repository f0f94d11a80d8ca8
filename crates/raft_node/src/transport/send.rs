//! The sending half: one stream per peer, and snapshot uploads.

use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use rampart_proto::peer::raft_transport_client::RaftTransportClient;
use rampart_proto::peer::{MessageBatch, SnapshotChunk};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Shared, MAX_MESSAGES_PER_BATCH, MAX_PEER_MESSAGE_BYTES, SNAPSHOT_CHUNK_BYTES};

/// Pause before reconnecting to a peer whose stream broke.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Frames waiting to go out on one peer stream.
const STREAM_FRAMES_IN_FLIGHT: usize = 64;

fn client_for(
    urls: &[String],
    attempt: usize,
    shared: &Shared,
) -> Option<RaftTransportClient<tonic::transport::Channel>> {
    if urls.is_empty() {
        return None;
    }
    let url = &urls[attempt % urls.len()];
    match (shared.connect)(url) {
        Ok(channel) => Some(
            RaftTransportClient::new(channel)
                .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES),
        ),
        Err(e) => {
            tracing::warn!(url = %url, error = %e, "peer: cannot set up a connection");
            None
        }
    }
}

/// Forwards Raft messages from `queue` to the peer until the queue closes (peer removed).
pub(crate) async fn run_peer_stream(
    peer: u64,
    urls: Vec<String>,
    mut queue: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
) {
    let mut attempt = 0usize;
    let mut was_active = false;
    loop {
        let Some(mut client) = client_for(&urls, attempt, &shared) else {
            tokio::time::sleep(RECONNECT_BACKOFF * 10).await;
            attempt += 1;
            continue;
        };
        let (frames, outgoing) = mpsc::channel::<MessageBatch>(STREAM_FRAMES_IN_FLIGHT);
        let mut call = Box::pin(client.stream(ReceiverStream::new(outgoing)));
        let outcome: Result<(), String> = loop {
            tokio::select! {
                result = &mut call => {
                    break match result {
                        Ok(_) => Err("peer closed the stream".to_string()),
                        Err(status) => Err(status.message().to_string()),
                    };
                }
                next = queue.recv() => {
                    let Some(first) = next else { return };
                    let mut messages = Vec::with_capacity(8);
                    push_encoded(&mut messages, &first);
                    while messages.len() < MAX_MESSAGES_PER_BATCH {
                        match queue.try_recv() {
                            Ok(m) => push_encoded(&mut messages, &m),
                            Err(_) => break,
                        }
                    }
                    let batch = MessageBatch { cluster_id: shared.cluster_id, from: shared.local_id, messages };
                    if frames.send(batch).await.is_err() {
                        break Err("stream closed".to_string());
                    }
                    if !was_active {
                        was_active = true;
                        tracing::info!(peer = format!("{peer:x}"), "peer: stream established");
                    }
                }
            }
        };
        if let Err(e) = outcome {
            if was_active {
                tracing::warn!(peer = format!("{peer:x}"), error = %e, "peer: lost the stream");
            } else {
                tracing::debug!(peer = format!("{peer:x}"), error = %e, "peer: cannot reach");
            }
        }
        was_active = false;
        shared.report_unreachable(peer);
        // What was queued for a broken stream is stale; Raft resends what matters.
        while queue.try_recv().is_ok() {}
        tokio::time::sleep(RECONNECT_BACKOFF).await;
        attempt += 1;
    }
}

fn push_encoded(out: &mut Vec<Vec<u8>>, m: &Message) {
    match m.write_to_bytes() {
        Ok(bytes) => out.push(bytes),
        Err(e) => tracing::error!(error = %e, "peer: cannot encode a raft message"),
    }
}

/// Sends one snapshot (message + the state machine's data) and reports the result to Raft.
pub(crate) async fn send_snapshot(mut message: Message, urls: Vec<String>, shared: Arc<Shared>) {
    let peer = message.to;
    let source = shared.snapshot_source.clone();
    let data = match tokio::task::spawn_blocking(move || source()).await {
        Ok(Ok(data)) => data,
        Ok(Err(e)) => {
            tracing::warn!(peer = format!("{peer:x}"), error = %e, "peer: cannot read snapshot data");
            report_snapshot(&shared, peer, false);
            return;
        }
        Err(e) => {
            tracing::warn!(peer = format!("{peer:x}"), error = %e, "peer: snapshot task failed");
            report_snapshot(&shared, peer, false);
            return;
        }
    };
    message.mut_snapshot().data = Default::default();
    let header = match message.write_to_bytes() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "peer: cannot encode snapshot message");
            report_snapshot(&shared, peer, false);
            return;
        }
    };
    let mut chunks = Vec::with_capacity(data.len() / SNAPSHOT_CHUNK_BYTES + 1);
    let mut pieces = data.chunks(SNAPSHOT_CHUNK_BYTES);
    chunks.push(SnapshotChunk {
        cluster_id: shared.cluster_id,
        from: shared.local_id,
        message: header,
        data: pieces.next().map(<[u8]>::to_vec).unwrap_or_default(),
    });
    for piece in pieces {
        chunks.push(SnapshotChunk {
            cluster_id: shared.cluster_id,
            from: shared.local_id,
            message: Vec::new(),
            data: piece.to_vec(),
        });
    }
    let size = data.len();
    let ok = match client_for(&urls, 0, &shared) {
        Some(mut client) => match client.snapshot(tokio_stream::iter(chunks)).await {
            Ok(_) => {
                tracing::info!(
                    peer = format!("{peer:x}"),
                    bytes = size,
                    "peer: sent snapshot"
                );
                true
            }
            Err(status) => {
                tracing::warn!(peer = format!("{peer:x}"), error = %status.message(), "peer: snapshot send failed");
                false
            }
        },
        None => false,
    };
    report_snapshot(&shared, peer, ok);
}

fn report_snapshot(shared: &Shared, peer: u64, ok: bool) {
    if let Some(h) = shared.handle.get() {
        h.report_snapshot(peer, ok);
    }
}

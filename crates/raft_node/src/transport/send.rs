//! The sending half: one stream per peer (the Raft message stream, or gRPC to a member that
//! lacks it), and snapshot uploads.

use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use rampart_proto::peer::raft_transport_client::RaftTransportClient;
use rampart_proto::peer::{MessageBatch, SnapshotChunk};
use rampart_tls::ClientConn;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::wire::{self, Hello, Reply};
use super::{Shared, MAX_MESSAGES_PER_BATCH, MAX_PEER_MESSAGE_BYTES, SNAPSHOT_CHUNK_BYTES};

/// Pause before reconnecting to a peer whose stream broke.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Frames waiting to go out on one gRPC peer stream.
const STREAM_FRAMES_IN_FLIGHT: usize = 64;

/// A member that accepted the connection but did not answer the hello within this is given up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of messages gathered into one write, about; more wait for the next.
const MAX_WRITE_BYTES: usize = 4 * 1024 * 1024;

/// The write buffer's usual size (it grows for large appends and shrinks back).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

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

/// How a connection to a peer ended.
enum End {
    /// The peer was removed (its queue closed): stop.
    Removed,
    Broken(String),
    /// The peer refused the stream (another cluster, say): a misconfiguration to report.
    Refused(String),
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
    let mut last_refusal = None;
    loop {
        if queue.is_closed() {
            return;
        }
        if urls.is_empty() {
            tokio::time::sleep(RECONNECT_BACKOFF * 10).await;
            continue;
        }
        let url = &urls[attempt % urls.len()];
        let end = match open_raw(peer, url, &shared).await {
            Ok(Some(conn)) => {
                tracing::info!(peer = format!("{peer:x}"), "peer: stream established");
                was_active = true;
                last_refusal = None;
                pump_raw(conn, &mut queue).await
            }
            // An older member: the gRPC stream it does speak.
            Ok(None) => match client_for(&urls, attempt, &shared) {
                Some(client) => pump_grpc(peer, client, &mut queue, &shared, &mut was_active).await,
                None => End::Broken("cannot set up a connection".into()),
            },
            Err(end) => end,
        };
        match end {
            End::Removed => return,
            // Said once, not at every retry.
            End::Refused(reason) if last_refusal.as_ref() != Some(&reason) => {
                tracing::warn!(peer = format!("{peer:x}"), reason = %reason, "peer: refused our stream");
                last_refusal = Some(reason);
            }
            End::Refused(_) => {}
            End::Broken(e) if was_active => {
                tracing::warn!(peer = format!("{peer:x}"), error = %e, "peer: lost the stream");
            }
            End::Broken(e) => {
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

/// Opens the Raft message stream to `url`; `Ok(None)` when the member does not speak it.
async fn open_raw(peer: u64, url: &str, shared: &Shared) -> Result<Option<ClientConn>, End> {
    let mut conn = match (shared.dial)(url.to_string()).await {
        Ok(conn) => conn,
        Err(e) if rampart_tls::is_alpn_refusal(&e) => return Ok(None),
        Err(e) => return Err(End::Broken(format!("{url}: {e}"))),
    };
    super::keep_alive(conn.tcp());
    let hello = Hello {
        cluster_id: shared.cluster_id,
        from: shared.local_id,
        to: peer,
    };
    let handshake = async {
        wire::write_hello(&mut conn, hello).await?;
        wire::read_reply(&mut conn).await
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(Reply::Accepted)) => Ok(Some(conn)),
        Ok(Ok(Reply::NotSpoken)) => Ok(None),
        Ok(Ok(Reply::Refused(reason))) => Err(End::Refused(format!("{url}: {reason}"))),
        Ok(Err(e)) => Err(End::Broken(format!("{url}: {e}"))),
        Err(_) => Err(End::Broken(format!(
            "{url}: no answer to the stream's hello"
        ))),
    }
}

/// Writes the queued messages to the connection, as many as are waiting per write.
async fn pump_raw(mut conn: ClientConn, queue: &mut mpsc::Receiver<Message>) -> End {
    let mut buf = Vec::with_capacity(WRITE_BUFFER_BYTES);
    loop {
        let Some(first) = queue.recv().await else {
            return End::Removed;
        };
        buf.clear();
        let mut next = Some(first);
        let mut count = 0;
        while let Some(m) = next.take() {
            let before = buf.len();
            if let Err(e) = wire::encode_message(&mut buf, &m) {
                buf.truncate(before);
                tracing::error!(error = %e, "peer: cannot encode a raft message");
            }
            count += 1;
            if count < MAX_MESSAGES_PER_BATCH && buf.len() < MAX_WRITE_BYTES {
                next = queue.try_recv().ok();
            }
        }
        let written = async {
            conn.write_all(&buf).await?;
            conn.flush().await
        };
        if let Err(e) = written.await {
            return End::Broken(e.to_string());
        }
        if buf.capacity() > MAX_WRITE_BYTES * 2 {
            buf = Vec::with_capacity(WRITE_BUFFER_BYTES);
        }
    }
}

/// The gRPC stream (for members without the Raft message stream).
async fn pump_grpc(
    peer: u64,
    mut client: RaftTransportClient<tonic::transport::Channel>,
    queue: &mut mpsc::Receiver<Message>,
    shared: &Shared,
    was_active: &mut bool,
) -> End {
    let (frames, outgoing) = mpsc::channel::<MessageBatch>(STREAM_FRAMES_IN_FLIGHT);
    let mut call = Box::pin(client.stream(ReceiverStream::new(outgoing)));
    loop {
        tokio::select! {
            result = &mut call => {
                return End::Broken(match result {
                    Ok(_) => "peer closed the stream".to_string(),
                    Err(status) => status.message().to_string(),
                });
            }
            next = queue.recv() => {
                let Some(first) = next else { return End::Removed };
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
                    return End::Broken("stream closed".to_string());
                }
                if !*was_active {
                    *was_active = true;
                    tracing::info!(peer = format!("{peer:x}"), "peer: stream established (gRPC)");
                }
            }
        }
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

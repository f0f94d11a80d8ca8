//! A stream's outgoing queue, bounded by count and by bytes: when a consumer reads slower than
//! events arrive, the queue fills and its watchers fall back to reading the store, so the memory a
//! stream can hold is fixed no matter how far behind its reader is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use prost::Message as _;
use rampart_proto::etcdserverpb::WatchResponse;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Response batches queued per stream (etcd's per-stream buffer holds 128 responses too).
pub const STREAM_QUEUE: usize = 128;

/// Bytes of event responses queued per stream before its watchers fall behind.
pub const STREAM_QUEUE_BYTES: usize = 2 * 1024 * 1024;

struct Queued {
    responses: Vec<WatchResponse>,
    bytes: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The reader is behind: try again later (from the store).
    Full,
    /// The stream is gone.
    Closed,
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
}

pub struct Inbox {
    rx: mpsc::Receiver<Queued>,
    queued_bytes: Arc<AtomicUsize>,
}

pub fn outbox() -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued_bytes: queued_bytes.clone(),
        },
        Inbox { rx, queued_bytes },
    )
}

fn size(responses: &[WatchResponse]) -> usize {
    responses.iter().map(|r| r.encoded_len()).sum()
}

impl Outbox {
    /// Queues event responses (all or nothing) unless the queue is full by count or bytes; a
    /// batch larger than the whole budget still goes through an empty queue.
    pub fn try_send(&self, responses: Vec<WatchResponse>) -> Result<(), Rejected> {
        let bytes = size(&responses);
        let queued = self.queued_bytes.load(Ordering::Acquire);
        if queued > 0 && queued + bytes > STREAM_QUEUE_BYTES {
            return if self.tx.is_closed() {
                Err(Rejected::Closed)
            } else {
                Err(Rejected::Full)
            };
        }
        self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        match self.tx.try_send(Queued { responses, bytes }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => Rejected::Full,
                    mpsc::error::TrySendError::Closed(_) => Rejected::Closed,
                })
            }
        }
    }

    /// Queues a control response (created, canceled, progress), waiting for room.
    pub async fn send(&self, response: WatchResponse) -> Result<(), Rejected> {
        let responses = vec![response];
        let bytes = size(&responses);
        self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.tx
            .send(Queued { responses, bytes })
            .await
            .map_err(|_| Rejected::Closed)
    }
}

impl Outbox {
    /// Resolves once the stream's reader is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

impl Inbox {
    /// The responses in order, releasing their bytes from the budget as they are taken.
    pub fn into_stream(self) -> impl Stream<Item = WatchResponse> + Send + 'static {
        let queued_bytes = self.queued_bytes;
        ReceiverStream::new(self.rx).flat_map(move |q| {
            queued_bytes.fetch_sub(q.bytes, Ordering::AcqRel);
            futures::stream::iter(q.responses)
        })
    }
}

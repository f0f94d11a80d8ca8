//! The bounded queue of responses waiting to be written to one client's watch stream.
//!
//! Many upstream watches write into it; one task drains it to the client. It never grows past
//! [`CLIENT_STREAM_QUEUE`] responses: a client that falls that far behind has its stream ended
//! the way etcd's gRPC proxy ends it (code Canceled, "context canceled"), so a stalled client
//! costs bounded memory. A well-behaved client (clientv3) then re-creates its watches from the
//! last revision it saw.

use std::sync::{Arc, Mutex};

use rampart_proto::etcdserverpb::WatchResponse;
use tokio::sync::{mpsc, Notify};
use tonic::{Code, Status};

use crate::metrics::ProxyMetrics;

/// Responses queued for one client watch stream at most (etcd's gRPC proxy uses the same).
pub const CLIENT_STREAM_QUEUE: usize = 1024;

/// etcd's gRPC proxy ends a client watch stream that stopped reading with this.
pub const SLOW_CLIENT_CANCELED: &str = "context canceled";

/// One response for the client: its own, or an upstream response shared with other clients and
/// renumbered with the client's watch ID only when written.
pub enum Outgoing {
    Own(WatchResponse),
    Shared {
        watch_id: i64,
        response: Arc<WatchResponse>,
    },
}

impl Outgoing {
    pub fn into_response(self) -> WatchResponse {
        match self {
            Outgoing::Own(r) => r,
            Outgoing::Shared { watch_id, response } => {
                let mut r = Arc::unwrap_or_clone(response);
                r.watch_id = watch_id;
                r
            }
        }
    }
}

/// Why and how the stream ends early (set once; the first reason wins).
#[derive(Default)]
pub struct Termination {
    status: Mutex<Option<(Code, String)>>,
    notify: Notify,
}

impl Termination {
    pub fn end(&self, code: Code, message: &str) {
        let mut status = self.status.lock().expect("termination");
        if status.is_none() {
            *status = Some((code, message.to_string()));
            self.notify.notify_one();
        }
    }

    pub fn ended(&self) -> Option<Status> {
        self.status
            .lock()
            .expect("termination")
            .as_ref()
            .map(|(code, message)| Status::new(*code, message.clone()))
    }

    pub async fn wait(&self) -> Status {
        loop {
            let notified = self.notify.notified();
            if let Some(status) = self.ended() {
                return status;
            }
            notified.await;
        }
    }
}

/// The sending side, cloned into every upstream watch the client's watches are attached to.
#[derive(Clone)]
pub struct ClientQueue {
    tx: mpsc::Sender<Outgoing>,
    pub termination: Arc<Termination>,
    metrics: Arc<ProxyMetrics>,
}

impl ClientQueue {
    pub fn new(metrics: Arc<ProxyMetrics>) -> (ClientQueue, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(CLIENT_STREAM_QUEUE);
        (
            ClientQueue {
                tx,
                termination: Arc::new(Termination::default()),
                metrics,
            },
            rx,
        )
    }

    /// Queues a response without waiting; a full queue ends the client's stream. Returns false
    /// when the stream is over (full, or the client went away).
    pub fn offer(&self, item: Outgoing) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.termination.ended().is_none() {
                    self.metrics.slow_watch_streams_canceled.inc();
                    tracing::warn!(
                        "proxy: a client watch stream fell {CLIENT_STREAM_QUEUE} responses behind; ending it"
                    );
                }
                self.termination.end(Code::Cancelled, SLOW_CLIENT_CANCELED);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_ends_the_stream_as_etcd_does_and_stays_bounded() {
        let metrics = Arc::new(ProxyMetrics::default());
        let (queue, mut rx) = ClientQueue::new(metrics.clone());
        for _ in 0..CLIENT_STREAM_QUEUE {
            assert!(queue.offer(Outgoing::Own(WatchResponse::default())));
        }
        assert!(queue.termination.ended().is_none());
        assert!(!queue.offer(Outgoing::Own(WatchResponse::default())));
        assert!(!queue.offer(Outgoing::Own(WatchResponse::default())));
        let status = queue.termination.ended().expect("ended");
        assert_eq!(status.code(), Code::Cancelled);
        assert_eq!(status.message(), SLOW_CLIENT_CANCELED);
        assert_eq!(metrics.slow_watch_streams_canceled.get(), 1);
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, CLIENT_STREAM_QUEUE);
    }

    #[test]
    fn shared_responses_carry_the_clients_own_watch_id() {
        let response = Arc::new(WatchResponse {
            watch_id: 7,
            ..Default::default()
        });
        let out = Outgoing::Shared {
            watch_id: 3,
            response: response.clone(),
        };
        assert_eq!(out.into_response().watch_id, 3);
        assert_eq!(response.watch_id, 7);
    }
}

//! `etcdserverpb.Watch` served by the proxy: each client stream gets its own watch IDs and
//! "created"/"canceled" answers, while its watches are attached to upstream watches
//! ([`crate::watch_broadcast`]) — shared with other clients when the requests are identical.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt as _};
use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::watch_request::RequestUnion;
use rampart_proto::etcdserverpb::watch_server::Watch;
use rampart_proto::etcdserverpb::{
    RangeRequest, WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::client_queue::{ClientQueue, Outgoing};
use crate::metrics::ProxyMetrics;
use crate::upstream::Upstreams;
use crate::upstream_call::{self, Retry};
use crate::watch_broadcast::{Attach, ShareKey, UpstreamWatch};

/// etcd's text for a client-chosen watch ID already used on the stream.
pub const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// The shared upstream watches, by what they watch.
#[derive(Default)]
pub struct SharedWatches {
    by_key: Mutex<HashMap<ShareKey, Arc<UpstreamWatch>>>,
}

pub struct WatchProxy {
    upstreams: Arc<Upstreams>,
    metrics: Arc<ProxyMetrics>,
    shared: Arc<SharedWatches>,
    next_stream: AtomicU64,
}

impl WatchProxy {
    pub fn new(upstreams: Arc<Upstreams>, metrics: Arc<ProxyMetrics>) -> WatchProxy {
        WatchProxy {
            upstreams,
            metrics,
            shared: Arc::new(SharedWatches::default()),
            next_stream: AtomicU64::new(1),
        }
    }
}

/// One client's watch stream: its watches by ID, and its queue of responses.
struct ClientStream {
    id: u64,
    metadata: MetadataMap,
    queue: ClientQueue,
    watches: Mutex<HashMap<i64, Arc<UpstreamWatch>>>,
    next_watch_id: Mutex<i64>,
    upstreams: Arc<Upstreams>,
    metrics: Arc<ProxyMetrics>,
    shared: Arc<SharedWatches>,
}

impl ClientStream {
    /// Creates, cancels and progress requests of one stream are handled one at a time, in
    /// order (by the stream's request task), so an ID chosen here stays free until inserted.
    fn create(&self, create: WatchCreateRequest) {
        let watch_id = {
            let watches = self.watches.lock().expect("watches");
            let mut next = self.next_watch_id.lock().expect("next watch id");
            if create.watch_id != 0 {
                if watches.contains_key(&create.watch_id) {
                    drop((watches, next));
                    self.queue.offer(Outgoing::Own(WatchResponse {
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: DUPLICATE_ID.to_string(),
                        ..Default::default()
                    }));
                    return;
                }
                create.watch_id
            } else {
                while watches.contains_key(&*next) {
                    *next += 1;
                }
                let id = *next;
                *next += 1;
                id
            }
        };
        let metadata = upstream_call::forwarded_metadata(&self.metadata);
        let upstream = match ShareKey::of(&create, &self.metadata) {
            Some(key) => self.attach_shared(key, &create, metadata, watch_id),
            None => {
                let w = UpstreamWatch::open(
                    None,
                    &create,
                    metadata,
                    self.upstreams.clone(),
                    self.metrics.clone(),
                );
                w.attach((self.id, watch_id), self.queue.clone());
                w
            }
        };
        self.watches
            .lock()
            .expect("watches")
            .insert(watch_id, upstream);
        self.metrics.watchers.inc();
    }

    fn attach_shared(
        &self,
        key: ShareKey,
        create: &WatchCreateRequest,
        metadata: MetadataMap,
        watch_id: i64,
    ) -> Arc<UpstreamWatch> {
        let mut by_key = self.shared.by_key.lock().expect("shared watches");
        if let Some(existing) = by_key.get(&key) {
            if let Attach::Attached = existing.attach((self.id, watch_id), self.queue.clone()) {
                return existing.clone();
            }
        }
        let fresh = UpstreamWatch::open(
            Some(key.clone()),
            create,
            metadata,
            self.upstreams.clone(),
            self.metrics.clone(),
        );
        fresh.attach((self.id, watch_id), self.queue.clone());
        by_key.insert(key, fresh.clone());
        fresh
    }

    /// Detaches the watch from its upstream watch; the last one out closes a shared one.
    fn release(&self, watch_id: i64, upstream: &Arc<UpstreamWatch>) -> Option<WatchResponse> {
        let header = upstream.detach((self.id, watch_id));
        self.metrics.watchers.dec();
        if upstream.is_closed() {
            if let Some(key) = &upstream.share_key {
                let mut by_key = self.shared.by_key.lock().expect("shared watches");
                if by_key.get(key).is_some_and(|w| Arc::ptr_eq(w, upstream)) {
                    by_key.remove(key);
                }
            }
        }
        header.map(|h| WatchResponse {
            header: Some(h),
            watch_id,
            canceled: true,
            ..Default::default()
        })
    }

    fn cancel(&self, cancel: WatchCancelRequest) {
        let removed = self
            .watches
            .lock()
            .expect("watches")
            .remove(&cancel.watch_id);
        if let Some(upstream) = removed {
            if let Some(response) = self.release(cancel.watch_id, &upstream) {
                self.queue.offer(Outgoing::Own(response));
            }
        }
    }

    /// A progress request: the revision up to which every watch of the stream has all its
    /// events (a stream without watches gets the cluster's current revision).
    async fn progress(&self) {
        let watches: Vec<Arc<UpstreamWatch>> = self
            .watches
            .lock()
            .expect("watches")
            .values()
            .cloned()
            .collect();
        let least = watches
            .iter()
            .map(|w| w.delivered())
            .filter(|(_, h)| h.revision > 0)
            .min_by_key(|(rev, _)| *rev);
        let header = match least {
            Some((revision, header)) => {
                Some(rampart_proto::etcdserverpb::ResponseHeader { revision, ..header })
            }
            None => {
                let asked = upstream_call::call(
                    &self.upstreams,
                    &self.metrics,
                    Retry::Safe,
                    &upstream_call::forwarded_metadata(&self.metadata),
                    RangeRequest {
                        key: vec![0],
                        count_only: true,
                        limit: 1,
                        ..Default::default()
                    },
                    |channel, request| async move { KvClient::new(channel).range(request).await },
                )
                .await;
                match asked {
                    Ok(r) => r.into_inner().header,
                    Err(status) => {
                        self.queue.termination.end(status.code(), status.message());
                        return;
                    }
                }
            }
        };
        self.queue.offer(Outgoing::Own(WatchResponse {
            header,
            watch_id: -1,
            ..Default::default()
        }));
    }

    /// The stream is over: every watch leaves its upstream watch.
    fn close(&self) {
        let watches: Vec<(i64, Arc<UpstreamWatch>)> =
            self.watches.lock().expect("watches").drain().collect();
        for (id, upstream) in watches {
            self.release(id, &upstream);
        }
        self.metrics.client_watch_streams.dec();
    }
}

/// Closes the client stream however its response stream ends.
struct CloseOnDrop(Arc<ClientStream>, tokio::task::JoinHandle<()>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.1.abort();
        self.0.close();
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchProxy {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let metadata = request.metadata().clone();
        let mut incoming = request.into_inner();
        let (queue, rx) = ClientQueue::new(self.metrics.clone());
        let stream = Arc::new(ClientStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            metadata,
            queue: queue.clone(),
            watches: Mutex::new(HashMap::new()),
            next_watch_id: Mutex::new(0),
            upstreams: self.upstreams.clone(),
            metrics: self.metrics.clone(),
            shared: self.shared.clone(),
        });
        self.metrics.client_watch_streams.inc();
        let requests = {
            let stream = stream.clone();
            tokio::spawn(async move {
                while let Some(Ok(req)) = incoming.next().await {
                    match req.request_union {
                        Some(RequestUnion::CreateRequest(create)) => stream.create(create),
                        Some(RequestUnion::CancelRequest(cancel)) => stream.cancel(cancel),
                        Some(RequestUnion::ProgressRequest(_)) => stream.progress().await,
                        None => {}
                    }
                }
                // The client closed its side: as etcd, keep delivering until it goes away.
            })
        };
        let guard = CloseOnDrop(stream, requests);
        let termination = queue.termination.clone();
        drop(queue);
        let responses = futures::stream::unfold(
            (rx, termination, Some(guard)),
            |(mut rx, termination, guard)| async move {
                let guard = guard?;
                tokio::select! {
                    biased;
                    status = termination.wait() => {
                        drop(guard);
                        Some((Err(status), (rx, termination, None)))
                    }
                    item = rx.recv() => item.map(|item| (Ok(item.into_response()), (rx, termination, Some(guard)))),
                }
            },
        );
        Ok(Response::new(Box::pin(responses)))
    }
}

//! `etcdserverpb.Watch`: one bidirectional stream carries many watchers. Requests (create,
//! cancel, progress) are handled in order; events come from the watch hub.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use rampart_proto::etcdserverpb::watch_request::RequestUnion;
use rampart_proto::etcdserverpb::watch_server::Watch;
use rampart_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tonic::{Request, Status, Streaming};

use crate::etcdserver::EtcdServer;
use crate::watch::WatchHub;

pub struct WatchService {
    server: Arc<EtcdServer>,
}

impl WatchService {
    pub fn new(server: Arc<EtcdServer>) -> WatchService {
        WatchService { server }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

/// Unregisters the stream's watchers however the request loop ends.
struct StreamGuard {
    hub: Arc<WatchHub>,
    stream: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.hub.close_stream(self.stream);
    }
}

/// Serves one watch stream: requests from `incoming`, responses on the returned stream (used by
/// the gRPC service and by the JSON gateway). With auth on, `user` (who opened the stream) must
/// be allowed to read what each watcher watches, by the auth state when the watcher is created.
pub fn serve_watch_stream<S>(
    server: &EtcdServer,
    user: Option<String>,
    mut incoming: S,
) -> impl Stream<Item = Result<WatchResponse, Status>> + Send + 'static
where
    S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
{
    let hub = server.watch_hub.clone();
    let (stream, outbox, rx) = hub.open_stream();
    let max_request_bytes = server.limits.max_request_bytes;
    let auth = server.auth.clone();
    tokio::spawn(async move {
        let _guard = StreamGuard {
            hub: hub.clone(),
            stream,
        };
        loop {
            let req = match incoming.next().await {
                Some(Ok(req)) => req,
                // The client closed its side: as etcd, keep delivering until it goes away.
                None => {
                    outbox.closed().await;
                    break;
                }
                Some(Err(_)) => break,
            };
            if prost::Message::encoded_len(&req) > max_request_bytes {
                break;
            }
            let reply = match req.request_union {
                Some(RequestUnion::CreateRequest(create)) => {
                    let permitted = {
                        let store = auth.read().unwrap_or_else(|p| p.into_inner());
                        let requester = user.clone().map(|u| store.requester(u));
                        store.check_keys(
                            requester.as_ref(),
                            &create.key,
                            &create.range_end,
                            rampart_auth::PermType::Read,
                        )
                    };
                    if let Err(e) = permitted {
                        // etcd sends the gRPC error's full text as the cancel reason.
                        let reply = WatchResponse {
                            header: Some(hub.header(hub.revision())),
                            watch_id: -1,
                            created: true,
                            canceled: true,
                            cancel_reason: format!(
                                "rpc error: code = {:?} desc = {e}",
                                e.grpc_code()
                            ),
                            ..Default::default()
                        };
                        if outbox.send(reply).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    let (reply, created) = match hub.create(stream, &create) {
                        Ok((id, revision)) => (
                            WatchResponse {
                                header: Some(hub.header(revision)),
                                watch_id: id,
                                created: true,
                                ..Default::default()
                            },
                            Some(id),
                        ),
                        Err(refused) => (
                            WatchResponse {
                                header: Some(hub.header(hub.revision())),
                                watch_id: -1,
                                created: true,
                                canceled: true,
                                cancel_reason: refused.0.to_string(),
                                ..Default::default()
                            },
                            None,
                        ),
                    };
                    if outbox.send(reply).await.is_err() {
                        break;
                    }
                    if let Some(id) = created {
                        hub.activate(stream, id);
                    }
                    continue;
                }
                Some(RequestUnion::CancelRequest(cancel)) => {
                    if !hub.cancel(stream, cancel.watch_id) {
                        continue;
                    }
                    WatchResponse {
                        header: Some(hub.header(hub.revision())),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    }
                }
                Some(RequestUnion::ProgressRequest(_)) => hub.progress(stream),
                None => continue,
            };
            if outbox.send(reply).await.is_err() {
                break;
            }
        }
    });
    rx.into_stream().map(Ok)
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        let user = self.server.requester(&request).await?.map(|r| r.user);
        let responses = serve_watch_stream(&self.server, user, request.into_inner());
        Ok(tonic::Response::new(Box::pin(responses)))
    }
}

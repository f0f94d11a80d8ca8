//! One watch the proxy holds on a member, and the client watches it feeds.
//!
//! As in etcd's gRPC proxy (a "s-watcher" broadcast to many "c-watchers"): identical watches
//! "from now" of many clients share one upstream watch ([`ShareKey`]); any other watch (a start
//! revision, fragments) gets an upstream watch of its own, with the same machinery and one
//! receiver. Each upstream watch has its own HTTP/2 stream to a member, so the member counts one
//! watch stream per upstream watch.
//!
//! Ordering and exactly-once: every receiver keeps the next revision it needs; responses go to
//! receivers in the order the member sent them, under one lock, so a receiver that joins later
//! sees its "created" response before any event, and events only from its start on. When the
//! member fails, the watch is re-created on another member from the revision after the last
//! one delivered, so clients see neither a gap nor a repeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::watch_request::RequestUnion;
use rampart_proto::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::{mpsc, Notify};
use tonic::metadata::MetadataMap;
use tonic::Code;

use crate::client_queue::{ClientQueue, Outgoing};
use crate::metrics::ProxyMetrics;
use crate::upstream::Upstreams;
use crate::upstream_call::{member_failed, NO_MEMBER_REACHABLE};

/// How long an upstream watch keeps trying members after the one it used failed, before its
/// clients' streams end with Unavailable.
pub const RESUME_GIVE_UP: Duration = Duration::from_secs(20);
/// Pause between rounds over all members while resuming.
const RESUME_ROUND_PAUSE: Duration = Duration::from_millis(300);

/// What makes two watch requests the same watch: range, filters, prev_kv, progress
/// notifications, and who asks (auth token, whether a leader is required) — clients of
/// different users never share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub filters: Vec<i32>,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub token: Option<String>,
    pub require_leader: bool,
}

impl ShareKey {
    /// The key of a request that can share an upstream watch, or None when it must have its
    /// own: a start revision (it needs history from there), or fragments (a fragmented
    /// response cannot be resumed half-way for many clients).
    pub fn of(create: &WatchCreateRequest, metadata: &MetadataMap) -> Option<ShareKey> {
        if create.start_revision != 0 || create.fragment {
            return None;
        }
        let mut filters = create.filters.clone();
        filters.sort_unstable();
        filters.dedup();
        Some(ShareKey {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
            filters,
            prev_kv: create.prev_kv,
            progress_notify: create.progress_notify,
            token: crate::upstream_call::auth_token(metadata),
            require_leader: metadata.get("hasleader").is_some(),
        })
    }
}

/// A client watch attached to an upstream watch: which client stream, under which watch ID.
pub type ReceiverId = (u64, i64);

struct Receiver {
    queue: ClientQueue,
    /// The first revision this client still needs (0 until its "created" response).
    next_rev: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The member has not confirmed the watch yet; receivers wait for its "created".
    Creating,
    Live,
    /// No receivers left, or the member refused or canceled it: the task is stopping.
    Closed,
}

struct State {
    phase: Phase,
    receivers: HashMap<ReceiverId, Receiver>,
    /// Header of the last response from the member.
    last_header: ResponseHeader,
    /// Every event up to this revision has been handed to every receiver.
    delivered: i64,
    /// A fragmented response is half delivered (the watch cannot be resumed transparently).
    mid_fragment: bool,
    /// What this watch adds to the `watchers_coalesced` gauge now (receivers beyond the first).
    coalesced_counted: i64,
}

pub struct UpstreamWatch {
    /// Set for a shared watch (None: one client's watch, passed through).
    pub share_key: Option<ShareKey>,
    create: WatchCreateRequest,
    metadata: MetadataMap,
    state: Mutex<State>,
    stop: Notify,
    metrics: Arc<ProxyMetrics>,
}

/// How a client's attempt to attach went.
pub enum Attach {
    Attached,
    /// The upstream watch is closing; open a new one.
    Closed,
}

impl UpstreamWatch {
    /// Opens the upstream watch for `create` (its watch ID is the proxy's business and is not
    /// sent) and starts relaying; attach receivers with [`UpstreamWatch::attach`].
    pub fn open(
        share_key: Option<ShareKey>,
        create: &WatchCreateRequest,
        metadata: MetadataMap,
        upstreams: Arc<Upstreams>,
        metrics: Arc<ProxyMetrics>,
    ) -> Arc<UpstreamWatch> {
        let watch = Arc::new(UpstreamWatch {
            share_key,
            create: WatchCreateRequest {
                watch_id: 0,
                ..create.clone()
            },
            metadata,
            state: Mutex::new(State {
                phase: Phase::Creating,
                receivers: HashMap::new(),
                last_header: ResponseHeader::default(),
                delivered: create.start_revision.max(1) - 1,
                mid_fragment: false,
                coalesced_counted: 0,
            }),
            stop: Notify::new(),
            metrics,
        });
        watch.metrics.upstream_watch_streams.inc();
        tokio::spawn(watch.clone().relay(upstreams));
        watch
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("upstream watch")
    }

    /// Brings the `watchers_coalesced` gauge in line with the receivers after a change.
    fn count_coalesced(&self, s: &mut State) {
        let now = if self.share_key.is_some() {
            (s.receivers.len() as i64 - 1).max(0)
        } else {
            0
        };
        self.metrics
            .watchers_coalesced
            .add(now - s.coalesced_counted);
        s.coalesced_counted = now;
    }

    /// Attaches a client watch. A live watch answers "created" at once, at the revision it has
    /// delivered up to; a watch still being created answers when the member does.
    pub fn attach(&self, id: ReceiverId, queue: ClientQueue) -> Attach {
        let mut s = self.state();
        match s.phase {
            Phase::Closed => return Attach::Closed,
            Phase::Creating => {
                s.receivers.insert(id, Receiver { queue, next_rev: 0 });
            }
            Phase::Live => {
                let created = WatchResponse {
                    header: Some(ResponseHeader {
                        revision: s.delivered,
                        ..s.last_header
                    }),
                    watch_id: id.1,
                    created: true,
                    ..Default::default()
                };
                let next_rev = s.delivered + 1;
                if queue.offer(Outgoing::Own(created)) {
                    s.receivers.insert(id, Receiver { queue, next_rev });
                }
            }
        }
        self.count_coalesced(&mut s);
        Attach::Attached
    }

    /// Detaches a client watch; returns the header for its "canceled" response, or None if it
    /// was not attached. The last receiver leaving stops the upstream watch.
    pub fn detach(&self, id: ReceiverId) -> Option<ResponseHeader> {
        let mut s = self.state();
        s.receivers.remove(&id)?;
        self.count_coalesced(&mut s);
        let header = ResponseHeader {
            revision: s.delivered,
            ..s.last_header
        };
        if s.receivers.is_empty() {
            s.phase = Phase::Closed;
            self.stop.notify_one();
        }
        Some(header)
    }

    /// The revision every event up to which has been delivered (for progress requests).
    pub fn delivered(&self) -> (i64, ResponseHeader) {
        let s = self.state();
        (s.delivered, s.last_header)
    }

    pub fn is_closed(&self) -> bool {
        self.state().phase == Phase::Closed
    }

    /// Ends every receiver's client stream with `code`/`message` and closes.
    fn fail_all(&self, code: Code, message: &str) {
        let mut s = self.state();
        for (_, r) in s.receivers.drain() {
            r.queue.termination.end(code, message);
        }
        s.phase = Phase::Closed;
        self.count_coalesced(&mut s);
    }

    /// Hands one response from the member to the receivers; false once the watch is over.
    fn deliver(&self, response: WatchResponse, resumed: bool) -> bool {
        let mut s = self.state();
        let going = self.deliver_locked(&mut s, response, resumed);
        self.count_coalesced(&mut s);
        going
    }

    fn deliver_locked(&self, s: &mut State, response: WatchResponse, resumed: bool) -> bool {
        if s.phase == Phase::Closed {
            return false;
        }
        if let Some(h) = response.header {
            s.last_header = h;
        }
        if response.created {
            if response.canceled {
                // Refused (an empty range, a compacted start, permission): every waiting client
                // gets the member's answer, as it would without the proxy.
                let answer = Arc::new(response);
                for (_, r) in s.receivers.drain() {
                    r.queue.offer(Outgoing::Own(WatchResponse::clone(&answer)));
                }
                s.phase = Phase::Closed;
                return false;
            }
            if resumed {
                return true;
            }
            if self.create.start_revision == 0 {
                s.delivered = s.last_header.revision;
            }
            let delivered = s.delivered;
            let header = s.last_header;
            s.receivers.retain(|id, r| {
                r.next_rev = delivered + 1;
                r.queue.offer(Outgoing::Own(WatchResponse {
                    header: Some(header),
                    watch_id: id.1,
                    created: true,
                    ..Default::default()
                }))
            });
            s.phase = Phase::Live;
            return true;
        }
        if response.canceled {
            // Compacted while resuming, or canceled by the member: clients see the member's
            // answer under their own watch IDs and the watch ends.
            let answer = Arc::new(response);
            for (id, r) in s.receivers.drain() {
                r.queue.offer(Outgoing::Shared {
                    watch_id: id.1,
                    response: answer.clone(),
                });
            }
            s.phase = Phase::Closed;
            return false;
        }
        let last_event_rev = response
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
            .max();
        let fragment = response.fragment;
        let answer = Arc::new(response);
        s.receivers.retain(|id, r| {
            let item = match last_event_rev {
                // Normally every event is new to every receiver; after a resume, drop repeats.
                Some(_) if answer.events.iter().any(|e| kv_rev(e) < r.next_rev) => {
                    let mut own = WatchResponse::clone(&answer);
                    own.watch_id = id.1;
                    own.events.retain(|e| kv_rev(e) >= r.next_rev);
                    if own.events.is_empty() {
                        return true;
                    }
                    Outgoing::Own(own)
                }
                _ => Outgoing::Shared {
                    watch_id: id.1,
                    response: answer.clone(),
                },
            };
            if !fragment {
                if let Some(rev) = last_event_rev {
                    r.next_rev = r.next_rev.max(rev + 1);
                }
            }
            r.queue.offer(item)
        });
        s.mid_fragment = fragment;
        if !fragment {
            let reached = match last_event_rev {
                Some(rev) => rev,
                // A progress notification: everything up to the header's revision is sent.
                None => answer.header.map_or(0, |h| h.revision),
            };
            s.delivered = s.delivered.max(reached);
        }
        if s.receivers.is_empty() {
            s.phase = Phase::Closed;
            return false;
        }
        true
    }

    /// The request that (re-)creates the watch on a member.
    fn create_request(&self, resumed: bool) -> WatchRequest {
        let mut create = self.create.clone();
        if resumed {
            create.start_revision = self.state().delivered + 1;
        }
        WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        }
    }

    /// Relays the member's responses until the watch closes, moving to another member when
    /// the one in use fails.
    async fn relay(self: Arc<UpstreamWatch>, upstreams: Arc<Upstreams>) {
        let mut resumed = false;
        let mut failing_since: Option<Instant> = None;
        'members: loop {
            if self.is_closed() {
                break;
            }
            if resumed && self.state().mid_fragment {
                self.fail_all(Code::Unavailable, crate::upstream_call::SERVER_STOPPED);
                break;
            }
            for (url, channel) in upstreams.candidates() {
                let (tx, rx) = mpsc::channel::<WatchRequest>(1);
                let _ = tx.try_send(self.create_request(resumed));
                let mut request =
                    tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
                *request.metadata_mut() = self.metadata.clone();
                let mut client = WatchClient::new(channel).max_decoding_message_size(usize::MAX);
                let opened = tokio::select! {
                    r = client.watch(request) => r,
                    _ = self.stop.notified() => break 'members,
                };
                let mut responses = match opened {
                    Ok(r) => r.into_inner(),
                    Err(status) if member_failed(&status) => {
                        upstreams.mark_down(&url);
                        continue;
                    }
                    Err(status) => {
                        self.fail_all(status.code(), status.message());
                        break 'members;
                    }
                };
                loop {
                    let next = tokio::select! {
                        r = responses.next() => r,
                        _ = self.stop.notified() => break 'members,
                    };
                    match next {
                        Some(Ok(response)) => {
                            upstreams.mark_up(&url);
                            failing_since = None;
                            let created = response.created;
                            if !self.deliver(response, resumed) {
                                break 'members;
                            }
                            if created {
                                resumed = true;
                            }
                        }
                        Some(Err(status)) if !member_failed(&status) => {
                            // The member's own error (no leader, ...) ends the clients' streams
                            // as it would without the proxy.
                            self.fail_all(status.code(), status.message());
                            break 'members;
                        }
                        Some(Err(_)) | None => {
                            tracing::info!(
                                url,
                                "proxy: upstream watch lost; resuming on another member"
                            );
                            upstreams.mark_down(&url);
                            drop(tx);
                            continue 'members;
                        }
                    }
                }
            }
            let since = *failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > RESUME_GIVE_UP {
                self.fail_all(Code::Unavailable, NO_MEMBER_REACHABLE);
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(RESUME_ROUND_PAUSE) => {}
                _ = self.stop.notified() => break,
            }
        }
        self.state().phase = Phase::Closed;
        self.metrics.upstream_watch_streams.dec();
    }
}

fn kv_rev(e: &rampart_proto::mvccpb::Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

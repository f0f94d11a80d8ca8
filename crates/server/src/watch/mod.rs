//! The watch hub: every watcher of this member, fed from the apply path.
//!
//! Watchers are *synced* or *unsynced*, as in etcd's watchable store:
//! - a synced watcher has seen every revision up to the last one notified; the apply loop hands
//!   it each new batch of events directly ([`WatchHub::notify`]);
//! - an unsynced watcher is behind — it asked for an old `start_revision`, or its stream could not
//!   take a batch (a slow consumer) — and catches up by reading the store ([`catch_up`]) until it
//!   reaches the last notified revision, then becomes synced again.
//!
//! A stream's queue is bounded, and nothing is buffered for an unsynced watcher (the store is its
//! buffer), so a consumer that stops reading costs a bounded amount of memory. Every watcher
//! keeps the revision it needs next, so after a catch-up nothing is sent twice or skipped.

mod catch_up;
mod filter;
mod outbox;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prost::Message as _;
use rampart_apply::Applier;
use rampart_proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use rampart_proto::mvccpb::Event;
use rampart_raft_node::RaftHandle;
use tokio::sync::Notify;

use crate::membership::Membership;
pub use filter::WatchFilter;
pub use outbox::{Inbox, Outbox, Rejected, STREAM_QUEUE, STREAM_QUEUE_BYTES};

/// How long the catch-up worker sleeps when nothing wakes it (a stalled consumer that starts
/// reading again is noticed within this).
pub const CATCH_UP_POLL: Duration = Duration::from_millis(100);

/// etcd's text for a client-chosen watch ID already used on the stream.
pub const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's text for a watch range whose end is not after its start.
pub const EMPTY_RANGE: &str = "mvcc: watcher range is empty";

type WatcherKey = (u64, i64);

#[derive(Debug)]
struct Watcher {
    filter: Arc<WatchFilter>,
    /// The first revision this watcher still needs (synced: events below it are skipped).
    next_rev: i64,
    /// False between creation and the "created" response having been queued.
    active: bool,
}

struct StreamEntry {
    outbox: Outbox,
    next_id: i64,
}

#[derive(Default)]
struct HubState {
    /// The last revision handed to synced watchers.
    revision: i64,
    streams: HashMap<u64, StreamEntry>,
    next_stream: u64,
    synced: HashMap<WatcherKey, Watcher>,
    /// Synced single-key watchers by key, and the synced range watchers.
    by_key: HashMap<Vec<u8>, HashSet<WatcherKey>>,
    ranged: HashSet<WatcherKey>,
    unsynced: HashMap<WatcherKey, Watcher>,
}

impl HubState {
    fn insert_synced(&mut self, key: WatcherKey, w: Watcher) {
        if w.filter.is_single_key() {
            self.by_key
                .entry(w.filter.key.clone())
                .or_default()
                .insert(key);
        } else {
            self.ranged.insert(key);
        }
        self.synced.insert(key, w);
    }

    fn remove_synced(&mut self, key: WatcherKey) -> Option<Watcher> {
        let w = self.synced.remove(&key)?;
        if w.filter.is_single_key() {
            if let Some(set) = self.by_key.get_mut(&w.filter.key) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_key.remove(&w.filter.key);
                }
            }
        } else {
            self.ranged.remove(&key);
        }
        Some(w)
    }

    fn remove(&mut self, key: WatcherKey) -> bool {
        self.remove_synced(key).is_some() || self.unsynced.remove(&key).is_some()
    }

    fn contains(&self, key: WatcherKey) -> bool {
        self.synced.contains_key(&key) || self.unsynced.contains_key(&key)
    }
}

/// Fills response headers with this member's identity.
pub struct HeaderSource {
    pub membership: Arc<Membership>,
    pub member_id: u64,
    pub raft: RaftHandle,
}

impl HeaderSource {
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.membership.cluster_id(),
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status().term(),
        }
    }
}

pub struct WatchHub {
    state: Mutex<HubState>,
    applier: Arc<RwLock<Applier>>,
    headers: HeaderSource,
    wake: Notify,
    /// Responses larger than this are split when the watcher asked for fragments.
    max_response_bytes: usize,
    progress_interval: Duration,
}

/// Why a watch could not be created (sent back in the "created" response, as etcd does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRefused(pub &'static str);

impl WatchHub {
    pub fn new(
        applier: Arc<RwLock<Applier>>,
        headers: HeaderSource,
        max_response_bytes: usize,
        progress_interval: Duration,
    ) -> Arc<WatchHub> {
        let revision = applier.read().expect("applier").current_revision();
        Arc::new(WatchHub {
            state: Mutex::new(HubState {
                revision,
                ..Default::default()
            }),
            applier,
            headers,
            wake: Notify::new(),
            max_response_bytes,
            progress_interval,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().expect("watch hub")
    }

    pub fn header(&self, revision: i64) -> ResponseHeader {
        self.headers.header(revision)
    }

    /// The last revision handed to synced watchers.
    pub fn revision(&self) -> i64 {
        self.state().revision
    }

    /// Number of watchers (synced, unsynced) — for tests and metrics.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state();
        (s.synced.len(), s.unsynced.len())
    }

    /// Number of open watch streams — for metrics.
    pub fn stream_count(&self) -> usize {
        self.state().streams.len()
    }

    /// Registers a stream; returns its ID, its outbox, and the receiving end of the outbox.
    pub fn open_stream(&self) -> (u64, Outbox, Inbox) {
        let (tx, rx) = outbox::outbox();
        let mut s = self.state();
        s.next_stream += 1;
        let id = s.next_stream;
        s.streams.insert(
            id,
            StreamEntry {
                outbox: tx.clone(),
                next_id: 0,
            },
        );
        (id, tx, rx)
    }

    /// Drops a stream and all its watchers.
    pub fn close_stream(&self, stream: u64) {
        let mut s = self.state();
        s.streams.remove(&stream);
        let keys: Vec<WatcherKey> = s
            .synced
            .keys()
            .chain(s.unsynced.keys())
            .filter(|k| k.0 == stream)
            .copied()
            .collect();
        for k in keys {
            s.remove(k);
        }
    }

    /// Creates a watcher (inactive until [`WatchHub::activate`]); returns its ID and the
    /// revision for the "created" response's header.
    pub fn create(
        &self,
        stream: u64,
        req: &WatchCreateRequest,
    ) -> Result<(i64, i64), CreateRefused> {
        let filter = WatchFilter::from_request(req);
        if filter.is_empty_range() {
            return Err(CreateRefused(EMPTY_RANGE));
        }
        let mut s = self.state();
        let current = s.revision;
        let id = if req.watch_id != 0 {
            if s.contains((stream, req.watch_id)) {
                return Err(CreateRefused(DUPLICATE_ID));
            }
            req.watch_id
        } else {
            let mut id = s.streams.get(&stream).map(|e| e.next_id).unwrap_or(0);
            while s.contains((stream, id)) {
                id += 1;
            }
            if let Some(e) = s.streams.get_mut(&stream) {
                e.next_id = id + 1;
            }
            id
        };
        let next_rev = if req.start_revision > 0 {
            req.start_revision
        } else {
            current + 1
        };
        s.unsynced.insert(
            (stream, id),
            Watcher {
                filter: Arc::new(filter),
                next_rev,
                active: false,
            },
        );
        Ok((id, current))
    }

    /// Starts delivering to a created watcher (after its "created" response was queued).
    pub fn activate(&self, stream: u64, id: i64) {
        if let Some(w) = self.state().unsynced.get_mut(&(stream, id)) {
            w.active = true;
        }
        self.wake.notify_one();
    }

    /// Removes a watcher; false if the stream has no such watcher.
    pub fn cancel(&self, stream: u64, id: i64) -> bool {
        self.state().remove((stream, id))
    }

    /// The answer to a progress request: the revision every watcher of the stream has seen.
    pub fn progress(&self, stream: u64) -> WatchResponse {
        let s = self.state();
        let behind = s
            .unsynced
            .iter()
            .filter(|(k, _)| k.0 == stream)
            .map(|(_, w)| w.next_rev - 1)
            .min();
        let revision = behind.map_or(s.revision, |b| b.min(s.revision));
        WatchResponse {
            header: Some(self.header(revision)),
            watch_id: -1,
            ..Default::default()
        }
    }

    /// Hands one applied batch's events (in revision order) to the synced watchers; `revision`
    /// is the store's revision after the batch. Called by the apply loop after each commit.
    pub fn notify(&self, events: &[Event], revision: i64) {
        let mut s = self.state();
        let before = s.revision;
        s.revision = revision.max(before);
        if events.is_empty() || s.synced.is_empty() {
            return;
        }
        // BTreeMap: deliver in a stable order (by stream, then watch ID).
        let mut per_watcher: BTreeMap<WatcherKey, Vec<Event>> = BTreeMap::new();
        for event in events {
            let Some(kv) = &event.kv else { continue };
            let mut offer = |key: WatcherKey, s: &HubState| {
                if let Some(w) = s.synced.get(&key) {
                    if kv.mod_revision >= w.next_rev {
                        if let Some(e) = w.filter.select(event) {
                            per_watcher.entry(key).or_default().push(e);
                        }
                    }
                }
            };
            if let Some(keys) = s.by_key.get(&kv.key) {
                for key in keys {
                    offer(*key, &s);
                }
            }
            for key in &s.ranged {
                if s.synced[key].filter.contains(&kv.key) {
                    offer(*key, &s);
                }
            }
        }
        let mut fell_behind = false;
        for (key, events) in per_watcher {
            let Some(entry) = s.streams.get(&key.0) else {
                s.remove(key);
                continue;
            };
            let fragment = s.synced[&key].filter.fragment;
            let batch = self.responses(key.1, events, revision, fragment);
            match entry.outbox.try_send(batch) {
                Ok(()) => {}
                Err(Rejected::Full) => {
                    // A slow consumer: it will read this batch from the store later.
                    if let Some(mut w) = s.remove_synced(key) {
                        w.next_rev = w.next_rev.max(before + 1);
                        s.unsynced.insert(key, w);
                        fell_behind = true;
                    }
                }
                Err(Rejected::Closed) => {
                    s.remove(key);
                }
            }
        }
        if fell_behind {
            self.wake.notify_one();
        }
    }

    /// The store was replaced by a leader's snapshot: every synced watcher re-reads from the
    /// store what it has not seen.
    pub fn restored(&self, revision: i64) {
        let mut s = self.state();
        let before = s.revision;
        let keys: Vec<WatcherKey> = s.synced.keys().copied().collect();
        for key in keys {
            if let Some(mut w) = s.remove_synced(key) {
                w.next_rev = w.next_rev.max(before + 1);
                s.unsynced.insert(key, w);
            }
        }
        s.revision = revision;
        drop(s);
        self.wake.notify_one();
    }

    /// Events for one watcher as one response, or as fragments when it asked for them and the
    /// response would be larger than the limit.
    fn responses(
        &self,
        watch_id: i64,
        events: Vec<Event>,
        revision: i64,
        fragment: bool,
    ) -> Vec<WatchResponse> {
        let whole = WatchResponse {
            header: Some(self.header(revision)),
            watch_id,
            events,
            ..Default::default()
        };
        if !fragment || whole.encoded_len() <= self.max_response_bytes {
            return vec![whole];
        }
        let mut parts: Vec<WatchResponse> = Vec::new();
        let mut current: Vec<Event> = Vec::new();
        let mut size = 0usize;
        for e in whole.events {
            let len = e.encoded_len() + 8;
            if !current.is_empty() && size + len > self.max_response_bytes {
                parts.push(WatchResponse {
                    header: whole.header,
                    watch_id,
                    events: std::mem::take(&mut current),
                    fragment: true,
                    ..Default::default()
                });
                size = 0;
            }
            size += len;
            current.push(e);
        }
        parts.push(WatchResponse {
            header: whole.header,
            watch_id,
            events: current,
            ..Default::default()
        });
        parts
    }

    /// Sends a progress notification to every synced watcher that asked for them, every
    /// `--experimental-watch-progress-notify-interval`. Runs until the task is dropped.
    pub async fn run_progress_notify(self: Arc<WatchHub>) {
        let mut tick = tokio::time::interval(self.progress_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let s = self.state();
            for ((stream, id), w) in &s.synced {
                if !w.filter.progress_notify {
                    continue;
                }
                if let Some(entry) = s.streams.get(stream) {
                    // A full queue already carries newer news; skipping is harmless.
                    let _ = entry.outbox.try_send(vec![WatchResponse {
                        header: Some(self.header(s.revision)),
                        watch_id: *id,
                        ..Default::default()
                    }]);
                }
            }
        }
    }
}

//! Unsynced watchers catch up by reading the store, a bounded number of events per round, and
//! rejoin the synced group once they reach the last notified revision.

use std::sync::Arc;

use rampart_mvcc::MvccError;
use rampart_proto::etcdserverpb::WatchResponse;

use super::{Rejected, WatchHub, WatcherKey, CATCH_UP_POLL};

/// Events read for one watcher per round at most (whole revisions are never split).
pub const CATCH_UP_EVENTS: usize = 1000;

impl WatchHub {
    /// Runs the catch-up worker until the task is dropped.
    pub async fn run_catch_up(self: Arc<WatchHub>) {
        loop {
            let more = {
                let hub = self.clone();
                tokio::task::spawn_blocking(move || hub.catch_up_round())
                    .await
                    .unwrap_or(false)
            };
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(CATCH_UP_POLL) => {}
            }
        }
    }

    /// One pass over the unsynced watchers; true if some still have history to read.
    pub fn catch_up_round(&self) -> bool {
        let candidates: Vec<(WatcherKey, Arc<super::WatchFilter>, i64)> = {
            let s = self.state();
            s.unsynced
                .iter()
                .filter(|(_, w)| w.active)
                .map(|(k, w)| (*k, w.filter.clone(), w.next_rev))
                .collect()
        };
        if candidates.is_empty() {
            return false;
        }
        let view = match self.applier.read().expect("applier").store().read() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "watch catch-up cannot read the store");
                return false;
            }
        };
        let store_rev = view.current_revision();
        let mut more = false;
        for (key, filter, next_rev) in candidates {
            let read = view.events_with(
                &filter.key,
                &filter.range_end,
                next_rev,
                CATCH_UP_EVENTS,
                filter.prev_kv,
            );
            let mut s = self.state();
            let Some(w) = s.unsynced.get(&key) else {
                continue; // cancelled meanwhile
            };
            if w.next_rev != next_rev {
                continue;
            }
            let Some(outbox) = s.streams.get(&key.0).map(|e| e.outbox.clone()) else {
                s.unsynced.remove(&key);
                continue;
            };
            let events = match read {
                Err(MvccError::Compacted) => {
                    // The history it asked for is gone: tell it where history starts, and end
                    // the watch (etcd's compacted-watch response).
                    let resp = WatchResponse {
                        header: Some(self.header(store_rev)),
                        watch_id: key.1,
                        compact_revision: view.compact_revision(),
                        canceled: true,
                        cancel_reason: "etcdserver: mvcc: required revision has been compacted"
                            .to_string(),
                        ..Default::default()
                    };
                    if !matches!(outbox.try_send(vec![resp]), Err(Rejected::Full)) {
                        s.unsynced.remove(&key);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch catch-up read failed");
                    continue;
                }
                Ok(events) => events,
            };
            let complete = events.len() < CATCH_UP_EVENTS;
            let reached = if complete {
                store_rev
            } else {
                events
                    .last()
                    .and_then(|e| e.kv.as_ref())
                    .map_or(store_rev, |kv| kv.mod_revision)
            };
            let selected: Vec<_> = events.iter().filter_map(|e| filter.select(e)).collect();
            if !selected.is_empty() {
                let batch = self.responses(key.1, selected, reached, filter.fragment);
                match outbox.try_send(batch) {
                    Ok(()) => {}
                    Err(Rejected::Full) => continue, // still slow: next round
                    Err(Rejected::Closed) => {
                        s.unsynced.remove(&key);
                        continue;
                    }
                }
            }
            let Some(mut w) = s.unsynced.remove(&key) else {
                continue;
            };
            w.next_rev = w.next_rev.max(reached + 1);
            if w.next_rev > s.revision {
                // Everything up to the last notified revision is delivered: notify takes over.
                s.insert_synced(key, w);
            } else {
                s.unsynced.insert(key, w);
                more = true;
            }
        }
        more
    }
}

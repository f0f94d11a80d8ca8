//! What one watcher wants: a key or range, which event types, and whether with previous values.

use rampart_mvcc::{range_bounds, RangeSpec};
use rampart_proto::etcdserverpb::{watch_create_request::FilterType, WatchCreateRequest};
use rampart_proto::mvccpb::{event::EventType, Event};

#[derive(Debug, Clone)]
pub struct WatchFilter {
    pub key: Vec<u8>,
    /// Empty: the single key; `\0`: every key from `key` on; otherwise `[key, range_end)`.
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub fragment: bool,
    pub progress_notify: bool,
}

impl WatchFilter {
    pub fn from_request(req: &WatchCreateRequest) -> WatchFilter {
        // As etcd: an empty key means "\0", the smallest key.
        let key = if req.key.is_empty() {
            vec![0]
        } else {
            req.key.clone()
        };
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        WatchFilter {
            key,
            range_end: req.range_end.clone(),
            prev_kv: req.prev_kv,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            fragment: req.fragment,
            progress_notify: req.progress_notify,
        }
    }

    fn spec(&self) -> RangeSpec<'_> {
        range_bounds(&self.key, &self.range_end)
    }

    pub fn is_single_key(&self) -> bool {
        self.range_end.is_empty()
    }

    /// A range whose end is not after its start watches nothing; etcd refuses it.
    pub fn is_empty_range(&self) -> bool {
        matches!(self.spec(), RangeSpec::Between(k, e) if e <= k)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.spec().contains(key)
    }

    /// The event as this watcher receives it, or `None` if filtered out.
    pub fn select(&self, event: &Event) -> Option<Event> {
        let put = event.r#type == EventType::Put as i32;
        if (put && self.no_put) || (!put && self.no_delete) {
            return None;
        }
        let mut e = event.clone();
        if !self.prev_kv {
            e.prev_kv = None;
        }
        Some(e)
    }
}

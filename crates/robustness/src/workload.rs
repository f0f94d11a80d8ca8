//! The client workload: concurrent clients doing put, linearizable get, delete and
//! compare-and-set txns on a few keys, and watchers following every write, all over the v3 gRPC
//! API with mutual TLS. Each operation is recorded with its invoke and complete times; a write
//! that errs or times out is recorded as unknown (it may still have taken effect).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rampart_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::watch_client::WatchClient;
use rampart_proto::etcdserverpb::{
    request_op, watch_request, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use rampart_proto::mvccpb::event::EventType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::history::{
    EventKind, Nanos, Operation, Outcome, Request, Response, WatchEvent, WatchLog,
};

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub clients: usize,
    pub watchers: usize,
    pub keys: usize,
    /// Every key starts with this (watchers watch the whole prefix).
    pub prefix: String,
    /// A call without an answer after this long is given up on (outcome unknown).
    pub op_timeout: Duration,
    /// Pause between one client's operations (keeps the load bounded).
    pub think_time: Duration,
    /// Serve gets from the member's local state (etcd's serializable reads), which are allowed
    /// to be stale: only for showing that the checker catches stale reads.
    pub serializable_gets: bool,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 6,
            watchers: 2,
            keys: 5,
            prefix: "/robustness/".into(),
            op_timeout: Duration::from_secs(2),
            think_time: Duration::from_millis(5),
            serializable_gets: false,
        }
    }
}

impl WorkloadConfig {
    pub fn key(&self, k: usize) -> String {
        format!("{}k{k}", self.prefix)
    }
}

/// Collects operations from every client, timed against one clock.
pub struct Recorder {
    start: Instant,
    next_id: AtomicUsize,
    operations: Mutex<Vec<Operation>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            next_id: AtomicUsize::new(0),
            operations: Mutex::new(Vec::new()),
        })
    }

    pub fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    /// Runs one operation against `kv` and records it.
    pub async fn perform(
        &self,
        kv: &mut KvClient<Channel>,
        client: usize,
        key: &str,
        request: Request,
        config: &WorkloadConfig,
    ) -> Outcome {
        let invoked = self.now();
        let timeout = config.op_timeout;
        let call = execute(kv, key, &request, config.serializable_gets);
        let outcome = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Outcome::Ok(response),
            Ok(Err(status)) => Outcome::Unknown {
                error: format!("{:?}: {}", status.code(), status.message()),
            },
            Err(_) => Outcome::Unknown {
                error: format!("no answer within {timeout:?}"),
            },
        };
        let completed = self.now();
        let op = Operation {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            client,
            key: key.to_string(),
            request,
            invoked,
            completed,
            outcome: outcome.clone(),
        };
        self.operations.lock().expect("recorder lock").push(op);
        outcome
    }

    pub fn operations(&self) -> Vec<Operation> {
        let mut ops = self.operations.lock().expect("recorder lock").clone();
        ops.sort_by_key(|o| o.id);
        ops
    }
}

async fn execute(
    kv: &mut KvClient<Channel>,
    key: &str,
    request: &Request,
    serializable: bool,
) -> Result<Response, tonic::Status> {
    let key_bytes = key.as_bytes().to_vec();
    let header_revision =
        |h: Option<rampart_proto::etcdserverpb::ResponseHeader>| h.map(|h| h.revision).unwrap_or(0);
    Ok(match request {
        Request::Put { value } => {
            let r = kv
                .put(PutRequest {
                    key: key_bytes,
                    value: value.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Put {
                revision: header_revision(r.header),
            }
        }
        Request::Get => {
            let r = kv
                .range(RangeRequest {
                    key: key_bytes,
                    serializable,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let kv = r.kvs.first();
            Response::Get {
                value: kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                mod_revision: kv.map(|kv| kv.mod_revision).unwrap_or(0),
            }
        }
        Request::Delete => {
            let r = kv
                .delete_range(DeleteRangeRequest {
                    key: key_bytes,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Delete {
                deleted: r.deleted > 0,
                revision: header_revision(r.header),
            }
        }
        Request::CompareAndSet { expected, value } => {
            let r = kv
                .txn(TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        key: key_bytes.clone(),
                        target_union: Some(TargetUnion::Value(expected.as_bytes().to_vec())),
                        ..Default::default()
                    }],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key_bytes,
                            value: value.as_bytes().to_vec(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![],
                })
                .await?
                .into_inner();
            Response::CompareAndSet {
                succeeded: r.succeeded,
                revision: header_revision(r.header),
            }
        }
    })
}

/// One client: random operations on random keys until `stop`, moving to the next member after
/// an error (as etcd's client balancer does).
pub async fn run_client(
    client: usize,
    channels: Vec<Channel>,
    config: WorkloadConfig,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut member = client % channels.len();
    let mut kv = KvClient::new(channels[member].clone());
    // The last value this client saw for each key (what its CAS expects).
    let mut last_seen: Vec<Option<String>> = vec![None; config.keys];
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = rng.random_range(0..config.keys);
        let key = config.key(k);
        seq += 1;
        let fresh = format!("c{client}-{seq}");
        let roll = rng.random_range(0..100);
        let request = match (roll, &last_seen[k]) {
            (0..35, _) => Request::Get,
            (35..45, _) => Request::Delete,
            (45..65, Some(expected)) => Request::CompareAndSet {
                expected: expected.clone(),
                value: fresh,
            },
            _ => Request::Put { value: fresh },
        };
        let outcome = recorder
            .perform(&mut kv, client, &key, request.clone(), &config)
            .await;
        match outcome {
            Outcome::Ok(Response::Get { value, .. }) => last_seen[k] = value,
            Outcome::Ok(Response::Delete { .. }) => last_seen[k] = None,
            Outcome::Ok(Response::CompareAndSet {
                succeeded: false, ..
            }) => {}
            Outcome::Ok(_) => last_seen[k] = request.written_value().map(str::to_string),
            Outcome::Unknown { .. } => {
                member = (member + 1) % channels.len();
                kv = KvClient::new(channels[member].clone());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(config.think_time).await;
    }
}

/// The end of the range of keys that start with `prefix` (etcd's prefix range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// How long a watcher waits for one message before it checks whether to stop.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// When a watcher stops: once `stop` is set and it has seen `until_revision` (set with it), or
/// `grace` after `stop` at the latest.
pub struct WatchStop {
    pub stop: Arc<AtomicBool>,
    pub until_revision: Arc<std::sync::atomic::AtomicI64>,
    pub grace: Duration,
}

/// Follows every write under `prefix` from `start_revision`, through member `first_member`,
/// moving to another member and resuming after the last event whenever the stream breaks.
pub async fn run_watcher(
    watcher: usize,
    channels: Vec<Channel>,
    first_member: usize,
    prefix: String,
    start_revision: i64,
    until: WatchStop,
) -> WatchLog {
    let mut log = WatchLog {
        watcher,
        member: first_member,
        start_revision,
        events: Vec::new(),
    };
    let mut member = first_member;
    let mut stopping_since: Option<Instant> = None;
    let mut next_revision = start_revision;
    'reconnect: loop {
        let mut client = WatchClient::new(channels[member].clone());
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(&prefix),
                    start_revision: next_revision,
                    ..Default::default()
                },
            )),
        };
        // The request stream stays open: closing it would end the watch.
        let requests = futures::stream::iter([create]).chain(futures::stream::pending());
        let opened = tokio::time::timeout(Duration::from_secs(2), client.watch(requests)).await;
        let mut stream = match opened {
            Ok(Ok(s)) => Some(s.into_inner()),
            _ => None,
        };
        loop {
            if until.stop.load(Ordering::Relaxed) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                let target = until.until_revision.load(Ordering::Relaxed);
                if next_revision > target || since.elapsed() > until.grace {
                    return log;
                }
            }
            let Some(s) = stream.as_mut() else {
                member = (member + 1) % channels.len();
                tokio::time::sleep(WATCH_POLL).await;
                continue 'reconnect;
            };
            let message = match tokio::time::timeout(WATCH_POLL, s.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(m))) => m,
                Ok(_) => {
                    stream = None;
                    continue;
                }
            };
            if message.canceled || message.compact_revision != 0 {
                stream = None;
                continue;
            }
            for event in message.events {
                let Some(kv) = event.kv else { continue };
                let kind = if event.r#type == EventType::Delete as i32 {
                    EventKind::Delete
                } else {
                    EventKind::Put
                };
                next_revision = next_revision.max(kv.mod_revision + 1);
                log.events.push(WatchEvent {
                    kind,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                    revision: kv.mod_revision,
                });
            }
        }
    }
}

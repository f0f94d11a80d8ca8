//! `rampart bench`: a load generator in the style of etcd's `benchmark` tool, over the v3 API so
//! it measures etcd as well as Rampart. Workloads: `put`, `range`, `txn-put`, `watch` (event
//! latency), `lease-keepalive`. Requests are spread over `--conns` connections and `--clients`
//! concurrent callers, bounded by `--total` or `--duration`, optionally paced by `--rate`.

mod pacer;
mod report;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use rampart_proto::etcdserverpb as pb;
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use crate::exit::{CtlError, CtlResult};
use crate::gofmt;
use crate::v3::client::Client;
use crate::v3::global::{ConnSettings, GlobalFlags};
use pacer::Pacer;
use report::Report;

#[derive(Parser, Debug)]
#[command(
    name = "rampart bench",
    about = "Load generator for etcd-compatible clusters (v3 API)"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(flatten)]
    load: LoadFlags,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Args, Debug, Clone)]
struct LoadFlags {
    /// Total number of gRPC connections
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Total number of concurrent clients
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Total number of requests (ignored with --duration)
    #[arg(long, global = true, default_value_t = 10000)]
    total: u64,
    /// Run for this long instead of --total requests (e.g. 30s)
    #[arg(long, global = true)]
    duration: Option<String>,
    /// Key size of a request
    #[arg(long, global = true, default_value_t = 8)]
    key_size: usize,
    /// Value size of a put request
    #[arg(long, global = true, default_value_t = 8)]
    val_size: usize,
    /// Maximum possible keys
    #[arg(long, global = true, default_value_t = 1)]
    key_space_size: u64,
    /// Use sequential keys
    #[arg(long, global = true)]
    sequential_keys: bool,
    /// Send requests only to the leader
    #[arg(long, global = true)]
    target_leader: bool,
    /// Maximum requests per second (0 is no limit)
    #[arg(long, global = true, default_value_t = 0)]
    rate: u64,
    /// Print the result as one JSON object
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// Benchmark put
    Put,
    /// Benchmark range of a key
    Range {
        /// Linearizable(l) or Serializable(s)
        #[arg(long, default_value = "l")]
        consistency: String,
        /// The key to read
        #[arg(value_name = "KEY", default_value = "bench-key")]
        range_key: String,
    },
    /// Benchmark put through txn
    TxnPut {
        /// Number of puts per txn
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Benchmark watch: latency from a put's acknowledgement to each watcher's event
    Watch {
        /// Watchers (over the --conns connections)
        #[arg(long, default_value_t = 100)]
        watchers: usize,
    },
    /// Benchmark lease keep-alive round trips
    LeaseKeepalive,
}

/// Runs `rampart bench ...`.
pub async fn run(args: Vec<OsString>) -> CtlResult {
    let cli = Cli::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        CtlError::silent(crate::ExitCode::BadArgs)
    })?;
    let settings = cli.global.settings()?;
    let load = cli.load.clone();
    let duration = match &load.duration {
        Some(d) => Some(gofmt::parse_duration(d).map_err(CtlError::bad_args)?),
        None => None,
    };
    let conns = connect(&settings, load.conns.max(1), load.target_leader).await?;
    let (name, report) = match &cli.workload {
        Workload::Put => ("put", requests(&conns, &load, duration, Op::Put).await),
        Workload::Range {
            consistency,
            range_key: key,
        } => {
            let serializable = match consistency.as_str() {
                "s" => true,
                "l" => false,
                other => {
                    return Err(CtlError::bad_args(format!(
                        "unknown consistency flag {other:?}"
                    )))
                }
            };
            (
                "range",
                requests(
                    &conns,
                    &load,
                    duration,
                    Op::Range {
                        key: key.clone(),
                        serializable,
                    },
                )
                .await,
            )
        }
        Workload::TxnPut { txn_ops } => (
            "txn-put",
            requests(&conns, &load, duration, Op::TxnPut(*txn_ops)).await,
        ),
        Workload::LeaseKeepalive => (
            "lease-keepalive",
            keepalives(&conns, &load, duration).await?,
        ),
        Workload::Watch { watchers } => (
            "watch",
            watch_latency(&conns, &load, duration, *watchers).await?,
        ),
    };
    if load.json {
        println!("{}", report.json(name, load.clients));
    } else {
        print!("{}", report.text(name));
    }
    Ok(())
}

/// `conns` connections to the endpoints in turn (or to the leader only).
async fn connect(
    settings: &ConnSettings,
    conns: usize,
    target_leader: bool,
) -> CtlResult<Vec<Client>> {
    let mut endpoints = settings.endpoints.clone();
    if target_leader {
        let mut leader = None;
        for ep in &settings.endpoints {
            let c = Client::connect_one(settings, ep).await?;
            let s = c.call(c.maintenance().status(pb::StatusRequest {})).await?;
            if s.header.as_ref().map(|h| h.member_id) == Some(s.leader) {
                leader = Some(ep.clone());
                break;
            }
        }
        endpoints = vec![leader.ok_or_else(|| CtlError::error("no leader among --endpoints"))?];
    }
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns {
        out.push(Client::connect_one(settings, &endpoints[i % endpoints.len()]).await?);
    }
    Ok(out)
}

#[derive(Clone)]
enum Op {
    Put,
    Range { key: String, serializable: bool },
    TxnPut(usize),
}

/// The n-th key: sequential or random in the key space, padded to the key size.
fn key(n: u64, load: &LoadFlags) -> Vec<u8> {
    let space = load.key_space_size.max(1);
    let k = if load.sequential_keys {
        n % space
    } else {
        rand::random::<u64>() % space
    };
    let mut key = k.to_be_bytes().to_vec();
    key.resize(load.key_size.max(8), 0);
    key
}

fn progress(total: Option<u64>) -> indicatif::ProgressBar {
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Collects latencies and errors from the callers.
type Sink = Arc<Mutex<Report>>;

async fn record(sink: &Sink, started: Instant, result: CtlResult) {
    let mut r = sink.lock().await;
    match result {
        Ok(()) => r.latencies.push(started.elapsed()),
        Err(e) => *r.errors.entry(e.message).or_default() += 1,
    }
}

async fn one_request(c: &Client, op: &Op, n: u64, load: &LoadFlags, value: &[u8]) -> CtlResult {
    match op {
        Op::Put => c
            .call(c.kv().put(pb::PutRequest {
                key: key(n, load),
                value: value.to_vec(),
                ..Default::default()
            }))
            .await
            .map(|_| ()),
        Op::Range { key, serializable } => c
            .call(c.kv().range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                serializable: *serializable,
                ..Default::default()
            }))
            .await
            .map(|_| ()),
        Op::TxnPut(ops) => {
            // Distinct keys within one txn (etcd refuses duplicates): consecutive from a base.
            let space = load.key_space_size.max(*ops as u64);
            let base = if load.sequential_keys {
                n * *ops as u64
            } else {
                rand::random::<u64>()
            };
            let success = (0..*ops as u64)
                .map(|i| pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: {
                            let mut k = (base.wrapping_add(i) % space).to_be_bytes().to_vec();
                            k.resize(load.key_size.max(8), 0);
                            k
                        },
                        value: value.to_vec(),
                        ..Default::default()
                    })),
                })
                .collect();
            c.call(c.kv().txn(pb::TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            }))
            .await
            .map(|_| ())
        }
    }
}

async fn requests(
    conns: &[Client],
    load: &LoadFlags,
    duration: Option<Duration>,
    op: Op,
) -> Report {
    let pacer = Arc::new(Pacer::new(load.rate, load.total, duration));
    let sink: Sink = Arc::default();
    let bar = progress(duration.is_none().then_some(load.total));
    let value = vec![b'v'; load.val_size];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..load.clients.max(1) {
        let c = conns[i % conns.len()].clone();
        let (pacer, sink, bar, op, load, value) = (
            pacer.clone(),
            sink.clone(),
            bar.clone(),
            op.clone(),
            load.clone(),
            value.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(n) = pacer.take().await {
                let t = Instant::now();
                let r = one_request(&c, &op, n, &load, &value).await;
                record(&sink, t, r).await;
                bar.inc(1);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    bar.finish_and_clear();
    let mut report = std::mem::take(&mut *sink.lock().await);
    report.elapsed = start.elapsed();
    report
}

/// Each client holds a lease and renews it on its own keep-alive stream, one at a time.
async fn keepalives(
    conns: &[Client],
    load: &LoadFlags,
    duration: Option<Duration>,
) -> CtlResult<Report> {
    let pacer = Arc::new(Pacer::new(load.rate, load.total, duration));
    let sink: Sink = Arc::default();
    let bar = progress(duration.is_none().then_some(load.total));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..load.clients.max(1) {
        let c = conns[i % conns.len()].clone();
        let grant = c
            .call(
                c.lease()
                    .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 }),
            )
            .await?;
        let (pacer, sink, bar) = (pacer.clone(), sink.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            // grpc-go servers answer the call's headers with the first response, so the first
            // keep-alive goes out before the call is awaited.
            let Some(_) = pacer.take().await else { return };
            let mut t = Instant::now();
            let _ = tx.send(pb::LeaseKeepAliveRequest { id: grant.id });
            let Ok(resp) = c
                .lease()
                .lease_keep_alive(UnboundedReceiverStream::new(rx))
                .await
            else {
                return;
            };
            let mut stream = resp.into_inner();
            let mut first = true;
            while first || pacer.take().await.is_some() {
                if !first {
                    t = Instant::now();
                    let _ = tx.send(pb::LeaseKeepAliveRequest { id: grant.id });
                }
                first = false;
                let r = match stream.next().await {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(s)) => Err(CtlError::error(s.message().to_string())),
                    None => Err(CtlError::error("keep-alive stream ended")),
                };
                let failed = r.is_err();
                record(&sink, t, r).await;
                bar.inc(1);
                if failed {
                    break;
                }
            }
            let _ = c
                .call(
                    c.lease()
                        .lease_revoke(pb::LeaseRevokeRequest { id: grant.id }),
                )
                .await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    bar.finish_and_clear();
    let mut report = std::mem::take(&mut *sink.lock().await);
    report.elapsed = start.elapsed();
    Ok(report)
}

/// `watchers` watch one key; puts go to it one at a time; each event's latency is measured from
/// the moment its put was sent.
async fn watch_latency(
    conns: &[Client],
    load: &LoadFlags,
    duration: Option<Duration>,
    watchers: usize,
) -> CtlResult<Report> {
    let key = b"bench-watch-key".to_vec();
    let sent: Arc<Mutex<std::collections::HashMap<i64, Instant>>> = Arc::default();
    // (revision, arrival) of every event; joined with the send times at the end, since an event
    // can arrive before its put's acknowledgement.
    let arrivals: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let sink: Sink = Arc::default();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let mut streams = Vec::new();
    for i in 0..watchers.max(1) {
        let c = conns[i % conns.len()].clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.clone(),
                    ..Default::default()
                },
            )),
        });
        let mut stream = c
            .watch()
            .watch(UnboundedReceiverStream::new(rx))
            .await
            .map_err(|s| CtlError::error(s.message().to_string()))?
            .into_inner();
        let (arrivals, ready) = (arrivals.clone(), ready_tx.clone());
        streams.push(tokio::spawn(async move {
            let _keep = tx;
            while let Some(Ok(w)) = stream.next().await {
                if w.created {
                    let _ = ready.send(());
                }
                let now = Instant::now();
                let mut a = arrivals.lock().await;
                for ev in &w.events {
                    a.push((ev.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0), now));
                }
            }
        }));
    }
    for _ in 0..watchers.max(1) {
        ready_rx.recv().await;
    }
    let pacer = Pacer::new(load.rate, load.total, duration);
    let bar = progress(duration.is_none().then_some(load.total));
    let value = vec![b'v'; load.val_size];
    let start = Instant::now();
    let c = &conns[0];
    while pacer.take().await.is_some() {
        let t = Instant::now();
        match c
            .call(c.kv().put(pb::PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            }))
            .await
        {
            Ok(r) => {
                let rev = r.header.map(|h| h.revision).unwrap_or(0);
                sent.lock().await.insert(rev, t);
            }
            Err(e) => *sink.lock().await.errors.entry(e.message).or_default() += 1,
        }
        bar.inc(1);
    }
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    bar.finish_and_clear();
    for s in streams {
        s.abort();
    }
    let mut report = std::mem::take(&mut *sink.lock().await);
    let sent = sent.lock().await;
    for (rev, at) in arrivals.lock().await.iter() {
        if let Some(t) = sent.get(rev) {
            report.latencies.push(at.saturating_duration_since(*t));
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

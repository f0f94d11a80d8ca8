//! One checked history, from a fresh cluster to a verdict: start the cluster, run clients and
//! watchers while nemeses strike, stop the clients, kill and restart every member, read every key
//! and replay every revision, then check the whole history. Both entry points (the short run in
//! the test suite and `scripts/torture.sh`) are loops over [`run_history`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_proto::etcdserverpb::kv_client::KvClient;
use rampart_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rampart_proto::etcdserverpb::{RangeRequest, StatusRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::harness::cluster::{Cluster, ClusterConfig};
use crate::harness::nemesis::{inject, restart_all, Nemesis};
use crate::harness::HarnessError;
use crate::history::{History, HistoryFileError, Outcome, Request};
use crate::report::{check_history, save_failure, unavailability_window, Findings, Summary};
use crate::workload::{prefix_end, run_client, run_watcher, Recorder, WatchStop, WorkloadConfig};

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub members: usize,
    pub workload: WorkloadConfig,
    /// How long clients run in one history.
    pub history_duration: Duration,
    /// The nemeses to draw from (none: a fault-free history).
    pub nemeses: Vec<Nemesis>,
    /// Take the nemeses in their order instead of at random (a short run covers each).
    pub round_robin: bool,
    /// How long a nemesis holds (drawn uniformly from this range).
    pub hold: (Duration, Duration),
    /// Quiet time between two nemeses.
    pub gap: Duration,
    pub seed: u64,
    pub rampart: PathBuf,
    /// Cluster directories and failing histories go under this.
    pub work_dir: PathBuf,
    pub namespaces: bool,
    pub max_steps_per_key: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    HistoryFile(#[from] HistoryFileError),
    #[error("{what}: {detail}")]
    Stuck { what: String, detail: String },
}

/// One history's record and verdict.
pub struct HistoryRun {
    pub history: History,
    pub findings: Findings,
    pub leader_changes: u64,
    pub nemeses: Vec<String>,
    /// Where the history was saved when it failed a check.
    pub saved: Option<PathBuf>,
}

/// How long the cluster may take to answer again after the final restart of all members.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long watchers and the replay may take to reach the final revision.
const CATCH_UP_GRACE: Duration = Duration::from_secs(20);
/// Tries of each final read (a read that fails says nothing, so it is simply repeated).
const FINAL_READ_TRIES: usize = 20;
/// How often the leader monitor asks every member for its status.
const LEADER_POLL: Duration = Duration::from_millis(250);

/// Runs one history (`index` names its directory and seeds its randomness).
pub async fn run_history(config: &RunConfig, index: usize) -> Result<HistoryRun, RunError> {
    let dir = config.work_dir.join(format!("history-{index}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = Cluster::start(ClusterConfig {
        members: config.members,
        rampart: config.rampart.clone(),
        dir: dir.clone(),
        namespaces: config.namespaces,
    })
    .await?;
    if index == 0 {
        eprintln!("robustness: members on {}", cluster.network.describe());
        match cluster.network.netem_available() {
            Ok(()) => eprintln!("robustness: tc netem works here; delay and loss still go through the relays so every network behaves alike"),
            Err(why) => eprintln!("robustness: tc netem is not usable ({why}); delay and loss go through the relays"),
        }
    }
    cluster.wait_healthy(RECOVERY_TIMEOUT).await?;
    let channels: Vec<Channel> = (0..cluster.len()).map(|i| cluster.channel(i)).collect();
    let seed = config.seed.wrapping_add(index as u64 * 1_000_003);
    let mut rng = StdRng::seed_from_u64(seed);
    let recorder = Recorder::new();

    let clients_stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..config.workload.clients)
        .map(|c| {
            tokio::spawn(run_client(
                c,
                channels.clone(),
                config.workload.clone(),
                recorder.clone(),
                clients_stop.clone(),
                seed ^ (c as u64 + 1),
            ))
        })
        .collect();
    let watchers_stop = WatchStopHandle::new();
    let watchers: Vec<_> = (0..config.workload.watchers)
        .map(|w| {
            tokio::spawn(run_watcher(
                w,
                channels.clone(),
                w % channels.len(),
                config.workload.prefix.clone(),
                1,
                watchers_stop.for_watcher(),
            ))
        })
        .collect();
    let monitor_stop = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(monitor_leaders(channels.clone(), monitor_stop.clone()));

    let mut nemeses = Vec::new();
    let deadline = Instant::now() + config.history_duration;
    while !config.nemeses.is_empty() && Instant::now() + config.gap < deadline {
        tokio::time::sleep(config.gap).await;
        let nemesis = if config.round_robin {
            config.nemeses[nemeses.len() % config.nemeses.len()]
        } else {
            config.nemeses[rng.random_range(0..config.nemeses.len())]
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let hold = rng.random_range(config.hold.0..=config.hold.1).min(left);
        // Whole milliseconds, so the log reads well.
        let hold = Duration::from_millis(hold.as_millis() as u64);
        let at = recorder.now() as f64 / 1e9;
        let what = inject(&mut cluster, nemesis, hold, &mut rng).await?;
        nemeses.push(format!("{at:.1}s {what}"));
    }
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
    clients_stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let workload_ended = recorder.now();
    monitor_stop.store(true, Ordering::Relaxed);
    let leader_changes = monitor.await.unwrap_or(0);

    // Durability: everything acknowledged must survive every member crashing at once.
    cluster.faults.heal_all();
    restart_all(&mut cluster)?;
    cluster.wait_healthy(RECOVERY_TIMEOUT).await?;
    final_reads(&recorder, &channels, &config.workload).await;
    let revision = current_revision(&channels, &config.workload.prefix).await?;
    watchers_stop.finish(revision);
    let mut watches = Vec::new();
    for w in watchers {
        if let Ok(log) = w.await {
            watches.push(log);
        }
    }
    let replay = run_watcher(
        config.workload.watchers,
        channels.clone(),
        0,
        config.workload.prefix.clone(),
        1,
        watchers_stop.for_watcher(),
    )
    .await;
    if replay.events.last().map(|e| e.revision).unwrap_or(0) < revision {
        return Err(RunError::Stuck {
            what: "the replay after restart".into(),
            detail: format!(
                "reached revision {:?} of {revision} within {CATCH_UP_GRACE:?}; logs in {}",
                replay.events.last().map(|e| e.revision),
                dir.display()
            ),
        });
    }
    let history = History {
        operations: recorder.operations(),
        watches,
        replay_after_restart: Some(replay),
        workload_ended: Some(workload_ended),
    };
    let max_steps = config.max_steps_per_key;
    let checked = history.clone();
    let findings = tokio::task::spawn_blocking(move || check_history(&checked, max_steps))
        .await
        .expect("the checker does not panic");
    drop(cluster);
    let saved = if findings.is_clean() {
        let _ = std::fs::remove_dir_all(&dir);
        None
    } else {
        // The cluster directory (member logs, data) stays next to the history.
        Some(save_failure(&dir, "failed", &history, &findings)?)
    };
    Ok(HistoryRun {
        history,
        findings,
        leader_changes,
        nemeses,
        saved,
    })
}

/// Runs histories one after another until `total` has passed (at least one; the last one may end
/// up to one history later), adding each to the
/// summary and printing a line per history; a failing history's findings are printed in full.
pub async fn run_for(config: &RunConfig, total: Duration) -> Result<Summary, RunError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut index = 0;
    loop {
        let run = run_history(config, index).await?;
        summary.add(&run.history, &run.findings, run.leader_changes);
        summary.nemeses_applied += run.nemeses.len();
        let (unavailable, from) = unavailability_window(&run.history);
        eprintln!(
            "history {index}: {} operations, {} anomalies, {} leader changes, longest unavailability {:.1}s from {:.1}s; nemeses: {}",
            run.history.operations.len(),
            run.findings.anomaly_count(),
            run.leader_changes,
            unavailable.as_secs_f64(),
            from as f64 / 1e9,
            if run.nemeses.is_empty() {
                "none".to_string()
            } else {
                run.nemeses.join("; ")
            }
        );
        if let Some(path) = run.saved {
            eprintln!("{}", run.findings);
            summary.failures.push(path);
        }
        index += 1;
        summary.elapsed = started.elapsed();
        if summary.elapsed >= total {
            return Ok(summary);
        }
    }
}

/// Stops the watchers once they have seen the final revision.
struct WatchStopHandle {
    stop: Arc<AtomicBool>,
    until: Arc<AtomicI64>,
}

impl WatchStopHandle {
    fn new() -> WatchStopHandle {
        WatchStopHandle {
            stop: Arc::new(AtomicBool::new(false)),
            until: Arc::new(AtomicI64::new(i64::MAX)),
        }
    }

    fn for_watcher(&self) -> WatchStop {
        WatchStop {
            stop: self.stop.clone(),
            until_revision: self.until.clone(),
            grace: CATCH_UP_GRACE,
        }
    }

    fn finish(&self, revision: i64) {
        self.until.store(revision, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Counts leader changes: the distinct (term, leader) pairs members report, less the first.
async fn monitor_leaders(channels: Vec<Channel>, stop: Arc<AtomicBool>) -> u64 {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        for channel in &channels {
            let mut client = MaintenanceClient::new(channel.clone());
            let call = client.status(StatusRequest {});
            if let Ok(Ok(status)) = tokio::time::timeout(LEADER_POLL * 2, call).await {
                let status = status.into_inner();
                if status.leader != 0 {
                    seen.insert((status.raft_term, status.leader));
                }
            }
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
    seen.len().saturating_sub(1) as u64
}

/// A linearizable read of every key after the restart, recorded like any other operation.
async fn final_reads(recorder: &Recorder, channels: &[Channel], workload: &WorkloadConfig) {
    let reader = workload.clients;
    for k in 0..workload.keys {
        for attempt in 0..FINAL_READ_TRIES {
            let mut kv = KvClient::new(channels[attempt % channels.len()].clone());
            let key = workload.key(k);
            let outcome = recorder
                .perform(&mut kv, reader, &key, Request::Get, workload)
                .await;
            if matches!(outcome, Outcome::Ok(_)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The cluster's revision now, from a linearizable range of the workload's prefix.
async fn current_revision(channels: &[Channel], prefix: &str) -> Result<i64, RunError> {
    let mut last_error = String::new();
    for attempt in 0..FINAL_READ_TRIES {
        let mut kv = KvClient::new(channels[attempt % channels.len()].clone());
        let call = kv.range(RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
            count_only: true,
            ..Default::default()
        });
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(r)) => return Ok(r.into_inner().header.map(|h| h.revision).unwrap_or(0)),
            Ok(Err(status)) => last_error = status.to_string(),
            Err(_) => last_error = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(RunError::Stuck {
        what: "reading the revision after the restart".into(),
        detail: last_error,
    })
}

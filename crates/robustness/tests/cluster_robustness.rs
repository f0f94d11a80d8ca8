//! The short robustness run of the test suite: one fresh 3-member cluster (in network namespaces
//! where the machine allows it), clients and watchers for 15 seconds while kill -9, pause,
//! isolation, split and delay/loss nemeses strike, then every member killed and restarted, and
//! the history checked for linearizability, watch order and durability.

use std::time::{Duration, Instant};

use rampart_robustness::harness::default_rampart_binary;
use rampart_robustness::harness::nemesis::Nemesis;
use rampart_robustness::linearizability::DEFAULT_MAX_STEPS_PER_KEY;
use rampart_robustness::run::{run_for, RunConfig};
use rampart_robustness::workload::WorkloadConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_robustness_short_run_finds_no_anomaly() {
    let work_dir = tempfile::Builder::new()
        .prefix("rampart-robustness-")
        .tempdir()
        .unwrap();
    let config = RunConfig {
        members: 3,
        workload: WorkloadConfig {
            clients: 4,
            watchers: 2,
            ..WorkloadConfig::default()
        },
        history_duration: Duration::from_secs(15),
        nemeses: vec![
            Nemesis::KillRestart,
            Nemesis::Pause,
            Nemesis::IsolateLeader,
            Nemesis::SplitMajorityMinority,
            Nemesis::DelayLoss,
        ],
        round_robin: true,
        hold: (Duration::from_millis(1500), Duration::from_millis(2500)),
        gap: Duration::from_secs(1),
        seed: 4,
        rampart: default_rampart_binary(),
        work_dir: work_dir.path().to_path_buf(),
        namespaces: true,
        max_steps_per_key: DEFAULT_MAX_STEPS_PER_KEY,
    };
    let started = Instant::now();
    let summary = run_for(&config, Duration::ZERO).await.expect("run");
    println!("{summary}\n(took {:.1}s)", started.elapsed().as_secs_f64());
    assert_eq!(summary.histories_checked, 1);
    // Taken in order: kill, pause, isolate-leader, split, delay-loss all fit in 15 s.
    assert!(summary.nemeses_applied >= 5, "{summary}");
    assert!(
        summary.operations > 100,
        "too little load to mean anything:\n{summary}"
    );
    if summary.anomalies > 0 || summary.acknowledged_writes_lost > 0 || summary.undecided_keys > 0 {
        // Keep the failing history and member logs for whoever reads the CI log.
        let kept = work_dir.keep();
        panic!("{summary}\nfiles kept in {}", kept.display());
    }
}

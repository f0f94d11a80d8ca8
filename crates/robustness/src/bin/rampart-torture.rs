//! Long robustness runs (`scripts/torture.sh` calls this): fresh clusters one after another,
//! each under random nemeses, every history checked; ends with the summary table and exits 1 if
//! anything was found.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rampart_robustness::harness::default_rampart_binary;
use rampart_robustness::harness::nemesis::{Nemesis, ALL_NEMESES};
use rampart_robustness::linearizability::DEFAULT_MAX_STEPS_PER_KEY;
use rampart_robustness::run::{run_for, RunConfig};
use rampart_robustness::workload::WorkloadConfig;

#[derive(Parser)]
#[command(about = "Fault injection against real rampart clusters, with every history checked")]
struct Args {
    /// Total time, e.g. 10m, 90s.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Client time of each history (each starts a fresh cluster).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    history: Duration,
    #[arg(long, default_value_t = 3)]
    members: usize,
    #[arg(long, default_value_t = 6)]
    clients: usize,
    #[arg(long, default_value_t = 2)]
    watchers: usize,
    #[arg(long, default_value_t = 5)]
    keys: usize,
    /// Comma-separated nemeses, `all` or `none`.
    #[arg(long, default_value = "all")]
    nemeses: String,
    /// Seeds the choice of nemeses, members and operations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The rampart binary (default: the one built next to this program).
    #[arg(long)]
    rampart: Option<PathBuf>,
    /// Where cluster directories and failing histories go.
    #[arg(long, default_value = "target/torture")]
    out: PathBuf,
    /// Run members on loopback even where network namespaces are available.
    #[arg(long)]
    no_netns: bool,
    /// Weaken gets to serializable (local, possibly stale) reads on purpose, to see the checker
    /// report the stale reads this allows.
    #[arg(long)]
    serializable_gets: bool,
    /// Check a saved history (a `*.history.json` a failing run wrote) again and explain it.
    #[arg(long)]
    check: Option<PathBuf>,
    /// Instead of clusters, run the consensus simulation for this many seeds from --seed
    /// (a failing seed is printed; rerun it with --simulate 1 --seed N to replay it exactly).
    #[arg(long, default_value_t = 0)]
    simulate: u64,
}

/// Checks a saved history, prints the findings, and exits 0 if it is clean.
fn check_saved(path: &std::path::Path) -> ! {
    let history = match rampart_robustness::history::History::load(path) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("rampart-torture: {e}");
            std::process::exit(2);
        }
    };
    let findings = rampart_robustness::report::check_history(&history, DEFAULT_MAX_STEPS_PER_KEY);
    print!("{findings}");
    println!(
        "{} operations, {} watch logs: {} anomalies, {} undecided keys",
        history.operations.len(),
        history.watches.len(),
        findings.anomaly_count(),
        findings.undecided_count()
    );
    std::process::exit(if findings.is_clean() { 0 } else { 1 });
}

/// Runs the deterministic simulation for `count` seeds; exits 1 on the first failure.
fn simulate_seeds(first: u64, count: u64, members: usize) {
    use rampart_robustness::simulation::{simulate, SimConfig};
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let (mut committed, mut crashes, mut partitions) = (0, 0, 0);
    for seed in first..first + count {
        let dir = tempfile::tempdir_in(&base).expect("a directory for the simulated WALs");
        let config = SimConfig {
            members,
            seed,
            ..SimConfig::default()
        };
        match simulate(&config, dir.path()) {
            Ok(r) => {
                committed += r.committed_index;
                crashes += r.crashes;
                partitions += r.partitions;
            }
            Err(e) => {
                eprintln!("rampart-torture: simulation failed: {e}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "simulated {count} seeds ({first}..{}), {members} members: 0 failures; {committed} entries committed, {crashes} crashes, {partitions} partitions",
        first + count - 1
    );
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m or h)"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: the unit must be s, m or h")),
    }
}

fn parse_nemeses(s: &str) -> Result<Vec<Nemesis>, String> {
    match s {
        "all" => Ok(ALL_NEMESES.to_vec()),
        "none" => Ok(Vec::new()),
        list => list.split(',').map(|n| n.trim().parse()).collect(),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(path) = &args.check {
        check_saved(path);
    }
    if args.simulate > 0 {
        simulate_seeds(args.seed, args.simulate, args.members);
        return;
    }
    let nemeses = match parse_nemeses(&args.nemeses) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("rampart-torture: --nemeses: {e}");
            std::process::exit(2);
        }
    };
    let config = RunConfig {
        members: args.members,
        workload: WorkloadConfig {
            clients: args.clients,
            watchers: args.watchers,
            keys: args.keys,
            serializable_gets: args.serializable_gets,
            ..WorkloadConfig::default()
        },
        history_duration: args.history,
        nemeses,
        round_robin: false,
        hold: (Duration::from_secs(1), Duration::from_secs(5)),
        gap: Duration::from_secs(2),
        seed: args.seed,
        rampart: args.rampart.unwrap_or_else(default_rampart_binary),
        work_dir: args.out,
        namespaces: !args.no_netns,
        max_steps_per_key: DEFAULT_MAX_STEPS_PER_KEY,
    };
    // Ctrl-C drops the run, and with it the cluster: members are killed, namespaces removed.
    let outcome = tokio::select! {
        outcome = run_for(&config, args.duration) => Some(outcome),
        _ = tokio::signal::ctrl_c() => None,
    };
    // Here the run's future, and so its cluster, has been dropped.
    let Some(outcome) = outcome else {
        eprintln!("rampart-torture: interrupted; members stopped and namespaces removed");
        std::process::exit(130);
    };
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            if summary.anomalies > 0
                || summary.acknowledged_writes_lost > 0
                || summary.undecided_keys > 0
            {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("rampart-torture: {e}");
            std::process::exit(1);
        }
    }
}

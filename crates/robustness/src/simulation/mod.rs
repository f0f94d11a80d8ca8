//! A deterministic simulation of the consensus layer: N members ([`node`]: raft-rs's `RawNode`
//! over Rampart's `RaftStorage` and WAL) exchanging messages over a seeded in-memory bus that
//! drops, delays and reorders them, while the seed also decides partitions, crashes (some in the
//! middle of a `Ready`, before the fsync) and restarts. Everything random comes from the seed,
//! so a failing seed replays the same run exactly.
//!
//! Checked: every member applies the same entry at the same index (state machine safety), no
//! entry once applied anywhere is later replaced (committed entries survive crashes), and once
//! the faults stop, a new proposal commits on every member within a bounded number of steps.
//!
//! Not simulated: the gRPC peer transport and the server's apply loop (the real Raft loop owns a
//! thread and a wall clock; see [`node`]). Those run for real in the cluster harness.

pub mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use raft::eraftpb::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use node::{Applied, SimNode};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("raft/WAL error: {0}")]
    Raft(String),
    #[error("seed {seed}, step {step}: member {member} applied {got:?} at index {index}, but {expected:?} was applied there before")]
    Divergence {
        seed: u64,
        step: u64,
        member: u64,
        index: u64,
        expected: Applied,
        got: Applied,
    },
    #[error("seed {seed}, step {step}: member {member} skipped from index {after} to {next}")]
    Gap {
        seed: u64,
        step: u64,
        member: u64,
        after: u64,
        next: u64,
    },
    /// raft-rs asserts its own invariants (e.g. a commit index beyond the log) by panicking.
    #[error("seed {seed}: raft panicked: {message}")]
    Panic { seed: u64, message: String },
    #[error("seed {seed}: after the faults stopped, no proposal committed on every member within {steps} steps (applied up to: {applied:?})")]
    NoProgress {
        seed: u64,
        steps: u64,
        applied: Vec<u64>,
    },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub members: usize,
    pub seed: u64,
    /// Steps with faults; then the faults stop and the run must make progress.
    pub steps: u64,
    /// Probability that the bus loses a message.
    pub drop_rate: f64,
    /// A message is delivered 1..=max_delay steps after it was sent (so they reorder).
    pub max_delay: u64,
    /// A fault (partition, heal, crash) is considered every this many steps.
    pub fault_every: u64,
    /// A deliberately broken disk: a member restarts with an empty WAL. Only for showing that
    /// the checks catch lost state.
    pub forget_wal_on_restart: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            members: 3,
            seed: 1,
            steps: 3000,
            drop_rate: 0.05,
            max_delay: 8,
            fault_every: 150,
            forget_wal_on_restart: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub committed_index: u64,
    pub proposals: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub crashes: u64,
    pub crashes_before_fsync: u64,
    pub partitions: u64,
    /// Distinct (term, leader) pairs seen.
    pub leaderships: u64,
}

/// Steps per Raft tick (a step is the bus's unit of time).
const STEPS_PER_TICK: u64 = 4;
/// Probability that a member misses a tick: the seeded stand-in for randomized timeouts.
const TICK_SKIP: f64 = 0.25;
/// Probability of a proposal in a step.
const PROPOSE_RATE: f64 = 0.2;
/// Steps a crashed member stays down.
const DOWN_STEPS: std::ops::Range<u64> = 20..300;
/// Steps the run gets to commit a proposal after the faults stop.
const SETTLE_STEPS: u64 = 2000;

struct Bus {
    /// (due step, send order) -> message: delivery in due order, ties in send order.
    queue: BTreeMap<(u64, u64), Message>,
    sent: u64,
    cut: BTreeSet<(u64, u64)>,
}

impl Bus {
    fn connected(&self, from: u64, to: u64) -> bool {
        !self.cut.contains(&(from, to))
    }
}

/// Runs one simulation in `dir` (each member's WAL goes in a subdirectory).
pub fn simulate(config: &SimConfig, dir: &Path) -> Result<SimReport, SimError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(config, dir))).unwrap_or_else(
        |payload| {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            Err(SimError::Panic {
                seed: config.seed,
                message,
            })
        },
    )
}

fn run(config: &SimConfig, dir: &Path) -> Result<SimReport, SimError> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let ids: Vec<u64> = (1..=config.members as u64).collect();
    let mut nodes: Vec<SimNode> = ids
        .iter()
        .map(|&id| SimNode::create(id, &dir.join(format!("member-{id}")), ids.clone()))
        .collect::<Result<_, _>>()?;
    let mut bus = Bus {
        queue: BTreeMap::new(),
        sent: 0,
        cut: BTreeSet::new(),
    };
    let mut report = SimReport::default();
    let mut down_until: BTreeMap<usize, u64> = BTreeMap::new();
    // The first entry applied at each index, by anyone: what every member must agree with.
    let mut log: BTreeMap<u64, Applied> = BTreeMap::new();
    let mut leaderships: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut checked: Vec<usize> = vec![0; nodes.len()];
    let mut marker: Option<Vec<u8>> = None;

    for step in 0..config.steps + SETTLE_STEPS {
        let faulty = step < config.steps;
        if faulty && step > 0 && step % config.fault_every == 0 {
            inject_fault(
                &mut rng,
                &mut nodes,
                &mut bus,
                &mut down_until,
                step,
                &mut report,
            );
        }
        if step == config.steps {
            // The faults stop: heal, bring everyone back, and ask for one more entry.
            bus.cut.clear();
            down_until.values_mut().for_each(|t| *t = step);
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            if down_until.get(&i).is_some_and(|&t| t <= step) {
                down_until.remove(&i);
                node.start(config.forget_wal_on_restart)?;
                checked[i] = 0;
            }
        }
        if step % STEPS_PER_TICK == 0 {
            for node in nodes.iter_mut() {
                if !faulty || !rng.random_bool(TICK_SKIP) {
                    node.tick();
                }
            }
        }
        if faulty && rng.random_bool(PROPOSE_RATE) {
            let i = rng.random_range(0..nodes.len());
            report.proposals += 1;
            nodes[i].propose(format!("p{}", report.proposals).into_bytes());
        }
        if !faulty && marker.is_none() {
            if let Some(leader) = nodes.iter_mut().find(|n| n.is_leader()) {
                let data = b"after-the-faults".to_vec();
                if leader.propose(data.clone()) {
                    marker = Some(data);
                }
            }
        }
        // Deliver what is due.
        while let Some(entry) = bus.queue.first_entry() {
            if entry.key().0 > step {
                break;
            }
            let message = entry.remove();
            let (from, to) = (message.from, message.to);
            if bus.connected(from, to) {
                report.delivered += 1;
                nodes[(to - 1) as usize].step(message);
            } else {
                report.dropped += 1;
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            let crash = faulty && node.is_up() && rng.random_bool(0.002);
            let was_up = node.is_up();
            let messages = node.handle_ready(crash)?;
            if was_up && !node.is_up() {
                report.crashes += 1;
                report.crashes_before_fsync += 1;
                down_until.insert(i, step + rng.random_range(DOWN_STEPS));
            }
            for m in messages {
                if faulty && rng.random_bool(config.drop_rate) {
                    report.dropped += 1;
                    continue;
                }
                let delay = rng.random_range(1..=config.max_delay);
                bus.sent += 1;
                bus.queue.insert((step + delay, bus.sent), m);
            }
            if node.is_leader() {
                leaderships.insert((node.term(), node.id));
            }
            check_applied(node, &mut checked[i], &mut log, config.seed, step)?;
        }
        if let Some(m) = &marker {
            let everywhere = nodes.iter().all(|n| n.applied.iter().any(|a| &a.data == m));
            if everywhere {
                report.committed_index = log.keys().next_back().copied().unwrap_or(0);
                report.leaderships = leaderships.len() as u64;
                return Ok(report);
            }
        }
    }
    Err(SimError::NoProgress {
        seed: config.seed,
        steps: SETTLE_STEPS,
        applied: nodes
            .iter()
            .map(|n| n.applied.last().map(|a| a.index).unwrap_or(0))
            .collect(),
    })
}

/// Checks what `node` applied since the last check against the common log.
fn check_applied(
    node: &SimNode,
    checked: &mut usize,
    log: &mut BTreeMap<u64, Applied>,
    seed: u64,
    step: u64,
) -> Result<(), SimError> {
    for k in *checked..node.applied.len() {
        let got = &node.applied[k];
        if k > 0 && got.index <= node.applied[k - 1].index {
            return Err(SimError::Gap {
                seed,
                step,
                member: node.id,
                after: node.applied[k - 1].index,
                next: got.index,
            });
        }
        match log.get(&got.index) {
            Some(expected) if expected != got => {
                return Err(SimError::Divergence {
                    seed,
                    step,
                    member: node.id,
                    index: got.index,
                    expected: expected.clone(),
                    got: got.clone(),
                })
            }
            Some(_) => {}
            None => {
                log.insert(got.index, got.clone());
            }
        }
    }
    *checked = node.applied.len();
    Ok(())
}

fn inject_fault(
    rng: &mut StdRng,
    nodes: &mut [SimNode],
    bus: &mut Bus,
    down_until: &mut BTreeMap<usize, u64>,
    step: u64,
    report: &mut SimReport,
) {
    let n = nodes.len();
    match rng.random_range(0..4) {
        0 => {
            // Cut a random minority off, both ways.
            bus.cut.clear();
            let size = rng.random_range(1..=(n - 1) / 2);
            let mut minority = BTreeSet::new();
            while minority.len() < size {
                minority.insert(rng.random_range(0..n) as u64 + 1);
            }
            for &a in &minority {
                for b in (1..=n as u64).filter(|b| !minority.contains(b)) {
                    bus.cut.insert((a, b));
                    bus.cut.insert((b, a));
                }
            }
            report.partitions += 1;
        }
        1 => bus.cut.clear(),
        2 => {
            let i = rng.random_range(0..n);
            if nodes[i].is_up() {
                nodes[i].crash();
                report.crashes += 1;
                down_until.insert(i, step + rng.random_range(DOWN_STEPS));
            }
        }
        _ => {}
    }
}

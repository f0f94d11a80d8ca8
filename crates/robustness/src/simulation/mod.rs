//! A deterministic simulation of the consensus layer: N members, each running the real Raft loop
//! of `rampart_raft_node` ([`rampart_raft_node::RaftCore`]: message handling, ticks, ReadIndex
//! batching, `Ready` handling with the WAL fsync, commit recording, local snapshots and log
//! compaction, snapshot installs, restart recovery from the WAL) turn by turn on one thread with
//! a virtual clock ([`node`]), exchanging messages over a seeded in-memory bus that drops, delays
//! and reorders them, while the seed also decides partitions, crashes (some in the middle of a
//! `Ready`, right after its messages left and before its WAL write) and restarts. Everything
//! random comes from the seed, so a failing seed replays the same run exactly.
//!
//! Checked: every member applies the same entry at the same index (state machine safety), no
//! entry once applied anywhere is later replaced (committed entries survive crashes, restarts and
//! snapshot installs), a linearizable read's index is never below an entry applied anywhere
//! before the read was asked for, and once the faults stop, a new proposal commits on every
//! member within a bounded number of steps.
//!
//! Played by the simulation rather than run for real: the gRPC peer transport (the bus stands in
//! and, like the transport, attaches the sender's state to snapshots and reports unreachable
//! peers and snapshot results; the real transport runs only in the cluster harness,
//! `tests/cluster_robustness.rs`), the server's apply loop and store ([`state_machine`]: it
//! applies entries past its consistent index, asks for a snapshot every few entries, answers
//! snapshot installs), the callers (proposals, reads and conf changes go through the real
//! `RaftHandle`), and the process (a crash drops the Raft loop, at a turn's end or in the middle
//! of its `Ready`; the state machine keeps its last durable point; a restart goes through
//! `Wal::open`, `rampart_raft_node::recovery` and `RaftStorage::recover` as the server's
//! bootstrap does). Membership changes ([`membership`]): members are removed and new ones added
//! and started empty, as an operator would, while the other faults go on.
//!
//! Not simulated: the real transport, the server's apply loop and MVCC store themselves, leader
//! transfer, learners, joint consensus (conf change v2), disk errors and torn writes, and
//! raft-rs's randomized election timeout (pinned; the seeded tick jitter stands in).
//!
//! Reproducing a failure: the error names its seed; `rampart-torture --simulate 1 --seed <seed>`
//! (or `SIM_SEED=<seed> cargo test -p rampart-robustness --test simulation simulated`) replays
//! that seed alone.

pub mod membership;
pub mod node;
pub mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use raft::eraftpb::Message;
use rampart_raft_node::node::is_snapshot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use membership::{leader, Membership};
use node::{poll, Pending, SimNode, TurnEnd, HEARTBEAT};
pub use state_machine::Applied;

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
    #[error("seed {seed}, step {step}: a read through member {member} got index {index}, but index {applied} was applied before it was asked for")]
    StaleRead {
        seed: u64,
        step: u64,
        member: u64,
        index: u64,
        applied: u64,
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
    /// Probability that a member crashes in a step (besides the crashes among the faults).
    pub crash_rate: f64,
    /// Steps a crashed member stays down.
    pub down_steps: std::ops::Range<u64>,
    /// Probability of a linearizable read in a step.
    pub read_rate: f64,
    /// A deliberately broken disk: a member restarts with an empty WAL and state machine. Only
    /// for showing that the checks catch lost state.
    pub forget_wal_on_restart: bool,
    /// A deliberately broken Raft loop: every start numbers its ReadIndex requests from 1 again
    /// (what it did before), so a leader's late answer to a request from before a restart can
    /// answer a new read. Only for showing that the read check catches it.
    pub reuse_read_numbers: bool,
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
            crash_rate: 0.002,
            down_steps: 20..300,
            read_rate: 0.1,
            forget_wal_on_restart: false,
            reuse_read_numbers: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub committed_index: u64,
    pub proposals: u64,
    /// Proposals the Raft loop accepted (as leader or forwarding to one).
    pub accepted: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub crashes: u64,
    /// Crashes inside the Raft loop's `Ready` handling, right after a message send.
    pub crashes_in_turn: u64,
    pub partitions: u64,
    /// Distinct (term, leader) pairs seen.
    pub leaderships: u64,
    /// Local snapshots the state machines asked for (each compacts the log).
    pub snapshots_taken: u64,
    /// Snapshots the leaders sent to followers behind their log.
    pub snapshots_sent: u64,
    /// Leaders' snapshots installed by followers.
    pub snapshots_installed: u64,
    /// Linearizable reads answered with an index (all checked), and failed (no leader, timeout,
    /// member crashed).
    pub reads_answered: u64,
    pub reads_failed: u64,
    /// Conf changes (a removal or an addition) seen to take effect.
    pub membership_changes: u64,
}

/// Steps per Raft tick (a step is the bus's unit of time).
const STEPS_PER_TICK: u64 = 4;
/// Probability that a member misses a tick: the seeded stand-in for randomized timeouts.
const TICK_SKIP: f64 = 0.25;
/// Probability of a proposal in a step.
const PROPOSE_RATE: f64 = 0.2;
/// Probability of a proposal in a step once the faults stopped.
const SETTLE_PROPOSE_RATE: f64 = 0.05;
/// Steps the run gets to commit a proposal after the faults stop.
const SETTLE_STEPS: u64 = 2000;
/// Steps after which an unapplied marker proposal is made again (its leader may have lost it).
const MARKER_RETRY_STEPS: u64 = 300;

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

/// A read in flight: its index must be at least `applied`, the highest index applied anywhere
/// when it was asked for.
struct Read {
    member: usize,
    applied: u64,
    pending: Pending,
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
        .map(|&id| {
            SimNode::create(
                id,
                &dir.join(format!("member-{id}")),
                ids.clone(),
                true,
                config.reuse_read_numbers,
            )
        })
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
    // Per member: how much of its state was checked, and its state's reset count then.
    let mut checked: Vec<(usize, u64)> = vec![(0, 0); nodes.len()];
    let mut proposals: Vec<Pending> = Vec::new();
    let mut reads: Vec<Read> = Vec::new();
    let mut membership = Membership::new(config.members);
    // When the marker was proposed, and its reply while it has not come.
    let mut marker: Option<(u64, Option<Pending>)> = None;
    const MARKER: &[u8] = b"after-the-faults";
    // Virtual time: the core's read retries count in it. Only differences from `start` matter.
    let start = Instant::now();
    let step_time = HEARTBEAT / STEPS_PER_TICK as u32;

    for step in 0..config.steps + SETTLE_STEPS {
        let now = start + step_time * step as u32;
        let faulty = step < config.steps;
        if faulty && step > 0 && step % config.fault_every == 0 {
            inject_fault(
                &mut rng,
                &mut nodes,
                &mut bus,
                (&mut down_until, config.down_steps.clone()),
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
                if !node.removed {
                    node.restart(config.forget_wal_on_restart)?;
                }
            }
        }
        if let Some((id, members)) = membership.step(&mut rng, &nodes, step, faulty) {
            let dir = dir.join(format!("member-{id}"));
            let node = SimNode::create(id, &dir, members, false, config.reuse_read_numbers)?;
            nodes.push(node);
            checked.push((0, 0));
        }
        let ticks: Vec<bool> = nodes
            .iter()
            .map(|_| step % STEPS_PER_TICK == 0 && (!faulty || !rng.random_bool(TICK_SKIP)))
            .collect();
        // Writes go on after the faults stop: a member added after the leader's last local
        // snapshot cannot install that snapshot (raft-rs refuses one whose configuration lacks
        // the receiver), so it catches up only from the leader's next one, which takes writes.
        let rate = if faulty {
            PROPOSE_RATE
        } else {
            SETTLE_PROPOSE_RATE
        };
        if rng.random_bool(rate) {
            let i = rng.random_range(0..nodes.len());
            report.proposals += 1;
            proposals.extend(nodes[i].propose(format!("p{}", report.proposals).into_bytes()));
        }
        if faulty && rng.random_bool(config.read_rate) {
            let member = rng.random_range(0..nodes.len());
            let applied = log.keys().next_back().copied().unwrap_or(0);
            if let Some(pending) = nodes[member].read_index() {
                reads.push(Read {
                    member,
                    applied,
                    pending,
                });
            }
        }
        let marker_due = match &marker {
            None => true,
            Some((asked, _)) => step >= asked + MARKER_RETRY_STEPS,
        };
        if !faulty && marker_due {
            if let Some(leader) = leader(&nodes) {
                marker = leader.propose(MARKER.to_vec()).map(|p| (step, Some(p)));
            }
        }
        deliver(&mut bus, &mut nodes, step, &mut report);
        for i in 0..nodes.len() {
            let crash = faulty && nodes[i].is_up() && rng.random_bool(config.crash_rate);
            let (end, messages) = nodes[i].turn(now, ticks[i], crash)?;
            if end == TurnEnd::Removed {
                down_until.remove(&i);
            }
            if crash && end != TurnEnd::Down && end != TurnEnd::Removed {
                report.crashes += 1;
                if end == TurnEnd::CrashedInTurn {
                    report.crashes_in_turn += 1;
                }
                down_until.insert(i, step + rng.random_range(config.down_steps.clone()));
            }
            for mut m in messages {
                if faulty && rng.random_bool(config.drop_rate) {
                    report.dropped += 1;
                    if is_snapshot(&m) {
                        report_snapshot(&nodes, &m, false);
                    }
                    continue;
                }
                if is_snapshot(&m) {
                    // What the transport does: the state machine's data goes with the message.
                    m.mut_snapshot().data = nodes[i].state.snapshot_data().into();
                    report.snapshots_sent += 1;
                }
                let delay = rng.random_range(1..=config.max_delay);
                bus.sent += 1;
                bus.queue.insert((step + delay, bus.sent), m);
            }
            let node = &nodes[i];
            if node.is_leader() {
                leaderships.insert((node.term(), node.id));
            }
            check_applied(node, &mut checked[i], &mut log, config.seed, step)?;
        }
        proposals.retain_mut(|p| match poll(p) {
            Some(result) => {
                report.accepted += u64::from(result.is_ok());
                false
            }
            None => true,
        });
        check_reads(&mut reads, &nodes, &mut report, config.seed, step)?;
        if let Some((_, Some(pending))) = &mut marker {
            match poll(pending) {
                // Refused (no leader after all): ask again.
                Some(Err(_)) => marker = None,
                Some(Ok(_)) => marker = marker.map(|(asked, _)| (asked, None)),
                None => {}
            }
        }
        // Every member the cluster has (the removed ones stopped).
        let everywhere = Membership::view(&nodes).is_some_and(|view| {
            view.len() == config.members
                && nodes
                    .iter()
                    .filter(|n| view.contains(&n.id))
                    .all(|n| n.state.applied.iter().any(|a| a.data == MARKER))
        });
        if !faulty && everywhere {
            report.committed_index = log.keys().next_back().copied().unwrap_or(0);
            report.leaderships = leaderships.len() as u64;
            report.snapshots_taken = nodes.iter().map(|n| n.snapshots_taken).sum();
            report.snapshots_installed = nodes.iter().map(|n| n.snapshots_installed).sum();
            report.membership_changes = membership.changes;
            return Ok(report);
        }
    }
    Err(SimError::NoProgress {
        seed: config.seed,
        steps: SETTLE_STEPS,
        applied: nodes.iter().map(|n| n.state.applied_index).collect(),
    })
}

/// Delivers the messages due at `step` through each receiver's handle, as the transport's
/// receiving half does, and tells senders of snapshots how it went.
fn deliver(bus: &mut Bus, nodes: &mut [SimNode], step: u64, report: &mut SimReport) {
    while let Some(entry) = bus.queue.first_entry() {
        if entry.key().0 > step {
            break;
        }
        let message = entry.remove();
        let (from, to) = (message.from, message.to);
        // A member being added may not have started yet: nobody answers at its address.
        let receiver = nodes.get((to - 1) as usize).and_then(|n| n.handle());
        match receiver {
            Some(handle) if bus.connected(from, to) => {
                report.delivered += 1;
                let snapshot = is_snapshot(&message);
                handle.step(message.clone());
                if snapshot {
                    report_snapshot(nodes, &message, true);
                }
            }
            _ => {
                report.dropped += 1;
                if is_snapshot(&message) {
                    report_snapshot(nodes, &message, false);
                }
                if let Some(sender) = nodes[(from - 1) as usize].handle() {
                    sender.report_unreachable(to);
                }
            }
        }
    }
}

fn report_snapshot(nodes: &[SimNode], message: &Message, ok: bool) {
    if let Some(sender) = nodes[(message.from - 1) as usize].handle() {
        sender.report_snapshot(message.to, ok);
    }
}

/// Takes the answered reads and checks their index.
fn check_reads(
    reads: &mut Vec<Read>,
    nodes: &[SimNode],
    report: &mut SimReport,
    seed: u64,
    step: u64,
) -> Result<(), SimError> {
    let mut stale = None;
    reads.retain_mut(|read| match poll(&mut read.pending) {
        Some(Ok(index)) => {
            report.reads_answered += 1;
            if index < read.applied && stale.is_none() {
                stale = Some(SimError::StaleRead {
                    seed,
                    step,
                    member: nodes[read.member].id,
                    index,
                    applied: read.applied,
                });
            }
            false
        }
        Some(Err(_)) => {
            report.reads_failed += 1;
            false
        }
        None => true,
    });
    stale.map_or(Ok(()), Err)
}

/// Checks what `node` applied since the last check against the common log. `checked` is how
/// many of its entries were checked and the state's reset count then: after a snapshot install
/// (its state was replaced) or a crash (its state went back), everything is checked again.
fn check_applied(
    node: &SimNode,
    checked: &mut (usize, u64),
    log: &mut BTreeMap<u64, Applied>,
    seed: u64,
    step: u64,
) -> Result<(), SimError> {
    let applied = &node.state.applied;
    if checked.1 != node.state.resets {
        *checked = (0, node.state.resets);
    }
    for k in checked.0..applied.len() {
        let got = &applied[k];
        if k > 0 && got.index <= applied[k - 1].index {
            return Err(SimError::Gap {
                seed,
                step,
                member: node.id,
                after: applied[k - 1].index,
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
    checked.0 = applied.len();
    Ok(())
}

fn inject_fault(
    rng: &mut StdRng,
    nodes: &mut [SimNode],
    bus: &mut Bus,
    (down_until, down_steps): (&mut BTreeMap<usize, u64>, std::ops::Range<u64>),
    step: u64,
    report: &mut SimReport,
) {
    let n = nodes.len();
    let live: Vec<u64> = nodes.iter().filter(|n| !n.removed).map(|n| n.id).collect();
    match rng.random_range(0..4) {
        0 if live.len() >= 3 => {
            // Cut a random minority of the members off, both ways.
            bus.cut.clear();
            let size = rng.random_range(1..=(live.len() - 1) / 2);
            let mut minority = BTreeSet::new();
            while minority.len() < size {
                minority.insert(live[rng.random_range(0..live.len())]);
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
                down_until.insert(i, step + rng.random_range(down_steps));
            }
        }
        _ => {}
    }
}

//! Membership changes in the simulation, as an operator makes them: now and then a member
//! (possibly the leader) is removed with a conf change through the leader's handle
//! (`member remove`); a removed member stops for good once it applies its own removal (the
//! server's apply loop exits then). A while later a new member, with a new ID, is added
//! (`member add`) and, once the change is applied, started with an empty data dir the way the
//! server joins a running cluster.
//!
//! A removal waits until every member is up and has caught up, as etcd's strict reconfiguration
//! check does: a member added after the leader's last local snapshot cannot install that
//! snapshot (raft-rs refuses a snapshot whose configuration lacks the receiver) and only
//! catches up from the leader's next one; removing another member meanwhile leaves a cluster
//! whose quorum needs a member that cannot catch up, which never recovers.
//!
//! The cluster's view is the leader's state machine's member list; a change that does not show
//! there in time (its leader lost it, or raft-rs turned it into an empty entry because another
//! change was pending) is proposed again. When the faults stop, a pending addition is made, so
//! the cluster ends with as many members as it started with.

use rand::rngs::StdRng;
use rand::Rng;

use super::node::{poll, Pending, SimNode};

/// Probability per step, during the faults and with everyone in, of starting a removal.
const REMOVE_RATE: f64 = 0.002;
/// Applied indexes a member may be behind the leader and still count as caught up.
const CAUGHT_UP: u64 = 5;
/// Steps before a removed member is replaced (during the faults).
const OUT_STEPS: u64 = 200;
/// Steps after which a change that did not take effect is proposed again.
const RETRY_STEPS: u64 = 300;

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    Removing { id: u64, asked: u64 },
    Removed { at: u64 },
    Adding { id: u64, asked: u64 },
}

pub struct Membership {
    phase: Phase,
    size: usize,
    pending: Vec<Pending>,
    /// Changes seen to take effect.
    pub changes: u64,
}

/// The member that leads in the highest term (a removed leader may not know yet).
pub fn leader(nodes: &[SimNode]) -> Option<&SimNode> {
    nodes
        .iter()
        .filter(|n| n.is_leader())
        .max_by_key(|n| n.term())
}

impl Membership {
    pub fn new(size: usize) -> Membership {
        Membership {
            phase: Phase::Idle,
            size,
            pending: Vec::new(),
            changes: 0,
        }
    }

    /// The members as the leader's state machine has them.
    pub fn view(nodes: &[SimNode]) -> Option<Vec<u64>> {
        leader(nodes).map(|l| l.state.members.clone())
    }

    /// One step: moves the change in progress along, or starts one. Returns the ID and member
    /// list of a member to start now (its addition was applied).
    pub fn step(
        &mut self,
        rng: &mut StdRng,
        nodes: &[SimNode],
        step: u64,
        faulty: bool,
    ) -> Option<(u64, Vec<u64>)> {
        // Replies only tell whether the loop took the proposal; the member list tells the rest.
        self.pending.retain_mut(|p| poll(p).is_none());
        let leader = leader(nodes)?;
        let view = leader.state.members.clone();
        let mut propose = |id: u64, add: bool| {
            self.pending.extend(leader.propose_membership(id, add));
        };
        let mut join = None;
        self.phase = match self.phase {
            Phase::Idle => {
                // Like etcd's strict reconfiguration check: no removal while a member is down
                // or behind (the rest might not make a quorum without it).
                let ready = nodes.iter().filter(|n| view.contains(&n.id)).all(|n| {
                    n.is_up() && n.state.applied_index + CAUGHT_UP >= leader.state.applied_index
                });
                if faulty && ready && view.len() == self.size && rng.random_bool(REMOVE_RATE) {
                    let id = view[rng.random_range(0..view.len())];
                    propose(id, false);
                    Phase::Removing { id, asked: step }
                } else {
                    Phase::Idle
                }
            }
            Phase::Removing { id, asked } => {
                if !view.contains(&id) {
                    self.changes += 1;
                    Phase::Removed { at: step }
                } else if step >= asked + RETRY_STEPS {
                    propose(id, false);
                    Phase::Removing { id, asked: step }
                } else {
                    self.phase
                }
            }
            Phase::Removed { at } => {
                if !faulty || step >= at + OUT_STEPS {
                    // IDs are never reused, as etcd's aren't.
                    let id = nodes.len() as u64 + 1;
                    propose(id, true);
                    Phase::Adding { id, asked: step }
                } else {
                    self.phase
                }
            }
            Phase::Adding { id, asked } => {
                if view.contains(&id) {
                    self.changes += 1;
                    join = Some((id, view.clone()));
                    Phase::Idle
                } else if step >= asked + RETRY_STEPS {
                    propose(id, true);
                    Phase::Adding { id, asked: step }
                } else {
                    self.phase
                }
            }
        };
        join
    }
}

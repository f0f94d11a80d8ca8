//! The durability checker: after every member restarted, the cluster still has every write it
//! acknowledged. The harness reads what the cluster remembers by replaying a watch from revision
//! 1 over the workload's keys (no run compacts), and each acknowledged write must be in that
//! replay at the revision it was answered with, with its key and value.

use std::collections::HashMap;
use std::fmt;

use crate::history::{Operation, WatchLog};
use crate::watch_check::event_matches_write;

/// An acknowledged write the restarted cluster does not have (or has differently).
#[derive(Debug, Clone)]
pub struct LostWrite {
    pub write: Operation,
    /// What the replay holds at the write's revision, if anything.
    pub found_instead: Option<String>,
}

/// The acknowledged writes missing from `replay`. `replay` must cover every revision up to the
/// cluster's current one (the harness reads it until then).
pub fn check_durability(operations: &[Operation], replay: &WatchLog) -> Vec<LostWrite> {
    let at_revision: HashMap<i64, _> = replay.events.iter().map(|e| (e.revision, e)).collect();
    let mut lost = Vec::new();
    for op in operations {
        let Some(rev) = op.created_revision() else {
            continue;
        };
        match at_revision.get(&rev) {
            Some(event) if event_matches_write(event, op) => {}
            found => lost.push(LostWrite {
                write: op.clone(),
                found_instead: found.map(|e| e.to_string()),
            }),
        }
    }
    lost
}

impl fmt::Display for LostWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acknowledged write lost after restart: {}", self.write)?;
        match &self.found_instead {
            Some(e) => write!(f, " (the cluster has {e} at that revision)"),
            None => write!(f, " (the cluster has nothing at that revision)"),
        }
    }
}

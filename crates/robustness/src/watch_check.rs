//! The watch checker: each watcher's events come in revision order, without gaps or duplicates,
//! and agree with the writes clients made. Watchers watch the whole key prefix of the workload,
//! and every workload write touches one key, so each revision carries at most one event.
//!
//! Agreement uses the revisions that acknowledged writes were answered with: the event at such a
//! revision must be that write (key, kind, value), and every such revision from the watch's start
//! to its last event must have been delivered. An event at a revision no acknowledged write has
//! must be one of the writes whose outcome is unknown (values are unique across a run).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::history::{EventKind, Operation, Request, WatchEvent, WatchLog};

#[derive(Debug, Clone)]
pub enum WatchAnomaly {
    /// An event came after one with a higher revision.
    OutOfOrder {
        watcher: usize,
        previous: WatchEvent,
        event: WatchEvent,
    },
    /// The same revision was delivered twice.
    Duplicate { watcher: usize, event: WatchEvent },
    /// An event older than the revision the watch started from.
    BeforeStart {
        watcher: usize,
        start_revision: i64,
        event: WatchEvent,
    },
    /// An acknowledged write inside the watched range of revisions was never delivered.
    Missing { watcher: usize, write: Operation },
    /// The event at an acknowledged write's revision is not that write.
    Disagrees {
        watcher: usize,
        event: WatchEvent,
        write: Operation,
    },
    /// An event that no client's write (acknowledged or unknown) can explain.
    Phantom { watcher: usize, event: WatchEvent },
    /// Two acknowledged writes were answered with the same revision.
    RevisionReused { first: Operation, second: Operation },
}

/// The acknowledged writes by the revision they created.
pub fn writes_by_revision(
    operations: &[Operation],
) -> (BTreeMap<i64, &Operation>, Vec<WatchAnomaly>) {
    let mut by_revision: BTreeMap<i64, &Operation> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for op in operations {
        if let Some(rev) = op.created_revision() {
            if let Some(first) = by_revision.insert(rev, op) {
                anomalies.push(WatchAnomaly::RevisionReused {
                    first: first.clone(),
                    second: op.clone(),
                });
            }
        }
    }
    (by_revision, anomalies)
}

/// Whether `event` is what `write` would produce.
pub fn event_matches_write(event: &WatchEvent, write: &Operation) -> bool {
    if event.key != write.key {
        return false;
    }
    match (&write.request, event.kind) {
        (Request::Delete, EventKind::Delete) => true,
        (request, EventKind::Put) => request.written_value() == Some(event.value.as_str()),
        _ => false,
    }
}

/// Checks every watch log against the history's writes.
pub fn check_watches(operations: &[Operation], watches: &[&WatchLog]) -> Vec<WatchAnomaly> {
    let (acknowledged, mut anomalies) = writes_by_revision(operations);
    let unknown: Vec<&Operation> = operations
        .iter()
        .filter(|o| o.is_unknown() && o.request.is_write())
        .collect();
    for log in watches {
        check_one(log, &acknowledged, &unknown, &mut anomalies);
    }
    anomalies
}

fn check_one(
    log: &WatchLog,
    acknowledged: &BTreeMap<i64, &Operation>,
    unknown: &[&Operation],
    anomalies: &mut Vec<WatchAnomaly>,
) {
    let watcher = log.watcher;
    let mut delivered: HashSet<i64> = HashSet::new();
    let mut previous: Option<&WatchEvent> = None;
    for event in &log.events {
        if event.revision < log.start_revision {
            anomalies.push(WatchAnomaly::BeforeStart {
                watcher,
                start_revision: log.start_revision,
                event: event.clone(),
            });
        }
        if !delivered.insert(event.revision) {
            anomalies.push(WatchAnomaly::Duplicate {
                watcher,
                event: event.clone(),
            });
        } else if let Some(prev) = previous.filter(|p| p.revision > event.revision) {
            anomalies.push(WatchAnomaly::OutOfOrder {
                watcher,
                previous: prev.clone(),
                event: event.clone(),
            });
        }
        previous = Some(event);
        match acknowledged.get(&event.revision) {
            Some(write) if !event_matches_write(event, write) => {
                anomalies.push(WatchAnomaly::Disagrees {
                    watcher,
                    event: event.clone(),
                    write: (*write).clone(),
                })
            }
            Some(_) => {}
            None => {
                if !unknown.iter().any(|w| event_matches_write(event, w)) {
                    anomalies.push(WatchAnomaly::Phantom {
                        watcher,
                        event: event.clone(),
                    });
                }
            }
        }
    }
    let Some(last) = log.events.iter().map(|e| e.revision).max() else {
        return;
    };
    for (_, write) in acknowledged.range(log.start_revision..=last) {
        let rev = write.created_revision().expect("indexed by its revision");
        if !delivered.contains(&rev) {
            anomalies.push(WatchAnomaly::Missing {
                watcher,
                write: (*write).clone(),
            });
        }
    }
}

impl fmt::Display for WatchAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchAnomaly::OutOfOrder {
                watcher,
                previous,
                event,
            } => write!(
                f,
                "watcher {watcher}: event out of order: {event} arrived after {previous}"
            ),
            WatchAnomaly::Duplicate { watcher, event } => {
                write!(f, "watcher {watcher}: duplicate event {event}")
            }
            WatchAnomaly::BeforeStart {
                watcher,
                start_revision,
                event,
            } => write!(
                f,
                "watcher {watcher}: event {event} is older than the watch's start revision {start_revision}"
            ),
            WatchAnomaly::Missing { watcher, write } => write!(
                f,
                "watcher {watcher}: gap: the acknowledged write {write} was never delivered"
            ),
            WatchAnomaly::Disagrees {
                watcher,
                event,
                write,
            } => write!(
                f,
                "watcher {watcher}: event {event} disagrees with the acknowledged write at its revision: {write}"
            ),
            WatchAnomaly::Phantom { watcher, event } => write!(
                f,
                "watcher {watcher}: event {event} matches no write any client made"
            ),
            WatchAnomaly::RevisionReused { first, second } => write!(
                f,
                "two acknowledged writes got the same revision:\n  {first}\n  {second}"
            ),
        }
    }
}

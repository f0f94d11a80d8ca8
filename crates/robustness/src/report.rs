//! Runs all three checkers over a history, writes a failing history and its explanation to files,
//! and adds runs up into the summary table both entry points end with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::durability::{check_durability, LostWrite};
use crate::history::{History, HistoryFileError, Nanos, Outcome};
use crate::linearizability::{check_linearizability, LinearizabilityReport};
use crate::watch_check::{check_watches, WatchAnomaly};

/// The three checkers' findings on one history.
pub struct Findings {
    pub linearizability: LinearizabilityReport,
    pub watch: Vec<WatchAnomaly>,
    pub lost_writes: Vec<LostWrite>,
}

impl Findings {
    /// Non-linearizable keys, watch anomalies and lost writes (undecided keys are not anomalies
    /// but are reported separately).
    pub fn anomaly_count(&self) -> usize {
        self.linearizability.anomalies().len() + self.watch.len() + self.lost_writes.len()
    }

    pub fn undecided_count(&self) -> usize {
        self.linearizability.undecided_keys().len()
    }

    pub fn is_clean(&self) -> bool {
        self.anomaly_count() == 0 && self.undecided_count() == 0
    }
}

pub fn check_history(history: &History, max_steps_per_key: u64) -> Findings {
    let linearizability = check_linearizability(&history.operations, max_steps_per_key);
    let mut logs: Vec<_> = history.watches.iter().collect();
    logs.extend(history.replay_after_restart.iter());
    let watch = check_watches(&history.operations, &logs);
    let lost_writes = history
        .replay_after_restart
        .as_ref()
        .map(|replay| check_durability(&history.operations, replay))
        .unwrap_or_default();
    Findings {
        linearizability,
        watch,
        lost_writes,
    }
}

/// What a person reads first when a history fails.
impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for anomaly in self.linearizability.anomalies() {
            writeln!(f, "{anomaly}")?;
        }
        for key in self.linearizability.undecided_keys() {
            writeln!(f, "key {key:?}: undecided (the search hit its step bound)")?;
        }
        for anomaly in &self.watch {
            writeln!(f, "{anomaly}")?;
        }
        for lost in &self.lost_writes {
            writeln!(f, "{lost}")?;
        }
        Ok(())
    }
}

/// Saves `history` as JSON and the findings as text next to it, returning the JSON's path.
pub fn save_failure(
    dir: &Path,
    name: &str,
    history: &History,
    findings: &Findings,
) -> Result<PathBuf, HistoryFileError> {
    std::fs::create_dir_all(dir).map_err(|source| HistoryFileError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let json = dir.join(format!("{name}.history.json"));
    history.save(&json)?;
    let text = dir.join(format!("{name}.findings.txt"));
    std::fs::write(&text, findings.to_string()).map_err(|source| HistoryFileError::Write {
        path: text.display().to_string(),
        source,
    })?;
    Ok(json)
}

/// The longest stretch of the workload, from the first invocation to the last completion, in
/// which no operation succeeded: how long clients could get nothing done.
pub fn longest_unavailability(history: &History) -> Duration {
    unavailability_window(history).0
}

/// The longest unavailability and when it began.
pub fn unavailability_window(history: &History) -> (Duration, Nanos) {
    let ended = history.workload_ended.unwrap_or(u64::MAX);
    let workload: Vec<_> = history
        .operations
        .iter()
        .filter(|o| o.invoked <= ended)
        .collect();
    let Some(start) = workload.iter().map(|o| o.invoked).min() else {
        return (Duration::ZERO, 0);
    };
    let end = workload.iter().map(|o| o.completed).max().unwrap_or(start);
    let mut successes: Vec<u64> = workload
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .map(|o| o.completed)
        .collect();
    successes.sort_unstable();
    let (mut longest, mut began) = (0, start);
    let mut last = start;
    for t in successes.into_iter().chain(std::iter::once(end)) {
        if t.saturating_sub(last) > longest {
            (longest, began) = (t - last, last);
        }
        last = last.max(t);
    }
    (Duration::from_nanos(longest), began)
}

/// The figures both entry points end with, summed over every history checked.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub histories_checked: usize,
    pub operations: usize,
    pub unknown_outcomes: usize,
    pub watch_events: usize,
    pub anomalies: usize,
    pub undecided_keys: usize,
    pub leader_changes: u64,
    pub longest_unavailability: Duration,
    pub acknowledged_writes_lost: usize,
    pub nemeses_applied: usize,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// Where failing histories were saved.
    pub failures: Vec<PathBuf>,
}

impl Summary {
    pub fn add(&mut self, history: &History, findings: &Findings, leader_changes: u64) {
        self.histories_checked += 1;
        self.operations += history.operations.len();
        self.unknown_outcomes += history.operations.iter().filter(|o| o.is_unknown()).count();
        self.watch_events += history
            .watches
            .iter()
            .map(|w| w.events.len())
            .sum::<usize>();
        self.anomalies += findings.anomaly_count();
        self.undecided_keys += findings.undecided_count();
        self.leader_changes += leader_changes;
        self.longest_unavailability = self
            .longest_unavailability
            .max(longest_unavailability(history));
        self.acknowledged_writes_lost += findings.lost_writes.len();
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = [
            ("run time", format!("{:.0}s", self.elapsed.as_secs_f64())),
            ("histories checked", self.histories_checked.to_string()),
            ("operations", self.operations.to_string()),
            (
                "  of which unknown outcome",
                self.unknown_outcomes.to_string(),
            ),
            ("watch events checked", self.watch_events.to_string()),
            ("nemeses applied", self.nemeses_applied.to_string()),
            ("anomalies", self.anomalies.to_string()),
            ("undecided keys", self.undecided_keys.to_string()),
            ("leader changes", self.leader_changes.to_string()),
            (
                "longest unavailability",
                format!("{:.1}s", self.longest_unavailability.as_secs_f64()),
            ),
            (
                "acknowledged writes lost",
                self.acknowledged_writes_lost.to_string(),
            ),
        ];
        writeln!(f, "+----------------------------+------------+")?;
        for (name, value) in rows {
            writeln!(f, "| {name:<26} | {value:>10} |")?;
        }
        write!(f, "+----------------------------+------------+")?;
        for path in &self.failures {
            write!(f, "\nfailing history saved to {}", path.display())?;
        }
        Ok(())
    }
}

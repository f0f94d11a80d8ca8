//! The recorded history of a run: every client operation with its invoke and complete times and
//! what it returned, every watcher's events, and the replay read after all members restarted.
//! Saved as JSON so a failing history can be checked again and read by a person.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Nanoseconds since the run started (a monotonic clock of the process that drove the clients).
pub type Nanos = u64;

/// What a client asked for. Every operation touches one key, which is what lets the
/// linearizability checker split a history per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Put {
        value: String,
    },
    /// A linearizable (not serializable) range of one key.
    Get,
    Delete,
    /// A txn: if the key's value is `expected`, put `value`; else do nothing.
    CompareAndSet {
        expected: String,
        value: String,
    },
}

impl Request {
    pub fn is_write(&self) -> bool {
        !matches!(self, Request::Get)
    }

    /// The value this request writes, if it writes one (values are unique across a run).
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Request::Put { value } | Request::CompareAndSet { value, .. } => Some(value),
            Request::Get | Request::Delete => None,
        }
    }
}

/// What the cluster answered. `revision` is the header revision of the answer (for writes that
/// changed something, the revision the write created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Put {
        revision: i64,
    },
    Get {
        value: Option<String>,
        /// The key's mod_revision (0 when absent).
        mod_revision: i64,
    },
    Delete {
        deleted: bool,
        revision: i64,
    },
    CompareAndSet {
        succeeded: bool,
        revision: i64,
    },
}

/// How an operation ended. A write that timed out or failed may or may not have taken effect:
/// it is `Unknown`, and the checkers allow both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok(Response),
    Unknown { error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique in the history.
    pub id: usize,
    pub client: usize,
    pub key: String,
    pub request: Request,
    pub invoked: Nanos,
    /// When the answer arrived (for `Unknown`, when the client gave up).
    pub completed: Nanos,
    pub outcome: Outcome,
}

impl Operation {
    pub fn is_unknown(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown { .. })
    }

    /// The revision an acknowledged write created, if it changed the store.
    pub fn created_revision(&self) -> Option<i64> {
        match &self.outcome {
            Outcome::Ok(Response::Put { revision }) => Some(*revision),
            Outcome::Ok(Response::Delete {
                deleted: true,
                revision,
            }) => Some(*revision),
            Outcome::Ok(Response::CompareAndSet {
                succeeded: true,
                revision,
            }) => Some(*revision),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event as a watcher received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: String,
    /// The value of a put (empty for a delete).
    pub value: String,
    /// mod_revision of the event's key-value (the revision of the write).
    pub revision: i64,
}

/// Everything one watch stream delivered, in the order it delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLog {
    pub watcher: usize,
    /// The member it watched through (for the report).
    pub member: usize,
    /// The revision the watch asked to start from.
    pub start_revision: i64,
    pub events: Vec<WatchEvent>,
}

/// A whole run's record, as saved to a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub operations: Vec<Operation>,
    pub watches: Vec<WatchLog>,
    /// The events of a watch from revision 1 over the key prefix, opened after all members
    /// restarted: what the cluster remembers (the durability checker's input).
    pub replay_after_restart: Option<WatchLog>,
    /// When the clients stopped; later operations are the checks after the final restart, which
    /// do not count towards unavailability.
    #[serde(default)]
    pub workload_ended: Option<Nanos>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryFileError {
    #[error("cannot write the history to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the history {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a saved history: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl History {
    pub fn save(&self, path: &Path) -> Result<(), HistoryFileError> {
        let json = serde_json::to_string_pretty(self).expect("a history always serializes");
        std::fs::write(path, json).map_err(|source| HistoryFileError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn load(path: &Path) -> Result<History, HistoryFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| HistoryFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| HistoryFileError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

fn millis(n: Nanos) -> String {
    format!("{:.3}s", n as f64 / 1e9)
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Put { value } => write!(f, "put {value:?}"),
            Request::Get => write!(f, "get"),
            Request::Delete => write!(f, "delete"),
            Request::CompareAndSet { expected, value } => {
                write!(f, "cas {expected:?} -> {value:?}")
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Unknown { error } => write!(f, "UNKNOWN ({error})"),
            Outcome::Ok(Response::Put { revision }) => write!(f, "ok @{revision}"),
            Outcome::Ok(Response::Get {
                value: Some(v),
                mod_revision,
            }) => write!(f, "-> {v:?} (mod @{mod_revision})"),
            Outcome::Ok(Response::Get { value: None, .. }) => write!(f, "-> absent"),
            Outcome::Ok(Response::Delete { deleted, revision }) => {
                write!(f, "deleted={deleted} @{revision}")
            }
            Outcome::Ok(Response::CompareAndSet {
                succeeded,
                revision,
            }) => write!(f, "succeeded={succeeded} @{revision}"),
        }
    }
}

/// One line per operation: `[invoke .. complete] client N  key: request  outcome`.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed = if self.is_unknown() {
            format!("{}?", millis(self.completed))
        } else {
            millis(self.completed)
        };
        write!(
            f,
            "#{:<5} [{} .. {}] client {:<2} {}: {}  {}",
            self.id,
            millis(self.invoked),
            completed,
            self.client,
            self.key,
            self.request,
            self.outcome
        )
    }
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            EventKind::Put => write!(f, "@{} PUT {} = {:?}", self.revision, self.key, self.value),
            EventKind::Delete => write!(f, "@{} DELETE {}", self.revision, self.key),
        }
    }
}

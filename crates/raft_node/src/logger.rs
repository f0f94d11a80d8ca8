//! Bridges raft-rs's `slog` logging into `tracing`, so Raft's own messages (elections, term changes)
//! land in the same log as everything else.

use slog::{Drain, Level, OwnedKVList, Record, KV};
use std::fmt::Write as _;

struct TracingDrain;

/// Collects a record's key-value pairs as `k=v` text.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{}", kv.0),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{}", kv.0),
            Level::Info => tracing::info!(target: "raft", "{msg}{}", kv.0),
            Level::Debug => tracing::debug!(target: "raft", "{msg}{}", kv.0),
            Level::Trace => tracing::trace!(target: "raft", "{msg}{}", kv.0),
        }
        Ok(())
    }
}

/// A slog logger whose records go to `tracing` under the target `raft`.
pub fn raft_logger(member_id: u64) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("raft_id" => format!("{member_id:x}")),
    )
}

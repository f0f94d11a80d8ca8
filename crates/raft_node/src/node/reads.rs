//! Linearizable reads waiting on Raft's ReadIndex: callers that arrive in one loop turn share one
//! round trip to the leader, identified by a context number Raft echoes back in its read state.

use std::collections::BTreeMap;
use std::time::Instant;

use raft::RawNode;
use tokio::sync::oneshot;

use super::{READ_INDEX_GIVE_UP, READ_INDEX_RETRY};
use crate::storage::RaftStorage;
use crate::NodeError;

pub(super) type ReadWaiter = oneshot::Sender<Result<u64, NodeError>>;

/// Reads waiting for one ReadIndex round trip.
struct ReadBatch {
    waiters: Vec<ReadWaiter>,
    first_asked: Instant,
    last_asked: Instant,
}

pub(super) struct Reads {
    /// Arrived this turn, not asked yet.
    pending: Vec<ReadWaiter>,
    /// Asked, by context number. Ordered so that retries go out in the same order on every run
    /// of the deterministic simulation (a hash map would reorder them).
    inflight: BTreeMap<u64, ReadBatch>,
    next_ctx: u64,
}

/// The first context number of a Raft loop that starts now: its start time in nanoseconds.
///
/// Why not 1: the leader keeps a read request it has not confirmed yet under its context, and
/// answers it to the member that sent it even if that member restarted meanwhile. A restarted
/// member counting from 1 again would take that old answer (an index from before its new read
/// was asked) for a new read with the same number: a stale read, found by the deterministic
/// simulation. Numbers from the start time exceed every number the previous run of the loop
/// used (it used at most one per loop turn), unless the clock stepped back.
pub(super) fn first_read_context() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        .max(1)
}

impl Reads {
    pub(super) fn new(first_ctx: u64) -> Reads {
        Reads {
            pending: Vec::new(),
            inflight: BTreeMap::new(),
            next_ctx: first_ctx,
        }
    }

    /// Numbers the next reads from `first`.
    pub(super) fn renumber(&mut self, first: u64) {
        self.next_ctx = first;
    }

    pub(super) fn wait(&mut self, waiter: ReadWaiter) {
        self.pending.push(waiter);
    }

    /// Asks Raft once for everything that arrived since the last turn.
    pub(super) fn issue(&mut self, node: &mut RawNode<RaftStorage>, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let ctx = self.next_ctx;
        self.next_ctx = self.next_ctx.wrapping_add(1);
        self.inflight.insert(
            ctx,
            ReadBatch {
                waiters: std::mem::take(&mut self.pending),
                first_asked: now,
                last_asked: now,
            },
        );
        node.read_index(ctx.to_be_bytes().to_vec());
    }

    /// Asks again for reads that have waited long, and fails the ones that waited too long.
    pub(super) fn retry(&mut self, node: &mut RawNode<RaftStorage>, now: Instant) {
        let mut expired = Vec::new();
        for (ctx, batch) in self.inflight.iter_mut() {
            if now.duration_since(batch.first_asked) >= READ_INDEX_GIVE_UP {
                expired.push(*ctx);
            } else if now.duration_since(batch.last_asked) >= READ_INDEX_RETRY {
                batch.last_asked = now;
                node.read_index(ctx.to_be_bytes().to_vec());
            }
        }
        for ctx in expired {
            if let Some(batch) = self.inflight.remove(&ctx) {
                for w in batch.waiters {
                    let _ = w.send(Err(NodeError::Timeout));
                }
            }
        }
    }

    /// Raft answered the read with context `ctx`: everyone in that batch may read at `index`.
    pub(super) fn answer(&mut self, ctx: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        if let Some(batch) = self.inflight.remove(&u64::from_be_bytes(bytes)) {
            for w in batch.waiters {
                let _ = w.send(Ok(index));
            }
        }
    }

    pub(super) fn fail_all(&mut self, err: NodeError) {
        for w in self.pending.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
        for (_, batch) in std::mem::take(&mut self.inflight) {
            for w in batch.waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
    }
}

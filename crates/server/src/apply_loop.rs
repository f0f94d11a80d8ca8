//! The apply loop: takes committed Raft entries in order, applies them to the MVCC store in
//! batches (one backend commit per batch), hands each result to the handler waiting for it, and
//! asks Raft for a snapshot every `--snapshot-count` entries.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, RwLock};

use prost::Message as _;
use raft::eraftpb::{Entry, EntryType};
use rampart_apply::{Applier, Response};
use rampart_mvcc::Durability;
use rampart_proto::internal::{raft_request, RaftRequest};
use rampart_raft_node::{Committed, RaftHandle};
use tokio::sync::watch;

use crate::etcdserver::Waiters;
use crate::membership::Membership;
use crate::watch::WatchHub;

/// Committed batches merged into one backend commit at most (bounds one commit's size).
pub const MAX_BATCHES_PER_COMMIT: usize = 64;

pub struct ApplyLoop {
    pub applier: Arc<RwLock<Applier>>,
    pub waiters: Arc<Waiters>,
    pub membership: Arc<Membership>,
    pub raft: RaftHandle,
    pub applied: watch::Sender<u64>,
    pub snapshot_count: u64,
    pub local_member: u64,
    pub watch_hub: Arc<WatchHub>,
    /// Peer connections follow membership changes.
    pub transport: Arc<rampart_raft_node::transport::PeerTransport>,
    /// How much longer than their TTL leases live when this member becomes leader.
    pub lease_extend: std::time::Duration,
}

/// Batches of at most this many requests are answered before the backend commit. A lone put
/// (one client) then answers sooner: p50 0.83–0.90 ms against 0.87–1.02 ms, 3 alternating pairs
/// of `scripts/cpu-per-op.py rampart --clients=1 --target-leader put`. Larger batches answer
/// after it: answered early, 64 clients sent their next puts sooner, in smaller batches that
/// cost more CPU each (9,266–9,973 against 9,968–10,729 puts/s, 3 pairs of `--clients=64`).
const EARLY_ANSWER_MAX_REQUESTS: usize = 4;

impl ApplyLoop {
    /// Runs until the Raft loop stops.
    pub fn run(self, committed: Receiver<Committed>, mut last_snapshot: u64) {
        let mut held: Option<Committed> = None;
        loop {
            let first = match held.take() {
                Some(c) => c,
                None => match committed.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            match first {
                Committed::Snapshot { snapshot, done } => {
                    let index = snapshot.get_metadata().index;
                    let result = self
                        .applier
                        .write()
                        .expect("applier")
                        .restore(&snapshot.data)
                        .map_err(|e| e.to_string());
                    if result.is_ok() {
                        let (applied, revision) = {
                            let a = self.applier.read().expect("applier");
                            (a.consistent_index(), a.current_revision())
                        };
                        self.watch_hub.restored(revision);
                        let _ = self.applied.send(applied.max(index));
                        last_snapshot = index;
                        tracing::info!(index, "applied snapshot from leader");
                    }
                    let _ = done.send(result);
                }
                Committed::Entries(mut entries) => {
                    // Merge what else is already waiting, up to a snapshot (which must come after).
                    for _ in 1..MAX_BATCHES_PER_COMMIT {
                        match committed.try_recv() {
                            Ok(Committed::Entries(more)) => entries.extend(more),
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let Some(last) = entries.last().map(|e| e.index) else {
                        continue;
                    };
                    // A membership change also takes a snapshot: the snapshot a new member may
                    // need (the log below it is compacted) must list it, or its Raft refuses it
                    // and it waits for the next --snapshot-count entries, forever in a quiet
                    // cluster. (Found by the simulation.)
                    let changes_membership = entries.iter().any(|e| {
                        matches!(
                            e.get_entry_type(),
                            EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                        ) && !e.data.is_empty()
                    });
                    let due = last.saturating_sub(last_snapshot) >= self.snapshot_count
                        || (changes_membership && last_snapshot > 0);
                    let durability = if due {
                        Durability::Immediate
                    } else {
                        Durability::None
                    };
                    self.waiters.begin_batch(last);
                    if let Err(e) = self.apply(&entries, durability) {
                        // The store cannot take committed entries: stop rather than diverge.
                        tracing::error!(error = %e, "apply failed; stopping this member");
                        std::process::exit(1);
                    }
                    let _ = self.applied.send(last);
                    self.waiters.end_batch();
                    if due {
                        self.raft.create_snapshot(last);
                        last_snapshot = last;
                    }
                }
            }
        }
    }

    fn apply(&self, entries: &[Entry], durability: Durability) -> Result<(), String> {
        let mut requests = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.get_entry_type() == EntryType::EntryConfChange && !entry.data.is_empty() {
                self.apply_conf_change(entry)?;
                continue;
            }
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            let request = RaftRequest::decode(entry.data.as_ref())
                .map_err(|e| format!("entry {}: cannot decode: {e}", entry.index))?;
            if let Some(raft_request::Request::MemberUpdate(update)) = &request.request {
                if self
                    .membership
                    .update_peer_urls(update.member_id, &update.peer_urls)
                    .map_err(|e| e.to_string())?
                    && update.member_id != self.local_member
                {
                    self.transport.remove_peer(update.member_id);
                    self.transport
                        .add_peer(update.member_id, update.peer_urls.clone());
                }
            }
            if let Some(raft_request::Request::MemberAttributes(attrs)) = &request.request {
                // Membership lives beside the store; the applier still sees the entry, since
                // etcd counts it in the v2 index.
                self.publish(attrs.member_id, &attrs.name, &attrs.client_urls)?;
            }
            requests.push((entry.index, request));
        }
        let last_index = entries.last().map(|e| e.index).unwrap_or(0);
        let answer_early = requests.len() <= EARLY_ANSWER_MAX_REQUESTS;
        let (applied, revision) = {
            let mut applier = self.applier.write().expect("applier");
            crate::leases::sync_lease_role(applier.lessor(), &self.raft, self.lease_extend);
            // A small batch is answered before the backend commit, still under the applier's
            // lock (a read that follows an answer waits for the lock, so it sees the commit).
            let applied = applier
                .apply_batch_answering(&requests, last_index, durability, |applied| {
                    if answer_early {
                        for a in applied {
                            let result = std::mem::replace(&mut a.result, Ok(Response::Done));
                            self.waiters.trigger(a.id, result);
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            (applied, applier.current_revision())
        };
        let mut events = Vec::new();
        for mut a in applied {
            if !answer_early {
                self.waiters.trigger(a.id, a.result);
            }
            events.append(&mut a.events);
        }
        self.watch_hub.notify(&events, revision);
        Ok(())
    }

    /// A committed membership change (Raft itself already applied it to its configuration).
    fn apply_conf_change(&self, entry: &Entry) -> Result<(), String> {
        use raft::eraftpb::{ConfChange, ConfChangeType};
        use rampart_proto::internal::ConfChangeContext;
        let change: ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
            .map_err(|e| format!("entry {}: bad conf change: {e}", entry.index))?;
        let context = ConfChangeContext::decode(change.context.as_ref())
            .map_err(|e| format!("entry {}: bad conf change context: {e}", entry.index))?;
        let id = change.node_id;
        match change.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let learner = change.get_change_type() == ConfChangeType::AddLearnerNode;
                let member = match (self.membership.get(id), &context.member) {
                    (Some(mut existing), _) => {
                        existing.is_learner = learner;
                        existing
                    }
                    (None, Some(m)) => crate::membership::Member {
                        id,
                        name: m.name.clone(),
                        peer_urls: m.peer_ur_ls.clone(),
                        client_urls: m.client_ur_ls.clone(),
                        is_learner: learner,
                    },
                    (None, None) => {
                        return Err(format!("entry {}: member without context", entry.index))
                    }
                };
                let new = self.membership.get(id).is_none();
                self.membership
                    .add(member.clone())
                    .map_err(|e| e.to_string())?;
                if new && id != self.local_member {
                    self.transport.add_peer(id, member.peer_urls.clone());
                }
                tracing::info!(member = format!("{id:x}"), peer_urls = ?member.peer_urls, learner, "added member");
            }
            ConfChangeType::RemoveNode => {
                self.membership.remove(id).map_err(|e| e.to_string())?;
                if id == self.local_member {
                    tracing::warn!(
                        "the member has been permanently removed from the cluster; stopping"
                    );
                    std::thread::spawn(|| {
                        std::thread::sleep(std::time::Duration::from_millis(500));
                        std::process::exit(0);
                    });
                } else {
                    self.transport.remove_peer(id);
                }
                tracing::info!(member = format!("{id:x}"), "removed member");
            }
        }
        self.waiters
            .trigger(context.request_id, Ok(rampart_apply::Response::Done));
        Ok(())
    }

    fn publish(&self, member: u64, name: &str, client_urls: &[String]) -> Result<(), String> {
        let changed = self
            .membership
            .publish(member, name, client_urls)
            .map_err(|e| e.to_string())?;
        if member == self.local_member {
            tracing::info!(
                local_member_id = format!("{member:x}"),
                local_member_attributes = format!("{{Name:{name} ClientURLs:{client_urls:?}}}"),
                cluster_id = format!("{:x}", self.membership.cluster_id()),
                "published local member to cluster through raft"
            );
        } else if changed {
            tracing::info!(
                member = format!("{member:x}"),
                name,
                "member announced its client URLs"
            );
        }
        Ok(())
    }
}

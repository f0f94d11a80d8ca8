//! Merging the `MsgAppend`s of one `Ready` that continue each other.
//!
//! raft-rs sends a follower a new `MsgAppend` for every batch of entries the leader appends
//! (each proposal batch, each proposal a follower forwarded) and for every commit-index move, so
//! one `Ready` can carry several for the same follower, and the follower answers each one. Two
//! consecutive appends to the same follower where the second starts right where the first ends
//! say the same as one append with both runs of entries and the later commit index: the follower
//! appends the same entries and commits the same index, and answers once, with the last index,
//! which the leader's progress tracking takes as covering both.
//!
//! raft-rs's own `batch_append` option is not used: in 0.7 it can add entries to a queued
//! append whose previous index does not precede them (when that append carries no entries),
//! and the follower then panics on a commit index beyond its log. Here an append is merged only
//! when its previous index and term are exactly the end of the one before it.

use raft::eraftpb::{Message, MessageType};

/// A merged append stops growing at this many bytes of entry data: raft-rs's own limit per
/// append (`max_size_per_msg`), which keeps one peer message well under the transport's limit
/// even when a `Ready` carries many full appends.
pub(crate) const MAX_MERGED_APPEND_BYTES: usize = 1024 * 1024;

fn data_bytes(m: &Message) -> usize {
    m.entries
        .iter()
        .map(|e| e.data.len() + e.context.len())
        .sum()
}

/// `messages` with each `MsgAppend` that directly continues the previous message to the same
/// peer folded into it. Messages keep their order otherwise.
pub(crate) fn coalesce_appends(messages: Vec<Message>) -> Vec<Message> {
    if messages.len() < 2 {
        return messages;
    }
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    // Position in `out` of the last message to each peer (a handful of peers: a linear scan).
    let mut last_to: Vec<(u64, usize)> = Vec::new();
    for mut message in messages {
        let previous = last_to
            .iter()
            .find(|(peer, _)| *peer == message.to)
            .map(|&(_, at)| at);
        if let Some(at) = previous {
            if continues(&out[at], &message) {
                let earlier = &mut out[at];
                let mut entries: Vec<_> = earlier.take_entries().into();
                entries.extend(message.take_entries().into_vec());
                earlier.set_entries(entries.into());
                earlier.commit = earlier.commit.max(message.commit);
                continue;
            }
        }
        let at = out.len();
        match last_to.iter_mut().find(|(peer, _)| *peer == message.to) {
            Some(slot) => slot.1 = at,
            None => last_to.push((message.to, at)),
        }
        out.push(message);
    }
    out
}

/// True when `next` is an append that picks up exactly where the append `earlier` ends.
fn continues(earlier: &Message, next: &Message) -> bool {
    if earlier.get_msg_type() != MessageType::MsgAppend
        || next.get_msg_type() != MessageType::MsgAppend
        || earlier.term != next.term
        || earlier.from != next.from
        || earlier.has_snapshot()
        || next.has_snapshot()
    {
        return false;
    }
    let (end_index, end_term) = match earlier.entries.last() {
        Some(last) => (last.index, last.term),
        None => (earlier.index, earlier.log_term),
    };
    next.index == end_index
        && next.log_term == end_term
        && data_bytes(earlier) + data_bytes(next) <= MAX_MERGED_APPEND_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn append(to: u64, index: u64, log_term: u64, entries: &[(u64, u64)], commit: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = to;
        m.term = 2;
        m.index = index;
        m.log_term = log_term;
        m.commit = commit;
        let entries: Vec<Entry> = entries
            .iter()
            .map(|&(index, term)| Entry {
                index,
                term,
                ..Default::default()
            })
            .collect();
        m.set_entries(entries.into());
        m
    }

    fn indexes(m: &Message) -> Vec<u64> {
        m.entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn continuing_appends_to_a_peer_become_one() {
        let out = coalesce_appends(vec![
            append(2, 10, 2, &[(11, 2), (12, 2)], 9),
            append(3, 10, 2, &[(11, 2), (12, 2)], 9),
            append(2, 12, 2, &[(13, 2)], 10),
            append(3, 12, 2, &[(13, 2)], 10),
            // A commit-only append at the end of what peer 2 got: folds in as the new commit.
            append(2, 13, 2, &[], 12),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].to, indexes(&out[0]), out[0].commit),
            (2, vec![11, 12, 13], 12)
        );
        assert_eq!(
            (out[1].to, indexes(&out[1]), out[1].commit),
            (3, vec![11, 12, 13], 10)
        );
        assert_eq!((out[0].index, out[0].log_term), (10, 2));
    }

    #[test]
    fn an_append_that_does_not_continue_stays_apart() {
        // An empty append at an older index followed by entries further on: merging them would
        // give the follower entries after a gap (what raft-rs's batch_append gets wrong).
        let out = coalesce_appends(vec![
            append(2, 10, 2, &[], 9),
            append(2, 12, 2, &[(13, 2)], 12),
            // A term mismatch at the joint also stays apart.
            append(2, 13, 1, &[(14, 2)], 12),
        ]);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn merged_appends_stop_growing_at_the_size_limit() {
        let half = MAX_MERGED_APPEND_BYTES / 2 + 1;
        let mut messages = vec![
            append(2, 10, 2, &[(11, 2)], 9),
            append(2, 11, 2, &[(12, 2)], 9),
            append(2, 12, 2, &[(13, 2)], 9),
        ];
        for m in &mut messages {
            m.mut_entries()[0].data = vec![0u8; half].into();
        }
        let out = coalesce_appends(messages);
        // Two halves exceed the limit: nothing merges.
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn another_message_in_between_stops_the_merge() {
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.to = 2;
        let out = coalesce_appends(vec![
            append(2, 10, 2, &[(11, 2)], 9),
            heartbeat,
            append(2, 11, 2, &[(12, 2)], 10),
        ]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].get_msg_type(), MessageType::MsgHeartbeat);
    }
}

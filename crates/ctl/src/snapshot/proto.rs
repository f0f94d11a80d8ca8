//! The few etcd protobuf messages a restore writes (raftpb, walpb, snappb, etcdserverpb), encoded
//! field by field as etcd's gogoproto code does: every scalar field is written even when zero
//! (non-nullable fields), bytes fields only when set, in field-number order.

/// Appends a base-128 varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field (wire type 0).
pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, v);
}

/// A length-delimited field (wire type 2).
pub fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// `raftpb.EntryType`.
pub const ENTRY_CONF_CHANGE: u64 = 1;
/// `raftpb.ConfChangeType`.
pub const CONF_CHANGE_ADD_NODE: u64 = 0;

/// `raftpb.Entry{Type, Term, Index, Data}`.
pub fn entry(entry_type: u64, term: u64, index: u64, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1, entry_type);
    uint(&mut b, 2, term);
    uint(&mut b, 3, index);
    bytes(&mut b, 4, data);
    b
}

/// `raftpb.ConfChange{ID, Type, NodeID, Context}`.
pub fn conf_change(change_type: u64, node_id: u64, context: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1, 0);
    uint(&mut b, 2, change_type);
    uint(&mut b, 3, node_id);
    bytes(&mut b, 4, context);
    b
}

/// `raftpb.HardState{Term, Vote, Commit}`.
pub fn hard_state(term: u64, vote: u64, commit: u64) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1, term);
    uint(&mut b, 2, vote);
    uint(&mut b, 3, commit);
    b
}

/// `raftpb.Snapshot{Data, Metadata{ConfState{Voters, AutoLeave}, Index, Term}}`.
pub fn raft_snapshot(data: &[u8], voters: &[u64], index: u64, term: u64) -> Vec<u8> {
    let mut conf = Vec::new();
    for v in voters {
        uint(&mut conf, 1, *v);
    }
    uint(&mut conf, 5, 0);
    let mut meta = Vec::new();
    bytes(&mut meta, 1, &conf);
    uint(&mut meta, 2, index);
    uint(&mut meta, 3, term);
    let mut b = Vec::new();
    bytes(&mut b, 1, data);
    bytes(&mut b, 2, &meta);
    b
}

/// `snappb.Snapshot{Crc, Data}`.
pub fn snap_file(crc: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1, u64::from(crc));
    bytes(&mut b, 2, data);
    b
}

/// `walpb.Snapshot{Index, Term}`.
pub fn wal_snapshot(index: u64, term: u64) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1, index);
    uint(&mut b, 2, term);
    b
}

/// `etcdserverpb.Metadata{NodeID, ClusterID}`, the WAL's metadata.
pub fn metadata(node_id: u64, cluster_id: u64) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1, node_id);
    uint(&mut b, 2, cluster_id);
    b
}

/// `walpb.Record{Type, Crc, Data}`; `data` is `None` for the CRC record, which has none.
pub fn wal_record(record_type: u64, crc: u32, data: Option<&[u8]>) -> Vec<u8> {
    let mut b = Vec::new();
    uint(&mut b, 1, record_type);
    uint(&mut b, 2, u64::from(crc));
    if let Some(d) = data {
        bytes(&mut b, 3, d);
    }
    b
}

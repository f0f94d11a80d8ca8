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

/// A field's value as read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// A (deprecated) group: skipped as gogoproto skips it.
    Group,
    Fixed32(u32),
}

/// Why a message did not decode (gogoproto refuses the same inputs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("proto: unexpected end of message")]
    UnexpectedEof,
    #[error("proto: integer overflow")]
    IntOverflow,
    #[error("proto: illegal tag {0}")]
    IllegalTag(u64),
    #[error("proto: illegal wire type {0}")]
    IllegalWireType(u64),
    #[error("proto: wrong wire type for field {0}")]
    WrongWireType(u32),
}

/// Reads a varint at `*pos`.
fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(DecodeError::UnexpectedEof)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError::IntOverflow)
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: u64) -> Result<&'a [u8], DecodeError> {
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| pos.checked_add(n))
        .filter(|end| *end <= b.len())
        .ok_or(DecodeError::UnexpectedEof)?;
    let out = &b[*pos..end];
    *pos = end;
    Ok(out)
}

/// One field's value of wire type `wire`, starting at `*pos`.
fn read_value<'a>(
    b: &'a [u8],
    pos: &mut usize,
    field: u64,
    wire: u64,
) -> Result<Wire<'a>, DecodeError> {
    Ok(match wire {
        0 => Wire::Varint(read_varint(b, pos)?),
        1 => Wire::Fixed64(u64::from_le_bytes(
            take(b, pos, 8)?.try_into().unwrap_or_default(),
        )),
        2 => {
            let len = read_varint(b, pos)?;
            Wire::Bytes(take(b, pos, len)?)
        }
        3 => {
            // Fields up to the matching end-group tag.
            loop {
                let tag = read_varint(b, pos)?;
                let (f, w) = (tag >> 3, tag & 7);
                if w == 4 {
                    if f != field {
                        return Err(DecodeError::IllegalTag(tag));
                    }
                    break;
                }
                read_value(b, pos, f, w)?;
            }
            Wire::Group
        }
        5 => Wire::Fixed32(u32::from_le_bytes(
            take(b, pos, 4)?.try_into().unwrap_or_default(),
        )),
        other => return Err(DecodeError::IllegalWireType(other)),
    })
}

/// The fields of a message in wire order, checked as gogoproto's generated `Unmarshal` checks
/// them: a truncated field, tag 0 or a stray end-group fails the whole message.
pub fn fields(b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let tag = read_varint(b, &mut pos)?;
        let (field, wire) = (tag >> 3, tag & 7);
        if wire == 4 || field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(DecodeError::IllegalTag(tag));
        }
        out.push((field as u32, read_value(b, &mut pos, field, wire)?));
    }
    Ok(out)
}

/// Checks that known fields carry the wire type their schema gives them (gogoproto fails a
/// message otherwise); `schema` maps a field number to its wire type, `None` for unknown fields.
pub fn check_wire_types(
    fields: &[(u32, Wire<'_>)],
    schema: impl Fn(u32) -> Option<u64>,
) -> Result<(), DecodeError> {
    for (num, value) in fields {
        let wire = match value {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Group => 3,
            Wire::Fixed32(_) => 5,
        };
        if schema(*num).is_some_and(|expected| expected != wire) {
            return Err(DecodeError::WrongWireType(*num));
        }
    }
    Ok(())
}

impl<'a> Wire<'a> {
    pub fn varint(&self) -> u64 {
        match self {
            Wire::Varint(v) => *v,
            _ => 0,
        }
    }

    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Wire::Bytes(b) => b,
            _ => &[],
        }
    }
}

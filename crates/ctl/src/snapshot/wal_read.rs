//! Reading an etcd 3.4 WAL as etcd's `wal.OpenForRead(dir, snap).ReadAll()` does: the segments
//! from the one holding the snapshot's index on, records framed by an 8-byte little-endian
//! length (padding in the top byte), a CRC-32C running over every record's data and re-seeded
//! by each segment's CRC record, and a torn last write read as the end of the log.

use std::path::{Path, PathBuf};

use super::proto::{self, DecodeError};
use super::wal::{CRC_TYPE, ENTRY_TYPE, METADATA_TYPE, SNAPSHOT_TYPE, STATE_TYPE};

/// etcd's `maxWALEntrySizeLimit`: a larger frame is corruption, not a record.
const MAX_RECORD_BYTES: u64 = 10 * 1024 * 1024;
/// Bytes of a frame's length field.
const FRAME_LEN_BYTES: usize = 8;
/// etcd's `minSectorSize`: a torn write leaves whole sectors of zeros.
const SECTOR_BYTES: usize = 512;

/// `raftpb.EntryType` of a membership change (`EntryConfChange`).
pub const ENTRY_CONF_CHANGE: u64 = 1;

/// Why a WAL could not be read, in etcd's words (etcdctl prints them).
#[derive(Debug, thiserror::Error)]
pub enum WalReadError {
    #[error("wal: file not found")]
    FileNotFound,
    #[error("wal: crc mismatch")]
    CrcMismatch,
    #[error("wal: conflicting metadata found")]
    MetadataConflict,
    #[error("wal: snapshot mismatch")]
    SnapshotMismatch,
    #[error("wal: slice bounds out of range")]
    SliceOutOfRange,
    #[error("wal: max entry size limit exceeded")]
    RecordTooLarge,
    #[error("unexpected block type {0}")]
    UnknownRecordType(i64),
    #[error("{}: {what}: {source}", .path.display())]
    Malformed {
        path: PathBuf,
        what: &'static str,
        source: DecodeError,
    },
    #[error("{op} {}: {reason}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// `raftpb.Entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub entry_type: u64,
    pub term: u64,
    pub index: u64,
    /// `None` when the field is absent (a leader's empty entry), which etcd keeps apart from
    /// present-but-empty when it writes the entry again.
    pub data: Option<Vec<u8>>,
}

impl Entry {
    pub fn decode(b: &[u8]) -> Result<Entry, DecodeError> {
        let fields = proto::fields(b)?;
        proto::check_wire_types(&fields, |n| match n {
            1..=3 => Some(0),
            4 => Some(2),
            _ => None,
        })?;
        let mut e = Entry {
            entry_type: 0,
            term: 0,
            index: 0,
            data: None,
        };
        for (num, v) in fields {
            match num {
                1 => e.entry_type = v.varint(),
                2 => e.term = v.varint(),
                3 => e.index = v.varint(),
                4 => e.data = Some(v.bytes().to_vec()),
                _ => {}
            }
        }
        Ok(e)
    }

    /// The entry as gogoproto marshals it.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        proto::uint(&mut b, 1, self.entry_type);
        proto::uint(&mut b, 2, self.term);
        proto::uint(&mut b, 3, self.index);
        if let Some(d) = &self.data {
            proto::bytes(&mut b, 4, d);
        }
        b
    }
}

/// `raftpb.HardState`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

impl HardState {
    fn decode(b: &[u8]) -> Result<HardState, DecodeError> {
        let fields = proto::fields(b)?;
        proto::check_wire_types(&fields, |n| (1..=3).contains(&n).then_some(0))?;
        let mut s = HardState::default();
        for (num, v) in fields {
            match num {
                1 => s.term = v.varint(),
                2 => s.vote = v.varint(),
                3 => s.commit = v.varint(),
                _ => {}
            }
        }
        Ok(s)
    }

    /// raft's `IsEmptyHardState`: etcd writes no state record for it.
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }

    pub fn encode(&self) -> Vec<u8> {
        proto::hard_state(self.term, self.vote, self.commit)
    }
}

/// A `walpb.Snapshot`: where a snapshot left the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotPos {
    pub index: u64,
    pub term: u64,
}

impl SnapshotPos {
    fn decode(b: &[u8]) -> Result<SnapshotPos, DecodeError> {
        let fields = proto::fields(b)?;
        proto::check_wire_types(&fields, |n| (1..=2).contains(&n).then_some(0))?;
        let mut s = SnapshotPos::default();
        for (num, v) in fields {
            match num {
                1 => s.index = v.varint(),
                2 => s.term = v.varint(),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// What `ReadAll` returns.
#[derive(Debug, Default)]
pub struct WalContents {
    /// The metadata record's data (`etcdserverpb.Metadata`), empty if there was none.
    pub metadata: Vec<u8>,
    pub state: HardState,
    /// Entries after the snapshot, a later write of an index replacing the earlier tail.
    pub entries: Vec<Entry>,
    /// Whether a snapshot record at the snapshot's index was found (etcd's
    /// `ErrSnapshotNotFound` when not, which etcdctl's backup only logs).
    pub snapshot_found: bool,
}

/// A `walpb.Record`.
struct Record<'a> {
    record_type: i64,
    crc: u32,
    data: &'a [u8],
}

impl<'a> Record<'a> {
    fn decode(b: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        let fields = proto::fields(b)?;
        proto::check_wire_types(&fields, |n| match n {
            1 | 2 => Some(0),
            3 => Some(2),
            _ => None,
        })?;
        let mut r = Record {
            record_type: 0,
            crc: 0,
            data: &[],
        };
        for (num, v) in fields {
            match num {
                1 => r.record_type = v.varint() as i64,
                2 => r.crc = v.varint() as u32,
                3 => r.data = v.bytes(),
                _ => {}
            }
        }
        Ok(r)
    }
}

/// `<seq>-<index>.wal`, both hexadecimal.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    let hex = |s: &str| {
        (!s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex(seq)?, hex(index)?))
}

/// The segments to read for a snapshot at `snap_index`: the last whose first index is at or
/// below it and every later one, their sequence numbers consecutive.
fn select_segments(dir: &Path, snap_index: u64) -> Result<Vec<PathBuf>, WalReadError> {
    let read = std::fs::read_dir(dir).map_err(|e| WalReadError::Io {
        op: "open",
        path: dir.to_path_buf(),
        reason: super::go_os_error(&e),
    })?;
    let mut names: Vec<(String, u64, u64)> = read
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| parse_name(&n).map(|(s, i)| (n, s, i)))
        .collect();
    names.sort();
    let start = names
        .iter()
        .rposition(|(_, _, index)| snap_index >= *index)
        .ok_or(WalReadError::FileNotFound)?;
    let chosen = &names[start..];
    let consecutive = chosen
        .windows(2)
        .all(|w| w[0].1 == 0 || w[0].1.checked_add(1) == Some(w[1].1));
    if !consecutive {
        return Err(WalReadError::FileNotFound);
    }
    Ok(chosen.iter().map(|(n, _, _)| dir.join(n)).collect())
}

/// Whether a frame that failed to decode at `frame_off` in the last segment is a torn write:
/// one of the 512-byte sectors it spans is all zeros.
fn is_torn(frame: &[u8], frame_off: usize) -> bool {
    let mut off = frame_off;
    let mut rest = frame;
    while !rest.is_empty() {
        let n = (SECTOR_BYTES - off % SECTOR_BYTES).min(rest.len());
        if rest[..n].iter().all(|b| *b == 0) {
            return true;
        }
        off += n;
        rest = &rest[n..];
    }
    false
}

/// How reading a segment ended.
enum SegmentEnd {
    /// End of the file or its preallocated zeros: go on with the next segment.
    Next,
    /// A partial or torn record: the log ends here (accepted when reading).
    Torn,
}

/// The reader's running state across segments.
struct Reader {
    start: SnapshotPos,
    crc: u32,
    out: WalContents,
    metadata_seen: bool,
}

impl Reader {
    fn segment(
        &mut self,
        path: &Path,
        data: &[u8],
        last: bool,
    ) -> Result<SegmentEnd, WalReadError> {
        let malformed = |what, source| WalReadError::Malformed {
            path: path.to_path_buf(),
            what,
            source,
        };
        let mut off = 0usize;
        loop {
            let Some(len_bytes) = data.get(off..off + FRAME_LEN_BYTES) else {
                return Ok(if off == data.len() {
                    SegmentEnd::Next
                } else {
                    SegmentEnd::Torn
                });
            };
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
            if len == 0 {
                return Ok(SegmentEnd::Next);
            }
            let rec_bytes = len & !(0xff << 56);
            let pad = if (len as i64) < 0 { (len >> 56) & 7 } else { 0 };
            if rec_bytes >= MAX_RECORD_BYTES - pad {
                return Err(WalReadError::RecordTooLarge);
            }
            let body_start = off + FRAME_LEN_BYTES;
            let body_end = body_start + (rec_bytes + pad) as usize;
            let Some(frame) = data.get(body_start..body_end) else {
                return Ok(SegmentEnd::Torn);
            };
            let torn = || last && is_torn(frame, body_start);
            let rec = match Record::decode(&frame[..rec_bytes as usize]) {
                Ok(r) => r,
                Err(_) if torn() => return Ok(SegmentEnd::Torn),
                Err(e) => return Err(malformed("WAL record", e)),
            };
            if rec.record_type != CRC_TYPE as i64 {
                self.crc = crc32c::crc32c_append(self.crc, rec.data);
                if rec.crc != self.crc {
                    if torn() {
                        return Ok(SegmentEnd::Torn);
                    }
                    return Err(WalReadError::CrcMismatch);
                }
            }
            self.apply(&rec).map_err(|e| match e {
                Applied::Wal(e) => e,
                Applied::Decode(what, source) => malformed(what, source),
            })?;
            off = body_end;
        }
    }

    fn apply(&mut self, rec: &Record<'_>) -> Result<(), Applied> {
        match rec.record_type as u64 {
            ENTRY_TYPE => {
                let e = Entry::decode(rec.data).map_err(|s| Applied::Decode("raft entry", s))?;
                if e.index > self.start.index {
                    let up = e.index - self.start.index - 1;
                    let ents = &mut self.out.entries;
                    if up > ents.len() as u64 {
                        return Err(Applied::Wal(WalReadError::SliceOutOfRange));
                    }
                    ents.truncate(up as usize);
                    ents.push(e);
                }
            }
            STATE_TYPE => {
                self.out.state =
                    HardState::decode(rec.data).map_err(|s| Applied::Decode("hard state", s))?;
            }
            METADATA_TYPE => {
                if self.metadata_seen && self.out.metadata != rec.data {
                    return Err(Applied::Wal(WalReadError::MetadataConflict));
                }
                self.metadata_seen = true;
                self.out.metadata = rec.data.to_vec();
            }
            CRC_TYPE => {
                if self.crc != 0 && rec.crc != self.crc {
                    return Err(Applied::Wal(WalReadError::CrcMismatch));
                }
                self.crc = rec.crc;
            }
            SNAPSHOT_TYPE => {
                let s = SnapshotPos::decode(rec.data)
                    .map_err(|s| Applied::Decode("snapshot record", s))?;
                if s.index == self.start.index {
                    if s.term != self.start.term {
                        return Err(Applied::Wal(WalReadError::SnapshotMismatch));
                    }
                    self.out.snapshot_found = true;
                }
            }
            _ => {
                return Err(Applied::Wal(WalReadError::UnknownRecordType(
                    rec.record_type,
                )))
            }
        }
        Ok(())
    }
}

enum Applied {
    Wal(WalReadError),
    Decode(&'static str, DecodeError),
}

/// Reads the WAL in `dir` from the snapshot at `start` (`{0, 0}` when there is none), without
/// changing it (etcd's read-only open: no lock, no repair of a torn tail).
pub fn read_all(dir: &Path, start: SnapshotPos) -> Result<WalContents, WalReadError> {
    let segments = select_segments(dir, start.index)?;
    let mut r = Reader {
        start,
        crc: 0,
        out: WalContents::default(),
        metadata_seen: false,
    };
    for (i, path) in segments.iter().enumerate() {
        let data = std::fs::read(path).map_err(|e| WalReadError::Io {
            op: "open",
            path: path.clone(),
            reason: super::go_os_error(&e),
        })?;
        if let SegmentEnd::Torn = r.segment(path, &data, i + 1 == segments.len())? {
            break;
        }
    }
    Ok(r.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::wal;

    fn write_log(dir: &Path, entries: &[Vec<u8>], state: &[u8]) {
        let metadata = proto::metadata(7, 9);
        let segs = wal::encode(&wal::Bootstrap {
            metadata: &metadata,
            entries,
            hard_state: Some(state),
            last_index: entries.len() as u64,
            snapshot_index: 0,
            snapshot_term: 0,
        });
        wal::create(dir, &segs).unwrap();
    }

    #[test]
    fn reads_back_what_the_writer_wrote_and_stops_at_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let entries: Vec<Vec<u8>> = (1..=3)
            .map(|i| proto::entry(0, 1, i, format!("data{i}").as_bytes()))
            .collect();
        write_log(&dir, &entries, &proto::hard_state(1, 5, 3));
        let got = read_all(&dir, SnapshotPos::default()).unwrap();
        assert_eq!(got.metadata, proto::metadata(7, 9));
        assert_eq!(
            got.state,
            HardState {
                term: 1,
                vote: 5,
                commit: 3
            }
        );
        assert!(got.snapshot_found);
        assert_eq!(got.entries.len(), 3);
        assert_eq!(got.entries[2].data.as_deref(), Some(&b"data3"[..]));
        assert_eq!(got.entries[1].encode(), entries[1]);

        // A later snapshot that is not in the log.
        let missing = read_all(&dir, SnapshotPos { index: 2, term: 1 }).unwrap();
        assert!(!missing.snapshot_found);
        assert_eq!(missing.entries.len(), 1);

        // Flip a byte of the last entry's data: a CRC mismatch, not a torn write.
        let seg = dir.join(wal::FIRST_SEGMENT);
        let clean = std::fs::read(&seg).unwrap();
        let mut bytes = clean.clone();
        let at = bytes.windows(5).position(|w| w == b"data3").unwrap();
        bytes[at] ^= 1;
        std::fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            read_all(&dir, SnapshotPos::default()),
            Err(WalReadError::CrcMismatch)
        ));
        // The last entry's frame, found by walking the frames.
        let mut off = 0;
        let mut frames = Vec::new();
        loop {
            let len = u64::from_le_bytes(clean[off..off + 8].try_into().unwrap());
            if len == 0 {
                break;
            }
            let body = (len & !(0xff << 56)) + if (len as i64) < 0 { (len >> 56) & 7 } else { 0 };
            frames.push(off);
            off += 8 + body as usize;
        }
        let last_entry = frames[frames.len() - 3];
        // Zeros where it was: a torn write, the log ends before it.
        let mut torn = clean.clone();
        torn[last_entry + 8..frames[frames.len() - 2]].fill(0);
        std::fs::write(&seg, &torn).unwrap();
        let got = read_all(&dir, SnapshotPos::default()).unwrap();
        assert_eq!(got.entries.len(), 2);
        assert_eq!(got.state, HardState::default());
        // Cut mid-frame: the same.
        std::fs::write(&seg, &clean[..last_entry + 12]).unwrap();
        assert_eq!(
            read_all(&dir, SnapshotPos::default())
                .unwrap()
                .entries
                .len(),
            2
        );
    }

    #[test]
    fn picks_segments_from_the_snapshot_on() {
        let tmp = tempfile::tempdir().unwrap();
        for n in [
            "0000000000000000-0000000000000000.wal",
            "0000000000000001-0000000000000010.wal",
            "x.wal.tmp",
        ] {
            std::fs::write(tmp.path().join(n), b"").unwrap();
        }
        let picked = select_segments(tmp.path(), 0x10).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(select_segments(tmp.path(), 3).unwrap().len(), 2);
        assert!(matches!(
            select_segments(&tmp.path().join("none"), 0),
            Err(WalReadError::Io { .. })
        ));
    }
}

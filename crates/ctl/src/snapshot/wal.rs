//! A new WAL in etcd 3.4's format, as `wal.Create`, `Save` and `SaveSnapshot` write it (a
//! restored member starts from one, a backup is one): the segment
//! `0000000000000000-0000000000000000.wal`, preallocated to etcd's 64 MB segment size, holding
//! framed `walpb.Record`s whose CRC-32C runs on from one record's data to the next; when the
//! entries fill it, etcd's cut to a second segment. `wal_read` reads them back.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::proto;

/// etcd's `SegmentSizeBytes`.
pub const SEGMENT_SIZE: u64 = 64 * 1000 * 1000;
/// The first (and here only) segment's name: sequence 0, first index 0.
pub const FIRST_SEGMENT: &str = "0000000000000000-0000000000000000.wal";

/// `walpb.Record` types.
pub const METADATA_TYPE: u64 = 1;
pub const ENTRY_TYPE: u64 = 2;
pub const STATE_TYPE: u64 = 3;
pub const CRC_TYPE: u64 = 4;
pub const SNAPSHOT_TYPE: u64 = 5;

/// What a fresh WAL holds.
pub struct Bootstrap<'a> {
    /// `etcdserverpb.Metadata` (node and cluster ID).
    pub metadata: &'a [u8],
    /// Encoded `raftpb.Entry`s.
    pub entries: &'a [Vec<u8>],
    /// Encoded `raftpb.HardState`; `None` for an empty one, which etcd does not write.
    pub hard_state: Option<&'a [u8]>,
    /// The index of the last entry (the second segment's name starts after it).
    pub last_index: u64,
    /// The snapshot the member starts from.
    pub snapshot_index: u64,
    pub snapshot_term: u64,
}

/// Frames records as etcd's encoder does.
struct Encoder {
    out: Vec<u8>,
    crc: u32,
}

impl Encoder {
    fn record(&mut self, record_type: u64, data: Option<&[u8]>) {
        // The running CRC covers every record's data so far; a record without data (the CRC
        // record) carries the CRC it continues from.
        if let Some(d) = data {
            self.crc = crc32c::crc32c_append(self.crc, d);
        }
        let rec = proto::wal_record(record_type, self.crc, data);
        // Records are 8-byte aligned; the padding length rides in the top byte of the length.
        let pad = (8 - rec.len() % 8) % 8;
        let mut len = rec.len() as u64;
        if pad != 0 {
            len |= (0x80 | pad as u64) << 56;
        }
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(&rec);
        self.out.resize(self.out.len() + pad, 0);
    }
}

/// One segment file of a new WAL.
pub struct Segment {
    pub name: String,
    pub bytes: Vec<u8>,
    /// Reserved to the full segment size (etcd's open segment); a segment etcd cut is
    /// truncated to its records.
    pub preallocate: bool,
}

/// The segments' bytes, in the order etcd writes them: CRC, metadata, the empty snapshot
/// marker (`wal.Create`), entries and hard state (`Save`), then the snapshot (`SaveSnapshot`).
/// When `Save` leaves the segment at or past etcd's segment size, etcd cuts: the next segment
/// (sequence 1, named after the last index) starts with the CRC so far, the metadata and the
/// hard state, and the snapshot record goes there.
pub fn encode(b: &Bootstrap<'_>) -> Vec<Segment> {
    let mut e = Encoder {
        out: Vec::new(),
        crc: 0,
    };
    e.record(CRC_TYPE, None);
    e.record(METADATA_TYPE, Some(b.metadata));
    e.record(SNAPSHOT_TYPE, Some(&proto::wal_snapshot(0, 0)));
    let mut segments = Vec::new();
    if !b.entries.is_empty() || b.hard_state.is_some() {
        for entry in b.entries {
            e.record(ENTRY_TYPE, Some(entry));
        }
        if let Some(hs) = b.hard_state {
            e.record(STATE_TYPE, Some(hs));
        }
        if e.out.len() as u64 >= SEGMENT_SIZE {
            segments.push(Segment {
                name: FIRST_SEGMENT.to_string(),
                bytes: std::mem::take(&mut e.out),
                preallocate: false,
            });
            e.record(CRC_TYPE, None);
            e.record(METADATA_TYPE, Some(b.metadata));
            if let Some(hs) = b.hard_state {
                e.record(STATE_TYPE, Some(hs));
            }
        }
    }
    e.record(
        SNAPSHOT_TYPE,
        Some(&proto::wal_snapshot(b.snapshot_index, b.snapshot_term)),
    );
    let name = if segments.is_empty() {
        FIRST_SEGMENT.to_string()
    } else {
        format!("{:016x}-{:016x}.wal", 1, b.last_index + 1)
    };
    segments.push(Segment {
        name,
        bytes: e.out,
        preallocate: true,
    });
    segments
}

/// Writes the WAL directory as `wal.Create` does: into `<dir>.tmp`, then renamed into place,
/// so a crash never leaves a half-written WAL where etcd would find it.
pub fn create(dir: &Path, segments: &[Segment]) -> std::io::Result<()> {
    let tmp = {
        let mut s = dir.as_os_str().to_os_string();
        s.push(".tmp");
        std::path::PathBuf::from(s)
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    super::restore::create_dir_all(&tmp)?;
    for segment in segments {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.join(&segment.name))?;
        if segment.preallocate {
            preallocate(&f, SEGMENT_SIZE);
        }
        f.write_all(&segment.bytes)?;
        f.sync_all()?;
    }
    // `dir` exists (empty) when the caller made it; renaming over an empty directory works.
    std::fs::rename(&tmp, dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Reserves the segment's full size, as etcd does so appends never hit a full disk midway;
/// where the file system cannot, the file is only extended (sparse), which etcd reads the same.
fn preallocate(f: &std::fs::File, size: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate on a descriptor we own, with no memory passed.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc != 0 {
        let _ = f.set_len(size);
    }
}

/// fsyncs a directory so a rename in it is durable; failures are ignored as etcd's
/// `fileutil.Fsync` on directories is best effort on some file systems.
pub fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_etcds_bytes_for_a_one_member_restore() {
        // The head of the WAL etcdctl 3.4 wrote restoring s1=http://127.0.0.1:23180.
        let metadata = proto::metadata(0xa87a472412f1f7e6, 0xac3fda0a0b204aa5);
        let ctx =
            br#"{"id":12140093965792835558,"peerURLs":["http://127.0.0.1:23180"],"name":"s1"}"#;
        let cc = proto::conf_change(proto::CONF_CHANGE_ADD_NODE, 0xa87a472412f1f7e6, ctx);
        let entries = vec![proto::entry(proto::ENTRY_CONF_CHANGE, 1, 1, &cc)];
        let hs = proto::hard_state(1, 0xa87a472412f1f7e6, 1);
        let segments = encode(&Bootstrap {
            metadata: &metadata,
            entries: &entries,
            hard_state: Some(&hs),
            last_index: 1,
            snapshot_index: 1,
            snapshot_term: 1,
        });
        assert_eq!(segments.len(), 1);
        let bytes = &segments[0].bytes;
        let expected_head = [
            0x04, 0, 0, 0, 0, 0, 0, 0x84, 0x08, 0x04, 0x10, 0x00, 0, 0, 0, 0, // CRC record
            0x20, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x01, 0x10, 0xa0, 0xc3, 0xa3, 0xc2,
            0x03, // metadata
        ];
        assert_eq!(&bytes[..32], &expected_head);
        // The last record: snapshot {index 1, term 1} with etcd's CRC.
        let tail = [
            0x0e, 0, 0, 0, 0, 0, 0, 0x82, 0x08, 0x05, 0x10, 0xf2, 0xf0, 0xfe, 0xa1, 0x0e, 0x1a,
            0x04, 0x08, 0x01, 0x10, 0x01, 0, 0,
        ];
        assert_eq!(&bytes[bytes.len() - tail.len()..], &tail);
        assert_eq!(bytes.len(), 0x108);
    }

    #[test]
    fn a_full_segment_is_cut_as_etcd_cuts_it() {
        let metadata = proto::metadata(1, 2);
        let big = vec![7u8; 1 << 20];
        let entries: Vec<Vec<u8>> = (1..=64).map(|i| proto::entry(0, 1, i, &big)).collect();
        let hs = proto::hard_state(1, 1, 64);
        let segments = encode(&Bootstrap {
            metadata: &metadata,
            entries: &entries,
            hard_state: Some(&hs),
            last_index: 64,
            snapshot_index: 0,
            snapshot_term: 0,
        });
        assert_eq!(segments.len(), 2);
        assert!(!segments[0].preallocate && segments[1].preallocate);
        assert!(segments[0].bytes.len() as u64 >= SEGMENT_SIZE);
        assert_eq!(segments[1].name, "0000000000000001-0000000000000041.wal");
        // The second segment: CRC record carrying the first one's running CRC, metadata,
        // state, snapshot.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        create(&dir, &segments).unwrap();
        let got = super::super::wal_read::read_all(&dir, Default::default()).unwrap();
        assert_eq!(got.entries.len(), 64);
        assert_eq!(got.state.commit, 64);
        assert_eq!(got.metadata, metadata);
    }
}

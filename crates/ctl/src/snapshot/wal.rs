//! The WAL a restored member starts from, in etcd 3.4's format: one segment,
//! `0000000000000000-0000000000000000.wal`, preallocated to etcd's 64 MB segment size, holding
//! framed `walpb.Record`s whose CRC-32C runs on from one record's data to the next.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::proto;

/// etcd's `SegmentSizeBytes`.
pub const SEGMENT_SIZE: u64 = 64 * 1000 * 1000;
/// The first (and here only) segment's name: sequence 0, first index 0.
pub const FIRST_SEGMENT: &str = "0000000000000000-0000000000000000.wal";

const METADATA_TYPE: u64 = 1;
const ENTRY_TYPE: u64 = 2;
const STATE_TYPE: u64 = 3;
const CRC_TYPE: u64 = 4;
const SNAPSHOT_TYPE: u64 = 5;

/// What a fresh WAL written by a restore holds.
pub struct Bootstrap<'a> {
    /// `etcdserverpb.Metadata` (node and cluster ID).
    pub metadata: &'a [u8],
    /// Encoded `raftpb.Entry`s.
    pub entries: &'a [Vec<u8>],
    /// Encoded `raftpb.HardState`.
    pub hard_state: &'a [u8],
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

/// The segment's bytes, in the order etcd writes them: CRC, metadata, the empty snapshot
/// marker (`wal.Create`), entries and hard state (`Save`), then the snapshot (`SaveSnapshot`).
pub fn encode(b: &Bootstrap<'_>) -> Vec<u8> {
    let mut e = Encoder {
        out: Vec::new(),
        crc: 0,
    };
    e.record(CRC_TYPE, None);
    e.record(METADATA_TYPE, Some(b.metadata));
    e.record(SNAPSHOT_TYPE, Some(&proto::wal_snapshot(0, 0)));
    for entry in b.entries {
        e.record(ENTRY_TYPE, Some(entry));
    }
    e.record(STATE_TYPE, Some(b.hard_state));
    e.record(
        SNAPSHOT_TYPE,
        Some(&proto::wal_snapshot(b.snapshot_index, b.snapshot_term)),
    );
    e.out
}

/// Writes the WAL directory as `wal.Create` does: into `<dir>.tmp`, then renamed into place,
/// so a crash never leaves a half-written WAL where etcd would find it.
pub fn create(dir: &Path, segment: &[u8]) -> std::io::Result<()> {
    let tmp = {
        let mut s = dir.as_os_str().to_os_string();
        s.push(".tmp");
        std::path::PathBuf::from(s)
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    super::restore::create_dir_all(&tmp)?;
    let path = tmp.join(FIRST_SEGMENT);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    preallocate(&f, SEGMENT_SIZE);
    f.write_all(segment)?;
    f.sync_all()?;
    drop(f);
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
        let bytes = encode(&Bootstrap {
            metadata: &metadata,
            entries: &entries,
            hard_state: &hs,
            snapshot_index: 1,
            snapshot_term: 1,
        });
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
}

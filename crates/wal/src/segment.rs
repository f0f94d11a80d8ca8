//! Segment files: naming, listing and reading.

use std::path::{Path, PathBuf};

use crate::record::{decode, Decoded, RecordType};
use crate::{io_err, WalError};

#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    pub seq: u64,
    pub first_index: u64,
}

pub fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

/// The segments in `dir`, oldest first (missing dir = none).
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut segments = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        if let Some((seq, first_index)) = parse_name(&name.to_string_lossy()) {
            segments.push(Segment {
                path: entry.path(),
                seq,
                first_index,
            });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

pub enum SegmentEnd {
    /// The records end cleanly here (at the end of the file or where zeroed, preallocated space
    /// begins).
    Clean(u64),
    /// The last segment ends in a torn record starting at this offset.
    TornAt(u64),
}

/// Feeds every record of a segment to `visit`. In the last segment a damaged record with
/// nothing valid after it is a torn write (reported, not an error); anywhere else damage is
/// `Corrupt`.
pub fn read_segment(
    path: &Path,
    is_last: bool,
    visit: &mut dyn FnMut(RecordType, &[u8]) -> Result<(), String>,
) -> Result<SegmentEnd, WalError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let mut at = 0usize;
    while at < data.len() {
        match decode(&data, at) {
            Decoded::Record {
                rtype,
                payload,
                next,
            } => {
                visit(rtype, payload).map_err(|reason| WalError::Corrupt {
                    file: path.to_path_buf(),
                    offset: at as u64,
                    reason,
                })?;
                at = next;
            }
            Decoded::Zeros if is_last => return Ok(SegmentEnd::Clean(at as u64)),
            Decoded::Zeros => {
                // A closed segment was synced whole: after its records only zeros may follow.
                if let Some(off) = data[at..].iter().position(|&b| b != 0) {
                    return Err(WalError::Corrupt {
                        file: path.to_path_buf(),
                        offset: (at + off) as u64,
                        reason: "data after the end of the segment's records".into(),
                    });
                }
                return Ok(SegmentEnd::Clean(at as u64));
            }
            Decoded::Short if is_last => return Ok(SegmentEnd::TornAt(at as u64)),
            Decoded::Bad(reason) if is_last && !valid_record_after(&data, at + 1) => {
                tracing::debug!(%reason, "WAL: damaged final record");
                return Ok(SegmentEnd::TornAt(at as u64));
            }
            Decoded::Short => {
                return Err(WalError::Corrupt {
                    file: path.to_path_buf(),
                    offset: at as u64,
                    reason: "segment ends in the middle of a record".into(),
                })
            }
            Decoded::Bad(reason) => {
                return Err(WalError::Corrupt {
                    file: path.to_path_buf(),
                    offset: at as u64,
                    reason,
                })
            }
        }
    }
    Ok(SegmentEnd::Clean(at as u64))
}

/// Whether a valid record starts anywhere at or after `from` (then damage before it is not a
/// torn tail but corruption of acknowledged data).
fn valid_record_after(data: &[u8], from: usize) -> bool {
    (from..data.len()).any(|i| matches!(decode(data, i), Decoded::Record { .. }))
}

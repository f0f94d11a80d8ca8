use raft::eraftpb::{Entry, HardState, SnapshotMetadata};
use rampart_wal::{Wal, WalError};

fn entry(index: u64, term: u64) -> Entry {
    let mut e = Entry::default();
    e.index = index;
    e.term = term;
    e.data = format!("data-{index}-{term}").into_bytes().into();
    e
}

fn hs(term: u64, commit: u64) -> HardState {
    let mut h = HardState::default();
    h.term = term;
    h.commit = commit;
    h.vote = 1;
    h
}

fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"meta").unwrap();
    wal.save(Some(&hs(1, 0)), &[entry(1, 1), entry(2, 1)])
        .unwrap();
    wal.save(Some(&hs(1, 2)), &[entry(3, 1)]).unwrap();
    drop(wal);
    let (mut wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(c.metadata, b"meta");
    assert_eq!(c.hard_state, hs(1, 2));
    assert_eq!(indexes(&c.entries), vec![(1, 1), (2, 1), (3, 1)]);
    assert!(c.snapshot.is_none());
    wal.save(None, &[entry(4, 1)]).unwrap();
    drop(wal);
    let (_, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(indexes(&c.entries), vec![(1, 1), (2, 1), (3, 1), (4, 1)]);
}

#[test]
fn a_later_append_overwrites_the_conflicting_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.save(None, &[entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)])
        .unwrap();
    wal.save(Some(&hs(2, 2)), &[entry(3, 2)]).unwrap();
    drop(wal);
    let (_, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(indexes(&c.entries), vec![(1, 1), (2, 1), (3, 2)]);
}

#[test]
fn snapshot_marker_hides_covered_entries_even_when_written_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.save(None, &(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    let mut meta = SnapshotMetadata::default();
    meta.index = 6;
    meta.term = 1;
    wal.save_snapshot(&meta).unwrap();
    wal.save(None, &[entry(11, 1)]).unwrap();
    drop(wal);
    let (_, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(c.snapshot.unwrap().index, 6);
    assert_eq!(c.entries.first().unwrap().index, 7);
    assert_eq!(c.entries.last().unwrap().index, 11);
}

#[test]
fn segments_roll_over_and_release_keeps_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.set_segment_size(200);
    for i in 1..=50 {
        wal.save(Some(&hs(1, i - 1)), &[entry(i, 1)]).unwrap();
    }
    let segments = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(segments > 5, "expected several segments, got {segments}");
    let mut meta = SnapshotMetadata::default();
    meta.index = 40;
    meta.term = 1;
    wal.save_snapshot(&meta).unwrap();
    wal.release_to(40).unwrap();
    let after = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(
        after < segments,
        "release deleted nothing ({after} of {segments})"
    );
    drop(wal);
    let (_, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(c.snapshot.unwrap().index, 40);
    assert_eq!(
        indexes(&c.entries),
        (41..=50).map(|i| (i, 1)).collect::<Vec<_>>()
    );
    assert_eq!(c.hard_state, hs(1, 49));
}

/// Cut the log at every byte of its last records: opening never fails, never returns a
/// half-written record, keeps everything before the cut, and appending afterwards works.
#[test]
fn crash_at_every_offset_of_the_tail_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    let mut boundaries = Vec::new();
    for i in 1..=20u64 {
        wal.save(None, &[entry(i, 1)]).unwrap();
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(std::fs::metadata(&seg).unwrap().len() >= wal.records_end());
        boundaries.push((i, wal.records_end()));
    }
    drop(wal);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut full = std::fs::read(&seg).unwrap();
    let allocated = full.len();
    assert!(full[boundaries[19].1 as usize..].iter().all(|&b| b == 0));
    full.truncate(boundaries[19].1 as usize);
    let start = boundaries[14].1 as usize;
    // Each cut twice: the file ends at the cut, or the cut is followed by the zeroed space
    // allocated ahead of the records (what a crash leaves in a preallocated segment).
    for (cut, zeroed) in (start..=full.len()).flat_map(|c| [(c, false), (c, true)]) {
        let copy = tempfile::tempdir().unwrap();
        let mut bytes = full[..cut].to_vec();
        if zeroed {
            bytes.resize(allocated, 0);
        }
        std::fs::write(copy.path().join(seg.file_name().unwrap()), &bytes).unwrap();
        let (mut wal, c) = Wal::open(copy.path()).unwrap();
        let expected = boundaries
            .iter()
            .filter(|(_, end)| *end as usize <= cut)
            .map(|(i, _)| *i)
            .max()
            .unwrap();
        assert_eq!(c.entries.last().unwrap().index, expected, "cut at {cut}");
        assert_eq!(c.entries.len() as u64, expected);
        wal.save(None, &[entry(expected + 1, 1)]).unwrap();
        drop(wal);
        let (_, c) = Wal::open(copy.path()).unwrap();
        assert_eq!(
            c.entries.last().unwrap().index,
            expected + 1,
            "append after repair at {cut} (zeroed tail: {zeroed})"
        );
    }
}

#[test]
fn a_flipped_byte_in_the_middle_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    for i in 1..=20u64 {
        wal.save(None, &[entry(i, 1)]).unwrap();
    }
    drop(wal);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut data = std::fs::read(&seg).unwrap();
    let records = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mid = records / 2;
    data[mid] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    match Wal::open(dir.path()) {
        Err(WalError::Corrupt { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("corruption in the middle was not detected"),
    }
}

#[test]
fn create_refuses_an_existing_wal() {
    let dir = tempfile::tempdir().unwrap();
    drop(Wal::create(dir.path(), b"m").unwrap());
    assert!(matches!(
        Wal::create(dir.path(), b"m"),
        Err(WalError::Exists(_))
    ));
    assert!(Wal::exists(dir.path()));
}

mod model {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random appends that sometimes overwrite a tail, against a Vec model.
        #[test]
        fn random_appends_match_a_model(ops in proptest::collection::vec((0u64..4, 1usize..4), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let mut wal = Wal::create(dir.path(), b"m").unwrap();
            wal.set_segment_size(300);
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut term = 1;
            for (back, count) in ops {
                let last = model.last().map(|e| e.0).unwrap_or(0);
                let start = last.saturating_sub(back).max(1).min(last + 1);
                if start <= last { term += 1; }
                model.retain(|e| e.0 < start);
                let batch: Vec<Entry> = (start..start + count as u64).map(|i| entry(i, term)).collect();
                model.extend(batch.iter().map(|e| (e.index, e.term)));
                wal.save(None, &batch).unwrap();
            }
            drop(wal);
            let (_, c) = Wal::open(dir.path()).unwrap();
            prop_assert_eq!(indexes(&c.entries), model);
        }
    }
}

/// Segments are allocated ahead of their records; a closed segment must hold nothing but zeros
/// after its records, while the last one may end in leftovers of an unsynced write, which are
/// cut off on open so that no stale record can ever follow new ones.
#[test]
fn preallocated_space_ends_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.set_segment_size(256);
    for i in 1..=40u64 {
        wal.save(Some(&hs(1, i)), &[entry(i, 1)]).unwrap();
    }
    let end = wal.records_end();
    drop(wal);
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    assert!(segments.len() > 2, "{segments:?}");
    let last = segments.last().unwrap().clone();
    let allocated = std::fs::metadata(&last).unwrap().len();
    assert!(allocated >= rampart_wal::PREALLOCATE_BYTES, "{allocated}");

    // Leftovers after a gap in the last segment: cut off, and appends go right after the records.
    let mut data = std::fs::read(&last).unwrap();
    data[end as usize + 100..end as usize + 200].fill(0xab);
    std::fs::write(&last, &data).unwrap();
    let (mut wal, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(c.entries.last().unwrap().index, 40);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), end);
    wal.save(None, &[entry(41, 1)]).unwrap();
    drop(wal);
    let (_, c) = Wal::open(dir.path()).unwrap();
    assert_eq!(c.entries.last().unwrap().index, 41);
    assert_eq!(c.hard_state, hs(1, 40));

    // Bytes after the records of a closed segment are damage, not a tail.
    let first = &segments[0];
    let mut data = std::fs::read(first).unwrap();
    let records = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(
        data.len() > records + 64,
        "the closed segment was preallocated"
    );
    data[records + 32] = 1;
    std::fs::write(first, &data).unwrap();
    match Wal::open(dir.path()) {
        Err(WalError::Corrupt { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("bytes after a closed segment's records were not detected"),
    }
}

//! Files we write read back to the same buckets and pass bbolt's integrity check.

mod support;

use proptest::prelude::*;
use rampart_bbolt::{write_db, Buckets, Db, Error, DEFAULT_PAGE_SIZE};
use support::read_back;

fn round_trip(buckets: &Buckets) -> Db {
    let bytes = write_db(buckets).unwrap();
    assert_eq!(bytes.len() % DEFAULT_PAGE_SIZE, 0);
    let db = Db::from_bytes(bytes).unwrap();
    assert_eq!(db.check(), Vec::<String>::new());
    assert_eq!(&read_back(&db), buckets);
    db
}

fn bucket(name: &str, kvs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Buckets {
    let mut b = Buckets::new();
    b.insert(name.as_bytes().to_vec(), kvs.into_iter().collect());
    b
}

#[test]
fn no_buckets_is_a_valid_empty_file() {
    let db = round_trip(&Buckets::new());
    // Two metas, the freelist and the root bucket's empty leaf.
    assert_eq!(db.size(), 4 * 4096);
}

#[test]
fn small_buckets_are_inline_and_take_no_page() {
    let mut b = bucket("a", [(b"k".to_vec(), b"v".to_vec())]);
    b.insert(b"empty".to_vec(), Default::default());
    let db = round_trip(&b);
    assert_eq!(db.size(), 4 * 4096, "inline buckets live in the root leaf");
}

#[test]
fn many_keys_need_branch_pages_and_several_levels() {
    // 200k keys of 16+8 bytes: ~1200 leaves, so two branch levels above them.
    let kvs = (0..200_000u32).map(|i| {
        (
            format!("key-{i:012}").into_bytes(),
            i.to_be_bytes().repeat(2),
        )
    });
    let db = round_trip(&bucket("key", kvs));
    assert!(db.size() > 1000 * 4096);
}

#[test]
fn values_larger_than_a_page_use_overflow_pages() {
    let kvs = [
        (b"a".to_vec(), vec![1u8; 10]),
        (b"big".to_vec(), vec![7u8; 3 * 4096 + 5]),
        (b"c".to_vec(), vec![2u8; 4000]),
        (b"huge".to_vec(), vec![9u8; 1 << 20]),
    ];
    round_trip(&bucket("b", kvs));
}

#[test]
fn empty_keys_are_refused_as_bbolt_refuses_them() {
    let b = bucket("b", [(Vec::new(), b"v".to_vec())]);
    // Inline buckets are not checked by the tree builder, so force a page-sized bucket.
    let mut big = b.clone();
    big.get_mut(&b"b"[..])
        .unwrap()
        .insert(b"x".to_vec(), vec![0; 5000]);
    assert!(matches!(write_db(&big), Err(Error::EmptyKey)));
}

#[test]
fn meta_pages_fall_back_and_report_bbolts_errors() {
    let bytes = write_db(&bucket("a", [(b"k".to_vec(), b"v".to_vec())])).unwrap();
    // A torn newer meta (page 1): the older one still opens the file.
    let mut torn = bytes.clone();
    torn[4096 + 16 + 40] ^= 0xff;
    let db = Db::from_bytes(torn).unwrap();
    assert_eq!(db.meta().txid, 0);
    // Both metas bad: bbolt reports meta 0's problem.
    let mut both = bytes.clone();
    both[16 + 40] ^= 0xff;
    both[4096 + 16 + 40] ^= 0xff;
    assert_eq!(
        Db::from_bytes(both).unwrap_err().to_string(),
        "checksum error"
    );
    let mut magic = bytes.clone();
    magic[16] ^= 0xff;
    magic[4096 + 16] ^= 0xff;
    assert_eq!(
        Db::from_bytes(magic).unwrap_err().to_string(),
        "invalid database"
    );
    assert_eq!(
        Db::from_bytes(bytes[..5000].to_vec())
            .unwrap_err()
            .to_string(),
        "file size too small"
    );
    assert_eq!(
        Db::from_bytes(bytes[..100].to_vec())
            .unwrap_err()
            .to_string(),
        "invalid database"
    );
}

#[test]
fn check_reports_unreachable_pages_and_truncation_is_an_error() {
    let kvs = (0..2000u32).map(|i| (format!("k{i:06}").into_bytes(), vec![0u8; 100]));
    let bytes = write_db(&bucket("b", kvs)).unwrap();
    // An extra page past the data, counted in the high-water mark but referenced by nothing.
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0u8; 4096]);
    let pgid = (extra.len() / 4096) as u64;
    for page in 0..2 {
        let at = page * 4096 + 16;
        let mut meta = rampart_bbolt::Meta::parse(&extra[at..at + 64]);
        meta.pgid = pgid;
        extra[at..at + 64].copy_from_slice(&meta.encode());
    }
    let db = Db::from_bytes(extra).unwrap();
    assert_eq!(
        db.check(),
        vec![format!("page {}: unreachable unfreed", pgid - 1)]
    );
    // A file cut short (the root leaf is written last): an error instead of a crash.
    let cut = Db::from_bytes(bytes[..bytes.len() - 3 * 4096].to_vec()).unwrap();
    assert!(matches!(
        cut.entries(&cut.root()),
        Err(rampart_bbolt::Error::PageOutOfFile { .. })
    ));
    assert!(!cut.check().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_buckets_round_trip(
        buckets in prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 1..12),
            prop::collection::btree_map(
                prop::collection::vec(any::<u8>(), 1..40),
                prop::collection::vec(any::<u8>(), 0..3000),
                0..120,
            ),
            0..6,
        )
    ) {
        let bytes = write_db(&buckets).unwrap();
        let db = Db::from_bytes(bytes).unwrap();
        prop_assert_eq!(db.check(), Vec::<String>::new());
        prop_assert_eq!(read_back(&db), buckets);
    }
}

#[test]
fn streams_to_a_file_and_refuses_unsorted_input() {
    let big = vec![5u8; 9000];
    let kvs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"b", &big), (b"c", b"3")];
    let buckets = vec![(&b"key"[..], kvs.clone()), (&b"meta"[..], vec![])];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut f = std::fs::File::create(&path).unwrap();
    let size = rampart_bbolt::write_buckets(&mut f, &buckets).unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    let db = Db::open(&path).unwrap();
    assert_eq!(db.check(), Vec::<String>::new());
    let back = read_back(&db);
    assert_eq!(back[&b"key"[..]][&b"b"[..]], big);

    let mut out = std::io::Cursor::new(Vec::new());
    let swapped = vec![(&b"meta"[..], vec![]), (&b"key"[..], kvs.clone())];
    assert!(matches!(
        rampart_bbolt::write_buckets(&mut out, &swapped),
        Err(Error::Unsorted { .. })
    ));
    let dup = vec![(
        &b"key"[..],
        vec![(&b"a"[..], &b"1"[..]), (&b"a"[..], &b"2"[..])],
    )];
    assert!(matches!(
        rampart_bbolt::write_buckets(&mut out, &dup),
        Err(Error::Unsorted { .. })
    ));
}

//! go.etcd.io/bbolt 1.3 reads and modifies files we write, and we read files it writes (nested,
//! inline and overflowing buckets, free pages). Skipped with a message when Go is missing.

mod support;

use rampart_bbolt::{write_db, Buckets, Db};
use support::{dump, go, go_helper, read_back};

fn sample() -> Buckets {
    let mut b = Buckets::new();
    let key = b.entry(b"key".to_vec()).or_default();
    for i in 0..5000u64 {
        let mut k = i.to_be_bytes().to_vec();
        k.extend_from_slice(b"_");
        k.extend_from_slice(&0u64.to_be_bytes());
        key.insert(k, vec![(i % 251) as u8; (i % 300) as usize]);
    }
    key.insert(vec![0xff; 17], vec![3; 50_000]);
    b.entry(b"meta".to_vec())
        .or_default()
        .insert(b"consistent_index".to_vec(), 7u64.to_be_bytes().to_vec());
    b.entry(b"lease".to_vec()).or_default();
    b.entry(b"members".to_vec())
        .or_default()
        .insert(b"8e9e05c52164694d".to_vec(), br#"{"id":1}"#.to_vec());
    b
}

#[test]
fn go_bbolt_reads_and_modifies_a_file_we_wrote() {
    let Some(bin) = go_helper() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.db");
    std::fs::write(&path, write_db(&sample()).unwrap()).unwrap();
    let ours = Db::open(&path).unwrap();
    assert_eq!(go(&bin, "dump", &path), dump(&ours));

    // bbolt rebalances, splits and frees pages of our file; the result still checks and we
    // read what it wrote.
    go(&bin, "modify", &path);
    let go_view = go(&bin, "dump", &path);
    let after = Db::open(&path).unwrap();
    assert_eq!(after.check(), Vec::<String>::new());
    assert_eq!(go_view, dump(&after));
    let back = read_back(&after);
    assert!(back[&b"lease"[..]].contains_key(&b"zz-added-199"[..]));
    assert_eq!(back[&b"key"[..]].len(), 5001 - 1 + 200);
}

#[test]
fn we_read_a_file_go_bbolt_wrote() {
    let Some(bin) = go_helper() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("go.db");
    go(&bin, "make", &path);
    let db = Db::open(&path).unwrap();
    assert_eq!(db.check(), Vec::<String>::new());
    let ours = dump(&db);
    assert_eq!(go(&bin, "dump", &path), ours);
    // The file really has what the test is about: a nested bucket, an inline one, overflow.
    assert!(ours.contains(&format!(" bucket {}\n", hex(b"nested"))));
    assert!(ours.contains(&format!("  bucket {}\n", hex(b"deep"))));
    assert!(ours.contains(&"78".repeat(20000)));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

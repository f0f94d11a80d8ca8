//! A snapshot the real etcd 3.4 wrote (`etcdctl snapshot save`) reads as etcd's buckets, passes
//! the integrity check, matches go.etcd.io/bbolt's reading when Go is present, and survives
//! being rewritten by us.

mod support;

use rampart_bbolt::{write_db, Db};
use support::{dump, go, go_helper, read_back, RealEtcd};

#[test]
fn reads_a_real_etcd_snapshot() {
    let etcd = RealEtcd::start();
    for i in 0..40 {
        let value = format!("value-{i}-{}", "x".repeat(i * 200));
        assert!(etcd
            .ctl(&["put", &format!("key{i:03}"), &value])
            .status
            .success());
    }
    // A value spanning several pages.
    let big = "b".repeat(20_000);
    assert!(etcd.ctl(&["put", "big", &big]).status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.db");
    etcd.snapshot(&path);
    drop(etcd);

    let bytes = std::fs::read(&path).unwrap();
    // etcd appends a sha256 of the database; bbolt ignores what lies past its pages.
    assert_eq!(bytes.len() % 512, 32);
    let db = Db::from_bytes(bytes).unwrap();
    assert_eq!(db.check(), Vec::<String>::new());
    let buckets = read_back(&db);
    for name in [
        "key", "meta", "lease", "members", "cluster", "alarm", "auth",
    ] {
        assert!(
            buckets.contains_key(name.as_bytes()),
            "bucket {name} missing"
        );
    }
    let keys = &buckets[&b"key"[..]];
    // 41 puts; revisions 2..=42 (revision 1 is etcd's initial empty store).
    assert_eq!(keys.len(), 41);
    let last = keys.keys().next_back().unwrap();
    assert_eq!(u64::from_be_bytes(last[..8].try_into().unwrap()), 42);
    assert!(keys
        .values()
        .any(|kv| kv.windows(big.len()).any(|w| w == big.as_bytes())));

    if let Some(bin) = go_helper() {
        assert_eq!(go(&bin, "dump", &path), dump(&db));
    }

    // Rewritten compactly, it holds the same buckets.
    let rewritten = Db::from_bytes(write_db(&buckets).unwrap()).unwrap();
    assert_eq!(rewritten.check(), Vec::<String>::new());
    assert_eq!(read_back(&rewritten), buckets);
}

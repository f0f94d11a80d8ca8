//! The store on its own: revisions in a batch, compaction, events, snapshots.

use rampart_mvcc::{Durability, MvccError, Store};
use rampart_proto::mvccpb::event::EventType;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    (dir, store)
}

/// Applies each op as its own request (put, or delete when the value is `None`) and commits at `index`.
fn write(store: &Store, index: u64, ops: &[(&str, Option<&str>)]) {
    let mut batch = store.write().unwrap();
    for (key, value) in ops {
        match value {
            Some(v) => {
                batch.put(key.as_bytes(), v.as_bytes().to_vec(), 0).unwrap();
            }
            None => {
                batch.delete_range(key.as_bytes(), &[]).unwrap();
            }
        }
        batch.end_request();
    }
    batch.commit(index, Durability::None).unwrap();
}

#[test]
fn each_writing_request_gets_one_revision_and_sees_its_own_writes() {
    let (_dir, store) = open();
    let mut batch = store.write().unwrap();
    assert_eq!(batch.pending_revision(), 2);
    let (_, event) = batch.put(b"a", b"1".to_vec(), 0).unwrap();
    assert_eq!(event.kv.unwrap().mod_revision, 2);
    let (_, event) = batch.put(b"b", b"1".to_vec(), 0).unwrap();
    assert_eq!(
        event.kv.unwrap().mod_revision,
        2,
        "a second write of the request shares its revision"
    );
    assert_eq!(
        batch.range(b"a", b"c", 0, 0).unwrap().count,
        2,
        "reads see the request's own writes"
    );
    batch.end_request();
    // A request that writes nothing keeps the revision.
    let deleted = batch.delete_range(b"zz", &[]).unwrap();
    assert!(deleted.is_empty());
    batch.end_request();
    let (prev, _) = batch.put(b"a", b"2".to_vec(), 0).unwrap();
    assert_eq!(prev.unwrap().mod_revision, 2);
    batch.end_request();
    let meta = batch.commit(3, Durability::Immediate).unwrap();
    assert_eq!((meta.current_revision, meta.consistent_index), (3, 3));
    let view = store.read().unwrap();
    assert_eq!(view.range(b"a", &[], 2, 0).unwrap().kvs[0].value, b"1");
    assert_eq!(view.range(b"a", &[], 0, 0).unwrap().kvs[0].value, b"2");
    assert!(matches!(
        view.range(b"a", &[], 4, 0),
        Err(MvccError::FutureRevision)
    ));
}

#[test]
fn compaction_drops_old_versions_and_tombstones_physically() {
    let (_dir, store) = open();
    // revs: a@2, a@3, b@4, b deleted @5, a@6, c@7
    write(
        &store,
        1,
        &[
            ("a", Some("1")),
            ("a", Some("2")),
            ("b", Some("1")),
            ("b", None),
            ("a", Some("3")),
            ("c", Some("1")),
        ],
    );
    assert_eq!(store.read().unwrap().version_count().unwrap(), 6);
    let mut batch = store.write().unwrap();
    batch.compact(5).unwrap();
    batch.commit(2, Durability::None).unwrap();
    let view = store.read().unwrap();
    // Kept: a@3 (latest ≤ 5), a@6, c@7. Dropped: a@2, b@4, b's tombstone @5.
    assert_eq!(view.version_count().unwrap(), 3);
    assert_eq!(view.range(b"a", &[], 5, 0).unwrap().kvs[0].value, b"2");
    assert_eq!(view.range(b"b", &[], 5, 0).unwrap().count, 0);
    assert!(matches!(
        view.range(b"a", &[], 4, 0),
        Err(MvccError::Compacted)
    ));
    drop(view);
    // A second compaction only reduces keys changed since the first.
    let mut batch = store.write().unwrap();
    assert!(matches!(batch.compact(5), Err(MvccError::Compacted)));
    batch.compact(7).unwrap();
    batch.commit(3, Durability::None).unwrap();
    let view = store.read().unwrap();
    assert_eq!(view.version_count().unwrap(), 2, "a@6 and c@7");
    assert_eq!(view.compact_revision(), 7);
}

#[test]
fn events_come_in_revision_order_from_a_revision() {
    let (_dir, store) = open();
    write(
        &store,
        1,
        &[
            ("a", Some("1")),
            ("b", Some("1")),
            ("a", None),
            ("x", Some("1")),
            ("b", Some("2")),
        ],
    );
    let view = store.read().unwrap();
    let events = view.events(b"a", b"c", 3, 0).unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.r#type,
                e.kv.as_ref().unwrap().key.clone(),
                e.kv.as_ref().unwrap().mod_revision,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventType::Put as i32, b"b".to_vec(), 3),
            (EventType::Delete as i32, b"a".to_vec(), 4),
            (EventType::Put as i32, b"b".to_vec(), 6),
        ]
    );
    assert_eq!(view.events(b"a", b"c", 2, 2).unwrap().len(), 2);
    drop(view);
    let mut batch = store.write().unwrap();
    batch.put(b"m", b"1".to_vec(), 0).unwrap();
    batch.put(b"n", b"1".to_vec(), 0).unwrap();
    batch.end_request();
    batch.compact(4).unwrap();
    batch.commit(2, Durability::None).unwrap();
    let view = store.read().unwrap();
    // A limit never splits a revision.
    assert_eq!(view.events(b"m", b"o", 7, 1).unwrap().len(), 2);
    assert!(matches!(
        view.events(b"a", &[0], 3, 0),
        Err(MvccError::Compacted)
    ));
    // Watching from the compacted revision itself is allowed, as in etcd.
    assert!(view.events(b"a", &[0], 4, 0).is_ok());
}

#[test]
fn snapshots_restore_everything_and_refuse_damage() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("source")).unwrap();
    write(
        &source,
        9,
        &[("a", Some("1")), ("b", Some("2")), ("a", None)],
    );
    // v3 auth records travel with the snapshot too.
    let mut batch = source.write().unwrap();
    batch.auth_put("user/alice", Some(b"record")).unwrap();
    batch.auth_put("enabled", Some(&[1])).unwrap();
    batch.commit(9, Durability::Immediate).unwrap();
    let snapshot = source.snapshot_bytes().unwrap();
    let mut target = Store::open(&dir.path().join("target")).unwrap();
    write(&target, 1, &[("stale", Some("x"))]);
    target.restore(&snapshot).unwrap();
    let view = target.read().unwrap();
    assert_eq!(view.meta(), source.read().unwrap().meta());
    assert_eq!(view.consistent_index(), 9);
    assert_eq!(view.range(b"stale", &[], 0, 0).unwrap().count, 0);
    assert_eq!(
        view.auth_records().unwrap(),
        vec![
            ("enabled".to_string(), vec![1]),
            ("user/alice".to_string(), b"record".to_vec())
        ]
    );
    assert_eq!(
        view.hash_kv(0).unwrap(),
        source.read().unwrap().hash_kv(0).unwrap()
    );
    drop(view);
    assert!(matches!(
        target.restore(b"not a snapshot"),
        Err(MvccError::BadSnapshot(_))
    ));
    let mut truncated = snapshot.clone();
    truncated.truncate(snapshot.len() - 3);
    assert!(matches!(
        target.restore(&truncated),
        Err(MvccError::BadSnapshot(_))
    ));
    // The restored store survives a reopen.
    drop(target);
    let reopened = Store::open(&dir.path().join("target")).unwrap();
    assert_eq!(reopened.read().unwrap().consistent_index(), 9);
}

#[test]
fn defragment_shrinks_the_file_and_keeps_every_version() {
    let (_dir, mut store) = open();
    let big = "v".repeat(4096);
    for i in 0..400u64 {
        let key = format!("k{}", i % 20);
        write(&store, i + 1, &[(key.as_str(), Some(big.as_str()))]);
    }
    for i in 0..20u64 {
        let key = format!("k{i}");
        write(&store, 401 + i, &[(key.as_str(), None)]);
    }
    let mut batch = store.write().unwrap();
    batch.compact(batch.meta().current_revision).unwrap();
    batch.commit(421, Durability::Immediate).unwrap();
    let before = store.read().unwrap().hash_kv(0).unwrap();
    let size_before = store.file_size();
    store.defragment().unwrap();
    let size_after = store.file_size();
    assert!(size_after < size_before, "{size_after} >= {size_before}");
    let after = store.read().unwrap();
    assert_eq!(after.hash_kv(0).unwrap(), before);
    assert_eq!(after.consistent_index(), 421);
}

#[test]
fn a_single_key_reads_its_newest_version_at_each_revision() {
    let (_dir, store) = open();
    // Revisions 2..=7: k=1, k=2, other, delete k, k=3, k=4.
    write(
        &store,
        1,
        &[("k", Some("1")), ("k", Some("2")), ("other", Some("x"))],
    );
    write(
        &store,
        2,
        &[("k", None), ("k", Some("3")), ("k", Some("4"))],
    );
    let read = store.read().unwrap();
    let at = |rev: i64| {
        let r = read.range(b"k", &[], rev, 0).unwrap();
        assert_eq!(r.count, r.kvs.len() as i64);
        r.kvs.first().map(|kv| {
            (
                kv.value.clone(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
    };
    assert_eq!(at(1), None, "before the first write");
    assert_eq!(at(2), Some((b"1".to_vec(), 2, 2, 1)));
    assert_eq!(at(3), Some((b"2".to_vec(), 2, 3, 2)));
    assert_eq!(
        at(4),
        Some((b"2".to_vec(), 2, 3, 2)),
        "another key's revision"
    );
    assert_eq!(at(5), None, "deleted");
    assert_eq!(at(6), Some((b"3".to_vec(), 6, 6, 1)), "created again");
    assert_eq!(
        at(0),
        Some((b"4".to_vec(), 6, 7, 2)),
        "revision 0 is the newest"
    );
    assert_eq!(read.range(b"missing", &[], 0, 0).unwrap().count, 0);
}

#[test]
fn a_batch_dropped_without_commit_leaves_no_trace_in_later_reads() {
    let (_dir, store) = open();
    write(&store, 1, &[("a", Some("1"))]);
    {
        let mut batch = store.write().unwrap();
        batch.put(b"a", b"2".to_vec(), 0).unwrap();
        batch.put(b"b", b"2".to_vec(), 0).unwrap();
        batch.end_request();
        batch.compact(2).unwrap();
        // Dropped: the backend rolls back, and so must the key index.
    }
    let view = store.read().unwrap();
    let all = view.range(b"a", &[0], 0, 0).unwrap();
    assert_eq!(all.count, 1);
    assert_eq!(all.kvs[0].value, b"1");
    assert_eq!(all.revision, 2);
    drop(view);
    write(&store, 2, &[("b", Some("3"))]);
    let view = store.read().unwrap();
    let b = view.range(b"b", &[], 0, 0).unwrap();
    assert_eq!((b.kvs[0].mod_revision, b.kvs[0].version), (3, 1));
    assert_eq!(view.range(b"a", &[], 2, 0).unwrap().kvs[0].value, b"1");
}

#[test]
fn a_read_view_older_than_a_compaction_is_refused_below_it_and_exact_above() {
    let (_dir, store) = open();
    write(
        &store,
        1,
        &[("a", Some("1")), ("a", Some("2")), ("a", Some("3"))],
    );
    let old = store.read().unwrap();
    let mut batch = store.write().unwrap();
    batch.compact(4).unwrap();
    batch.commit(2, Durability::None).unwrap();
    assert!(matches!(
        old.range(b"a", &[], 2, 0),
        Err(MvccError::Compacted)
    ));
    assert_eq!(old.range(b"a", &[], 4, 0).unwrap().kvs[0].value, b"3");
    assert_eq!(old.range(b"a", &[], 0, 0).unwrap().kvs[0].value, b"3");
}

#[test]
fn a_backend_of_the_key_ordered_layout_keeps_every_version_when_opened() {
    use redb::{ReadableDatabase, TableDefinition};
    const KV: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("kv");
    const REVS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("revs");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Versions as the earlier layout stored them: a at 2 and 3, b at 3 (same request), a
    // deleted at 4.
    let version = |tombstone: bool, sub: u64, create: i64, ver: i64, value: &[u8]| {
        let v = rampart_mvcc::Version {
            sub,
            create_revision: create,
            version: ver,
            lease: 0,
            tombstone,
            value: value.to_vec(),
        };
        v.encode()
    };
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut kv = txn.open_table(KV).unwrap();
            let mut revs = txn.open_table(REVS).unwrap();
            let mut meta = txn.open_table(META).unwrap();
            for (key, main, sub, v) in [
                (&b"a"[..], 2u64, 0u64, version(false, 0, 2, 1, b"x")),
                (b"a", 3, 0, version(false, 0, 2, 2, b"y")),
                (b"b", 3, 1, version(false, 1, 3, 1, b"z")),
                (b"a", 4, 0, version(true, 0, 0, 0, b"")),
            ] {
                kv.insert((key, main), v.as_slice()).unwrap();
                revs.insert((main, sub), key).unwrap();
            }
            meta.insert("current_revision", 4).unwrap();
            meta.insert("consistent_index", 7).unwrap();
        }
        txn.commit().unwrap();
        assert!(db.begin_read().unwrap().list_tables().unwrap().count() == 3);
    }
    let store = Store::open(&path).unwrap();
    let view = store.read().unwrap();
    assert_eq!(view.consistent_index(), 7);
    assert_eq!(view.version_count().unwrap(), 4);
    let at3 = view.range(b"a", &[0], 3, 0).unwrap();
    let summary: Vec<_> = at3
        .kvs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.clone(),
                kv.mod_revision,
                kv.version,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (b"a".to_vec(), b"y".to_vec(), 3, 2),
            (b"b".to_vec(), b"z".to_vec(), 3, 1)
        ]
    );
    assert_eq!(view.range(b"a", &[0], 0, 0).unwrap().count, 1);
    let events = view.events(b"a", &[], 2, 0).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].r#type, EventType::Delete as i32);
    drop(view);
    drop(store);
    // The old tables are gone: a second open finds the current layout.
    let db = redb::Database::open(&path).unwrap();
    let names: Vec<String> = db
        .begin_read()
        .unwrap()
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_string())
        .collect();
    assert!(!names.contains(&"kv".to_string()), "{names:?}");
}

//! `etcdctl migrate`: the v2 keys of an offline etcd 3.4 data dir become v3 keys in its
//! backend, as etcdctl 3.4 converts them. The v2 store is rebuilt from the data dir
//! (`rebuild`), its `/1` nodes are handed to a transformer as etcd's v2 JSON (the default one
//! keeps files, key and value as they are, revisions from the v2 indexes), and the key/values
//! it returns are written at their mod revision into the backend's `key` bucket, the
//! consistent index raised to the last index the log reached.

mod rebuild;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rampart_bbolt::{Buckets, Db};
use rampart_v2store::NodeRepr;

use crate::exit::{CtlError, CtlResult};
use crate::snapshot::{self, proto};

/// Bytes of the little-endian length before each key/value a transformer writes.
const FRAME_LEN_BYTES: usize = 8;
/// The largest key/value a transformer may return (etcd's request size limit is far below).
const MAX_KV_BYTES: u64 = 1 << 30;
/// mvcc's revision key: main revision, `_`, sub revision.
const REV_KEY_BYTES: usize = 17;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Do not convert TTL keys
    #[arg(long)]
    pub no_ttl: bool,
    /// Path to the data directory
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Path to the user-provided transformer program
    #[arg(long, default_value = "")]
    pub transformer: String,
}

/// `mvccpb.KeyValue`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct KeyValue {
    key: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    value: Vec<u8>,
    lease: i64,
}

impl KeyValue {
    /// As gogoproto marshals it (proto3: zero fields left out).
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        if !self.key.is_empty() {
            proto::bytes(&mut b, 1, &self.key);
        }
        for (field, v) in [
            (2, self.create_revision),
            (3, self.mod_revision),
            (4, self.version),
        ] {
            if v != 0 {
                proto::uint(&mut b, field, v as u64);
            }
        }
        if !self.value.is_empty() {
            proto::bytes(&mut b, 5, &self.value);
        }
        if self.lease != 0 {
            proto::uint(&mut b, 6, self.lease as u64);
        }
        b
    }

    fn decode(b: &[u8]) -> Result<KeyValue, String> {
        let fields = proto::fields(b).map_err(|e| e.to_string())?;
        proto::check_wire_types(&fields, |n| match n {
            1 | 5 => Some(2),
            2..=4 | 6 => Some(0),
            _ => None,
        })
        .map_err(|e| e.to_string())?;
        let mut kv = KeyValue::default();
        for (num, v) in fields {
            match num {
                1 => kv.key = v.bytes().to_vec(),
                2 => kv.create_revision = v.varint() as i64,
                3 => kv.mod_revision = v.varint() as i64,
                4 => kv.version = v.varint() as i64,
                5 => kv.value = v.bytes().to_vec(),
                6 => kv.lease = v.varint() as i64,
                _ => {}
            }
        }
        Ok(kv)
    }
}

pub fn run(a: &MigrateArgs) -> CtlResult {
    if a.transformer.is_empty() {
        println!("using default transformer");
    }
    let member = Path::new(&a.data_dir).join("member");
    let wal_dir = if a.wal_dir.is_empty() {
        member.join("wal")
    } else {
        PathBuf::from(&a.wal_dir)
    };
    let rebuilt = rebuild::rebuild(&member.join("snap"), &wal_dir).map_err(CtlError::error)?;
    let root = match rebuilt.store.get("/1", true, true, 0) {
        Ok(ev) => ev.node,
        Err(e) if e.error_code == rampart_v2store::KEY_NOT_FOUND => {
            println!("no v2 keys to migrate");
            return Ok(());
        }
        Err(e) => return Err(CtlError::error(e.to_string())),
    };
    let mut nodes = Vec::new();
    flatten(root, a.no_ttl, &mut nodes);
    let kvs = if a.transformer.is_empty() {
        nodes.iter().filter_map(transform).collect()
    } else {
        run_transformer(&a.transformer, &nodes)?
    };
    let db = member.join("snap").join("db");
    write_backend(&db, &kvs, rebuilt.index).map_err(CtlError::error)?;
    println!("finished transforming keys");
    Ok(())
}

/// The nodes under `/1` in etcdctl's order (each node before its children), keys without
/// the `/1` prefix, directories without their children; with `no_ttl`, expiring ones left out.
fn flatten(mut n: NodeRepr, no_ttl: bool, out: &mut Vec<NodeRepr>) {
    let children = n.nodes.take().unwrap_or_default();
    n.key = match n.key.get(2..) {
        Some("") | None => "/".to_string(),
        Some(rest) => rest.to_string(),
    };
    if !no_ttl || n.ttl.unwrap_or(0) == 0 {
        out.push(n);
    }
    for child in children {
        flatten(child, no_ttl, out);
    }
}

/// etcdctl's default transformer: a file becomes a key/value at version 1, revisions from its
/// v2 indexes; directories are dropped.
fn transform(n: &NodeRepr) -> Option<KeyValue> {
    if n.dir {
        return None;
    }
    Some(KeyValue {
        key: n.key.clone().into_bytes(),
        value: n.value.clone().unwrap_or_default().into_bytes(),
        create_revision: n.created_index as i64,
        mod_revision: n.modified_index as i64,
        version: 1,
        lease: 0,
    })
}

/// Go's `encoding/json` form of a node, which transformers read.
fn node_json(n: &NodeRepr) -> String {
    serde_json::to_string(n)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Runs a user's transformer: the nodes' JSON on its stdin, length-prefixed `mvccpb.KeyValue`s
/// back on its stdout; its failure fails the migration before the backend is touched.
fn run_transformer(program: &str, nodes: &[NodeRepr]) -> CtlResult<Vec<KeyValue>> {
    let mut child = std::process::Command::new(program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            CtlError::error(format!(
                "fork/exec {program}: {}",
                snapshot::go_os_error(&e)
            ))
        })?;
    let mut stdin = child.stdin.take();
    let input: String = nodes.iter().map(node_json).collect();
    let writer = std::thread::spawn(move || {
        if let Some(w) = stdin.as_mut() {
            // A transformer that stops reading early is its own business, as in etcdctl.
            let _ = w.write_all(input.as_bytes());
        }
    });
    let mut out = Vec::new();
    if let Some(mut r) = child.stdout.take() {
        // etcdctl stops at the first malformed frame and keeps what came before.
        while let Ok(Some(kv)) = read_frame(&mut r) {
            out.push(kv);
        }
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    }
    let _ = writer.join();
    let status = child
        .wait()
        .map_err(|e| CtlError::error(format!("wait: {e}")))?;
    if !status.success() {
        println!("failed to transform keys");
        let why = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "signal: killed".to_string(),
        };
        return Err(CtlError::error(why));
    }
    Ok(out)
}

/// One length-prefixed key/value; `None` at the end of the stream.
fn read_frame(r: &mut impl Read) -> Result<Option<KeyValue>, String> {
    let mut len = [0u8; FRAME_LEN_BYTES];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = u64::from_le_bytes(len);
    if len > MAX_KV_BYTES {
        return Err(format!("key/value of {len} bytes"));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
    KeyValue::decode(&buf).map(Some)
}

/// mvcc's key for a revision (sub revision 0).
fn rev_key(main: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(REV_KEY_BYTES);
    k.extend_from_slice(&main.to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&0i64.to_be_bytes());
    k
}

/// Holds bbolt's lock on the backend, as etcd's backend takes it: waits (saying so) while
/// a running etcd has the file.
fn lock(db: &Path) -> Result<Option<std::fs::File>, String> {
    let f = match std::fs::File::open(db) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "open {}: {}",
                db.display(),
                snapshot::go_os_error(&e)
            ))
        }
    };
    // SAFETY: flock on a descriptor we own.
    let busy = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
    if busy {
        eprintln!(
            "waiting for etcd to close and release its lock on {}",
            crate::gofmt::quote(db.display().to_string().as_bytes())
        );
        // SAFETY: as above, blocking.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    }
    Ok(Some(f))
}

/// Writes the key/values into the backend at `db` (made if missing) and raises its
/// consistent index to `index`. The new file replaces the old one by a rename: a crash
/// leaves the old backend (and a `db.tmp*` file etcd removes on start).
fn write_backend(db: &Path, kvs: &[KeyValue], index: u64) -> Result<(), String> {
    let _lock = lock(db)?;
    let mut buckets: Buckets = BTreeMap::new();
    if db.exists() {
        let data = std::fs::read(db)
            .map_err(|e| format!("open {}: {}", db.display(), snapshot::go_os_error(&e)))?;
        let source = Db::from_bytes(data).map_err(|e| format!("{}: {e}", db.display()))?;
        for (name, pairs) in snapshot::read_buckets(&source, db).map_err(|e| e.to_string())? {
            let bucket = buckets.entry(name.to_vec()).or_default();
            for (k, v) in pairs {
                bucket.insert(k.to_vec(), v.to_vec());
            }
        }
    }
    let key = buckets.entry(b"key".to_vec()).or_default();
    for kv in kvs {
        key.insert(rev_key(kv.mod_revision), kv.encode());
    }
    let meta = buckets.entry(b"meta".to_vec()).or_default();
    let current = meta
        .get(&b"consistent_index"[..])
        .and_then(|v| v.get(..8))
        .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or_default()));
    if index > current {
        meta.insert(b"consistent_index".to_vec(), index.to_be_bytes().to_vec());
    }
    let bytes = rampart_bbolt::write_db(&buckets).map_err(|e| format!("{}: {e}", db.display()))?;
    let dir = db.parent().unwrap_or(Path::new("."));
    snapshot::create_dir_all(dir)
        .map_err(|e| format!("mkdir {}: {}", dir.display(), snapshot::go_os_error(&e)))?;
    let tmp = dir.join("db.tmp.migrate");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, db)
    };
    write().map_err(|e| format!("write {}: {}", db.display(), snapshot::go_os_error(&e)))?;
    snapshot::wal::sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: &str, value: Option<&str>, index: u64, nodes: Option<Vec<NodeRepr>>) -> NodeRepr {
        NodeRepr {
            key: key.into(),
            value: value.map(str::to_string),
            dir: value.is_none(),
            expiration: None,
            ttl: None,
            nodes,
            modified_index: index,
            created_index: index,
        }
    }

    #[test]
    fn nodes_become_key_values_as_etcdctls_default_transformer_makes_them() {
        let tree = node(
            "/1",
            None,
            0,
            Some(vec![
                node("/1/a", Some("x"), 4, None),
                node(
                    "/1/d",
                    None,
                    5,
                    Some(vec![node("/1/d/b", Some("<y>"), 6, None)]),
                ),
            ]),
        );
        let mut flat = Vec::new();
        flatten(tree, false, &mut flat);
        let keys: Vec<&str> = flat.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(keys, ["/", "/a", "/d", "/d/b"]);
        assert_eq!(
            node_json(&flat[3]),
            r#"{"key":"/d/b","value":"\u003cy\u003e","modifiedIndex":6,"createdIndex":6}"#
        );
        let kvs: Vec<KeyValue> = flat.iter().filter_map(transform).collect();
        assert_eq!(kvs.len(), 2);
        assert_eq!(kvs[1].key, b"/d/b");
        assert_eq!(
            (kvs[1].create_revision, kvs[1].mod_revision, kvs[1].version),
            (6, 6, 1)
        );
        let bytes = kvs[0].encode();
        assert_eq!(
            bytes,
            [0x0a, 2, b'/', b'a', 0x10, 4, 0x18, 4, 0x20, 1, 0x2a, 1, b'x']
        );
        assert_eq!(KeyValue::decode(&bytes).unwrap(), kvs[0]);
        let mut framed = (bytes.len() as u64).to_le_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let mut r = &framed[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some(kvs[0].clone()));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        assert_eq!(
            rev_key(4),
            [0, 0, 0, 0, 0, 0, 0, 4, b'_', 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn the_backend_gets_the_keys_and_a_higher_consistent_index_only() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        let kv = KeyValue {
            key: b"/a".to_vec(),
            mod_revision: 4,
            create_revision: 4,
            version: 1,
            ..Default::default()
        };
        write_backend(&db, std::slice::from_ref(&kv), 9).unwrap();
        write_backend(&db, &[], 3).unwrap();
        let d = Db::open(&db).unwrap();
        let buckets = snapshot::read_buckets(&d, &db).unwrap();
        let names: Vec<&[u8]> = buckets.iter().map(|b| b.0).collect();
        assert_eq!(names, [&b"key"[..], b"meta"]);
        assert_eq!(buckets[0].1, vec![(&rev_key(4)[..], &kv.encode()[..])]);
        assert_eq!(
            buckets[1].1,
            vec![(&b"consistent_index"[..], &9u64.to_be_bytes()[..])]
        );
    }
}

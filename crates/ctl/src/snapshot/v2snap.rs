//! The v2 store snapshot (`member/snap/<term>-<index>.snap`) a restored member loads its
//! membership from: etcd 3.4 keeps the member list in the v2 store (`/0/members/<id>/...`),
//! not in the backend, so this file is what makes the new cluster's members known.
//!
//! The store is etcd's JSON serialisation of its v2 store after adding each member in ID order
//! (`RaftCluster.AddMember`): the `/0` and `/1` namespaces, one `raftAttributes` node per
//! member, the event history of those creations and the store's statistics.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::cluster::{go_json_string, Member};
use super::proto;

/// The v2 store's event history capacity.
const EVENT_HISTORY_CAPACITY: usize = 1000;
/// Go's zero `time.Time`: nodes without a TTL.
const NO_EXPIRY: &str = "\"0001-01-01T00:00:00Z\"";

/// A v2 store node (`v2store.node`) as JSON; `children` is `None` for a value node.
fn node(path: &str, index: u64, value: &str, children: Option<&[(String, String)]>) -> String {
    let children = match children {
        None => "null".to_string(),
        Some(list) => {
            // Go marshals the children map with its keys sorted.
            let mut sorted: Vec<&(String, String)> = list.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", go_json_string(k)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    };
    format!(
        "{{\"Path\":{},\"CreatedIndex\":{index},\"ModifiedIndex\":{index},\"ExpireTime\":{NO_EXPIRY},\"Value\":{},\"Children\":{children}}}",
        go_json_string(path),
        go_json_string(value)
    )
}

/// The store's JSON with `members` (sorted by ID) added at indexes 1, 2, ...
pub fn store_json(members: &[Member]) -> String {
    let mut member_nodes = Vec::new();
    let mut events = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let index = i as u64 + 1;
        let id = format!("{:x}", m.id);
        let dir = format!("/0/members/{id}");
        let key = format!("{dir}/raftAttributes");
        let attrs = m.raft_attributes_json();
        let leaf = node(&key, index, &attrs, None);
        member_nodes.push((
            id,
            node(
                &dir,
                index,
                "",
                Some(&[("raftAttributes".to_string(), leaf)]),
            ),
        ));
        events.push(format!(
            "{{\"action\":\"create\",\"node\":{{\"key\":{},\"value\":{},\"modifiedIndex\":{index},\"createdIndex\":{index}}}}}",
            go_json_string(&key),
            go_json_string(&attrs)
        ));
    }
    let n = members.len();
    // "/0/members" came into being with the first member.
    let members_dir = node("/0/members", 1, "", Some(&member_nodes));
    let ns0 = node("/0", 0, "", Some(&[("members".to_string(), members_dir)]));
    let ns1 = node("/1", 0, "", Some(&[]));
    let root = node(
        "/",
        0,
        "",
        Some(&[("0".to_string(), ns0), ("1".to_string(), ns1)]),
    );
    let mut queue = events;
    queue.resize(EVENT_HISTORY_CAPACITY.max(n), "null".to_string());
    format!(
        "{{\"Root\":{root},\"WatcherHub\":{{\"EventHistory\":{{\"Queue\":{{\"Events\":[{}],\"Size\":{n},\"Front\":0,\"Back\":{n},\"Capacity\":{EVENT_HISTORY_CAPACITY}}},\"StartIndex\":1,\"LastIndex\":{n}}}}},\"CurrentIndex\":{n},\"Stats\":{{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":{n},\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}},\"CurrentVersion\":2}}",
        queue.join(",")
    )
}

/// The `.snap` file name etcd gives a snapshot at `term` and `index`.
pub fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// The `.snap` file's bytes: a `raftpb.Snapshot` wrapped with its CRC-32C.
pub fn file_bytes(store: &[u8], voters: &[u64], index: u64, term: u64) -> Vec<u8> {
    let snap = proto::raft_snapshot(store, voters, index, term);
    proto::snap_file(crc32c::crc32c(&snap), &snap)
}

/// Writes and fsyncs the `.snap` file (mode 0666 before the umask, as etcd creates it).
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .open(dir.join(name))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A `.snap` file that loaded: its name, bytes and what the snapshot holds.
pub struct LoadedSnap {
    pub name: String,
    pub bytes: Vec<u8>,
    /// The v2 store's JSON.
    pub data: Vec<u8>,
    pub index: u64,
    pub term: u64,
}

/// Decodes a `.snap` file as etcd's `snap.Read` does; `None` if etcd would find it empty,
/// corrupt or not a snapshot.
fn read_snap(bytes: &[u8]) -> Option<(Vec<u8>, u64, u64)> {
    let outer = proto::fields(bytes).ok()?;
    proto::check_wire_types(&outer, |n| match n {
        1 => Some(0),
        2 => Some(2),
        _ => None,
    })
    .ok()?;
    let crc = outer
        .iter()
        .rev()
        .find(|f| f.0 == 1)
        .map(|f| f.1.varint() as u32)?;
    let data = outer.iter().rev().find(|f| f.0 == 2).map(|f| f.1.bytes())?;
    if data.is_empty() || crc == 0 || crc32c::crc32c(data) != crc {
        return None;
    }
    let snap = proto::fields(data).ok()?;
    proto::check_wire_types(&snap, |n| (1..=2).contains(&n).then_some(2)).ok()?;
    let store = snap
        .iter()
        .rev()
        .find(|f| f.0 == 1)
        .map(|f| f.1.bytes())
        .unwrap_or(&[]);
    let meta = snap
        .iter()
        .rev()
        .find(|f| f.0 == 2)
        .map(|f| f.1.bytes())
        .unwrap_or(&[]);
    let meta = proto::fields(meta).ok()?;
    proto::check_wire_types(&meta, |n| match n {
        1 => Some(2),
        2 | 3 => Some(0),
        _ => None,
    })
    .ok()?;
    let field = |n| {
        meta.iter()
            .rev()
            .find(|f| f.0 == n)
            .map(|f| f.1.varint())
            .unwrap_or(0)
    };
    Some((store.to_vec(), field(2), field(3)))
}

/// The newest `.snap` in `dir` that loads, as etcd's `Snapshotter.Load` picks it (names in
/// reverse order, unreadable ones skipped); `None` when there is none. Unlike etcd, a broken
/// file is left as it is (etcd renames it `.broken`): the source data dir is never changed.
pub fn load_newest(dir: &Path) -> Result<Option<LoadedSnap>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("open {}: {}", dir.display(), super::go_os_error(&e)))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    for name in names {
        let Ok(bytes) = std::fs::read(dir.join(&name)) else {
            continue;
        };
        if let Some((data, index, term)) = read_snap(&bytes) {
            return Ok(Some(LoadedSnap {
                name,
                bytes,
                data,
                index,
                term,
            }));
        }
        eprintln!(
            "{}",
            crate::gofmt::go_log(&format!("skipped the unreadable snapshot file {name}"))
        );
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_json_is_what_etcd_wrote_for_one_member() {
        let m = Member {
            id: 0xa87a472412f1f7e6,
            name: "s1".into(),
            peer_urls: vec!["http://127.0.0.1:23180".into()],
        };
        let json = store_json(std::slice::from_ref(&m));
        // From the .snap etcdctl 3.4 wrote for `--name s1 --initial-cluster s1=http://127.0.0.1:23180`.
        let head = r#"{"Root":{"Path":"/","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"0":{"Path":"/0","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"members":{"Path":"/0/members","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"a87a472412f1f7e6":{"Path":"/0/members/a87a472412f1f7e6","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"raftAttributes":{"Path":"/0/members/a87a472412f1f7e6/raftAttributes","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"peerURLs\":[\"http://127.0.0.1:23180\"]}","Children":null}}}}}}},"1":{"Path":"/1","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{}}}},"WatcherHub":{"EventHistory":{"Queue":{"Events":[{"action":"create","node":{"key":"/0/members/a87a472412f1f7e6/raftAttributes","value":"{\"peerURLs\":[\"http://127.0.0.1:23180\"]}","modifiedIndex":1,"createdIndex":1}},null,null,"#;
        assert!(
            json.starts_with(head),
            "{}",
            &json[..head.len().min(json.len())]
        );
        let tail = r#"null],"Size":1,"Front":0,"Back":1,"Capacity":1000},"StartIndex":1,"LastIndex":1}},"CurrentIndex":1,"Stats":{"getsSuccess":0,"getsFail":0,"setsSuccess":0,"setsFail":0,"deleteSuccess":0,"deleteFail":0,"updateSuccess":0,"updateFail":0,"createSuccess":1,"createFail":0,"compareAndSwapSuccess":0,"compareAndSwapFail":0,"compareAndDeleteSuccess":0,"compareAndDeleteFail":0,"expireCount":0,"watchers":0},"CurrentVersion":2}"#;
        assert!(json.ends_with(tail));
        assert_eq!(json.matches("null").count(), 999 + 1);
        assert_eq!(file_name(1, 3), "0000000000000001-0000000000000003.snap");
    }

    #[test]
    fn the_newest_readable_snap_file_is_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let good = file_bytes(b"{}", &[1], 5, 2);
        write(tmp.path(), &file_name(2, 5), &good).unwrap();
        let mut bad = file_bytes(b"{}", &[1], 9, 2);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        write(tmp.path(), &file_name(2, 9), &bad).unwrap();
        std::fs::write(tmp.path().join("db"), b"x").unwrap();
        let snap = load_newest(tmp.path()).unwrap().unwrap();
        assert_eq!((snap.index, snap.term), (5, 2));
        assert_eq!(snap.data, b"{}");
        assert_eq!(snap.bytes, good);
        assert_eq!(snap.name, file_name(2, 5));
        assert!(load_newest(&tmp.path().join("db2")).is_err());
    }
}

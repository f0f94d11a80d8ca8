//! The v2 store of an offline etcd 3.4 data dir, rebuilt as etcdctl's `migrate` rebuilds it:
//! the newest `.snap` (the store's JSON), then the WAL's entries after it applied in order —
//! v2 writes as etcd's v2 applier applies them, membership changes as etcd's cluster records
//! them in the store (`/0/members`, `/0/removed_members`), each of which takes a store index.

use std::path::Path;

use rampart_v2store::{StoredNode, V2Request as StoreRequest, V2Store};
use serde_json::Value;

use crate::snapshot::cluster::go_json_string;
use crate::snapshot::proto;
use crate::snapshot::raft_request::{self, Payload, V2Request};
use crate::snapshot::v2snap;
use crate::snapshot::wal_read::{self, SnapshotPos, ENTRY_CONF_CHANGE};

/// `raftpb.ConfChangeType`.
const ADD_NODE: u64 = 0;
const REMOVE_NODE: u64 = 1;
const UPDATE_NODE: u64 = 2;
const ADD_LEARNER_NODE: u64 = 3;
/// etcd 3.4's `maxLearners`.
const MAX_LEARNERS: usize = 1;

const MEMBERS: &str = "/0/members";
const REMOVED_MEMBERS: &str = "/0/removed_members";
const CLUSTER_VERSION: &str = "/0/version";

/// The rebuilt store and the last index it reflects (the snapshot's, or the last v2 or v3
/// entry's after it).
pub struct Rebuilt {
    pub store: V2Store,
    pub index: u64,
}

pub fn rebuild(snap_dir: &Path, wal_dir: &Path) -> Result<Rebuilt, String> {
    let snap = v2snap::load_newest(snap_dir)?;
    let mut start = SnapshotPos::default();
    let mut index = 0;
    if let Some(s) = &snap {
        start = SnapshotPos {
            index: s.index,
            term: s.term,
        };
        index = s.index;
    }
    let log = wal_read::read_all(wal_dir, start).map_err(|e| e.to_string())?;
    if !log.snapshot_found {
        return Err("wal: snapshot not found".to_string());
    }
    let mut store = match &snap {
        Some(s) => recover(&s.data).map_err(|e| format!("{}: {e}", s.name))?,
        None => V2Store::default(),
    };
    for e in &log.entries {
        let data = e.data.as_deref().unwrap_or_default();
        if e.entry_type == ENTRY_CONF_CHANGE {
            apply_conf_change(&mut store, data)
                .map_err(|err| format!("raft entry {}: {err}", e.index))?;
            continue;
        }
        match raft_request::decode(data).map_err(|err| format!("raft entry {}: {err}", e.index))? {
            Payload::V2(r) => apply_request(&mut store, &r)?,
            Payload::Internal { .. } => {}
        }
        index = index.max(e.index);
    }
    Ok(Rebuilt { store, index })
}

/// A v2 store from the JSON etcd snapshots it as (`store.Save`).
fn recover(json: &[u8]) -> Result<V2Store, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| format!("v2 store snapshot: {e}"))?;
    let mut nodes = Vec::new();
    collect_nodes(&v["Root"], &mut nodes)?;
    let index = v["CurrentIndex"].as_u64().unwrap_or(0);
    Ok(V2Store::load(index, nodes))
}

/// Unix nanoseconds of a node's `ExpireTime`; Go's zero time (no expiry) is 0.
fn expire_nanos(v: &Value) -> Result<i64, String> {
    let Some(text) = v.as_str() else {
        return Ok(0);
    };
    if text.starts_with("0001-01-01T00:00:00") {
        return Ok(0);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expire time {text:?}: {e}"))?;
    Ok(t.unix_timestamp_nanos() as i64)
}

fn collect_nodes(n: &Value, out: &mut Vec<(String, StoredNode)>) -> Result<(), String> {
    let path = n["Path"].as_str().unwrap_or("/").to_string();
    let created = n["CreatedIndex"].as_u64().unwrap_or(0);
    let modified = n["ModifiedIndex"].as_u64().unwrap_or(0);
    let expiration = expire_nanos(&n["ExpireTime"])?;
    // A directory has children (maybe none); a file has none at all.
    let children = n["Children"].as_object();
    let value = match children {
        Some(_) => None,
        None => Some(n["Value"].as_str().unwrap_or("").to_string()),
    };
    if path != "/" {
        out.push((
            path,
            StoredNode {
                value,
                created,
                modified,
                expiration,
            },
        ));
    }
    for child in children.into_iter().flat_map(|c| c.values()) {
        collect_nodes(child, out)?;
    }
    Ok(())
}

/// A store write with etcd's v2 request fields.
fn store_request(r: &V2Request) -> StoreRequest {
    StoreRequest {
        method: r.method.clone(),
        path: r.path.clone(),
        value: r.val.clone(),
        dir: r.dir,
        prev_value: (!r.prev_value.is_empty()).then(|| r.prev_value.clone()),
        prev_index: r.prev_index,
        prev_exist: r.prev_exist,
        expiration: r.expiration,
        refresh: r.refresh.unwrap_or(false),
        recursive: r.recursive,
        now: r.time,
    }
}

/// A `Set` of a permanent value.
fn set(store: &mut V2Store, path: &str, value: &str) {
    let _ = store.apply(&StoreRequest {
        method: "PUT".into(),
        path: path.into(),
        value: value.into(),
        ..Default::default()
    });
}

/// Applies a v2 request as etcd's `applierV2store` does; failed writes change nothing, as in
/// etcd (their error goes to the client).
fn apply_request(store: &mut V2Store, r: &V2Request) -> Result<(), String> {
    let mut req = store_request(r);
    match r.method.as_str() {
        "POST" | "DELETE" | "SYNC" => {}
        "QGET" => return Ok(()),
        "PUT" => match r.prev_exist {
            // A create ignores the compare fields.
            Some(false) => {
                req.prev_value = None;
                req.prev_index = 0;
            }
            Some(true) => {}
            None if r.prev_index > 0 || !r.prev_value.is_empty() => {}
            None if raft_request::is_member_attributes(&r.path) => {
                // The member's attributes, if the member is there (etcd skips a removed one).
                let id = member_id_of_attributes(&r.path);
                if let Some(id) = id.filter(|id| has_node(store, &format!("{MEMBERS}/{id}"))) {
                    set(store, &format!("{MEMBERS}/{id}/attributes"), &r.val);
                }
                return Ok(());
            }
            None if r.path == CLUSTER_VERSION => {
                set(store, CLUSTER_VERSION, &r.val);
                return Ok(());
            }
            None => {}
        },
        other => return Err(format!("unknown v2 command {other:?}")),
    }
    let _ = store.apply(&req);
    Ok(())
}

/// The hex member ID in `.../<id>/attributes`, as etcd formats IDs.
fn member_id_of_attributes(path: &str) -> Option<String> {
    let dir = path.strip_suffix("/attributes")?;
    let id = u64::from_str_radix(dir.rsplit('/').next()?, 16).ok()?;
    Some(format!("{id:x}"))
}

fn has_node(store: &V2Store, path: &str) -> bool {
    store.get(path, false, false, 0).is_ok()
}

/// The members in the store: ID (hex) and raft attributes (peer URLs, learner).
fn members(store: &V2Store) -> Vec<(String, Vec<String>, bool)> {
    let Ok(ev) = store.get(MEMBERS, true, true, 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in ev.node.nodes.unwrap_or_default() {
        let id = m.key.rsplit('/').next().unwrap_or_default().to_string();
        let attrs = m
            .nodes
            .unwrap_or_default()
            .into_iter()
            .find(|n| n.key.ends_with("/raftAttributes"))
            .and_then(|n| n.value)
            .and_then(|v| serde_json::from_str::<Value>(&v).ok())
            .unwrap_or(Value::Null);
        out.push((
            id,
            string_list(&attrs["peerURLs"]),
            attrs["isLearner"] == true,
        ));
    }
    out
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `membership.RaftAttributes` as Go marshals it.
fn raft_attributes_json(peer_urls: &[String], learner: bool) -> String {
    let urls: Vec<String> = peer_urls.iter().map(|u| go_json_string(u)).collect();
    let learner = if learner { ",\"isLearner\":true" } else { "" };
    format!("{{\"peerURLs\":[{}]{learner}}}", urls.join(","))
}

/// Records a membership change in the store as etcd's cluster does, when etcd's validation
/// of it passes (an invalid change was never applied by etcd either).
fn apply_conf_change(store: &mut V2Store, data: &[u8]) -> Result<(), String> {
    let fields = proto::fields(data).map_err(|e| e.to_string())?;
    let (mut kind, mut node_id, mut context) = (0, 0, &[][..]);
    for (num, v) in &fields {
        match num {
            2 => kind = v.varint(),
            3 => node_id = v.varint(),
            4 => context = v.bytes(),
            _ => {}
        }
    }
    let id = format!("{node_id:x}");
    if has_node(store, &format!("{REMOVED_MEMBERS}/{id}")) {
        return Ok(());
    }
    let members = members(store);
    let me = members.iter().find(|m| m.0 == id);
    let ctx: Value = serde_json::from_slice(context).unwrap_or(Value::Null);
    let urls = string_list(&ctx["peerURLs"]);
    let taken = |except: Option<&str>| {
        members
            .iter()
            .filter(|m| Some(m.0.as_str()) != except)
            .any(|m| m.1.iter().any(|u| urls.contains(u)))
    };
    let raft_attrs = format!("{MEMBERS}/{id}/raftAttributes");
    match kind {
        ADD_NODE | ADD_LEARNER_NODE if ctx["isPromote"] == true => {
            if let Some(m) = me.filter(|m| m.2) {
                update(store, &raft_attrs, &raft_attributes_json(&m.1, false));
            }
        }
        ADD_NODE | ADD_LEARNER_NODE => {
            let learner = ctx["isLearner"] == true;
            let learners = members.iter().filter(|m| m.2).count();
            if me.is_some() || taken(None) || (learner && learners + 1 > MAX_LEARNERS) {
                return Ok(());
            }
            let _ = store.apply(&StoreRequest {
                method: "PUT".into(),
                path: raft_attrs,
                value: raft_attributes_json(&urls, learner),
                prev_exist: Some(false),
                ..Default::default()
            });
        }
        REMOVE_NODE if me.is_some() => {
            let _ = store.apply(&StoreRequest {
                method: "DELETE".into(),
                path: format!("{MEMBERS}/{id}"),
                dir: true,
                recursive: true,
                ..Default::default()
            });
            let _ = store.apply(&StoreRequest {
                method: "PUT".into(),
                path: format!("{REMOVED_MEMBERS}/{id}"),
                prev_exist: Some(false),
                ..Default::default()
            });
        }
        UPDATE_NODE if me.is_some() && !taken(Some(&id)) => {
            let learner = ctx["isLearner"] == true;
            update(store, &raft_attrs, &raft_attributes_json(&urls, learner));
        }
        _ => {}
    }
    Ok(())
}

fn update(store: &mut V2Store, path: &str, value: &str) {
    let _ = store.apply(&StoreRequest {
        method: "PUT".into(),
        path: path.into(),
        value: value.into(),
        prev_exist: Some(true),
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf_change(kind: u64, id: u64, ctx: &str) -> Vec<u8> {
        proto::conf_change(kind, id, ctx.as_bytes())
    }

    fn put(path: &str, val: &str) -> V2Request {
        V2Request {
            method: "PUT".into(),
            path: path.into(),
            val: val.into(),
            ..Default::default()
        }
    }

    #[test]
    fn membership_and_v2_writes_take_the_indexes_etcd_gave_them() {
        let mut st = V2Store::default();
        let ctx = r#"{"id":10,"peerURLs":["http://a:2380"],"name":"a"}"#;
        apply_conf_change(&mut st, &conf_change(ADD_NODE, 10, ctx)).unwrap();
        // The same member again, and another on its URL: refused as etcd refuses them.
        apply_conf_change(&mut st, &conf_change(ADD_NODE, 10, ctx)).unwrap();
        apply_conf_change(&mut st, &conf_change(ADD_NODE, 11, ctx)).unwrap();
        assert_eq!(st.index(), 1);
        apply_request(&mut st, &put("/0/members/a/attributes", r#"{"name":"a"}"#)).unwrap();
        apply_request(&mut st, &put("/0/members/b/attributes", r#"{"name":"b"}"#)).unwrap();
        apply_request(&mut st, &put("/0/version", "3.4.0")).unwrap();
        apply_request(&mut st, &put("/1/foo", "bar")).unwrap();
        assert_eq!(st.index(), 4);
        let foo = st.get("/1/foo", false, false, 0).unwrap().node;
        assert_eq!((foo.value.as_deref(), foo.modified_index), (Some("bar"), 4));
        let attrs = st
            .get("/0/members/a/raftAttributes", false, false, 0)
            .unwrap();
        assert_eq!(
            attrs.node.value.as_deref(),
            Some(r#"{"peerURLs":["http://a:2380"]}"#)
        );
        apply_conf_change(&mut st, &conf_change(REMOVE_NODE, 10, "")).unwrap();
        assert_eq!(st.index(), 6);
        assert!(has_node(&st, "/0/removed_members/a"));
        assert!(!has_node(&st, "/0/members/a"));
    }

    #[test]
    fn a_snapshot_store_is_recovered() {
        let json = br#"{"Root":{"Path":"/","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"1":{"Path":"/1","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"k":{"Path":"/1/k","CreatedIndex":5,"ModifiedIndex":7,"ExpireTime":"2030-01-01T00:00:00.5Z","Value":"v","Children":null}}}}},"CurrentIndex":9}"#;
        let st = recover(json).unwrap();
        assert_eq!(st.index(), 9);
        let k = st.get("/1/k", false, false, 0).unwrap().node;
        assert_eq!((k.created_index, k.modified_index), (5, 7));
        assert!(k.ttl.is_some());
        assert!(st.get("/1", false, false, 0).unwrap().node.dir);
    }
}

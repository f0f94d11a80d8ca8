//! Writes to etcd's v2 key space, applied in log order and persisted in the same backend
//! transaction as everything else in the batch.

use std::sync::{Arc, Mutex};

use rampart_mvcc::{MvccError, ReadView, WriteBatch};
use rampart_proto::internal::V2AuthWrite as V2AuthWriteProto;
use rampart_proto::internal::V2Request as V2RequestProto;
use rampart_v2store::{
    AuthWrite, Event, StoredNode, V2Auth, V2Error, V2Request, V2Store, WriteConflict,
};

/// The v2 store every reader and the applier share.
pub type SharedV2Store = Arc<Mutex<V2Store>>;

pub fn from_proto(r: &V2RequestProto) -> V2Request {
    V2Request {
        method: r.method.clone(),
        path: r.path.clone(),
        value: r.value.clone(),
        dir: r.dir,
        prev_value: r.prev_value.clone(),
        prev_index: r.prev_index,
        prev_exist: r.prev_exist,
        expiration: r.expiration_unix_nanos,
        refresh: r.refresh,
        recursive: r.recursive,
        now: r.now_unix_nanos,
    }
}

/// Rebuilds the v2 store from the backend (at start and after a snapshot).
pub fn load(view: &ReadView) -> Result<V2Store, MvccError> {
    let mut nodes = Vec::new();
    let mut auth = V2Auth::default();
    for (path, raw) in view.v2_nodes()? {
        if V2Auth::is_record_key(&path) {
            auth.load_record(&path, &raw).map_err(MvccError::Damaged)?;
            continue;
        }
        let node: StoredNode = serde_json::from_slice(&raw)
            .map_err(|e| MvccError::Damaged(format!("v2 node {path}: {e}")))?;
        nodes.push((path, node));
    }
    let mut store = V2Store::load(view.meta().v2_index, nodes);
    store.auth = auth;
    Ok(store)
}

/// The typed form of a replicated auth write.
pub fn auth_write_from_proto(w: &V2AuthWriteProto) -> Result<AuthWrite, String> {
    use rampart_proto::internal::v2_auth_write::Write;
    Ok(match &w.write {
        Some(Write::PutUser(j)) => AuthWrite::PutUser {
            user: serde_json::from_str(j).map_err(|e| e.to_string())?,
            create: w.create,
        },
        Some(Write::DeleteUser(name)) => AuthWrite::DeleteUser { name: name.clone() },
        Some(Write::PutRole(j)) => AuthWrite::PutRole {
            role: serde_json::from_str(j).map_err(|e| e.to_string())?,
            create: w.create,
        },
        Some(Write::DeleteRole(name)) => AuthWrite::DeleteRole { name: name.clone() },
        Some(Write::SetEnabled(on)) => AuthWrite::SetEnabled(*on),
        None => return Err("empty auth write".into()),
    })
}

/// The replicated form of an auth write.
pub fn auth_write_to_proto(w: &AuthWrite) -> V2AuthWriteProto {
    use rampart_proto::internal::v2_auth_write::Write;
    let (write, create) = match w {
        AuthWrite::PutUser { user, create } => (Write::PutUser(json(user)), *create),
        AuthWrite::DeleteUser { name } => (Write::DeleteUser(name.clone()), false),
        AuthWrite::PutRole { role, create } => (Write::PutRole(json(role)), *create),
        AuthWrite::DeleteRole { name } => (Write::DeleteRole(name.clone()), false),
        AuthWrite::SetEnabled(on) => (Write::SetEnabled(*on), false),
    };
    V2AuthWriteProto {
        write: Some(write),
        create,
    }
}

fn json<T: serde::Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("an auth record encodes")
}

/// Applies one auth write and stages the record it changed; a write decided on state that has
/// changed since answers with the conflict and writes nothing.
pub fn apply_auth(
    batch: &mut WriteBatch,
    store: &SharedV2Store,
    write: &V2AuthWriteProto,
) -> Result<Result<(), WriteConflict>, MvccError> {
    let write = auth_write_from_proto(write).map_err(MvccError::Damaged)?;
    let mut s = store.lock().expect("v2 store");
    let change = match s.auth.apply(&write) {
        Ok(change) => change,
        Err(conflict) => return Ok(Err(conflict)),
    };
    match change {
        (key, Some(raw)) => batch.v2_put(&key, &raw)?,
        (key, None) => batch.v2_remove(&key)?,
    }
    // etcd keeps these records in its v2 store, so they count in the v2 index.
    s.bump_index();
    batch.set_v2_index(s.index());
    Ok(Ok(()))
}

/// Applies one v2 write and stages what it changed in `batch`.
pub fn apply(
    batch: &mut WriteBatch,
    store: &SharedV2Store,
    request: &V2RequestProto,
) -> Result<Result<Event, V2Error>, MvccError> {
    let mut s = store.lock().expect("v2 store");
    let result = s.apply(&from_proto(request));
    persist(batch, &mut s)?;
    Ok(result)
}

/// Advances the v2 index for a write etcd keeps in its v2 store (member attributes).
pub fn bump(batch: &mut WriteBatch, store: &SharedV2Store) {
    let mut s = store.lock().expect("v2 store");
    s.bump_index();
    batch.set_v2_index(s.index());
}

fn persist(batch: &mut WriteBatch, s: &mut V2Store) -> Result<(), MvccError> {
    for (path, node) in s.take_changes() {
        match node {
            Some(n) => {
                let raw = serde_json::to_vec(&n).expect("a node encodes");
                batch.v2_put(&path, &raw)?;
            }
            None => batch.v2_remove(&path)?,
        }
    }
    batch.set_v2_index(s.index());
    Ok(())
}

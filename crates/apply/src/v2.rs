//! Writes to etcd's v2 key space, applied in log order and persisted in the same backend
//! transaction as everything else in the batch.

use std::sync::{Arc, Mutex};

use rampart_mvcc::{MvccError, ReadView, WriteBatch};
use rampart_proto::internal::V2Request as V2RequestProto;
use rampart_v2store::{Event, StoredNode, V2Error, V2Request, V2Store};

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
    for (path, raw) in view.v2_nodes()? {
        let node: StoredNode = serde_json::from_slice(&raw)
            .map_err(|e| MvccError::Damaged(format!("v2 node {path}: {e}")))?;
        nodes.push((path, node));
    }
    Ok(V2Store::load(view.meta().v2_index, nodes))
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

//! etcd's v2 key space: a tree of directories and string values with TTLs, compare-and-swap,
//! in-order keys and an event history for `wait`, kept apart from the v3 keys as in etcd 3.4.
//!
//! Owns: the meaning of v2 requests once they are committed ([`V2Store::apply`]), reads
//! ([`V2Store::get`]), the event history long-polls wait on ([`V2Store::event_since`]), and which
//! nodes changed so the caller can persist them ([`V2Store::take_changes`]).
//! Does not own: HTTP, replication or persistence (the MVCC backend stores the nodes the caller
//! hands it), or clocks: expiry times come in the requests, decided by the proposer, so every
//! member applies the same thing.

mod auth;
mod error;
mod node;

use std::collections::{BTreeMap, VecDeque};

pub use auth::*;
pub use error::*;
pub use node::{Event, NodeRepr, StoredNode};

/// Events kept for `wait` with a `waitIndex` (etcd keeps 1000).
pub const HISTORY_LEN: usize = 1000;

/// A committed v2 write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct V2Request {
    /// PUT, POST, DELETE, or SYNC (the leader's clock: expire what is due).
    pub method: String,
    pub path: String,
    pub value: String,
    pub dir: bool,
    pub prev_value: Option<String>,
    /// 0 = no condition.
    pub prev_index: u64,
    pub prev_exist: Option<bool>,
    /// Unix nanoseconds; 0 = the node does not expire.
    pub expiration: i64,
    pub refresh: bool,
    pub recursive: bool,
    /// SYNC: the leader's time, unix nanoseconds.
    pub now: i64,
}

#[derive(Debug, Default)]
pub struct V2Store {
    index: u64,
    nodes: BTreeMap<String, StoredNode>,
    history: VecDeque<Event>,
    changes: BTreeMap<String, Option<StoredNode>>,
    /// Users, roles and the enabled flag of `/v2/auth`.
    pub auth: V2Auth,
}

/// `key` as an absolute, clean path ("/a/b"; "/" for the root).
pub fn clean_path(key: &str) -> String {
    let mut parts = Vec::new();
    for p in key.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn child_prefix(dir: &str) -> String {
    if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    }
}

impl V2Store {
    /// A store holding `nodes` (path → node) at `index`, as persisted.
    pub fn load(index: u64, nodes: impl IntoIterator<Item = (String, StoredNode)>) -> V2Store {
        V2Store {
            index,
            nodes: nodes.into_iter().collect(),
            ..Default::default()
        }
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// Nodes changed since the last call (`None` = removed), for the caller to persist.
    pub fn take_changes(&mut self) -> Vec<(String, Option<StoredNode>)> {
        std::mem::take(&mut self.changes).into_iter().collect()
    }

    /// Advances the index without a change visible in the key space (etcd's membership writes
    /// share the v2 index).
    pub fn bump_index(&mut self) {
        self.index += 1;
    }

    fn put_node(&mut self, path: &str, node: StoredNode) {
        self.changes.insert(path.to_string(), Some(node.clone()));
        self.nodes.insert(path.to_string(), node);
    }

    fn remove_node(&mut self, path: &str) {
        self.changes.insert(path.to_string(), None);
        self.nodes.remove(path);
    }

    fn children(&self, dir: &str) -> Vec<String> {
        let prefix = child_prefix(dir);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn descendants(&self, dir: &str) -> Vec<String> {
        let prefix = child_prefix(dir);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn err(&self, code: u32, cause: &str) -> V2Error {
        if code == KEY_NOT_FOUND && cause.starts_with('/') {
            // etcd names the first missing path element, walking down from the root.
            return V2Error::new(code, self.first_missing(cause), self.index);
        }
        V2Error::new(code, cause, self.index)
    }

    fn first_missing<'a>(&self, path: &'a str) -> &'a str {
        for (i, c) in path.char_indices().skip(1) {
            if c == '/' && !self.nodes.contains_key(&path[..i]) {
                return &path[..i];
            }
        }
        path
    }

    /// Makes the parent directories of `path` (at `index`), failing if one is a file.
    fn ensure_parents(&mut self, path: &str, index: u64) -> Result<(), V2Error> {
        let mut missing = Vec::new();
        let mut p = parent(path);
        while let Some(dir) = p {
            if dir == "/" {
                break;
            }
            match self.nodes.get(dir) {
                Some(n) if n.is_dir() => break,
                Some(_) => return Err(self.err(NOT_DIR, dir)),
                None => missing.push(dir.to_string()),
            }
            p = parent(dir);
        }
        for dir in missing.into_iter().rev() {
            self.put_node(&dir, StoredNode::dir(index, 0));
        }
        Ok(())
    }

    fn record(&mut self, event: Event) -> Event {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        event
    }

    /// Applies a committed write; the result is what the client gets (the same on every member).
    pub fn apply(&mut self, r: &V2Request) -> Result<Event, V2Error> {
        let path = clean_path(&r.path);
        match r.method.as_str() {
            "SYNC" => {
                self.expire(r.now);
                Err(self.err(KEY_NOT_FOUND, "sync"))
            }
            "POST" => {
                let key = format!(
                    "{}/{:020}",
                    if path == "/" { "" } else { path.as_str() },
                    self.index + 1
                );
                self.create(&key, r, false, "create")
            }
            "DELETE" => self.delete(&path, r),
            "PUT" => self.put(&path, r),
            other => Err(self.err(INVALID_FIELD, other)),
        }
    }

    fn put(&mut self, path: &str, r: &V2Request) -> Result<Event, V2Error> {
        if path == "/" {
            return Err(self.err(ROOT_READ_ONLY, "/"));
        }
        let conditional = r.prev_value.is_some() || r.prev_index != 0;
        if r.refresh {
            let Some(existing) = self.nodes.get(path).cloned() else {
                return Err(self.err(KEY_NOT_FOUND, path));
            };
            if conditional {
                self.check_compare(path, &existing, r)?;
            }
            return self.update(path, r, Some(existing.value.clone().unwrap_or_default()));
        }
        if conditional {
            let Some(existing) = self.nodes.get(path).cloned() else {
                return Err(self.err(KEY_NOT_FOUND, path));
            };
            if existing.is_dir() {
                return Err(self.err(NOT_FILE, path));
            }
            self.check_compare(path, &existing, r)?;
            return self.swap(path, r, existing);
        }
        match r.prev_exist {
            Some(false) => self.create(path, r, false, "create"),
            Some(true) => self.update(path, r, None),
            None => self.create(path, r, true, "set"),
        }
    }

    fn check_compare(&self, path: &str, n: &StoredNode, r: &V2Request) -> Result<(), V2Error> {
        let value_ok = r
            .prev_value
            .as_ref()
            .is_none_or(|v| n.value.as_deref() == Some(v.as_str()));
        let index_ok = r.prev_index == 0 || n.modified == r.prev_index;
        if value_ok && index_ok {
            return Ok(());
        }
        let cause = match (value_ok, index_ok) {
            (false, false) => format!(
                "[{} != {}] [{} != {}]",
                r.prev_value.as_deref().unwrap_or(""),
                n.value.as_deref().unwrap_or(""),
                r.prev_index,
                n.modified
            ),
            (false, true) => format!(
                "[{} != {}]",
                r.prev_value.as_deref().unwrap_or(""),
                n.value.as_deref().unwrap_or("")
            ),
            _ => format!("[{} != {}]", r.prev_index, n.modified),
        };
        let _ = path;
        Err(self.err(TEST_FAILED, &cause))
    }

    fn create(
        &mut self,
        path: &str,
        r: &V2Request,
        replace: bool,
        action: &str,
    ) -> Result<Event, V2Error> {
        let prev = self.nodes.get(path).cloned();
        if let Some(existing) = &prev {
            if !replace {
                return Err(self.err(NODE_EXIST, path));
            }
            if existing.is_dir() {
                return Err(self.err(NOT_FILE, path));
            }
        }
        let index = self.index + 1;
        self.ensure_parents(path, index)?;
        self.index = index;
        let node = if r.dir {
            StoredNode::dir(index, r.expiration)
        } else {
            StoredNode::file(r.value.clone(), index, r.expiration)
        };
        self.put_node(path, node.clone());
        let event = Event {
            action: action.to_string(),
            node: node.repr(path, 0, false, false, None),
            prev_node: prev.map(|p| p.repr(path, 0, false, false, None)),
        };
        Ok(self.record(event))
    }

    fn update(
        &mut self,
        path: &str,
        r: &V2Request,
        keep_value: Option<String>,
    ) -> Result<Event, V2Error> {
        let Some(existing) = self.nodes.get(path).cloned() else {
            return Err(self.err(KEY_NOT_FOUND, path));
        };
        if existing.is_dir() && !r.value.is_empty() {
            return Err(self.err(NOT_FILE, path));
        }
        self.index += 1;
        let mut node = existing.clone();
        node.modified = self.index;
        node.expiration = r.expiration;
        if !existing.is_dir() {
            node.value = Some(keep_value.unwrap_or_else(|| r.value.clone()));
        }
        self.put_node(path, node.clone());
        let event = Event {
            action: "update".to_string(),
            node: node.repr(path, 0, false, false, None),
            prev_node: Some(existing.repr(path, 0, false, false, None)),
        };
        Ok(self.record(event))
    }

    fn swap(&mut self, path: &str, r: &V2Request, existing: StoredNode) -> Result<Event, V2Error> {
        self.index += 1;
        let node = StoredNode {
            value: Some(r.value.clone()),
            created: existing.created,
            modified: self.index,
            expiration: r.expiration,
        };
        self.put_node(path, node.clone());
        let event = Event {
            action: "compareAndSwap".to_string(),
            node: node.repr(path, 0, false, false, None),
            prev_node: Some(existing.repr(path, 0, false, false, None)),
        };
        Ok(self.record(event))
    }

    fn delete(&mut self, path: &str, r: &V2Request) -> Result<Event, V2Error> {
        if path == "/" {
            return Err(self.err(ROOT_READ_ONLY, "/"));
        }
        let Some(existing) = self.nodes.get(path).cloned() else {
            return Err(self.err(KEY_NOT_FOUND, path));
        };
        let conditional = r.prev_value.is_some() || r.prev_index != 0;
        if conditional {
            if existing.is_dir() {
                return Err(self.err(NOT_FILE, path));
            }
            self.check_compare(path, &existing, r)?;
        }
        if existing.is_dir() {
            if !r.dir && !r.recursive {
                return Err(self.err(NOT_FILE, path));
            }
            if !r.recursive && !self.children(path).is_empty() {
                return Err(self.err(DIR_NOT_EMPTY, path));
            }
        }
        self.index += 1;
        for d in self.descendants(path) {
            self.remove_node(&d);
        }
        self.remove_node(path);
        let action = if conditional {
            "compareAndDelete"
        } else {
            "delete"
        };
        let event = Event {
            action: action.to_string(),
            node: NodeRepr::deleted(path, existing.is_dir(), self.index, existing.created),
            prev_node: Some(existing.repr(path, 0, false, false, None)),
        };
        Ok(self.record(event))
    }

    /// Deletes every node whose expiration is at or before `now` (unix ns), one "expire" event
    /// each, parents before children are irrelevant: a directory takes its contents with it.
    fn expire(&mut self, now: i64) {
        let due: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.expiration != 0 && n.expiration <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for path in due {
            let Some(existing) = self.nodes.get(&path).cloned() else {
                continue; // went with its expired parent
            };
            self.index += 1;
            for d in self.descendants(&path) {
                self.remove_node(&d);
            }
            self.remove_node(&path);
            let event = Event {
                action: "expire".to_string(),
                node: NodeRepr::deleted(&path, existing.is_dir(), self.index, existing.created),
                prev_node: Some(existing.repr(&path, 0, false, false, None)),
            };
            self.record(event);
        }
    }

    /// Whether some node has an expiry time (the leader then syncs its clock periodically).
    pub fn has_expiring(&self) -> bool {
        self.nodes.values().any(|n| n.expiration != 0)
    }

    /// A read: the node, and with `recursive` its whole subtree (hidden `_` keys are left out of
    /// listings); `now` (unix ns) computes remaining TTLs.
    pub fn get(
        &self,
        key: &str,
        recursive: bool,
        sorted: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean_path(key);
        let node = if path == "/" {
            let mut root = NodeRepr::root();
            root.nodes = Some(self.list(&path, recursive, sorted, now));
            root
        } else {
            let n = self
                .nodes
                .get(&path)
                .ok_or_else(|| self.err(KEY_NOT_FOUND, &path))?;
            let mut repr = n.repr(&path, now, true, false, None);
            if n.is_dir() {
                repr.nodes = Some(self.list(&path, recursive, sorted, now));
            }
            repr
        };
        Ok(Event {
            action: "get".to_string(),
            node,
            prev_node: None,
        })
    }

    fn list(&self, dir: &str, recursive: bool, sorted: bool, now: i64) -> Vec<NodeRepr> {
        let prefix = child_prefix(dir);
        let mut out = Vec::new();
        for child in self.children(dir) {
            if child[prefix.len()..].starts_with('_') {
                continue;
            }
            let n = &self.nodes[&child];
            let mut repr = n.repr(&child, now, true, false, None);
            if n.is_dir() && recursive {
                repr.nodes = Some(self.list(&child, recursive, sorted, now));
            }
            out.push(repr);
        }
        if sorted {
            out.sort_by(|a, b| a.key.cmp(&b.key));
        }
        out
    }

    /// The first recorded event at or after `index` on `key` (or below it, with `recursive`);
    /// `Err` if that part of the history is gone.
    pub fn event_since(
        &self,
        key: &str,
        recursive: bool,
        index: u64,
    ) -> Result<Option<Event>, V2Error> {
        let path = clean_path(key);
        if let Some(first) = self.history.front() {
            let oldest = first.index();
            if index < oldest && self.index >= HISTORY_LEN as u64 {
                return Err(V2Error::new(
                    EVENT_INDEX_CLEARED,
                    format!("the requested history has been cleared [{oldest}/{index}]"),
                    self.index,
                ));
            }
        }
        Ok(self
            .history
            .iter()
            .find(|e| e.index() >= index && e.matches(&path, recursive))
            .cloned())
    }
}

#[cfg(test)]
mod tests;

//! Nodes as stored, and as etcd's v2 API shows them.

use serde::{Deserialize, Serialize};

/// A node as persisted: a value (files) or none (directories), its indexes and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNode {
    pub value: Option<String>,
    pub created: u64,
    pub modified: u64,
    /// Unix nanoseconds; 0 = never.
    pub expiration: i64,
}

impl StoredNode {
    pub fn dir(index: u64, expiration: i64) -> StoredNode {
        StoredNode {
            value: None,
            created: index,
            modified: index,
            expiration,
        }
    }

    pub fn file(value: String, index: u64, expiration: i64) -> StoredNode {
        StoredNode {
            value: Some(value),
            created: index,
            modified: index,
            expiration,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.value.is_none()
    }

    /// The API form; `now` (unix ns, 0 = at the write) gives the remaining TTL.
    pub fn repr(
        &self,
        key: &str,
        now: i64,
        _reading: bool,
        _recursive: bool,
        nodes: Option<Vec<NodeRepr>>,
    ) -> NodeRepr {
        let (expiration, ttl) = if self.expiration == 0 {
            (None, None)
        } else {
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(self.expiration as i128)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                });
            let reference = if now == 0 {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(0)
            } else {
                now
            };
            let left = self.expiration - reference;
            let secs = left / 1_000_000_000 + i64::from(left % 1_000_000_000 > 0);
            (at, Some(secs))
        };
        NodeRepr {
            key: key.to_string(),
            value: self.value.clone(),
            dir: self.is_dir(),
            expiration,
            ttl,
            nodes,
            modified_index: self.modified,
            created_index: self.created,
        }
    }
}

/// A node as etcd's v2 API returns it (field order as etcd's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRepr {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeRepr>>,
    #[serde(rename = "modifiedIndex", skip_serializing_if = "is_zero")]
    pub modified_index: u64,
    #[serde(rename = "createdIndex", skip_serializing_if = "is_zero")]
    pub created_index: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl NodeRepr {
    pub fn root() -> NodeRepr {
        NodeRepr {
            key: String::new(),
            value: None,
            dir: true,
            expiration: None,
            ttl: None,
            nodes: None,
            modified_index: 0,
            created_index: 0,
        }
    }

    /// What a delete or expiry reports about the node it removed.
    pub fn deleted(key: &str, dir: bool, modified: u64, created: u64) -> NodeRepr {
        NodeRepr {
            key: key.to_string(),
            value: None,
            dir,
            expiration: None,
            ttl: None,
            nodes: None,
            modified_index: modified,
            created_index: created,
        }
    }
}

/// One change (or a read), as etcd's v2 API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub action: String,
    pub node: NodeRepr,
    #[serde(rename = "prevNode", skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<NodeRepr>,
}

impl Event {
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    /// Whether a watcher of `path` (and with `recursive`, everything below it) sees this event.
    pub fn matches(&self, path: &str, recursive: bool) -> bool {
        let key = &self.node.key;
        if key == path {
            return true;
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        if recursive && key.starts_with(&prefix) {
            return true;
        }
        // Deleting or expiring a directory is seen by watchers of what was inside it.
        matches!(
            self.action.as_str(),
            "delete" | "expire" | "compareAndDelete"
        ) && self.node.dir
            && path.starts_with(&format!("{key}/"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

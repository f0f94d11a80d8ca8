//! The cluster's members as this member knows them: IDs, names, peer URLs from bootstrap, and
//! the client URLs each member publishes through Raft once it runs. Kept in
//! `member/cluster.json` in the data dir so a restart knows the cluster without its flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use rampart_proto::etcdserverpb;
use serde::{Deserialize, Serialize};

use crate::ServerError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    #[serde(default)]
    pub is_learner: bool,
}

impl Member {
    pub fn to_proto(&self) -> etcdserverpb::Member {
        etcdserverpb::Member {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClusterFile {
    cluster_id: String,
    members: Vec<Member>,
}

/// The member list, shared by the API handlers and the apply loop.
pub struct Membership {
    cluster_id: u64,
    members: RwLock<BTreeMap<u64, Member>>,
    file: PathBuf,
}

impl Membership {
    pub fn new(cluster_id: u64, members: Vec<Member>, file: PathBuf) -> Membership {
        Membership {
            cluster_id,
            members: RwLock::new(members.into_iter().map(|m| (m.id, m)).collect()),
            file,
        }
    }

    /// Loads the list saved by an earlier run.
    pub fn load(file: &Path) -> Result<Membership, ServerError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ServerError::io(format!("cannot read {}", file.display()), e))?;
        let parsed: ClusterFile = serde_json::from_str(&text).map_err(|e| {
            ServerError::Config(format!(
                "{} is damaged ({e}): restore the data dir from a backup",
                file.display()
            ))
        })?;
        let cluster_id = u64::from_str_radix(&parsed.cluster_id, 16).map_err(|e| {
            ServerError::Config(format!("{}: bad cluster_id ({e})", file.display()))
        })?;
        Ok(Membership::new(
            cluster_id,
            parsed.members,
            file.to_path_buf(),
        ))
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn members(&self) -> Vec<Member> {
        self.members
            .read()
            .expect("members")
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Member> {
        self.members.read().expect("members").get(&id).cloned()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members
            .read()
            .expect("members")
            .keys()
            .copied()
            .collect()
    }

    /// Records the name and client URLs a member published; true when something changed.
    pub fn publish(
        &self,
        id: u64,
        name: &str,
        client_urls: &[String],
    ) -> Result<bool, ServerError> {
        let changed = {
            let mut members = self.members.write().expect("members");
            match members.get_mut(&id) {
                Some(m) if m.name == name && m.client_urls == client_urls => false,
                Some(m) => {
                    m.name = name.to_string();
                    m.client_urls = client_urls.to_vec();
                    true
                }
                None => false,
            }
        };
        if changed {
            self.save()?;
        }
        Ok(changed)
    }

    /// Adds (or replaces) a member; saved before returning.
    pub fn add(&self, member: Member) -> Result<(), ServerError> {
        self.members
            .write()
            .expect("members")
            .insert(member.id, member);
        self.save()
    }

    /// Removes a member; false if it was not there.
    pub fn remove(&self, id: u64) -> Result<bool, ServerError> {
        let removed = self.members.write().expect("members").remove(&id).is_some();
        if removed {
            self.save()?;
        }
        Ok(removed)
    }

    /// Sets a member's peer URLs; false if there is no such member.
    pub fn update_peer_urls(&self, id: u64, peer_urls: &[String]) -> Result<bool, ServerError> {
        let found = match self.members.write().expect("members").get_mut(&id) {
            Some(m) => {
                m.peer_urls = peer_urls.to_vec();
                true
            }
            None => false,
        };
        if found {
            self.save()?;
        }
        Ok(found)
    }

    /// Makes a learner a voting member.
    pub fn promote(&self, id: u64) -> Result<bool, ServerError> {
        let found = match self.members.write().expect("members").get_mut(&id) {
            Some(m) => {
                m.is_learner = false;
                true
            }
            None => false,
        };
        if found {
            self.save()?;
        }
        Ok(found)
    }

    /// Writes the list atomically (temp file, fsync, rename).
    pub fn save(&self) -> Result<(), ServerError> {
        let content = ClusterFile {
            cluster_id: format!("{:x}", self.cluster_id),
            members: self.members(),
        };
        let json = serde_json::to_vec_pretty(&content).expect("members serialise");
        write_atomically(&self.file, &json)
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| ServerError::io(format!("cannot write {}", path.display()), e))
}

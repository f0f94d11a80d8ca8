//! What the server needs from its configuration, taken from the etcd-style flags
//! (`rampart-config`) in one place, so the rest of the server does not depend on how flags are
//! spelled.

use std::path::PathBuf;
use std::time::Duration;

use rampart_tls::TlsOptions;

/// etcd's request timeout: 5 s plus two election timeouts.
pub fn request_timeout(election_timeout: Duration) -> Duration {
    Duration::from_secs(5) + election_timeout * 2
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` as (name, peer URLs) pairs.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state_new: bool,
    pub initial_cluster_token: String,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// TLS of the client listeners (used for `https://` listen URLs).
    pub client_tls: Option<TlsOptions>,
    /// TLS of the peer listeners and of connections to other members.
    pub peer_tls: Option<TlsOptions>,
}

impl ServerSettings {
    /// Election timeout in Raft ticks (one tick per heartbeat interval).
    pub fn election_ticks(&self) -> usize {
        let ticks = self.election_timeout.as_millis() / self.heartbeat_interval.as_millis().max(1);
        (ticks as usize).max(2)
    }
}

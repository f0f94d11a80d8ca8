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

/// Takes what the server needs from the parsed etcd-style configuration.
pub fn from_config(c: &rampart_config::ServerConfig) -> Result<ServerSettings, crate::ServerError> {
    let tls = |t: &rampart_config::TlsSettings, auto_dir: PathBuf| -> Option<TlsOptions> {
        if !t.is_configured() {
            return None;
        }
        Some(TlsOptions {
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            trusted_ca_file: t.trusted_ca_file.clone(),
            client_cert_auth: t.client_cert_auth,
            crl_file: t.crl_file.clone(),
            allowed_cn: t.allowed_cn.clone(),
            allowed_hostname: t.allowed_hostname.clone(),
            min_version: Some(c.tls_min_version.clone()),
            cipher_suites: c.cipher_suites.clone(),
            auto_tls_dir: t.auto_tls.then_some(auto_dir),
        })
    };
    Ok(ServerSettings {
        name: c.name.clone(),
        data_dir: c.data_dir.clone(),
        wal_dir: c.wal_dir.clone(),
        listen_client_urls: c.listen_client_urls.clone(),
        advertise_client_urls: c.advertise_client_urls.clone(),
        listen_peer_urls: c.listen_peer_urls.clone(),
        initial_advertise_peer_urls: c.initial_advertise_peer_urls.clone(),
        initial_cluster: c.initial_cluster.clone(),
        initial_cluster_state_new: c.initial_cluster_state == rampart_config::ClusterState::New,
        initial_cluster_token: c.initial_cluster_token.clone(),
        heartbeat_interval: c.heartbeat_interval,
        election_timeout: c.election_timeout,
        snapshot_count: c.snapshot_count,
        max_request_bytes: c.max_request_bytes,
        max_txn_ops: c.max_txn_ops,
        client_tls: tls(&c.client_tls, c.data_dir.join("fixtures").join("client")),
        peer_tls: tls(&c.peer_tls, c.data_dir.join("fixtures").join("peer")),
    })
}

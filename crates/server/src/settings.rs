//! What the server needs from its configuration, taken from the etcd-style flags
//! (`rampart-config`) in one place, so the rest of the server does not depend on how flags are
//! spelled.

use std::path::PathBuf;
use std::time::Duration;

use rampart_config::parse_go_duration;
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
    /// Backend quota in bytes (`None`: no quota).
    pub quota_backend_bytes: Option<u64>,
    /// TLS of the client listeners (used for `https://` listen URLs).
    pub client_tls: Option<TlsOptions>,
    /// TLS of the peer listeners and of connections to other members.
    pub peer_tls: Option<TlsOptions>,
    /// How often watchers that asked for progress notifications get one
    /// (`--experimental-watch-progress-notify-interval`, 10 minutes as etcd's).
    pub watch_progress_notify_interval: Duration,
    /// Serve etcd's v2 API (`--enable-v2`).
    pub enable_v2: bool,
    /// `--force-new-cluster`: drop every other member and start as a one-member cluster.
    pub force_new_cluster: bool,
    /// `--bcrypt-cost`: cost of the password hashes of v3 auth users (4 to 31).
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl`: how long an unused simple token stays valid.
    pub auth_token_ttl: Duration,
    /// `--auth-token jwt,...`: JWTs instead of simple tokens.
    pub jwt: Option<std::sync::Arc<rampart_auth::jwt::JwtTokens>>,
}

/// `--bcrypt-cost` (etcd's default 10; bcrypt allows 4 to 31).
fn bcrypt_cost(value: Option<&String>) -> Result<u32, crate::ServerError> {
    let Some(v) = value else {
        return Ok(rampart_auth::password::DEFAULT_BCRYPT_COST);
    };
    match v.parse::<u32>() {
        Ok(cost) if (4..=31).contains(&cost) => Ok(cost),
        _ => Err(crate::ServerError::Config(format!(
            "invalid value {v:?} for flag -bcrypt-cost: expected a number from 4 to 31"
        ))),
    }
}

/// `--auth-token`: `simple` (the default) or `jwt,pub-key=...,priv-key=...,sign-method=...`.
fn jwt_tokens(
    provider: Option<&String>,
) -> Result<Option<std::sync::Arc<rampart_auth::jwt::JwtTokens>>, crate::ServerError> {
    let Some(value) = provider else {
        return Ok(None);
    };
    let (kind, options) = value.split_once(',').unwrap_or((value.as_str(), ""));
    match kind {
        "simple" => Ok(None),
        "jwt" => rampart_auth::jwt::JwtTokens::from_options(options)
            .map(|j| Some(std::sync::Arc::new(j)))
            .map_err(crate::ServerError::Config),
        other => Err(crate::ServerError::Config(format!(
            "invalid value {other:?} for flag -auth-token: expected simple or jwt,..."
        ))),
    }
}

/// `--auth-token-ttl` in seconds (etcd's default 300), for simple tokens.
fn auth_token_ttl(ttl: Option<&String>) -> Result<Duration, crate::ServerError> {
    match ttl {
        None => Ok(rampart_auth::DEFAULT_TOKEN_TTL),
        Some(v) => match v.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(crate::ServerError::Config(format!(
                "invalid value {v:?} for flag -auth-token-ttl: expected a number of seconds above 0"
            ))),
        },
    }
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
        quota_backend_bytes: match c.quota_backend_bytes {
            0 => Some(DEFAULT_QUOTA_BACKEND_BYTES),
            q if q < 0 => None,
            q => Some(q as u64),
        },
        client_tls: tls(&c.client_tls, c.data_dir.join("fixtures").join("client")),
        peer_tls: tls(&c.peer_tls, c.data_dir.join("fixtures").join("peer")),
        watch_progress_notify_interval: match c
            .values
            .get("experimental-watch-progress-notify-interval")
        {
            Some(v) => parse_go_duration(v).ok_or_else(|| {
                crate::ServerError::Config(format!(
                    "invalid value {v:?} for flag -experimental-watch-progress-notify-interval: expected a duration such as 10m or 500ms"
                ))
            })?,
            None => DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
        },
        enable_v2: c.enable_v2,
        force_new_cluster: c.force_new_cluster,
        bcrypt_cost: bcrypt_cost(c.values.get("bcrypt-cost"))?,
        auth_token_ttl: auth_token_ttl(c.values.get("auth-token-ttl"))?,
        jwt: jwt_tokens(c.values.get("auth-token"))?,
    })
}

/// etcd's default backend quota (2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// etcd's default progress-notification interval.
pub const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

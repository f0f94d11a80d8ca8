//! The typed, validated server configuration, and reading etcd's YAML config file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::flags::lookup;
use crate::parse::Values;
use crate::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// One side's TLS settings (client or peer), as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    pub auto_tls: bool,
    pub allowed_cn: Vec<String>,
    pub allowed_hostname: Vec<String>,
}

impl TlsSettings {
    pub fn is_configured(&self) -> bool {
        self.cert_file.is_some() || self.auto_tls
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes`: 0 = etcd's default (2 GiB), negative = no quota.
    pub quota_backend_bytes: i64,
    pub client_tls: TlsSettings,
    pub peer_tls: TlsSettings,
    pub cipher_suites: Vec<String>,
    pub tls_min_version: String,
    pub log_level: String,
    pub log_outputs: Vec<String>,
    pub logger: String,
    pub enable_v2: bool,
    /// `--force-new-cluster`: restart this member's data as a one-member cluster.
    pub force_new_cluster: bool,
    pub proxy: String,
    pub insecure_allow_plaintext: bool,
    /// Every explicitly set value, by flag name (for features that read their own flags).
    pub values: Values,
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn path(v: Option<&String>) -> Option<PathBuf> {
    v.filter(|s| !s.is_empty()).map(PathBuf::from)
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::BadValue {
        name: name.to_string(),
        value: v.to_string(),
        reason: "not a number".into(),
    })
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Whether the host of a URL is loopback (plaintext is allowed there by default).
fn is_loopback(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn check_urls(flag: &str, urls: &[String]) -> Result<(), ConfigError> {
    for u in urls {
        let parsed = url::Url::parse(u)
            .map_err(|e| invalid(format!("--{flag}: invalid URL {u:?} ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https" | "unix" | "unixs") {
            return Err(invalid(format!(
                "--{flag}: URL {u:?} must be http:// or https://"
            )));
        }
        if parsed.port().is_none() && matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!("--{flag}: URL {u:?} has no port")));
        }
    }
    Ok(())
}

impl ServerConfig {
    pub(crate) fn from_values(
        values: &Values,
        warnings: &mut Vec<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let get = |name: &str| -> String {
            values.get(name).cloned().unwrap_or_else(|| {
                lookup(name)
                    .map(|f| f.default.to_string())
                    .unwrap_or_default()
            })
        };
        let flag_on = |name: &str| get(name) == "true";
        let name = get("name");
        let data_dir = match values.get("data-dir").filter(|s| !s.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(format!("{name}.etcd")),
        };
        let listen_peer_urls = list(&get("listen-peer-urls"));
        let initial_advertise_peer_urls = list(&get("initial-advertise-peer-urls"));
        let initial_cluster_text = match values.get("initial-cluster").filter(|s| !s.is_empty()) {
            Some(v) => v.clone(),
            None => format!(
                "{name}={}",
                initial_advertise_peer_urls.join(&format!(",{name}="))
            ),
        };
        let mut initial_cluster: Vec<(String, Vec<String>)> = Vec::new();
        for part in list(&initial_cluster_text) {
            let (member, url) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("--initial-cluster: {part:?} is not name=url")))?;
            match initial_cluster.iter_mut().find(|(n, _)| n == member) {
                Some((_, urls)) => urls.push(url.to_string()),
                None => initial_cluster.push((member.to_string(), vec![url.to_string()])),
            }
        }
        let state = match get("initial-cluster-state").as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(ConfigError::BadValue {
                    name: "initial-cluster-state".into(),
                    value: other.into(),
                    reason: "valid values include new, existing".into(),
                })
            }
        };
        let heartbeat: u64 = number("heartbeat-interval", &get("heartbeat-interval"))?;
        let election: u64 = number("election-timeout", &get("election-timeout"))?;
        if heartbeat == 0 {
            return Err(invalid("--heartbeat-interval must be > 0"));
        }
        if election < 5 * heartbeat {
            return Err(invalid(format!(
                "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]"
            )));
        }
        if election > 50_000 {
            return Err(invalid(format!(
                "--election-timeout[{election}ms] is too long, and should be set less than 50000ms"
            )));
        }
        let legacy_ca = path(values.get("ca-file"));
        let legacy_peer_ca = path(values.get("peer-ca-file"));
        let client_tls = TlsSettings {
            cert_file: path(values.get("cert-file")),
            key_file: path(values.get("key-file")),
            trusted_ca_file: path(values.get("trusted-ca-file")).or(legacy_ca.clone()),
            client_cert_auth: flag_on("client-cert-auth") || legacy_ca.is_some(),
            crl_file: path(values.get("client-crl-file")),
            auto_tls: flag_on("auto-tls"),
            allowed_cn: vec![],
            allowed_hostname: list(&get("client-cert-allowed-hostname")),
        };
        let peer_tls = TlsSettings {
            cert_file: path(values.get("peer-cert-file")),
            key_file: path(values.get("peer-key-file")),
            trusted_ca_file: path(values.get("peer-trusted-ca-file")).or(legacy_peer_ca.clone()),
            client_cert_auth: flag_on("peer-client-cert-auth") || legacy_peer_ca.is_some(),
            crl_file: path(values.get("peer-crl-file")),
            auto_tls: flag_on("peer-auto-tls"),
            allowed_cn: list(&get("peer-cert-allowed-cn")),
            allowed_hostname: list(&get("peer-cert-allowed-hostname")),
        };
        if legacy_ca.is_some() {
            warnings.push("--ca-file is deprecated: use --trusted-ca-file with --client-cert-auth (applied as such)".into());
        }
        if legacy_peer_ca.is_some() {
            warnings.push("--peer-ca-file is deprecated: use --peer-trusted-ca-file with --peer-client-cert-auth (applied as such)".into());
        }
        let config = ServerConfig {
            name,
            data_dir,
            wal_dir: path(values.get("wal-dir")),
            listen_client_urls: list(&get("listen-client-urls")),
            advertise_client_urls: list(&get("advertise-client-urls")),
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: state,
            initial_cluster_token: get("initial-cluster-token"),
            heartbeat_interval: Duration::from_millis(heartbeat),
            election_timeout: Duration::from_millis(election),
            snapshot_count: number("snapshot-count", &get("snapshot-count"))?,
            max_request_bytes: number("max-request-bytes", &get("max-request-bytes"))?,
            max_txn_ops: number("max-txn-ops", &get("max-txn-ops"))?,
            quota_backend_bytes: number("quota-backend-bytes", &get("quota-backend-bytes"))?,
            client_tls,
            peer_tls,
            cipher_suites: list(&get("cipher-suites")),
            tls_min_version: get("tls-min-version"),
            log_level: if flag_on("debug") {
                "debug".into()
            } else {
                get("log-level")
            },
            log_outputs: list(&get("log-outputs")),
            logger: get("logger"),
            enable_v2: flag_on("enable-v2"),
            force_new_cluster: flag_on("force-new-cluster"),
            proxy: get("proxy"),
            insecure_allow_plaintext: flag_on("insecure-allow-plaintext"),
            values: values.clone(),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_urls("listen-client-urls", &self.listen_client_urls)?;
        check_urls("advertise-client-urls", &self.advertise_client_urls)?;
        check_urls("listen-peer-urls", &self.listen_peer_urls)?;
        check_urls(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        if self.max_txn_ops == 0 {
            return Err(invalid("--max-txn-ops must be > 0"));
        }
        if self.max_request_bytes == 0 {
            return Err(invalid("--max-request-bytes must be > 0"));
        }
        if !matches!(self.tls_min_version.as_str(), "TLS1.2" | "TLS1.3") {
            return Err(invalid(format!(
                "--tls-min-version {:?} is not supported: use TLS1.2 or TLS1.3",
                self.tls_min_version
            )));
        }
        if self.initial_cluster_state == ClusterState::New && self.proxy == "off" {
            let Some((_, urls)) = self.initial_cluster.iter().find(|(n, _)| *n == self.name) else {
                return Err(invalid(format!(
                    "couldn't find local name {:?} in the initial cluster configuration: add {}=<its peer URL> to --initial-cluster",
                    self.name, self.name
                )));
            };
            let mut a = urls.clone();
            let mut b = self.initial_advertise_peer_urls.clone();
            a.sort();
            b.sort();
            if a != b {
                return Err(invalid(format!(
                    "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (make them match)",
                    self.name,
                    urls.join(","),
                    self.initial_advertise_peer_urls.join(",")
                )));
            }
        }
        for (side, tls, prefix) in [
            ("client", &self.client_tls, ""),
            ("peer", &self.peer_tls, "peer-"),
        ] {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(invalid(format!(
                    "--{prefix}cert-file and --{prefix}key-file must be given together ({side} TLS)"
                )));
            }
            if tls.client_cert_auth && tls.trusted_ca_file.is_none() && !tls.auto_tls {
                return Err(invalid(format!(
                    "--{prefix}client-cert-auth needs --{prefix}trusted-ca-file: the CA that signs the {side} certificates"
                )));
            }
        }
        let https_client = self
            .listen_client_urls
            .iter()
            .any(|u| u.starts_with("https://"));
        if https_client && !self.client_tls.is_configured() {
            return Err(invalid(
                "--listen-client-urls has an https URL but no certificate: pass --cert-file and --key-file (or --auto-tls)",
            ));
        }
        let https_peer = self
            .listen_peer_urls
            .iter()
            .any(|u| u.starts_with("https://"));
        if https_peer && !self.peer_tls.is_configured() {
            return Err(invalid(
                "--listen-peer-urls has an https URL but no certificate: pass --peer-cert-file and --peer-key-file (or --peer-auto-tls)",
            ));
        }
        if !self.insecure_allow_plaintext {
            for (flag, urls) in [
                ("listen-client-urls", &self.listen_client_urls),
                ("listen-peer-urls", &self.listen_peer_urls),
            ] {
                for u in urls.iter() {
                    if u.starts_with("http://") && !is_loopback(u) {
                        return Err(invalid(format!(
                            "--{flag} {u} would serve plaintext on a non-loopback address: use https:// with certificates (rampart pki), or pass --insecure-allow-plaintext to accept the risk"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// etcd's YAML config file: flag names as keys, plus the nested transport-security sections.
pub(crate) fn read_config_file(file: &str) -> Result<Values, ConfigError> {
    let err = |reason: String| ConfigError::ConfigFile {
        path: file.to_string(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let map = doc
        .as_mapping()
        .ok_or_else(|| err("not a YAML mapping".into()))?;
    let mut values = Values::new();
    let scalar = |v: &serde_yaml::Value| -> Option<String> {
        match v {
            serde_yaml::Value::String(s) => Some(s.clone()),
            serde_yaml::Value::Bool(b) => Some(b.to_string()),
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            serde_yaml::Value::Sequence(items) => Some(
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            serde_yaml::Value::Null => None,
            _ => None,
        }
    };
    for (k, v) in map {
        let Some(key) = k.as_str() else { continue };
        match key {
            "client-transport-security" | "peer-transport-security" => {
                let prefix = if key.starts_with("peer") { "peer-" } else { "" };
                let Some(section) = v.as_mapping() else {
                    continue;
                };
                for (sk, sv) in section {
                    let Some(sub) = sk.as_str() else { continue };
                    let flag = match (prefix, sub) {
                        ("", "crl-file") => "client-crl-file".to_string(),
                        ("", "allowed-hostname") => "client-cert-allowed-hostname".to_string(),
                        ("peer-", "allowed-cn") => "peer-cert-allowed-cn".to_string(),
                        ("peer-", "allowed-hostname") => "peer-cert-allowed-hostname".to_string(),
                        (p, s) => format!("{p}{s}"),
                    };
                    if lookup(&flag).is_none() {
                        return Err(err(format!("unknown key {key}.{sub}")));
                    }
                    if let Some(val) = scalar(sv) {
                        values.insert(flag, val);
                    }
                }
            }
            _ => {
                if lookup(key).is_none() {
                    return Err(err(format!("unknown key {key:?}")));
                }
                if let Some(val) = scalar(v) {
                    values.insert(key.to_string(), val);
                }
            }
        }
    }
    Ok(values)
}

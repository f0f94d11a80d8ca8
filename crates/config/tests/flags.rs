//! etcd 3.4's command lines, variables and config files as the seeds and etcd's docs use them.

use std::ffi::OsString;
use std::time::Duration;

use rampart_config::{parse, ClusterState, ConfigError};

fn args(line: &[&str]) -> Vec<OsString> {
    line.iter().map(OsString::from).collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn seed_000_member_command_line() {
    let p = parse(
        &args(&[
            "--name=node1",
            "--listen-client-urls=https://localhost:1179",
            "--advertise-client-urls=https://localhost:1179",
            "--listen-peer-urls=https://localhost:1180",
            "--initial-advertise-peer-urls=https://localhost:1180",
            "--initial-cluster=node1=https://localhost:1180,node2=https://localhost:1280,node3=https://localhost:1380",
            "--initial-cluster-token=etcd-cluster-token",
            "--initial-cluster-state=new",
            "--cert-file=./etcd-node.pem",
            "--key-file=./etcd-node-key.pem",
            "--peer-cert-file=./etcd-node.pem",
            "--peer-key-file=./etcd-node-key.pem",
            "--trusted-ca-file=./ca.pem",
            "--peer-trusted-ca-file=./ca.pem",
            "--client-cert-auth",
            "--peer-client-cert-auth",
        ]),
        &no_env,
    )
    .unwrap();
    let c = p.config;
    assert_eq!(c.name, "node1");
    assert_eq!(c.data_dir.to_str(), Some("node1.etcd"));
    assert_eq!(c.initial_cluster.len(), 3);
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert!(c.client_tls.client_cert_auth && c.peer_tls.client_cert_auth);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.election_timeout, Duration::from_millis(1000));
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
}

#[test]
fn go_flag_syntax_single_dash_and_separate_values() {
    let p = parse(
        &args(&[
            "-name",
            "x",
            "--data-dir",
            "/tmp/x",
            "-client-cert-auth=false",
            "--initial-cluster",
            "x=http://localhost:2380",
        ]),
        &no_env,
    )
    .unwrap();
    assert_eq!(p.config.name, "x");
    assert_eq!(p.config.data_dir.to_str(), Some("/tmp/x"));
    assert!(!p.config.client_tls.client_cert_auth);
}

#[test]
fn seed_001_environment_variables() {
    let env = |k: &str| -> Option<String> {
        match k {
            "ETCD_NAME" => Some("etcd1".into()),
            "ETCD_DATA_DIR" => Some("/var/lib/etcd".into()),
            "ETCD_LISTEN_CLIENT_URLS" => Some("https://127.0.0.1:2379".into()),
            "ETCD_ADVERTISE_CLIENT_URLS" => Some("https://127.0.0.1:2379".into()),
            "ETCD_LISTEN_PEER_URLS" => Some("https://127.0.0.1:2380".into()),
            "ETCD_INITIAL_ADVERTISE_PEER_URLS" => Some("https://127.0.0.1:2380".into()),
            "ETCD_INITIAL_CLUSTER" => Some("etcd1=https://127.0.0.1:2380".into()),
            "ETCD_HEARTBEAT_INTERVAL" => Some("300".into()),
            "ETCD_ELECTION_TIMEOUT" => Some("3000".into()),
            "ETCD_CERT_FILE" => Some("/etc/etcd/server.crt".into()),
            "ETCD_KEY_FILE" => Some("/etc/etcd/server.key.insecure".into()),
            "ETCD_CLIENT_CERT_AUTH" => Some("true".into()),
            "ETCD_TRUSTED_CA_FILE" => Some("/etc/etcd/ca.crt".into()),
            "ETCD_PEER_CERT_FILE" => Some("/etc/etcd/server.crt".into()),
            "ETCD_PEER_KEY_FILE" => Some("/etc/etcd/server.key.insecure".into()),
            "ETCD_PEER_TRUSTED_CA_FILE" => Some("/etc/etcd/ca.crt".into()),
            _ => None,
        }
    };
    let p = parse(&[], &env).unwrap();
    assert_eq!(p.config.name, "etcd1");
    assert_eq!(p.config.heartbeat_interval, Duration::from_millis(300));
    assert_eq!(p.config.election_timeout, Duration::from_millis(3000));
    assert!(p.warnings.iter().any(|w| w.contains("ETCD_NAME")));
    // A flag and its variable both set is an error in etcd 3.4.
    let err = parse(&args(&["--name", "other"]), &env).unwrap_err();
    assert!(
        err.to_string()
            .contains("conflicting environment variable \"ETCD_NAME\" is shadowed"),
        "{err}"
    );
}

#[test]
fn errors_use_etcds_words_and_give_a_hint() {
    let e = parse(&args(&["--nmae", "x"]), &no_env).unwrap_err();
    assert_eq!(
        e,
        ConfigError::UnknownFlag {
            name: "nmae".into(),
            hint: " (did you mean --name?)".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "flag provided but not defined: -nmae (did you mean --name?)"
    );
    let e = parse(&args(&["--election-timeout=100"]), &no_env).unwrap_err();
    assert!(e.to_string().contains("--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"), "{e}");
    let e = parse(&args(&["--name"]), &no_env).unwrap_err();
    assert_eq!(e.to_string(), "flag needs an argument: -name");
    let e = parse(
        &args(&[
            "--name",
            "a",
            "--initial-cluster",
            "b=http://localhost:2380",
        ]),
        &no_env,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("couldn't find local name \"a\" in the initial cluster configuration"),
        "{e}"
    );
    let e = parse(&args(&["--client-cert-auth"]), &no_env).unwrap_err();
    assert!(e.to_string().contains("--trusted-ca-file"), "{e}");
    let e = parse(
        &args(&["--listen-client-urls", "https://127.0.0.1:2379"]),
        &no_env,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--cert-file"), "{e}");
}

#[test]
fn plaintext_on_a_non_loopback_address_needs_an_explicit_word() {
    let line = [
        "--listen-client-urls",
        "http://0.0.0.0:2379",
        "--advertise-client-urls",
        "http://10.0.0.1:2379",
    ];
    let e = parse(&args(&line), &no_env).unwrap_err();
    assert!(e.to_string().contains("--insecure-allow-plaintext"), "{e}");
    let mut with = line.to_vec();
    with.push("--insecure-allow-plaintext");
    assert!(parse(&args(&with), &no_env).is_ok());
}

#[test]
fn unhonoured_flags_are_accepted_with_a_warning() {
    let p = parse(
        &args(&["--enable-pprof", "--auto-compaction-retention=1h"]),
        &no_env,
    )
    .unwrap();
    assert!(
        p.warnings.iter().any(|w| w.contains("--enable-pprof")),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("--auto-compaction-retention")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn yaml_config_file_with_transport_security() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.yaml");
    std::fs::write(
        &file,
        "name: 'infra1'\ndata-dir: /var/lib/etcd\nlisten-client-urls: https://127.0.0.1:2379\nadvertise-client-urls: https://127.0.0.1:2379\nlisten-peer-urls: https://127.0.0.1:2380\ninitial-advertise-peer-urls: https://127.0.0.1:2380\ninitial-cluster: infra1=https://127.0.0.1:2380\nheartbeat-interval: 200\nelection-timeout: 2000\nclient-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n  client-cert-auth: true\n  trusted-ca-file: /ca.pem\npeer-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n  trusted-ca-file: /ca.pem\n  allowed-cn: member\n",
    )
    .unwrap();
    let p = parse(&args(&["--config-file", file.to_str().unwrap()]), &no_env).unwrap();
    assert_eq!(p.config.name, "infra1");
    assert_eq!(p.config.heartbeat_interval, Duration::from_millis(200));
    assert!(p.config.client_tls.client_cert_auth);
    assert_eq!(p.config.peer_tls.allowed_cn, vec!["member".to_string()]);
    std::fs::write(&file, "name: x\nbogus-key: 1\n").unwrap();
    let e = parse(&args(&["--config-file", file.to_str().unwrap()]), &no_env).unwrap_err();
    assert!(e.to_string().contains("bogus-key"), "{e}");
}

#[test]
fn version_text_has_etcds_layout() {
    let v = rampart_config::version_text();
    assert!(v.starts_with("etcd Version: 3.4.23\nGit SHA: "), "{v}");
}

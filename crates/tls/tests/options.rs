//! Building configurations from etcd-style options: the errors name the flag, the file and the fix.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use rampart_tls::{ClientTls, ClientTlsOptions, ServerTls, TlsError, TlsOptions};

fn server_files() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let ca_file = write(tmp.path(), "ca.pem", &ca.pem);
    let (cert, key) = write_pair(tmp.path(), "server", &ca.leaf("server", &["localhost"], 1));
    (tmp, ca_file, cert, key)
}

fn err_text(r: Result<ServerTls, TlsError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn key_given_as_certificate_is_named() {
    let (_tmp, _ca, _cert, key) = server_files();
    let err = err_text(ServerTls::new(TlsOptions {
        cert_file: Some(key.clone()),
        key_file: Some(key.clone()),
        ..TlsOptions::default()
    }));
    assert!(
        err.starts_with(&format!(
            "--cert-file {}: no certificate found in file",
            key.display()
        )),
        "{err}"
    );
    assert!(err.contains("private key"), "{err}");
}

#[test]
fn certificate_given_as_key_and_missing_files_are_named() {
    let (_tmp, _ca, cert, key) = server_files();
    let err = err_text(ServerTls::new(TlsOptions {
        cert_file: Some(cert.clone()),
        key_file: Some(cert.clone()),
        ..TlsOptions::default()
    }));
    assert!(
        err.starts_with("--key-file") && err.contains("this is a certificate"),
        "{err}"
    );

    let missing = key.with_file_name("nope.pem");
    let err = err_text(ServerTls::new(TlsOptions {
        cert_file: Some(missing.clone()),
        key_file: Some(key),
        ..TlsOptions::default()
    }));
    assert!(
        err.starts_with(&format!("--cert-file {}: cannot read", missing.display())),
        "{err}"
    );
}

#[test]
fn client_cert_auth_needs_a_trusted_ca() {
    let (_tmp, _ca, cert, key) = server_files();
    let err = err_text(ServerTls::new(TlsOptions {
        cert_file: Some(cert),
        key_file: Some(key),
        client_cert_auth: true,
        ..TlsOptions::default()
    }));
    assert!(err.contains("--trusted-ca-file"), "{err}");
}

#[test]
fn cipher_suites_use_go_names_and_unknown_ones_list_the_allowed() {
    let (_tmp, _ca, cert, key) = server_files();
    let options = |suites: &[&str]| TlsOptions {
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
        ..TlsOptions::default()
    };
    let tls = ServerTls::new(options(&[
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    ]))
    .unwrap();
    let suites: Vec<String> = tls
        .config()
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    assert_eq!(
        suites,
        [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        ]
    );

    let err = err_text(ServerTls::new(options(&["TLS_RSA_WITH_RC4_128_SHA"])));
    assert!(
        err.contains("--cipher-suites") && err.contains("TLS_RSA_WITH_RC4_128_SHA"),
        "{err}"
    );
    assert!(
        err.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        "{err}"
    );
}

#[test]
fn min_version_accepts_etcd_values_only() {
    let (_tmp, _ca, cert, key) = server_files();
    let options = |v: &str| TlsOptions {
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        min_version: Some(v.to_string()),
        ..TlsOptions::default()
    };
    assert!(ServerTls::new(options("TLS1.2")).is_ok());
    assert!(ServerTls::new(options("TLS1.3")).is_ok());
    let err = err_text(ServerTls::new(options("TLS1.0")));
    assert!(
        err.contains("--tls-min-version") && err.contains("TLS1.2 or TLS1.3"),
        "{err}"
    );
}

#[test]
fn server_offers_h2_and_http1() {
    let (_tmp, _ca, cert, key) = server_files();
    let tls = ServerTls::new(TlsOptions {
        cert_file: Some(cert),
        key_file: Some(key),
        ..TlsOptions::default()
    })
    .unwrap();
    assert_eq!(
        tls.config().alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn auto_tls_generates_once_with_a_private_key_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fixtures");
    let options = TlsOptions {
        auto_tls_dir: Some(dir.clone()),
        ..TlsOptions::default()
    };
    ServerTls::new(options.clone()).unwrap();
    let key = dir.join("key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let first = std::fs::read(dir.join("cert.pem")).unwrap();
    ServerTls::new(options).unwrap();
    assert_eq!(
        std::fs::read(dir.join("cert.pem")).unwrap(),
        first,
        "auto TLS certificate regenerated"
    );
}

#[test]
fn client_options_are_checked() {
    let (_tmp, ca, cert, _key) = server_files();
    let err = ClientTls::new(ClientTlsOptions {
        trusted_ca_file: Some(ca),
        cert_file: Some(cert),
        ..ClientTlsOptions::default()
    })
    .err()
    .expect("cert without key accepted")
    .to_string();
    assert!(err.contains("--cert given without --key"), "{err}");
}

//! Mutual TLS on loopback: who is accepted and who is refused.

mod common;

use std::sync::Arc;

use common::*;
use rampart_tls::{ServerTls, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTS: &[&str] = &["localhost", "127.0.0.1"];

struct Pki {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    ca: Ca,
    ca_file: std::path::PathBuf,
    server: (std::path::PathBuf, std::path::PathBuf),
}

fn pki() -> Pki {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let ca = Ca::new("test CA");
    let ca_file = write(&dir, "ca.pem", &ca.pem);
    let server = write_pair(&dir, "server", &ca.leaf("server", HOSTS, 100));
    Pki {
        _dir: tmp,
        dir,
        ca,
        ca_file,
        server,
    }
}

fn mtls_options(p: &Pki) -> TlsOptions {
    TlsOptions {
        cert_file: Some(p.server.0.clone()),
        key_file: Some(p.server.1.clone()),
        trusted_ca_file: Some(p.ca_file.clone()),
        client_cert_auth: true,
        ..TlsOptions::default()
    }
}

#[tokio::test]
async fn mutual_tls_accepts_a_client_of_the_trusted_ca() {
    let p = pki();
    let (addr, mut outcomes) = echo_server(ServerTls::new(mtls_options(&p)).unwrap()).await;
    let pair = write_pair(&p.dir, "alice", &p.ca.leaf("alice", &["alice.example"], 7));
    let serial = session(addr, &client(Some(&p.ca_file), Some(&pair)))
        .await
        .unwrap();
    assert_eq!(serial, 100);
    assert_eq!(
        next_outcome(&mut outcomes).await.unwrap(),
        Some("alice".to_string())
    );
}

#[tokio::test]
async fn mutual_tls_refuses_plaintext_missing_and_foreign_client_certificates() {
    let p = pki();
    let (addr, mut outcomes) = echo_server(ServerTls::new(mtls_options(&p)).unwrap()).await;

    // Plaintext HTTP to a TLS port.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(STEP_TIMEOUT, tcp.read_to_end(&mut reply)).await;
    assert!(!reply.starts_with(b"HTTP/"), "plaintext got an HTTP answer");
    assert!(next_outcome(&mut outcomes).await.is_err());

    // TLS without a client certificate.
    let err = session(addr, &client(Some(&p.ca_file), None))
        .await
        .unwrap_err();
    assert!(
        next_outcome(&mut outcomes).await.is_err(),
        "server accepted a client without certificate"
    );
    assert!(!err.is_empty());

    // A client certificate from another CA.
    let other = Ca::new("other CA");
    let pair = write_pair(&p.dir, "mallory", &other.leaf("mallory", &["m.example"], 8));
    assert!(session(addr, &client(Some(&p.ca_file), Some(&pair)))
        .await
        .is_err());
    let refused = next_outcome(&mut outcomes).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}

#[tokio::test]
async fn revoked_client_certificate_is_refused() {
    let p = pki();
    let crl = write(&p.dir, "crl.pem", &p.ca.crl(&[66]));
    let options = TlsOptions {
        crl_file: Some(crl),
        ..mtls_options(&p)
    };
    let (addr, mut outcomes) = echo_server(ServerTls::new(options).unwrap()).await;

    let good = write_pair(&p.dir, "good", &p.ca.leaf("good", &["g.example"], 65));
    session(addr, &client(Some(&p.ca_file), Some(&good)))
        .await
        .unwrap();
    assert!(next_outcome(&mut outcomes).await.is_ok());

    let revoked = write_pair(&p.dir, "revoked", &p.ca.leaf("revoked", &["r.example"], 66));
    assert!(session(addr, &client(Some(&p.ca_file), Some(&revoked)))
        .await
        .is_err());
    let refused = next_outcome(&mut outcomes).await.unwrap_err();
    assert!(refused.contains("Revoked"), "{refused}");
}

#[tokio::test]
async fn allowed_cn_and_hostname_are_enforced() {
    let p = pki();
    let options = TlsOptions {
        allowed_cn: vec!["member-1".into()],
        ..mtls_options(&p)
    };
    let (addr, mut outcomes) = echo_server(ServerTls::new(options).unwrap()).await;
    let member = write_pair(&p.dir, "m1", &p.ca.leaf("member-1", &["m1.example"], 11));
    session(addr, &client(Some(&p.ca_file), Some(&member)))
        .await
        .unwrap();
    assert_eq!(
        next_outcome(&mut outcomes).await.unwrap(),
        Some("member-1".into())
    );
    let stranger = write_pair(&p.dir, "x", &p.ca.leaf("stranger", &["m1.example"], 12));
    assert!(session(addr, &client(Some(&p.ca_file), Some(&stranger)))
        .await
        .is_err());
    let refused = next_outcome(&mut outcomes).await.unwrap_err();
    assert!(refused.contains("allowed CN"), "{refused}");

    let options = TlsOptions {
        allowed_hostname: vec!["m1.example".into()],
        ..mtls_options(&p)
    };
    let (addr, mut outcomes) = echo_server(ServerTls::new(options).unwrap()).await;
    session(addr, &client(Some(&p.ca_file), Some(&stranger)))
        .await
        .unwrap();
    assert!(next_outcome(&mut outcomes).await.is_ok());
    assert!(session(addr, &client(Some(&p.ca_file), Some(&member)))
        .await
        .is_ok());
    assert!(next_outcome(&mut outcomes).await.is_ok());
    let elsewhere = write_pair(
        &p.dir,
        "e",
        &p.ca.leaf("member-1", &["elsewhere.example"], 13),
    );
    assert!(session(addr, &client(Some(&p.ca_file), Some(&elsewhere)))
        .await
        .is_err());
    assert!(next_outcome(&mut outcomes)
        .await
        .unwrap_err()
        .contains("allowed hostname"));
}

#[tokio::test]
async fn tls13_only_server_refuses_a_tls12_only_client() {
    let p = pki();
    let options = TlsOptions {
        cert_file: Some(p.server.0.clone()),
        key_file: Some(p.server.1.clone()),
        min_version: Some("TLS1.3".into()),
        ..TlsOptions::default()
    };
    let (addr, mut outcomes) = echo_server(ServerTls::new(options).unwrap()).await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_file_iter(&p.ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls12 = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let result = tokio_rustls::TlsConnector::from(Arc::new(tls12))
        .connect(name.clone(), tcp)
        .await;
    assert!(
        result.is_err(),
        "TLS 1.2 client got through a TLS 1.3-only server"
    );
    assert!(next_outcome(&mut outcomes).await.is_err());

    // Control: the same server speaks TLS 1.3.
    let tls13 = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls13))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn client_without_the_right_ca_refuses_the_server() {
    let p = pki();
    let (addr, _outcomes) = echo_server(ServerTls::new(mtls_options(&p)).unwrap()).await;
    let other = Ca::new("other CA");
    let other_file = write(&p.dir, "other-ca.pem", &other.pem);
    let pair = write_pair(&p.dir, "alice", &p.ca.leaf("alice", &["a.example"], 7));
    let err = session(addr, &client(Some(&other_file), Some(&pair)))
        .await
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn der_crl_file_is_honoured_too() {
    let p = pki();
    let crl = p.dir.join("crl.der");
    std::fs::write(&crl, p.ca.crl_der(&[77])).unwrap();
    let options = TlsOptions {
        crl_file: Some(crl),
        ..mtls_options(&p)
    };
    let (addr, mut outcomes) = echo_server(ServerTls::new(options).unwrap()).await;
    let revoked = write_pair(&p.dir, "revoked", &p.ca.leaf("revoked", &["r.example"], 77));
    assert!(session(addr, &client(Some(&p.ca_file), Some(&revoked)))
        .await
        .is_err());
    assert!(next_outcome(&mut outcomes)
        .await
        .unwrap_err()
        .contains("Revoked"));
    let good = write_pair(&p.dir, "good", &p.ca.leaf("good", &["g.example"], 78));
    session(addr, &client(Some(&p.ca_file), Some(&good)))
        .await
        .unwrap();
}

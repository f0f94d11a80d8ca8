//! Hot reload: certificate and CA bundle replaced on disk while the listener runs.

mod common;

use std::time::Duration;

use common::*;
use rampart_tls::reload::RELOAD_CHECK_INTERVAL;
use rampart_tls::{ServerTls, TlsOptions};

/// Long enough for the reload check to run again after a file change.
const AFTER_RELOAD: Duration =
    Duration::from_millis(RELOAD_CHECK_INTERVAL.as_millis() as u64 + 100);

#[tokio::test]
async fn replaced_certificate_and_ca_are_used_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let ca_file = write(dir, "ca.pem", &old_ca.pem);
    let (cert, key) = write_pair(dir, "server", &old_ca.leaf("server", &["localhost"], 1001));
    let tls = ServerTls::new(TlsOptions {
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        trusted_ca_file: Some(ca_file.clone()),
        client_cert_auth: true,
        ..TlsOptions::default()
    })
    .unwrap();
    let (addr, mut outcomes) = echo_server(tls).await;

    // Clients trust both CAs so only the server's choice of certificate is under test.
    let both = write(dir, "both.pem", &format!("{}{}", old_ca.pem, new_ca.pem));
    let old_client = write_pair(
        dir,
        "old-client",
        &old_ca.leaf("old-client", &["c.example"], 5),
    );
    let new_client = write_pair(
        dir,
        "new-client",
        &new_ca.leaf("new-client", &["c.example"], 6),
    );

    assert_eq!(
        session(addr, &client(Some(&both), Some(&old_client)))
            .await
            .unwrap(),
        1001
    );
    assert!(next_outcome(&mut outcomes).await.is_ok());
    assert!(session(addr, &client(Some(&both), Some(&new_client)))
        .await
        .is_err());
    assert!(next_outcome(&mut outcomes).await.is_err());

    // Rotate: new server certificate (renamed into place, as deploy tools do) and the CA
    // bundle rewritten in place.
    let new_pair = new_ca.leaf("server", &["localhost"], 2002);
    replace(&key, &new_pair.1);
    replace(&cert, &new_pair.0);
    std::fs::write(&ca_file, &new_ca.pem).unwrap();
    tokio::time::sleep(AFTER_RELOAD).await;

    assert_eq!(
        session(addr, &client(Some(&both), Some(&new_client)))
            .await
            .unwrap(),
        2002
    );
    assert_eq!(
        next_outcome(&mut outcomes).await.unwrap(),
        Some("new-client".into())
    );
    assert!(session(addr, &client(Some(&both), Some(&old_client)))
        .await
        .is_err());
    assert!(next_outcome(&mut outcomes).await.is_err());
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_previous_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("CA");
    let ca_file = write(dir, "ca.pem", &ca.pem);
    let (cert, key) = write_pair(dir, "server", &ca.leaf("server", &["localhost"], 31));
    let tls = ServerTls::new(TlsOptions {
        cert_file: Some(cert.clone()),
        key_file: Some(key),
        ..TlsOptions::default()
    })
    .unwrap();
    let (addr, _outcomes) = echo_server(tls).await;
    let plain_client = client(Some(&ca_file), None);
    assert_eq!(session(addr, &plain_client).await.unwrap(), 31);

    // Half-written file: not a certificate at all.
    std::fs::write(&cert, "-----BEGIN CERT").unwrap();
    tokio::time::sleep(AFTER_RELOAD).await;
    assert_eq!(session(addr, &plain_client).await.unwrap(), 31);

    // Once a matching pair is complete again, it is picked up.
    let pair = ca.leaf("server", &["localhost"], 32);
    write_pair(dir, "server", &pair);
    tokio::time::sleep(AFTER_RELOAD).await;
    assert_eq!(session(addr, &plain_client).await.unwrap(), 32);
}

#[tokio::test]
async fn client_side_ca_is_reloaded_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("CA");
    let other = Ca::new("other");
    let (cert, key) = write_pair(dir, "server", &ca.leaf("server", &["localhost"], 41));
    let tls = ServerTls::new(TlsOptions {
        cert_file: Some(cert),
        key_file: Some(key),
        ..TlsOptions::default()
    })
    .unwrap();
    let (addr, _outcomes) = echo_server(tls).await;
    let client_ca = write(dir, "client-ca.pem", &other.pem);
    let c = client(Some(&client_ca), None);
    assert!(session(addr, &c).await.is_err());
    std::fs::write(&client_ca, &ca.pem).unwrap();
    tokio::time::sleep(AFTER_RELOAD).await;
    assert_eq!(session(addr, &c).await.unwrap(), 41);
}

//! Interop with the real etcd 3.4 (Debian's `etcd-server`, `etcd-client`): our client dials
//! etcd's mutual-TLS client port, and etcdctl handshakes with a `ServerTls` listener. Ignored by default (needs
//! /usr/bin/etcd and /usr/bin/etcdctl); run with `cargo test -p rampart-tls --test etcd_interop -- --ignored`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rampart_testkit::free_port;
use rampart_tls::connect_channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long etcd gets to start serving.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(20);

struct Etcd(std::process::Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs the etcd-server package"]
async fn our_client_talks_to_etcd_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("CA");
    let ca_file = write(dir, "ca.pem", &ca.pem);
    let (cert, key) = write_pair(
        dir,
        "server",
        &ca.leaf("etcd", &["localhost", "127.0.0.1"], 1),
    );
    let (client_port, peer_port) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{client_port}");
    let _etcd = Etcd(
        Command::new("/usr/bin/etcd")
            .args(["--name", "interop", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("interop=http://127.0.0.1:{peer_port}"),
            ])
            .arg("--client-cert-auth")
            .arg("--trusted-ca-file")
            .arg(&ca_file)
            .arg("--cert-file")
            .arg(&cert)
            .arg("--key-file")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/etcd"),
    );
    let pair = write_pair(dir, "root", &ca.leaf("root", &["c.example"], 2));
    let tls = client(Some(&ca_file), Some(&pair));
    let started = Instant::now();
    let status = loop {
        let attempt = async {
            let channel = connect_channel(&url, Some(&tls), Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string())?;
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status)
                .map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(status) => break status,
            Err(e) if started.elapsed() > ETCD_START_TIMEOUT => panic!("etcd never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // A client certificate from another CA is refused by etcd, and we say so plainly.
    let other = Ca::new("other");
    let stranger = write_pair(dir, "stranger", &other.leaf("root", &["c.example"], 3));
    let refused = async {
        let channel = connect_channel(
            &url,
            Some(&client(Some(&ca_file), Some(&stranger))),
            Duration::from_secs(2),
        )
        .await
        .map_err(|e| e.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|_| ())
            .map_err(|s| rampart_tls::explain::explain_status(&url, &s))
    }
    .await
    .unwrap_err();
    assert!(refused.contains("client certificate"), "{refused}");
}

/// Runs `etcdctl endpoint health` against `addr`; its result does not matter (our listener is
/// no etcd), only the handshake the server saw.
fn etcdctl(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    pair: &(std::path::PathBuf, std::path::PathBuf),
) {
    let _ = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &format!("https://{addr}"),
            "--dial-timeout",
            "2s",
            "--command-timeout",
            "2s",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(&pair.0)
        .arg("--key")
        .arg(&pair.1)
        .args(["endpoint", "health"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run /usr/bin/etcdctl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the etcd-client package"]
async fn etcdctl_handshakes_with_our_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("CA");
    let ca_file = write(dir, "ca.pem", &ca.pem);
    let (cert, key) = write_pair(
        dir,
        "server",
        &ca.leaf("server", &["localhost", "127.0.0.1"], 1),
    );
    let tls = rampart_tls::ServerTls::new(rampart_tls::TlsOptions {
        cert_file: Some(cert),
        key_file: Some(key),
        trusted_ca_file: Some(ca_file.clone()),
        client_cert_auth: true,
        ..Default::default()
    })
    .unwrap();
    let (addr, mut outcomes) = echo_server(tls).await;

    let pair = write_pair(dir, "root", &ca.leaf("root", &["c.example"], 2));
    let run = tokio::task::spawn_blocking({
        let ca_file = ca_file.clone();
        move || etcdctl(addr, &ca_file, &pair)
    });
    assert_eq!(
        next_outcome(&mut outcomes).await.unwrap(),
        Some("root".into())
    );
    run.await.unwrap();
    // etcdctl may have dialed more than once.
    while outcomes.try_recv().is_ok() {}

    let other = Ca::new("other");
    let stranger = write_pair(dir, "stranger", &other.leaf("root", &["c.example"], 3));
    let run = tokio::task::spawn_blocking(move || etcdctl(addr, &ca_file, &stranger));
    assert!(next_outcome(&mut outcomes).await.is_err());
    run.await.unwrap();
    while let Ok(outcome) = outcomes.try_recv() {
        assert!(
            outcome.is_err(),
            "a foreign client certificate was accepted"
        );
    }
}

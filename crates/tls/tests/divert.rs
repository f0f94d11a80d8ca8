//! A protocol of our own sharing a port with gRPC: `TlsIncoming::new_diverting` hands its
//! connections over (told by ALPN over TLS, by their first bytes in plaintext) and serves the
//! rest with tonic; `dial` reaches it, and learns when a server does not offer it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rampart_tls::{
    connect_channel, dial, is_alpn_refusal, Conn, Divert, ServerTls, TlsIncoming, TlsOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ALPN: &[u8] = b"test-stream/1";
const PREFACE: &[u8] = b"TEST-STREAM/1\n";
const TIMEOUT: Duration = Duration::from_secs(3);

/// Serves health checks on loopback, diverting our protocol's connections to the returned queue.
async fn serve(tls: Option<ServerTls>) -> (u16, mpsc::UnboundedReceiver<Conn>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let divert = Divert {
        alpn: ALPN,
        preface: PREFACE,
        to: Arc::new(move |conn| {
            let _ = tx.send(conn);
        }),
    };
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(TlsIncoming::new_diverting(listener, tls, divert)),
    );
    (port, rx)
}

async fn health_check(url: &str, tls: Option<&rampart_tls::ClientTls>) {
    let channel = connect_channel(url, tls, TIMEOUT).await.expect("channel");
    tokio::time::timeout(
        STEP_TIMEOUT,
        HealthClient::new(channel).check(HealthCheckRequest::default()),
    )
    .await
    .expect("health check timed out")
    .expect("health check");
}

/// Our protocol's bytes go both ways between the dialer and the diverted connection.
async fn exchange(
    url: &str,
    tls: Option<&rampart_tls::ClientTls>,
    diverted: &mut mpsc::UnboundedReceiver<Conn>,
) {
    let mut client = dial(url, tls, ALPN, TIMEOUT).await.expect("dial");
    client.write_all(PREFACE).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut server = tokio::time::timeout(STEP_TIMEOUT, diverted.recv())
        .await
        .expect("no diverted connection")
        .unwrap();
    let mut got = vec![0u8; PREFACE.len() + 4];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(
        &got[PREFACE.len()..],
        b"ping",
        "the preface stays in the stream"
    );
    server.write_all(b"pong").await.unwrap();
    server.flush().await.unwrap();
    let mut answer = [0u8; 4];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"pong");
}

/// A server and a member client of one CA, for mutual TLS; the server offers our protocol when
/// `offer` is true.
fn mutual_tls(dir: &std::path::Path, offer: bool) -> (ServerTls, rampart_tls::ClientTls) {
    let ca = Ca::new("CA");
    let ca_file = write(dir, "ca.pem", &ca.pem);
    let (cert, key) = write_pair(dir, "server", &ca.leaf("server", &["localhost"], 1));
    let options = TlsOptions {
        cert_file: Some(cert),
        key_file: Some(key),
        trusted_ca_file: Some(ca_file.clone()),
        client_cert_auth: true,
        ..TlsOptions::default()
    };
    let extra = if offer {
        vec![ALPN.to_vec()]
    } else {
        Vec::new()
    };
    let server = ServerTls::new_with_alpn(options, extra).unwrap();
    let pair = write_pair(dir, "member", &ca.leaf("member", &["localhost"], 2));
    (server, client(Some(&ca_file), Some(&pair)))
}

#[tokio::test]
async fn over_mutual_tls_the_protocol_is_told_by_alpn_and_grpc_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let (tls, client_tls) = mutual_tls(tmp.path(), true);
    let (port, mut diverted) = serve(Some(tls)).await;
    let url = format!("https://localhost:{port}");

    exchange(&url, Some(&client_tls), &mut diverted).await;
    health_check(&url, Some(&client_tls)).await;
    assert!(diverted.try_recv().is_err(), "gRPC must not be diverted");
}

#[tokio::test]
async fn a_tls_server_without_the_protocol_refuses_it_recognizably() {
    let tmp = tempfile::tempdir().unwrap();
    let (tls, client_tls) = mutual_tls(tmp.path(), false);
    let (port, _diverted) = serve(Some(tls)).await;

    let err = dial(
        &format!("https://localhost:{port}"),
        Some(&client_tls),
        ALPN,
        TIMEOUT,
    )
    .await
    .err()
    .expect("the handshake must fail");
    assert!(is_alpn_refusal(&err), "not told as an ALPN refusal: {err}");
    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    assert!(!is_alpn_refusal(&refused));
}

#[tokio::test]
async fn in_plaintext_the_protocol_is_told_by_its_preface_and_grpc_still_works() {
    let (port, mut diverted) = serve(None).await;
    let url = format!("http://127.0.0.1:{port}");

    exchange(&url, None, &mut diverted).await;
    health_check(&url, None).await;
    assert!(diverted.try_recv().is_err(), "gRPC must not be diverted");
}

//! gRPC through `TlsIncoming` + `connect_channel`, with the peer CN visible to handlers, and the
//! one-line explanations of failed connections.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rampart_tls::{
    connect_channel, connect_channel_lazy, ConnInfo, ServerTls, TlsIncoming, TlsOptions,
};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts a health service on loopback; returns its port and the CNs seen by the handler layer.
async fn serve(tls: Option<ServerTls>) -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let health = tonic::service::interceptor::InterceptedService::new(
        health,
        move |req: tonic::Request<()>| {
            let info = req.extensions().get::<ConnInfo>().cloned();
            let info = info.ok_or_else(|| tonic::Status::internal("no ConnInfo"))?;
            assert!(info.remote_addr.is_some());
            record.lock().unwrap().push(info.peer_common_name);
            Ok(req)
        },
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(TlsIncoming::new(listener, tls)),
    );
    (port, seen)
}

async fn check(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
    let reply = tokio::time::timeout(
        STEP_TIMEOUT,
        HealthClient::new(channel).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("rpc timed out")?;
    Ok(reply.into_inner().status)
}

#[tokio::test]
async fn grpc_round_trip_over_mutual_tls_exposes_the_peer_cn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("CA");
    let ca_file = write(dir, "ca.pem", &ca.pem);
    let (cert, key) = write_pair(
        dir,
        "server",
        &ca.leaf("server", &["localhost", "127.0.0.1"], 1),
    );
    let tls = ServerTls::new(TlsOptions {
        cert_file: Some(cert),
        key_file: Some(key),
        trusted_ca_file: Some(ca_file.clone()),
        client_cert_auth: true,
        ..TlsOptions::default()
    })
    .unwrap();
    let (port, seen) = serve(Some(tls)).await;
    let pair = write_pair(dir, "root", &ca.leaf("root", &["c.example"], 2));
    let client_tls = client(Some(&ca_file), Some(&pair));

    let url = format!("https://localhost:{port}");
    let channel = connect_channel(&url, Some(&client_tls), CONNECT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(check(channel).await.unwrap(), ServingStatus::Serving as i32);
    let lazy =
        connect_channel_lazy(&format!("https://127.0.0.1:{port}"), Some(&client_tls)).unwrap();
    assert_eq!(check(lazy).await.unwrap(), ServingStatus::Serving as i32);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some("root".to_string()), Some("root".to_string())]
    );

    // A silent client holding a connection open must not stop others from being served.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let channel = connect_channel(&url, Some(&client_tls), CONNECT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(check(channel).await.unwrap(), ServingStatus::Serving as i32);
}

#[tokio::test]
async fn grpc_round_trip_in_plaintext() {
    let (port, seen) = serve(None).await;
    let channel = connect_channel(&format!("http://127.0.0.1:{port}"), None, CONNECT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(check(channel).await.unwrap(), ServingStatus::Serving as i32);
    assert_eq!(*seen.lock().unwrap(), vec![None]);
}

#[tokio::test]
async fn failed_connections_are_explained_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("CA");
    let ca_file = write(dir, "ca.pem", &ca.pem);
    let (cert, key) = write_pair(
        dir,
        "server",
        &ca.leaf("server", &["localhost", "127.0.0.1"], 1),
    );
    let tls = ServerTls::new(TlsOptions {
        cert_file: Some(cert),
        key_file: Some(key),
        trusted_ca_file: Some(ca_file.clone()),
        client_cert_auth: true,
        ..TlsOptions::default()
    })
    .unwrap();
    let (port, _seen) = serve(Some(tls)).await;
    let url = format!("https://localhost:{port}");

    let other = Ca::new("other");
    let other_file = write(dir, "other.pem", &other.pem);
    let err = connect_channel(
        &url,
        Some(&client(Some(&other_file), None)),
        CONNECT_TIMEOUT,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("server certificate signed by an unknown authority: pass --cacert <the CA that signed it>"),
        "{err}"
    );

    // The server judges the client certificate after the client's side of a TLS 1.3 handshake
    // is done, so the refusal may surface on connect or on the first call.
    let no_cert = client(Some(&ca_file), None);
    let err = match connect_channel(&url, Some(&no_cert), CONNECT_TIMEOUT).await {
        Err(e) => e.to_string(),
        Ok(channel) => {
            rampart_tls::explain::explain_status(&url, &check(channel).await.unwrap_err())
        }
    };
    assert!(
        err.contains("the server requires a client certificate: pass --cert and --key"),
        "{err}"
    );

    let wrong_name = rampart_tls::ClientTls::new(rampart_tls::ClientTlsOptions {
        trusted_ca_file: Some(ca_file.clone()),
        server_name_override: Some("wrong.example".into()),
        ..Default::default()
    })
    .unwrap();
    let err = connect_channel(&url, Some(&wrong_name), CONNECT_TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("wrong.example") && err.contains("localhost") && err.contains("127.0.0.1"),
        "{err}"
    );

    let err = connect_channel(&url, None, CONNECT_TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--cacert"), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out_instead_of_hanging() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts TCP, never speaks TLS.
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let ca_file = write(tmp.path(), "ca.pem", &ca.pem);
    let started = std::time::Instant::now();
    let err = connect_channel(
        &format!("https://127.0.0.1:{port}"),
        Some(&client(Some(&ca_file), None)),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("timed out"), "{err}");
    assert!(started.elapsed() < STEP_TIMEOUT);
}

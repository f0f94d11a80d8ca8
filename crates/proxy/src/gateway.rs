//! etcd's L4 gateway (`etcd gateway start`): TCP connections to the listen address are spliced
//! to the first member endpoint that accepts them; TLS passes through untouched.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Runs the gateway until the task is dropped.
pub async fn run(listener: TcpListener, endpoints: Vec<String>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            for ep in &endpoints {
                let addr = ep
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                let Ok(Ok(member)) =
                    tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
                else {
                    continue;
                };
                let (mut a, mut b) = (client, member);
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                return;
            }
            tracing::warn!(?endpoints, "gateway: no endpoint accepted the connection");
        });
    }
}

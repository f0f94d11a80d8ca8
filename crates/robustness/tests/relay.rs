//! The fault-injecting relay on its own: bytes pass unchanged, a delay delays them, a cut
//! closes connections and black-holes new ones until it heals.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_robustness::harness::relay::{FaultControl, Relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An echo server; returns its address.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((LOCALHOST, rampart_testkit::free_port()))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `msg` and waits up to `within` for the echo.
async fn round_trip(stream: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
    stream.write_all(msg).await.ok()?;
    let mut buf = vec![0u8; msg.len()];
    match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Some(buf),
        _ => None,
    }
}

#[tokio::test]
async fn the_relay_forwards_delays_cuts_and_heals() {
    let target = echo_server().await;
    let control = FaultControl::new(3);
    let relay = Relay::start(
        SocketAddr::new(LOCALHOST, rampart_testkit::free_port()),
        target,
        0,
        control.clone(),
        Arc::new(|_| None),
    )
    .await
    .unwrap();
    let mut conn = TcpStream::connect(relay.listen).await.unwrap();
    assert_eq!(
        round_trip(&mut conn, b"hello", Duration::from_secs(2))
            .await
            .as_deref(),
        Some(&b"hello"[..])
    );

    control.update(|f| f.delay = Duration::from_millis(150));
    let start = Instant::now();
    assert!(round_trip(&mut conn, b"slow", Duration::from_secs(2))
        .await
        .is_some());
    // Both directions pass through the relay: at least two delays.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    control.heal_all();

    // Member 0 cut off from both others: on loopback its whole inbound traffic stops.
    control.update(|f| {
        f.cuts.insert((1, 0));
        f.cuts.insert((2, 0));
    });
    // The established connection is closed...
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    // ...and a new one is accepted but never answered.
    let mut held = TcpStream::connect(relay.listen).await.unwrap();
    assert_eq!(
        round_trip(&mut held, b"lost", Duration::from_millis(500)).await,
        None
    );

    // Cut from one of two others only: the majority side keeps its traffic.
    control.update(|f| {
        f.cuts.clear();
        f.cuts.insert((1, 0));
    });
    let mut conn = TcpStream::connect(relay.listen).await.unwrap();
    assert!(round_trip(&mut conn, b"back", Duration::from_secs(2))
        .await
        .is_some());
}

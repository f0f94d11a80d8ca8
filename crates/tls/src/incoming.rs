//! Accepting connections for tonic's `serve_with_incoming`: TLS handshakes run in their own
//! tasks with a timeout, so a slow or silent client never blocks the accept loop.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::server::ServerTls;
use crate::verify::common_name;

/// A handshake that has not finished after this long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once, at most; further connections wait in the kernel's backlog.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Accepted connections ready for the server, buffered.
const READY_QUEUE: usize = 64;

/// What handlers can learn about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    /// CN of the client certificate (mutual TLS), used as the user name when auth is on.
    pub peer_common_name: Option<String>,
}

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Plain(s) => ConnInfo {
                remote_addr: s.peer_addr().ok(),
                peer_common_name: None,
            },
            Conn::Tls(s) => {
                let (tcp, session) = s.get_ref();
                ConnInfo {
                    remote_addr: tcp.peer_addr().ok(),
                    peer_common_name: session
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| common_name(c)),
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl Conn {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

/// Connections for a protocol of our own that share a port with gRPC: they are handed to `to`
/// instead of the server. Over TLS they are told by the negotiated application protocol; in
/// plaintext by the bytes they start with.
#[derive(Clone)]
pub struct Divert {
    pub alpn: &'static [u8],
    pub preface: &'static [u8],
    pub to: Arc<dyn Fn(Conn) + Send + Sync>,
}

/// The connection stream of one listener (TLS when `tls` is given, plaintext otherwise).
pub struct TlsIncoming {
    inner: ReceiverStream<Result<Conn, std::io::Error>>,
}

/// What a listener accepts.
#[derive(Clone)]
enum Accept {
    Plain,
    Tls(ServerTls),
    /// Both on one port (an `http://` and an `https://` listen URL with the same address, as
    /// etcd allows): a connection whose first byte starts a TLS handshake gets TLS.
    Either(ServerTls),
}

impl TlsIncoming {
    /// Starts accepting on `listener` (needs a Tokio runtime).
    pub fn new(listener: TcpListener, tls: Option<ServerTls>) -> TlsIncoming {
        TlsIncoming::start(listener, tls.map_or(Accept::Plain, Accept::Tls))
    }

    /// Accepts TLS and plaintext connections on the same port.
    pub fn new_either(listener: TcpListener, tls: ServerTls) -> TlsIncoming {
        TlsIncoming::start(listener, Accept::Either(tls))
    }

    /// Accepts like [`TlsIncoming::new`], handing the connections `divert` recognizes to it.
    pub fn new_diverting(
        listener: TcpListener,
        tls: Option<ServerTls>,
        divert: Divert,
    ) -> TlsIncoming {
        let (tx, rx) = mpsc::channel(READY_QUEUE);
        let accept = tls.map_or(Accept::Plain, Accept::Tls);
        tokio::spawn(accept_loop(listener, accept, Some(divert), tx));
        TlsIncoming {
            inner: ReceiverStream::new(rx),
        }
    }

    fn start(listener: TcpListener, accept: Accept) -> TlsIncoming {
        let (tx, rx) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, accept, None, tx));
        TlsIncoming {
            inner: ReceiverStream::new(rx),
        }
    }
}

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<Conn, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// True when a plaintext connection starts with `preface` (waits for its first bytes).
async fn starts_with(tcp: &TcpStream, preface: &[u8]) -> bool {
    let mut first = vec![0u8; preface.len()];
    loop {
        match tcp.peek(&mut first).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if first[..n] != preface[..n] => return false,
            Ok(n) if n == preface.len() => return true,
            // Only part of it has arrived: wait for more.
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    accept: Accept,
    divert: Option<Divert>,
    ready: mpsc::Sender<Result<Conn, std::io::Error>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if ready.is_closed() {
            return;
        }
        let _ = tcp.set_nodelay(true);
        if let (Accept::Plain, None) = (&accept, &divert) {
            if ready.send(Ok(Conn::Plain(tcp))).await.is_err() {
                return;
            }
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accept = accept.clone();
        let divert = divert.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match accept {
                Accept::Plain => {
                    let divert = divert.expect("a plain listener without divert is handled above");
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, starts_with(&tcp, divert.preface))
                        .await
                    {
                        Ok(true) => (divert.to)(Conn::Plain(tcp)),
                        Ok(false) => {
                            let _ = ready.send(Ok(Conn::Plain(tcp))).await;
                        }
                        Err(_) => tracing::debug!(remote = %addr, "silent connection dropped"),
                    }
                    return;
                }
                Accept::Tls(tls) => tls,
                Accept::Either(tls) => {
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
                        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => tls,
                        Ok(Ok(1)) => {
                            let _ = ready.send(Ok(Conn::Plain(tcp))).await;
                            return;
                        }
                        _ => return,
                    }
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let ours = divert
                        .as_ref()
                        .filter(|d| stream.get_ref().1.alpn_protocol() == Some(d.alpn));
                    let conn = Conn::Tls(Box::new(stream));
                    match ours {
                        Some(d) => (d.to)(conn),
                        None => {
                            let _ = ready.send(Ok(conn)).await;
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(remote = %addr, error = %e, "rejected connection: TLS handshake failed");
                }
                Err(_) => tracing::debug!(remote = %addr, "TLS handshake timed out"),
            }
        });
    }
}

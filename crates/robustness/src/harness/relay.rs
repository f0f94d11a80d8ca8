//! Fault-injecting TCP relays, one in front of each member's peer port: members reach each other
//! only through them. They carry bytes unchanged (the TLS inside is end to end) and can
//! - cut links: a connection across a cut is closed, and a new one is accepted and then held
//!   without forwarding (a black hole, as a real partition looks) until the cut heals;
//! - delay every chunk (with jitter, keeping order);
//! - "lose" packets: a TCP stream cannot drop bytes without breaking TLS, so a lost chunk is
//!   delivered after a retransmission timeout, which is what packet loss looks like above TCP.
//!
//! `tc netem` does delay and loss in the kernel; where it is missing (this is the case on
//! kernels built without `sch_netem`) the relays do it, and they are also the only partition
//! tool on loopback.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes read from one side before they are queued for the other.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks queued in one direction of one connection; a full queue stops reading (back-pressure).
const QUEUED_CHUNKS: usize = 256;
/// How long a "lost" chunk waits: Linux's minimum TCP retransmission timeout.
pub const RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(200);
/// Dialing the member behind a relay gives up after this long.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The faults every relay applies, shared by all of them and changed by the nemeses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkFaults {
    /// Directed cuts (from member, to member).
    pub cuts: HashSet<(usize, usize)>,
    pub delay: Duration,
    pub jitter: Duration,
    /// Probability that a chunk waits a retransmission timeout.
    pub loss: f64,
}

impl LinkFaults {
    /// Whether traffic from `from` into member `to` of a `members`-member cluster is cut.
    /// `from` is None where connections cannot be told apart (loopback): then `to`'s whole
    /// inbound traffic is cut when it is cut off from more than half of the others, i.e. when
    /// it is on the minority side; its outbound traffic still flows (an asymmetric partition).
    fn blocks(&self, from: Option<usize>, to: usize, members: usize) -> bool {
        match from {
            Some(f) => self.cuts.contains(&(f, to)),
            None => {
                let cut_from = self.cuts.iter().filter(|&&(_, t)| t == to).count();
                cut_from * 2 > members.saturating_sub(1)
            }
        }
    }
}

/// The shared fault settings and a signal that they changed.
#[derive(Clone)]
pub struct FaultControl {
    members: usize,
    faults: Arc<Mutex<LinkFaults>>,
    changed: watch::Sender<u64>,
}

impl FaultControl {
    /// No faults yet, for a cluster of `members` members.
    pub fn new(members: usize) -> FaultControl {
        FaultControl {
            members,
            faults: Arc::default(),
            changed: watch::Sender::new(0),
        }
    }

    fn blocks(&self, from: Option<usize>, to: usize) -> bool {
        self.get().blocks(from, to, self.members)
    }

    pub fn update(&self, change: impl FnOnce(&mut LinkFaults)) {
        change(&mut self.faults.lock().expect("fault settings lock"));
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn heal_all(&self) {
        self.update(|f| *f = LinkFaults::default());
    }

    fn get(&self) -> LinkFaults {
        self.faults.lock().expect("fault settings lock").clone()
    }

    /// How long the next chunk waits before it is forwarded.
    fn chunk_delay(&self) -> Duration {
        let f = self.get();
        let mut rng = rand::rng();
        let mut d = f.delay;
        if !f.jitter.is_zero() {
            d += f.jitter.mul_f64(rng.random::<f64>());
        }
        if f.loss > 0.0 && rng.random::<f64>() < f.loss {
            d += RETRANSMIT_TIMEOUT;
        }
        d
    }
}

/// One relay: listens on `listen`, forwards to member `to` at `target`.
pub struct Relay {
    pub listen: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    /// `source_of` tells which member a connection comes from, when the network can tell.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        to: usize,
        control: FaultControl,
        source_of: Arc<dyn Fn(IpAddr) -> Option<usize> + Send + Sync>,
    ) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, peer)) = listener.accept().await else {
                    continue;
                };
                let from = source_of(peer.ip());
                tokio::spawn(serve(inbound, from, to, target, control.clone()));
            }
        });
        Ok(Relay { listen, task })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Connections in flight end when their tasks notice; the listener closes now.
        self.task.abort();
    }
}

/// Waits until the link from `from` to `to` is cut (or, with `cut == false`, until it is not).
async fn until_link(
    control: &FaultControl,
    changes: &mut watch::Receiver<u64>,
    from: Option<usize>,
    to: usize,
    cut: bool,
) {
    loop {
        if control.blocks(from, to) == cut {
            return;
        }
        if changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn serve(
    inbound: TcpStream,
    from: Option<usize>,
    to: usize,
    target: SocketAddr,
    control: FaultControl,
) {
    let mut changes = control.changed.subscribe();
    if control.blocks(from, to) {
        // A black hole: the dialer sees a connection that never answers, until the cut heals.
        until_link(&control, &mut changes, from, to, false).await;
        drop(inbound);
        return;
    }
    let Ok(Ok(outbound)) = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(target)).await
    else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::select! {
        _ = pump(in_read, out_write, control.clone()) => {}
        _ = pump(out_read, in_write, control.clone()) => {}
        _ = until_link(&control, &mut changes, from, to, true) => {}
    }
}

/// Copies one direction, each chunk after its delay, in order.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: FaultControl,
) {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut last_due = Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Never before the previous chunk: a stream keeps its order.
            let due = (Instant::now() + control.chunk_delay()).max(last_due);
            last_due = due;
            if queue.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

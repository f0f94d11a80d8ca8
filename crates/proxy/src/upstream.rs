//! The members behind the proxy: found from client URLs or asked from a member over the peer
//! port, refreshed periodically, and checked so requests go to members that answer.
//!
//! A member whose connection fails is marked down and tried last until [`DOWN_BACKOFF`] has
//! passed, so one dead member costs one failed attempt, not one per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_proto::etcdserverpb::MemberListRequest;
use rampart_proto::peer::peer_info_client::PeerInfoClient;
use rampart_tls::ClientTls;
use tonic::transport::Channel;

/// How the proxy finds the members.
#[derive(Clone)]
pub enum Discovery {
    /// Client URLs of the members, used as given (etcd grpc-proxy's `--endpoints`).
    Endpoints(Vec<String>),
    /// Peer URLs (etcd's `--proxy on --initial-cluster`): a member is asked for the member list
    /// over the peer port, with the peer certificate (`tls`), and the client URLs it publishes
    /// are used (with the proxy's upstream TLS, as etcd's proxy uses its client certificate
    /// there).
    PeerUrls {
        urls: Vec<String>,
        tls: Option<Arc<ClientTls>>,
    },
}

/// How long a member that failed is tried only after the others.
pub const DOWN_BACKOFF: Duration = Duration::from_secs(5);

/// How soon the member list is asked for again while the proxy knows no member.
const EMPTY_RETRY: Duration = Duration::from_secs(1);

struct Member {
    url: String,
    channel: Channel,
    /// When a request to it last failed at the transport level (None: believed up).
    down_since: Option<Instant>,
}

pub struct Upstreams {
    discovery: Discovery,
    tls: Option<Arc<ClientTls>>,
    members: Mutex<Vec<Member>>,
    next: AtomicUsize,
}

impl Upstreams {
    pub fn new(discovery: Discovery, tls: Option<Arc<ClientTls>>) -> Upstreams {
        Upstreams {
            discovery,
            tls,
            members: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// Client URLs of the members now in use.
    pub fn urls(&self) -> Vec<String> {
        self.members
            .lock()
            .expect("members")
            .iter()
            .map(|m| m.url.clone())
            .collect()
    }

    /// The members to try for one request: all of them, starting from the next in turn, the
    /// ones that failed recently last.
    pub(crate) fn candidates(&self) -> Vec<(String, Channel)> {
        let members = self.members.lock().expect("members");
        if members.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % members.len();
        let in_turn = (0..members.len()).map(|i| &members[(start + i) % members.len()]);
        let recently_down = |m: &Member| m.down_since.is_some_and(|t| t.elapsed() < DOWN_BACKOFF);
        let (down, up): (Vec<&Member>, Vec<&Member>) = in_turn.partition(|m| recently_down(m));
        up.into_iter()
            .chain(down)
            .map(|m| (m.url.clone(), m.channel.clone()))
            .collect()
    }

    /// A request to `url` failed at the transport level: try the others first for a while.
    pub(crate) fn mark_down(&self, url: &str) {
        let mut members = self.members.lock().expect("members");
        if let Some(m) = members.iter_mut().find(|m| m.url == url) {
            if m.down_since.is_none() {
                tracing::warn!(url, "proxy: member unreachable; using the others");
            }
            m.down_since = Some(Instant::now());
        }
    }

    /// A request to `url` succeeded.
    pub(crate) fn mark_up(&self, url: &str) {
        let mut members = self.members.lock().expect("members");
        if let Some(m) = members.iter_mut().find(|m| m.url == url) {
            if m.down_since.take().is_some() {
                tracing::info!(url, "proxy: member reachable again");
            }
        }
    }

    /// (members known, members believed up) — for the proxy's metrics.
    pub fn counts(&self) -> (usize, usize) {
        let members = self.members.lock().expect("members");
        let up = members
            .iter()
            .filter(|m| m.down_since.is_none_or(|t| t.elapsed() >= DOWN_BACKOFF))
            .count();
        (members.len(), up)
    }

    fn channel(&self, url: &str) -> Option<Channel> {
        rampart_tls::connect_channel_lazy(url, self.tls.as_deref())
            .map_err(|e| tracing::warn!(url, error = %e, "proxy: cannot set up a connection"))
            .ok()
    }

    async fn client_urls(&self) -> Option<Vec<String>> {
        match &self.discovery {
            Discovery::Endpoints(urls) => Some(urls.clone()),
            Discovery::PeerUrls { urls: peers, tls } => {
                for peer in peers {
                    let channel = rampart_tls::connect_channel_lazy(peer, tls.as_deref())
                        .map_err(|e| tracing::warn!(url = %peer, error = %e, "proxy: cannot set up a connection"))
                        .ok();
                    let Some(channel) = channel else {
                        continue;
                    };
                    let asked = tokio::time::timeout(
                        Duration::from_secs(3),
                        PeerInfoClient::new(channel).members(MemberListRequest::default()),
                    )
                    .await;
                    if let Ok(Err(status)) = &asked {
                        // Not a Rampart member: ask as etcd's proxy asks an etcd member.
                        match crate::peer_members::client_urls(peer, tls.as_deref()).await {
                            Ok(urls) if !urls.is_empty() => return Some(urls),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(
                                peer,
                                rampart_peer_service = %status.message(),
                                etcd_members = %e,
                                "proxy: member list not available"
                            ),
                        }
                        continue;
                    }
                    match asked {
                        Ok(Ok(resp)) => {
                            let urls: Vec<String> = resp
                                .into_inner()
                                .members
                                .into_iter()
                                .flat_map(|m| m.client_ur_ls)
                                .collect();
                            if !urls.is_empty() {
                                return Some(urls);
                            }
                        }
                        Ok(Err(status)) => {
                            tracing::warn!(peer, code = ?status.code(), error = %status.message(), "proxy: member list refused")
                        }
                        Err(_) => tracing::warn!(peer, "proxy: member list timed out"),
                    }
                }
                None
            }
        }
    }

    /// Fetches the member list again (keeping the old one if no member answers).
    pub async fn refresh(&self) {
        let Some(urls) = self.client_urls().await else {
            tracing::warn!(
                "proxy: no member answered with the member list; keeping the current one"
            );
            return;
        };
        let mut members = self.members.lock().expect("members");
        if members.iter().map(|m| &m.url).eq(urls.iter()) {
            return;
        }
        let mut fresh = Vec::new();
        for url in urls {
            let existing = members.iter().position(|m| m.url == url);
            let (channel, down_since) = match existing {
                Some(i) => (members[i].channel.clone(), members[i].down_since),
                None => match self.channel(&url) {
                    Some(c) => (c, None),
                    None => continue,
                },
            };
            fresh.push(Member {
                url,
                channel,
                down_since,
            });
        }
        // etcd's v2 proxy logs this line; tools wait for it.
        tracing::info!(members = ?fresh.iter().map(|m| &m.url).collect::<Vec<_>>(), "httpproxy: endpoints found");
        *members = fresh;
    }

    /// Refreshes every `interval` until the task is dropped; every second while no member is
    /// known yet (members that were still starting when the proxy started).
    pub async fn run(self: Arc<Upstreams>, interval: Duration) {
        loop {
            let empty = self.members.lock().expect("members").is_empty();
            tokio::time::sleep(if empty {
                EMPTY_RETRY.min(interval)
            } else {
                interval
            })
            .await;
            self.refresh().await;
        }
    }
}

//! The members behind the proxy: found from client URLs or asked from a member over the peer
//! port, refreshed periodically, and checked so requests go to members that answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_proto::etcdserverpb::MemberListRequest;
use rampart_proto::peer::peer_info_client::PeerInfoClient;
use rampart_tls::ClientTls;
use tonic::transport::Channel;

/// How the proxy finds the members.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// Client URLs of the members, used as given (etcd grpc-proxy's `--endpoints`).
    Endpoints(Vec<String>),
    /// Peer URLs (etcd's `--proxy on --initial-cluster`): a member is asked for the member list
    /// over the peer port, and the client URLs it publishes are used.
    PeerUrls(Vec<String>),
}

struct Member {
    url: String,
    channel: Channel,
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

    /// The members to try for one request: all of them, starting from the next in turn.
    pub(crate) fn candidates(&self) -> Vec<(String, Channel)> {
        let members = self.members.lock().expect("members");
        if members.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % members.len();
        (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .map(|m| (m.url.clone(), m.channel.clone()))
            .collect()
    }

    fn channel(&self, url: &str) -> Option<Channel> {
        rampart_tls::connect_channel_lazy(url, self.tls.as_deref())
            .map_err(|e| tracing::warn!(url, error = %e, "proxy: cannot set up a connection"))
            .ok()
    }

    async fn client_urls(&self) -> Option<Vec<String>> {
        match &self.discovery {
            Discovery::Endpoints(urls) => Some(urls.clone()),
            Discovery::PeerUrls(peers) => {
                for peer in peers {
                    let Some(channel) = self.channel(peer) else {
                        continue;
                    };
                    let asked = tokio::time::timeout(
                        Duration::from_secs(3),
                        PeerInfoClient::new(channel).members(MemberListRequest::default()),
                    )
                    .await;
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
                            tracing::debug!(peer, error = %status.message(), "proxy: member list refused")
                        }
                        Err(_) => tracing::debug!(peer, "proxy: member list timed out"),
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
            let channel = match existing {
                Some(i) => members[i].channel.clone(),
                None => match self.channel(&url) {
                    Some(c) => c,
                    None => continue,
                },
            };
            fresh.push(Member { url, channel });
        }
        // etcd's v2 proxy logs this line; tools wait for it.
        tracing::info!(members = ?fresh.iter().map(|m| &m.url).collect::<Vec<_>>(), "httpproxy: endpoints found");
        *members = fresh;
    }

    /// Refreshes every `interval` until the task is dropped.
    pub async fn run(self: Arc<Upstreams>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.refresh().await;
        }
    }
}

//! A cluster of real `rampart server` processes, with client and peer mutual TLS as in
//! production. Member `i` listens for clients on its own address and for peers behind relay `i`:
//! the peer URL every member is given for it is the relay's. Everything the cluster made
//! (processes, namespaces, bridge, relays) is removed when it is dropped, also while a panic
//! unwinds.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rampart_proto::etcdserverpb::StatusRequest;
use tonic::transport::Channel;

use super::network::Network;
use super::pki::ClusterPki;
use super::relay::{FaultControl, Relay};
use super::HarnessError;

/// Ports members listen on inside their own namespace (no other process shares it).
const NETNS_CLIENT_PORT: u16 = 2379;
const NETNS_PEER_PORT: u16 = 2380;
/// How long one status call may take before the member counts as not answering.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// Election timing: etcd's defaults (100ms heartbeat, 1s election).
const HEARTBEAT_MS: &str = "100";
const ELECTION_MS: &str = "1000";

pub struct ClusterConfig {
    pub members: usize,
    /// The `rampart` binary to run.
    pub rampart: PathBuf,
    /// Where certificates, data directories and member logs go (kept for a failing run).
    pub dir: PathBuf,
    /// Use network namespaces when the machine allows it.
    pub namespaces: bool,
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    listen_client_url: String,
    listen_peer_url: String,
    /// The relay's URL: what every member dials to reach this one.
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub network: Network,
    pub faults: FaultControl,
    pub pki: ClusterPki,
    rampart: PathBuf,
    initial_cluster: String,
    // Dropped after the processes are killed (fields drop in order).
    _relays: Vec<Relay>,
    channels: Vec<Channel>,
}

impl Cluster {
    /// Creates the network, certificates and relays, and starts every member.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, HarnessError> {
        if !config.rampart.exists() {
            return Err(HarnessError::MissingBinary(config.rampart));
        }
        std::fs::create_dir_all(&config.dir)?;
        let network = Network::create(config.members, config.namespaces);
        let relay_ip = network.relay_address();
        let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        hosts.push(relay_ip.to_string());
        hosts.extend((0..config.members).map(|i| network.member_address(i).to_string()));
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|h| seen.insert(h.clone()));
        let pki = ClusterPki::create(&config.rampart, &config.dir.join("tls"), &hosts)?;
        let faults = FaultControl::new(config.members);
        let member_ips: Vec<IpAddr> = (0..config.members)
            .map(|i| IpAddr::V4(network.member_address(i)))
            .collect();
        let namespaced = matches!(network, Network::Namespaces(_));
        let source_of: Arc<dyn Fn(IpAddr) -> Option<usize> + Send + Sync> = Arc::new(move |ip| {
            if namespaced {
                member_ips.iter().position(|m| *m == ip)
            } else {
                None
            }
        });
        let mut members = Vec::new();
        let mut relays = Vec::new();
        for i in 0..config.members {
            let ip = network.member_address(i);
            let (client_port, peer_port) = if namespaced {
                (NETNS_CLIENT_PORT, NETNS_PEER_PORT)
            } else {
                (rampart_testkit::free_port(), rampart_testkit::free_port())
            };
            let relay = Relay::start(
                SocketAddr::new(IpAddr::V4(relay_ip), rampart_testkit::free_port()),
                SocketAddr::new(IpAddr::V4(ip), peer_port),
                i,
                faults.clone(),
                source_of.clone(),
            )
            .await?;
            members.push(Member {
                name: format!("m{i}"),
                client_url: format!("https://{ip}:{client_port}"),
                listen_client_url: format!("https://{ip}:{client_port}"),
                listen_peer_url: format!("https://{ip}:{peer_port}"),
                peer_url: format!("https://{}", relay.listen),
                data_dir: config.dir.join(format!("m{i}.data")),
                log: config.dir.join(format!("m{i}.log")),
                child: None,
                paused: false,
            });
            relays.push(relay);
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let tls = pki.client_tls()?;
        let channels = members
            .iter()
            .map(|m| rampart_tls::connect_channel_lazy(&m.client_url, Some(&tls)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cluster = Cluster {
            members,
            network,
            faults,
            pki,
            rampart: config.rampart,
            initial_cluster,
            _relays: relays,
            channels,
        };
        for i in 0..config.members {
            cluster.start_member(i)?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A gRPC channel to member `i` with the client certificate (connects lazily, reconnects).
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i].clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    pub fn start_member(&mut self, i: usize) -> Result<(), HarnessError> {
        if self.members[i].child.is_some() {
            return Ok(());
        }
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let mut command = match self.network.netns(i) {
            Some(ns) => {
                // `ip netns exec` execs the server, so the child's pid is the server's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.rampart);
                c
            }
            None => Command::new(&self.rampart),
        };
        let pki = &self.pki;
        command
            .arg("server")
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={}", m.listen_client_url))
            .arg(format!("--advertise-client-urls={}", m.client_url))
            .arg(format!("--listen-peer-urls={}", m.listen_peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-token=robustness")
            .arg("--initial-cluster-state=new")
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_MS}"))
            .arg(format!("--cert-file={}", pki.file("member.pem")))
            .arg(format!("--key-file={}", pki.file("member-key.pem")))
            .arg(format!("--trusted-ca-file={}", pki.file("ca.pem")))
            .arg("--client-cert-auth")
            .arg(format!("--peer-cert-file={}", pki.file("member.pem")))
            .arg(format!("--peer-key-file={}", pki.file("member-key.pem")))
            .arg(format!("--peer-trusted-ca-file={}", pki.file("ca.pem")))
            .arg("--peer-client-cert-auth")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            what: format!("member {} ({})", m.name, self.rampart.display()),
            source,
        })?;
        self.members[i].child = Some(child);
        self.members[i].paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, signal: libc::c_int) {
        if let Some(child) = &self.members[i].child {
            // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// `kill -9`: a crash, with no chance to flush anything.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].paused = false;
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.members[i].paused = self.members[i].child.is_some();
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.members[i].paused = false;
    }

    /// Status of member `i`: (its member id, the leader it knows, its term).
    pub async fn status(&self, i: usize) -> Option<(u64, u64, u64)> {
        if !self.is_running(i) || self.members[i].paused {
            return None;
        }
        let mut client = MaintenanceClient::new(self.channel(i));
        let call = client.status(StatusRequest {});
        let status = tokio::time::timeout(STATUS_TIMEOUT, call)
            .await
            .ok()?
            .ok()?
            .into_inner();
        Some((
            status.header.map(|h| h.member_id).unwrap_or(0),
            status.leader,
            status.raft_term,
        ))
    }

    /// The member that leads now, as the members themselves report it.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = 0;
        for i in 0..self.len() {
            if let Some((id, lead, _)) = self.status(i).await {
                ids.push((i, id));
                if lead != 0 {
                    leader = lead;
                }
            }
        }
        ids.into_iter()
            .find(|&(_, id)| id == leader)
            .map(|(i, _)| i)
    }

    /// Waits until every running member answers and knows a leader.
    pub async fn wait_healthy(&self, within: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + within;
        loop {
            let mut healthy = true;
            for i in (0..self.len()).filter(|&i| self.is_running(i)) {
                healthy &= matches!(self.status(i).await, Some((_, lead, _)) if lead != 0);
            }
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Unhealthy {
                    seconds: within.as_secs(),
                    logs: self.log_dir().display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log_dir(&self) -> &Path {
        self.members[0]
            .log
            .parent()
            .expect("logs are in the run directory")
    }

    /// The last `lines` lines of every member's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("== {} ({}) ==\n", m.name, m.log.display()));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // A stopped process dies of SIGKILL too, but resume first so nothing lingers.
            self.resume(i);
            self.kill(i);
        }
    }
}

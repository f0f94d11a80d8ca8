//! Wiring a member together: bootstrap, Raft loop, apply loop, peer and client listeners, and
//! publishing this member's client URLs to the cluster.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rampart_proto::etcdserverpb::auth_server::AuthServer;
use rampart_proto::etcdserverpb::cluster_server::ClusterServer;
use rampart_proto::etcdserverpb::kv_server::KvServer;
use rampart_proto::etcdserverpb::lease_server::LeaseServer;
use rampart_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use rampart_proto::etcdserverpb::watch_server::WatchServer;
use rampart_proto::internal::{raft_request, MemberAttributes};
use rampart_proto::v3electionpb::election_server::ElectionServer;
use rampart_proto::v3lockpb::lock_server::LockServer;
use rampart_raft_node::transport::{
    wire, PeerConnector, PeerDialer, PeerService, PeerTransport, SnapshotSource,
};
use rampart_raft_node::NodeConfig;
use rampart_tls::{ClientTls, ServerTls, TlsIncoming, TlsOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::v3::auth::AuthService;
use crate::api::v3::cluster::ClusterService;
use crate::api::v3::election::ElectionService;
use crate::api::v3::kv::KvService;
use crate::api::v3::lease::LeaseService;
use crate::api::v3::lock::LockService;
use crate::api::v3::maintenance::MaintenanceService;
use crate::api::v3::watch::WatchService;
use crate::apply_loop::ApplyLoop;
use crate::bootstrap::bootstrap;
use crate::etcdserver::{EtcdServer, Limits, ServerParts, Waiters};
use crate::leases::{run_lease_expiry, LeaseForwardService, LeaseForwarder};
use crate::listen::{bind, parse_listen_url};
use crate::settings::ServerSettings;
use crate::watch::{HeaderSource, WatchHub};
use crate::ServerError;

/// Largest gRPC message a client may send: the request limit plus room for framing (etcd adds
/// the same kind of headroom so that "request is too large" comes from the server, not gRPC).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Pause between attempts to publish this member's attributes while there is no leader yet.
const PUBLISH_RETRY: Duration = Duration::from_millis(200);

/// A started member.
pub struct RunningServer {
    pub server: Arc<EtcdServer>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops serving and stops the Raft loop. Everything acknowledged is already in the WAL.
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.server.raft.stop();
    }
}

/// Starts a member and returns once its listeners are serving.
pub async fn run(settings: ServerSettings) -> Result<RunningServer, ServerError> {
    // Auto TLS makes its certificate once, here, so the listener and the dialer share it.
    let peer_tls_options = match &settings.peer_tls {
        Some(opts) => Some(
            rampart_tls::auto::resolve(opts.clone())
                .map_err(|e| ServerError::Tls(format!("peer TLS: {e}")))?,
        ),
        None => None,
    };
    let peer_server_tls = match &peer_tls_options {
        Some(opts) => Some(
            ServerTls::new_with_alpn(opts.clone(), vec![wire::RAFT_ALPN.to_vec()])
                .map_err(|e| ServerError::Tls(format!("peer TLS: {e}")))?,
        ),
        None => None,
    };
    let peer_client_tls = match &peer_tls_options {
        Some(opts) => Some(Arc::new(peer_client_tls(opts)?)),
        None => None,
    };
    let connect: PeerConnector = {
        let tls = peer_client_tls.clone();
        Arc::new(move |url: &str| {
            rampart_tls::connect_channel_lazy(url, tls.as_deref()).map_err(|e| e.to_string())
        })
    };
    let dial: PeerDialer = {
        let tls = peer_client_tls.clone();
        Arc::new(move |url: String| {
            let tls = tls.clone();
            Box::pin(async move {
                rampart_tls::dial(
                    &url,
                    tls.as_deref(),
                    wire::RAFT_ALPN,
                    rampart_tls::client::LAZY_CONNECT_TIMEOUT,
                )
                .await
            })
        })
    };
    let join = if crate::bootstrap::joins_existing_cluster(&settings) {
        fetch_cluster(&settings, &connect).await
    } else {
        None
    };
    let boot = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || bootstrap(&settings, join))
            .await
            .map_err(|e| ServerError::Storage(format!("bootstrap task failed: {e}")))??
    };
    let member_id = boot.member_id;
    let membership = Arc::new(boot.membership);
    let cluster_id = membership.cluster_id();
    let applied_index = boot.applier.consistent_index();
    let applier = Arc::new(RwLock::new(boot.applier));
    let snapshot_source: SnapshotSource = {
        let applier = applier.clone();
        Arc::new(move || {
            applier
                .read()
                .expect("applier")
                .snapshot_bytes()
                .map_err(|e| e.to_string())
        })
    };
    let peers: HashMap<u64, Vec<String>> = membership
        .members()
        .into_iter()
        .map(|m| (m.id, m.peer_urls))
        .collect();
    let transport = PeerTransport::new(
        cluster_id,
        member_id,
        &peers,
        connect.clone(),
        dial,
        snapshot_source,
        tokio::runtime::Handle::current(),
    );
    let (raft, committed, _raft_thread) = rampart_raft_node::start(
        NodeConfig {
            id: member_id,
            heartbeat_interval: settings.heartbeat_interval,
            election_ticks: settings.election_ticks(),
            applied_index,
            fresh_cluster: boot.fresh && peers.len() > 1,
        },
        boot.storage,
        boot.wal,
        transport.clone(),
    )?;
    transport.attach(raft.clone());

    let watch_hub = WatchHub::new(
        applier.clone(),
        HeaderSource {
            membership: membership.clone(),
            member_id,
            raft: raft.clone(),
        },
        settings.max_request_bytes,
        settings.watch_progress_notify_interval,
    );
    let waiters = Arc::new(Waiters::default());
    let (applied_tx, applied_rx) = watch::channel(applied_index);
    let apply_loop = ApplyLoop {
        applier: applier.clone(),
        waiters: waiters.clone(),
        membership: membership.clone(),
        raft: raft.clone(),
        applied: applied_tx,
        snapshot_count: settings.snapshot_count.max(1),
        local_member: member_id,
        watch_hub: watch_hub.clone(),
        lease_extend: settings.election_timeout,
        transport: transport.clone(),
    };
    let last_snapshot = boot.last_snapshot_index;
    std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || apply_loop.run(committed, last_snapshot))
        .map_err(|e| ServerError::io("cannot start the apply thread", e))?;

    let server = Arc::new(EtcdServer::new(ServerParts {
        member_id,
        membership: membership.clone(),
        raft: raft.clone(),
        applier,
        waiters,
        applied: applied_rx,
        limits: Limits {
            max_request_bytes: settings.max_request_bytes,
            max_txn_ops: settings.max_txn_ops,
            quota_backend_bytes: settings.quota_backend_bytes,
        },
        election_timeout: settings.election_timeout,
        lease_forwarder: LeaseForwarder::new(connect),
        watch_hub: watch_hub.clone(),
        bcrypt_cost: settings.bcrypt_cost,
        auth_token_ttl: settings.auth_token_ttl,
        jwt: settings.jwt.clone(),
    }));

    let mut tasks = vec![
        tokio::spawn(watch_hub.clone().run_catch_up()),
        tokio::spawn(watch_hub.run_progress_notify()),
        tokio::spawn(run_lease_expiry(server.clone())),
    ];
    for raw in &settings.listen_peer_urls {
        let url = parse_listen_url(raw)?;
        let tls = tls_for(&url, raw, peer_server_tls.clone(), "peer")?;
        let listener = bind(&url).await?;
        let service = PeerService::new(cluster_id, raft.clone());
        let incoming = TlsIncoming::new_diverting(listener, tls, service.divert());
        let service = service.into_server();
        let lease_forward = LeaseForwardService::new(server.clone());
        let peer_info = crate::api::v3::cluster::PeerInfoService::new(server.clone());
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(lease_forward)
                .add_service(peer_info)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "peer listener stopped");
            }
        }));
        tracing::info!(url = %raw, "listening for peers");
    }

    let client_tls = match &settings.client_tls {
        Some(opts) => Some(
            ServerTls::new(opts.clone())
                .map_err(|e| ServerError::Tls(format!("client TLS: {e}")))?,
        ),
        None => None,
    };
    // Printed once this member has published itself, as etcd does (tools wait for the line).
    let mut ready_lines = Vec::new();
    let client_urls = settings
        .listen_client_urls
        .iter()
        .map(|raw| parse_listen_url(raw).map(|u| (raw, u)))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (raw, url)) in client_urls.iter().enumerate() {
        // An http:// and an https:// URL on one address share a listener (as etcd's).
        let plain_twin = client_urls
            .iter()
            .any(|(_, other)| other.addr == url.addr && other.tls != url.tls);
        if plain_twin && !url.tls {
            continue;
        }
        if client_urls[..i]
            .iter()
            .any(|(_, other)| other.addr == url.addr && other.tls == url.tls)
        {
            continue;
        }
        let tls = tls_for(url, raw, client_tls.clone(), "client")?;
        let listener = bind(url).await?;
        let incoming = match (plain_twin, tls) {
            (true, Some(tls)) => TlsIncoming::new_either(listener, tls),
            (_, tls) => TlsIncoming::new(listener, tls),
        };
        if plain_twin {
            ready_lines.push((url.addr.to_string(), false));
        }
        let max_message = settings.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let client_cert_auth = settings
            .client_tls
            .as_ref()
            .is_some_and(|t| t.client_cert_auth);
        let routes = client_routes(
            server.clone(),
            max_message,
            settings.enable_v2,
            client_cert_auth,
        );
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "client listener stopped");
            }
        }));
        ready_lines.push((url.addr.to_string(), url.tls));
    }

    tasks.push(tokio::spawn(publish_attributes(
        server.clone(),
        settings.name.clone(),
        settings.advertise_client_urls.clone(),
        ready_lines,
    )));
    Ok(RunningServer { server, tasks })
}

/// Asks the other members in `--initial-cluster` for the member list (over the peer port), for a
/// member joining a running cluster.
async fn fetch_cluster(
    settings: &ServerSettings,
    connect: &PeerConnector,
) -> Option<crate::bootstrap::JoinInfo> {
    use rampart_proto::etcdserverpb::MemberListRequest;
    use rampart_proto::peer::peer_info_client::PeerInfoClient;
    let own = &settings.initial_advertise_peer_urls;
    for (_, urls) in &settings.initial_cluster {
        for url in urls.iter().filter(|u| !own.contains(u)) {
            let Ok(channel) = connect(url) else { continue };
            let asked = tokio::time::timeout(
                Duration::from_secs(3),
                PeerInfoClient::new(channel).members(MemberListRequest::default()),
            )
            .await;
            let Ok(Ok(resp)) = asked else {
                tracing::warn!(url = %url, "cannot get the member list from this peer");
                continue;
            };
            let resp = resp.into_inner();
            let cluster_id = resp.header.map(|h| h.cluster_id).unwrap_or(0);
            let members = resp
                .members
                .into_iter()
                .map(|m| crate::membership::Member {
                    id: m.id,
                    name: m.name,
                    peer_urls: m.peer_ur_ls,
                    client_urls: m.client_ur_ls,
                    is_learner: m.is_learner,
                })
                .collect();
            return Some(crate::bootstrap::JoinInfo {
                cluster_id,
                members,
            });
        }
    }
    None
}

fn tls_for(
    url: &crate::listen::ListenUrl,
    raw: &str,
    tls: Option<ServerTls>,
    kind: &str,
) -> Result<Option<ServerTls>, ServerError> {
    match (url.tls, tls) {
        (true, Some(t)) => Ok(Some(t)),
        (true, None) => Err(ServerError::Config(format!(
            "{raw} is an https URL but no {kind} certificate is configured: pass --{}cert-file and --{}key-file (or --{}auto-tls)",
            prefix(kind), prefix(kind), prefix(kind)
        ))),
        (false, _) => Ok(None),
    }
}

fn prefix(kind: &str) -> &'static str {
    if kind == "peer" {
        "peer-"
    } else {
        ""
    }
}

/// The peer certificate is also this member's client certificate towards other members.
/// With `--peer-auto-tls` and no trusted CA, members cannot verify each other's self-signed
/// certificates; etcd then skips verification, and so do we (the operator chose auto TLS).
fn peer_client_tls(opts: &TlsOptions) -> Result<ClientTls, ServerError> {
    ClientTls::new(rampart_tls::ClientTlsOptions {
        trusted_ca_file: opts.trusted_ca_file.clone(),
        cert_file: opts.cert_file.clone(),
        key_file: opts.key_file.clone(),
        server_name_override: None,
        insecure_skip_verify: opts.auto_tls_dir.is_some() && opts.trusted_ca_file.is_none(),
    })
    .map_err(|e| ServerError::Tls(format!("peer TLS (client side): {e}")))
}

fn client_routes(
    server: Arc<EtcdServer>,
    max_message: usize,
    enable_v2: bool,
    client_cert_auth: bool,
) -> tonic::service::Routes {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    drop(health_reporter);
    let grpc = tonic::service::Routes::new(
        KvServer::new(KvService::new(server.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        ClusterServer::new(ClusterService::new(server.clone()))
            .max_decoding_message_size(max_message),
    )
    .add_service(
        LeaseServer::new(LeaseService::new(server.clone())).max_decoding_message_size(max_message),
    )
    .add_service(
        WatchServer::new(WatchService::new(server.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        MaintenanceServer::new(MaintenanceService::new(server.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        AuthServer::new(AuthService::new(server.clone())).max_decoding_message_size(max_message),
    )
    .add_service(
        LockServer::new(LockService::new(server.clone())).max_decoding_message_size(max_message),
    )
    .add_service(
        ElectionServer::new(ElectionService::new(server.clone()))
            .max_decoding_message_size(max_message),
    )
    .add_service(health_service);
    let mut router = grpc
        .into_axum_router()
        .merge(crate::api::http::router(server.clone()))
        .merge(crate::api::gateway::router(server.clone()));
    if enable_v2 {
        router = router.merge(crate::api::v2::router(server, client_cert_auth));
    }
    tonic::service::Routes::from(router)
}

/// Publishes this member's name and client URLs through Raft (etcd does the same at start), so
/// `member list` on any member shows them.
async fn publish_attributes(
    server: Arc<EtcdServer>,
    name: String,
    client_urls: Vec<String>,
    ready_lines: Vec<(String, bool)>,
) {
    let attrs = MemberAttributes {
        member_id: server.member_id,
        name,
        client_urls,
    };
    let published = |server: &EtcdServer| {
        server
            .membership
            .get(server.member_id)
            .is_some_and(|m| m.name == attrs.name && m.client_urls == attrs.client_urls)
    };
    loop {
        if server.raft.status().leader() == 0 {
            tokio::time::sleep(PUBLISH_RETRY / 4).await;
            continue;
        }
        if let Err(status) = server
            .propose_without_waiting(raft_request::Request::MemberAttributes(attrs.clone()))
            .await
        {
            tracing::debug!(error = %status.message(), "publish of member attributes will be retried");
            tokio::time::sleep(PUBLISH_RETRY).await;
            continue;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            if published(&server) {
                // etcd logs this once the cluster version is agreed, after start-up; tools
                // (etcd's own e2e suite among them) take any of these lines as "ready".
                tracing::info!(
                    cluster_version = crate::ETCD_CLUSTER_VERSION,
                    "enabled capabilities for version 3.4"
                );
                for (address, tls) in &ready_lines {
                    if *tls {
                        tracing::info!(address = %address, "ready to serve client requests");
                    } else {
                        tracing::warn!(
                            address = %address,
                            "ready to serve client requests; serving insecure client requests on {address}, this is strongly discouraged!"
                        );
                    }
                }
                return;
            }
            tokio::time::sleep(PUBLISH_RETRY / 4).await;
        }
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}

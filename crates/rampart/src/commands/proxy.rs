//! `rampart proxy` (also `etcd grpc-proxy start`), `etcd --proxy on` (seed 000's command line)
//! and `etcd gateway start`: run the proxy or the L4 gateway until SIGINT/SIGTERM.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rampart_proxy::{Discovery, ProxySettings};

/// Flags of `rampart proxy`, named as etcd's grpc-proxy's.
#[derive(Parser, Debug)]
#[command(
    name = "rampart proxy",
    about = "Proxy clients to a cluster: one address, one certificate",
    // As Go's flag package (etcd's e2e suite passes --client-crl-file twice): the last wins.
    args_override_self = true
)]
pub struct ProxyArgs {
    /// Address to serve clients on (host:port); TLS when --cert-file is given.
    #[arg(
        long,
        default_value = "127.0.0.1:23790",
        env = "ETCD_GRPC_PROXY_LISTEN_ADDR"
    )]
    pub listen_addr: String,
    /// Client URLs of the members, comma-separated.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Client certificate towards the members.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// CA of the members' certificates.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// The proxy's own certificate for clients.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// CA of client certificates: clients must then present a certificate it signed (as
    /// etcd's grpc-proxy; --client-cert-auth is implied).
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    #[arg(long)]
    pub client_cert_auth: bool,
    /// CRL of the proxy's clients.
    #[arg(long)]
    pub client_crl_file: Option<PathBuf>,
    /// Serve clients with a self-signed certificate (made in --data-dir).
    #[arg(long)]
    pub auto_tls: bool,
    /// Do not verify the members' certificates (only with --auto-tls members).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    #[arg(long, default_value = "default.proxy")]
    pub data_dir: PathBuf,
    /// Accepted for etcd compatibility.
    #[arg(long)]
    pub advertise_client_url: Option<String>,
    /// An extra plain-HTTP address serving the proxy's /metrics and /health (the client
    /// address serves them too).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Serve serializable ranges from a cache for this long ("500ms", "2s"); writes through
    /// the proxy invalidate it. Off (0) by default.
    #[arg(long, default_value = "0", value_parser = rampart_proxy::range_cache::parse_ttl)]
    pub serializable_cache_ttl: Duration,
    #[arg(long)]
    pub resolver_prefix: Option<String>,
    #[arg(long)]
    pub resolver_ttl: Option<String>,
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub enable_pprof: bool,
    #[arg(long)]
    pub debug: bool,
    /// TLS 1.2 cipher suites offered to clients (Go names, comma-separated; TLS 1.3 suites are
    /// always on). Empty means the defaults.
    #[arg(long, value_delimiter = ',')]
    pub listen_cipher_suites: Vec<String>,
    /// DNS SRV discovery of the members (not supported: give --endpoints).
    #[arg(long)]
    pub discovery_srv: Option<String>,
    #[arg(long)]
    pub discovery_srv_name: Option<String>,
    #[arg(long)]
    pub insecure_discovery: bool,
    /// Accepted for etcd compatibility (the proxy forwards frames and does not re-encode messages).
    #[arg(long)]
    pub max_send_bytes: Option<u64>,
    #[arg(long)]
    pub max_recv_bytes: Option<u64>,
    #[arg(long)]
    pub max_concurrent_streams: Option<u32>,
    #[arg(long)]
    pub experimental_serializable_ordering: bool,
    #[arg(long)]
    pub experimental_leasing_prefix: Option<String>,
}

fn with_scheme(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

/// `etcd grpc-proxy start`: as etcd's, it refuses a client certificate with a Common Name (with
/// auth enabled the members would take that CN as the user, so every client of the proxy would
/// act as that user). `rampart proxy` allows it, since Rampart's members have no v3 auth yet.
pub fn run_etcd_grpc_proxy(args: ProxyArgs) -> ExitCode {
    if let Some(cert) = &args.cert {
        if let Some(cn) = certificate_common_name(cert) {
            eprintln!("cert has non empty Common Name ({cn}): {}", cert.display());
            return ExitCode::from(1);
        }
    }
    run_grpc_proxy(args)
}

pub fn run_grpc_proxy(args: ProxyArgs) -> ExitCode {
    crate::logging::init("info", &["stderr".to_string()]);
    if args.namespace.is_some() {
        eprintln!("--namespace is not supported by rampart's proxy yet");
        return ExitCode::from(1);
    }
    if args.discovery_srv.is_some() {
        eprintln!("--discovery-srv is not supported by rampart's proxy: list the members with --endpoints");
        return ExitCode::from(1);
    }

    for (given, flag) in [
        (args.max_send_bytes.is_some(), "--max-send-bytes"),
        (args.max_recv_bytes.is_some(), "--max-recv-bytes"),
        (
            args.max_concurrent_streams.is_some(),
            "--max-concurrent-streams",
        ),
        (
            args.experimental_serializable_ordering,
            "--experimental-serializable-ordering",
        ),
        (
            args.experimental_leasing_prefix.is_some(),
            "--experimental-leasing-prefix",
        ),
    ] {
        if given {
            tracing::warn!(
                "{flag} is accepted for etcd compatibility but has no effect on rampart's proxy"
            );
        }
    }
    let listen_cipher_suites: Vec<String> = args
        .listen_cipher_suites
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let upstream_tls =
        args.cacert.is_some() || args.cert.is_some() || args.insecure_skip_tls_verify;
    let client_tls = args.cert_file.is_some() || args.auto_tls;
    let server_tls = if args.auto_tls && args.cert_file.is_none() {
        let auto = rampart_tls::TlsOptions {
            auto_tls_dir: Some(args.data_dir.join("fixtures").join("proxy")),
            ..Default::default()
        };
        match rampart_tls::auto::resolve(rampart_tls::TlsOptions {
            cipher_suites: listen_cipher_suites.clone(),
            ..auto
        }) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("proxy auto TLS: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        args.cert_file.clone().map(|cert| rampart_tls::TlsOptions {
            cert_file: Some(cert),
            key_file: args.key_file.clone(),
            trusted_ca_file: args.trusted_ca_file.clone(),
            // etcd's grpc-proxy requires client certificates whenever it is given a CA for
            // them (transport.TLSInfo), with or without --client-cert-auth.
            client_cert_auth: args.client_cert_auth || args.trusted_ca_file.is_some(),
            crl_file: args.client_crl_file.clone(),
            cipher_suites: listen_cipher_suites.clone(),
            ..Default::default()
        })
    };
    let settings = ProxySettings {
        listen_urls: vec![with_scheme(&args.listen_addr, client_tls)],
        server_tls,
        discovery: Discovery::Endpoints(
            args.endpoints
                .iter()
                .map(|e| with_scheme(e, upstream_tls))
                .collect(),
        ),
        upstream_tls: upstream_tls.then(|| rampart_tls::ClientTlsOptions {
            trusted_ca_file: args.cacert.clone(),
            cert_file: args.cert.clone(),
            key_file: args.key.clone(),
            server_name_override: None,
            insecure_skip_verify: args.insecure_skip_tls_verify,
        }),
        refresh_interval: Duration::from_secs(30),
        serializable_cache_ttl: Some(args.serializable_cache_ttl).filter(|t| !t.is_zero()),
        metrics_urls: args
            .metrics_addr
            .iter()
            .map(|a| with_scheme(a, false))
            .collect(),
    };
    serve(settings)
}

/// `etcd --proxy on|readonly`: the client side from the client flags, the members from
/// `--initial-cluster` (peer URLs) with the peer certificate.
pub fn run_from_server_config(config: &rampart_config::ServerConfig) -> ExitCode {
    let settings = match rampart_server::settings::from_config(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let peer_urls: Vec<String> = config
        .initial_cluster
        .iter()
        .flat_map(|(_, urls)| urls.clone())
        .collect();
    if peer_urls.is_empty() {
        eprintln!("--proxy on needs --initial-cluster: the members' peer URLs");
        return ExitCode::from(1);
    }
    let resolve =
        |o: &Option<rampart_tls::TlsOptions>| -> Result<Option<rampart_tls::TlsOptions>, String> {
            o.clone()
                .map(rampart_tls::auto::resolve)
                .transpose()
                .map_err(|e| e.to_string())
        };
    let (client_tls, peer_tls) = match (resolve(&settings.client_tls), resolve(&settings.peer_tls))
    {
        (Ok(c), Ok(p)) => (c, p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("proxy TLS: {e}");
            return ExitCode::from(1);
        }
    };
    let refresh = config
        .values
        .get("proxy-refresh-interval")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30_000);
    let as_client = |t: &rampart_tls::TlsOptions| rampart_tls::ClientTlsOptions {
        trusted_ca_file: t.trusted_ca_file.clone(),
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        server_name_override: None,
        // Members with auto TLS have self-signed certificates; etcd's proxy then skips
        // verification too.
        insecure_skip_verify: t.auto_tls_dir.is_some() && t.trusted_ca_file.is_none(),
    };
    let discovery_tls = match peer_tls
        .as_ref()
        .map(as_client)
        .map(rampart_tls::ClientTls::new)
    {
        None => None,
        Some(Ok(t)) => Some(std::sync::Arc::new(t)),
        Some(Err(e)) => {
            eprintln!("proxy: peer TLS: {e}");
            return ExitCode::from(1);
        }
    };
    // As etcd's proxy: the client certificate towards the members' client URLs, the peer one
    // when no client certificate is configured.
    let upstream_tls = client_tls
        .as_ref()
        .filter(|t| t.cert_file.is_some() || t.auto_tls_dir.is_some())
        .or(peer_tls.as_ref())
        .map(as_client);
    let proxy = ProxySettings {
        listen_urls: settings.listen_client_urls.clone(),
        server_tls: client_tls.clone(),
        discovery: Discovery::PeerUrls {
            urls: peer_urls,
            tls: discovery_tls,
        },
        upstream_tls,
        refresh_interval: Duration::from_millis(refresh.max(1000)),
        serializable_cache_ttl: None,
        metrics_urls: config
            .values
            .get("listen-metrics-urls")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    serve(proxy)
}

fn serve(settings: ProxySettings) -> ExitCode {
    let runtime = match crate::commands::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let running = match rampart_proxy::run(settings).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        crate::commands::server::wait_for_signal().await;
        running.shutdown();
        ExitCode::SUCCESS
    })
}

/// `etcd gateway start --endpoints=... --listen-addr=...`.
pub fn run_gateway(args: Vec<OsString>) -> ExitCode {
    crate::logging::init("info", &["stderr".to_string()]);
    let mut endpoints = vec!["127.0.0.1:2379".to_string()];
    let mut listen = "127.0.0.1:23790".to_string();
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || value.clone().or_else(|| it.next()).unwrap_or_default();
        match name.trim_start_matches('-') {
            "endpoints" => endpoints = value().split(',').map(str::to_string).collect(),
            "listen-addr" => listen = value(),
            "start" => {}
            other => tracing::warn!("gateway: flag --{other} is accepted and ignored"),
        }
    }
    let runtime = match crate::commands::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!(address = %listen, "ready to proxy client requests");
        let task = tokio::spawn(rampart_proxy::gateway::run(listener, endpoints));
        crate::commands::server::wait_for_signal().await;
        task.abort();
        ExitCode::SUCCESS
    })
}

/// The Common Name of the first certificate in a PEM file, when it has a non-empty one.
fn certificate_common_name(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let origin = path.display().to_string();
    let der = rampart_pki::inspect::pem_certificates(&text, &origin)
        .ok()?
        .into_iter()
        .next()?;
    let info = rampart_pki::inspect::describe(&der, &origin).ok()?;
    (!info.common_name.is_empty()).then_some(info.common_name)
}

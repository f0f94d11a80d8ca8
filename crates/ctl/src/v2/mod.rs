//! The v2 commands (`ETCDCTL_API=2`): etcdctl 2's keys, member and cluster-health commands
//! over the v2 HTTP API, with its flags (`--endpoints/--peers`, `--ca-file --cert-file
//! --key-file`), variables (`ETCDCTL_PEERS`, `ETCDCTL_CA_FILE`, ...) and output.

mod auth;
mod backup;
mod http;
mod keys;
mod members;

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt;
use http::HttpClient;

/// etcdctl 2's exit codes.
pub mod exit {
    pub const BAD_CONNECTION: i32 = 2;
    pub const SERVER_ERROR: i32 = 4;
}

#[derive(Parser, Debug)]
#[command(
    name = "etcdctl",
    about = "A simple command line client for etcd (v2 API, Rampart's etcdctl).",
    disable_version_flag = true
)]
struct Cli {
    /// output cURL commands which can be used to reproduce the request
    #[arg(long, global = true)]
    debug: bool,
    /// don't synchronize cluster information before sending request
    #[arg(long, global = true)]
    no_sync: bool,
    /// output response in the given format (`simple`, `extended` or `json`)
    #[arg(short = 'o', long, global = true, default_value = "simple")]
    output: String,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'D', long, global = true)]
    discovery_srv: Option<String>,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true)]
    insecure_discovery: bool,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(short = 'C', long, global = true)]
    peers: Option<String>,
    /// DEPRECATED - "--endpoints" should be used instead
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// a comma-delimited list of machine addresses in the cluster (default: "http://127.0.0.1:2379,http://127.0.0.1:4001")
    #[arg(long, global = true)]
    endpoints: Option<String>,
    /// identify HTTPS client using this SSL certificate file
    #[arg(long, global = true)]
    cert_file: Option<String>,
    /// identify HTTPS client using this SSL key file
    #[arg(long, global = true)]
    key_file: Option<String>,
    /// verify certificates of HTTPS-enabled servers using this CA bundle
    #[arg(long, global = true)]
    ca_file: Option<String>,
    /// provide username[:password] and prompt if password is not supplied.
    #[arg(short = 'u', long, global = true)]
    username: Option<String>,
    /// connection timeout per request
    #[arg(long, global = true, default_value = "2s")]
    timeout: String,
    /// timeout for the command execution (except watch)
    #[arg(long, global = true, default_value = "5s")]
    total_timeout: String,
    /// print the version
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// check the health of the etcd cluster
    ClusterHealth {
        /// forever check the health every 10 second until CTRL+C
        #[arg(short, long)]
        forever: bool,
    },
    /// make a new key with a given value
    Mk(keys::MkArgs),
    /// make a new directory
    Mkdir(keys::DirArgs),
    /// remove a key or a directory
    Rm(keys::RmArgs),
    /// removes the key if it is an empty directory or a key-value pair
    Rmdir(keys::KeyArg),
    /// retrieve the value of a key
    Get(keys::GetArgs),
    /// retrieve a directory
    Ls(keys::LsArgs),
    /// set the value of a key
    Set(keys::SetArgs),
    /// create a new directory or update an existing directory TTL
    Setdir(keys::DirArgs),
    /// update an existing key with a given value
    Update(keys::UpdateArgs),
    /// update an existing directory
    Updatedir(keys::DirArgs),
    /// watch a key for changes
    Watch(keys::WatchArgs),
    /// watch a key for changes and exec an executable
    ExecWatch(keys::ExecWatchArgs),
    /// member add, remove and list subcommands
    #[command(subcommand)]
    Member(members::MemberCmd),
    /// user add, grant and revoke subcommands
    #[command(subcommand)]
    User(auth::UserCmd),
    /// role add, grant and revoke subcommands
    #[command(subcommand)]
    Role(auth::RoleCmd),
    /// overall auth controls
    #[command(subcommand)]
    Auth(auth::AuthCmd),
    /// backup an etcd directory
    Backup(backup::BackupArgs),
}

/// Go's flag package takes `-name` as well as `--name`; clap wants `--name` for long flags.
fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest_is_positional = false;
    for (i, a) in args.into_iter().enumerate() {
        let s = a.to_string_lossy().into_owned();
        if i > 0
            && !rest_is_positional
            && s.len() > 2
            && s.starts_with('-')
            && !s.starts_with("--")
            && s[1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
            && s[1..].split('=').next().is_some_and(|n| n.len() > 1)
        {
            out.push(OsString::from(format!("-{s}")));
            continue;
        }
        if s == "--" {
            rest_is_positional = true;
        }
        out.push(a);
    }
    out
}

/// Settings every command shares.
pub struct Ctx {
    pub client: HttpClient,
    pub output: String,
    pub total_timeout: Duration,
}

impl Ctx {
    /// etcdctl 2's `handleError`: "Error:  <error>" (or the error JSON with `-o json`).
    pub fn fail(&self, code: i32, err: V2Error) -> CtlError {
        match err {
            V2Error::Server(json) if self.output == "json" => {
                eprintln!("{json}");
            }
            V2Error::Server(json) => eprintln!("Error:  {}", keys::error_text(&json)),
            V2Error::Other(text) => eprintln!("Error:  {text}"),
        }
        CtlError::silent(code_of(code))
    }
}

/// A v2 failure: the server's error JSON, or anything else as text.
pub enum V2Error {
    Server(String),
    Other(String),
}

fn code_of(code: i32) -> ExitCode {
    match code {
        0 | 1 => ExitCode::Error,
        2 => ExitCode::BadConnection,
        3 => ExitCode::InvalidInput,
        4 => ExitCode::BadFeature,
        5 => ExitCode::Interrupted,
        _ => ExitCode::Error,
    }
}

fn env_or(flag: &Option<String>, var: &str) -> Option<String> {
    flag.clone()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var(var).ok().filter(|s| !s.is_empty()))
}

pub async fn run(args: Vec<OsString>) -> CtlResult {
    let cli = match Cli::try_parse_from(normalize(args)) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return Ok(());
            }
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            eprintln!("Incorrect Usage: {first}");
            return Err(CtlError::silent(ExitCode::Error));
        }
    };
    if cli.version {
        println!("etcdctl version: {}", crate::v3::ETCDCTL_VERSION);
        println!("API version: 2");
        return Ok(());
    }
    let Some(command) = cli.command else {
        println!("etcdctl: a simple command line client for etcd (v2 API); see `etcdctl --help`");
        return Ok(());
    };
    // Offline: works on a data dir, no endpoint involved.
    if let Command::Backup(a) = &command {
        return backup::run(a);
    }
    if env_or(&cli.discovery_srv, "ETCDCTL_DISCOVERY_SRV").is_some() {
        eprintln!("Error:  --discovery-srv (DNS SRV discovery) is not supported: list the members with --endpoints");
        return Err(CtlError::silent(ExitCode::Error));
    }
    let peers = env_or(&cli.endpoints, "ETCDCTL_ENDPOINTS")
        .or_else(|| env_or(&cli.endpoint, "ETCDCTL_ENDPOINT"))
        .or_else(|| env_or(&cli.peers, "ETCDCTL_PEERS"))
        .unwrap_or_else(|| "http://127.0.0.1:2379,http://127.0.0.1:4001".to_string());
    let endpoints: Vec<String> = peers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s.to_string()
            } else {
                format!("http://{s}")
            }
        })
        .collect();
    let ca = env_or(&cli.ca_file, "ETCDCTL_CA_FILE");
    let cert = env_or(&cli.cert_file, "ETCDCTL_CERT_FILE");
    let key = env_or(&cli.key_file, "ETCDCTL_KEY_FILE");
    let tls = endpoints
        .iter()
        .any(|e| e.starts_with("https://"))
        .then(|| rampart_tls::ClientTlsOptions {
            trusted_ca_file: ca.map(Into::into),
            cert_file: cert.map(Into::into),
            key_file: key.map(Into::into),
            server_name_override: None,
            insecure_skip_verify: false,
        });
    let user = match env_or(&cli.username, "ETCDCTL_USERNAME") {
        None => None,
        Some(u) => match u.split_once(':') {
            Some((n, p)) => Some((n.to_string(), p.to_string())),
            None => {
                use std::io::BufRead;
                eprint!("Password: ");
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                Some((u, line.trim_end_matches(['\n', '\r']).to_string()))
            }
        },
    };
    let dur = |s: &str| {
        gofmt::parse_duration(s).map_err(|e| {
            eprintln!("invalid value {s:?}: {e}");
            CtlError::silent(ExitCode::Error)
        })
    };
    let timeout = dur(&cli.timeout)?;
    let total_timeout = dur(&cli.total_timeout)?;
    let client = HttpClient::new(endpoints, tls, user, timeout).map_err(|e| {
        eprintln!("{e}");
        CtlError::silent(ExitCode::Error)
    })?;
    let ctx = Ctx {
        client,
        output: cli.output.clone(),
        total_timeout,
    };
    match &command {
        Command::ClusterHealth { forever } => members::cluster_health(&ctx, *forever).await,
        Command::Member(m) => members::member(&ctx, m).await,
        Command::User(c) => auth::user(&ctx, c).await,
        Command::Role(c) => auth::role(&ctx, c).await,
        Command::Auth(c) => auth::auth(&ctx, c).await,
        Command::Backup(_) => unreachable!("handled before connecting"),
        Command::Mk(a) => keys::mk(&ctx, a).await,
        Command::Mkdir(a) => keys::dir(&ctx, a, Some(false)).await,
        Command::Setdir(a) => keys::dir(&ctx, a, None).await,
        Command::Updatedir(a) => keys::dir(&ctx, a, Some(true)).await,
        Command::Rm(a) => keys::rm(&ctx, a).await,
        Command::Rmdir(a) => keys::rmdir(&ctx, a).await,
        Command::Get(a) => keys::get(&ctx, a).await,
        Command::Ls(a) => keys::ls(&ctx, a).await,
        Command::Set(a) => keys::set(&ctx, a).await,
        Command::Update(a) => keys::update(&ctx, a).await,
        Command::Watch(a) => keys::watch(&ctx, a).await,
        Command::ExecWatch(a) => keys::exec_watch(&ctx, a).await,
    }
}

//! The v3 commands (etcdctl 3.4's default API): the command tree and its dispatch.

mod auth;
mod check;
pub(crate) mod client;
mod concurrency;
mod endpoint;
pub(crate) mod global;
mod kv;
mod lease;
mod maintenance;

pub use maintenance::ETCDCTL_VERSION;
mod member;
mod migrate;
mod mirror;
mod txn;
mod watch;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::exit::{CtlError, CtlResult};
use crate::output::Printer;
use client::Client;
use global::GlobalFlags;

#[derive(Parser, Debug)]
#[command(
    name = "etcdctl",
    about = "A simple command line client for etcd3 (Rampart's etcdctl).",
    disable_version_flag = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gets the key or a range of keys
    Get(kv::GetArgs),
    /// Puts the given key into the store
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(txn::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(kv::CompactionArgs),
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Lease related commands
    #[command(subcommand)]
    Lease(lease::LeaseCmd),
    /// Membership related commands
    #[command(subcommand)]
    Member(member::MemberCmd),
    /// Endpoint related commands
    Endpoint {
        /// use all endpoints from the cluster member list
        #[arg(long, global = true)]
        cluster: bool,
        #[command(subcommand)]
        command: endpoint::EndpointCmd,
    },
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(maintenance::AlarmCmd),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag {
        /// use all endpoints from the cluster member list
        #[arg(long)]
        cluster: bool,
        /// Optional. If present, defragments a data directory not in use by etcd.
        #[arg(long)]
        data_dir: Option<String>,
    },
    /// Transfers leadership to another etcd cluster member.
    MoveLeader { args: Vec<String> },
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(maintenance::SnapshotCmd),
    /// Prints the version of etcdctl
    Version,
    /// User related commands
    #[command(subcommand)]
    User(auth::UserCmd),
    /// Role related commands
    #[command(subcommand)]
    Role(auth::RoleCmd),
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(auth::AuthCmd),
    /// Acquires a named lock
    Lock(concurrency::LockArgs),
    /// Observes and participates in leader election
    Elect(concurrency::ElectArgs),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(mirror::MirrorArgs),
    /// commands for checking properties of the etcd cluster
    #[command(subcommand)]
    Check(check::CheckCmd),
    /// Migrates keys in a v2 store to a mvcc store
    Migrate(migrate::MigrateArgs),
}

/// Parses the command line; as etcdctl (cobra's prefix matching), a unique prefix of a
/// command name selects it (`compact`, `mem list`).
fn parse(args: Vec<String>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    fn infer_all(c: clap::Command) -> clap::Command {
        c.infer_subcommands(true).mut_subcommands(infer_all)
    }
    let matches = infer_all(Cli::command()).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// Bool flags that take no value in clap but accept cobra's `--flag=true|false`.
const SWITCHES: &[&str] = &[
    "prefix",
    "from-key",
    "keys-only",
    "count-only",
    "print-value-only",
    "prev-kv",
    "ignore-value",
    "ignore-lease",
    "physical",
    "keys",
    "once",
    "learner",
    "cluster",
    "detail",
    "no-password",
    "skip-hash-check",
    "no-ttl",
];

/// Rewrites `--switch=true` to `--switch` and drops `--switch=false`, as cobra reads them.
pub fn normalize_switches(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut positional = false;
    for a in args {
        if !positional {
            if a == "--" {
                positional = true;
            } else if let Some((name, value)) = a.strip_prefix("--").and_then(|f| f.split_once('='))
            {
                if SWITCHES.contains(&name) {
                    match value {
                        "true" | "1" | "t" | "T" | "TRUE" | "True" => out.push(format!("--{name}")),
                        "false" | "0" | "f" | "F" | "FALSE" | "False" => {}
                        _ => out.push(a),
                    }
                    continue;
                }
            }
        }
        out.push(a);
    }
    out
}

pub async fn run(args: Vec<OsString>) -> CtlResult {
    let raw: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cli = match parse(normalize_switches(raw.clone())) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return Ok(());
            }
            return Err(CtlError::error(cobra_style(&e)));
        }
    };
    let printer = Printer {
        format: global::output_format(&cli.global)?,
        hex: cli.global.hex,
        value_only: false,
    };
    if let Command::Version = cli.command {
        return maintenance::version();
    }
    // The offline snapshot commands read and write files only.
    match &cli.command {
        Command::Snapshot(maintenance::SnapshotCmd::Status { args }) => {
            return crate::snapshot::status_cmd(&printer, args)
        }
        Command::Snapshot(maintenance::SnapshotCmd::Restore(a)) => {
            return crate::snapshot::restore(a)
        }
        Command::Migrate(a) => return migrate::run(a),
        _ => {}
    }
    let settings = cli.global.settings()?;
    match &cli.command {
        Command::Endpoint { cluster, command } => {
            return endpoint::run(&settings, &printer, *cluster, command).await
        }
        Command::Defrag { cluster, data_dir } => {
            return maintenance::defrag(&settings, *cluster, data_dir).await
        }
        Command::MoveLeader { args } => {
            return maintenance::move_leader(&settings, &printer, args).await
        }
        Command::Snapshot(cmd) => return maintenance::snapshot(&settings, cmd).await,
        Command::Check(cmd) => return check::run(&settings, cmd).await,
        _ => {}
    }
    let client = Client::connect(&settings).await?;
    match &cli.command {
        Command::Get(a) => kv::get(&client, &printer, a).await,
        Command::Put(a) => kv::put(&client, &printer, a).await,
        Command::Del(a) => kv::del(&client, &printer, a).await,
        Command::Txn(a) => txn::txn(&client, &printer, a).await,
        Command::Compaction(a) => kv::compaction(&client, a).await,
        Command::Watch(a) => watch::watch(&client, &printer, a, &raw).await,
        Command::Lease(c) => lease::run(&client, &printer, c).await,
        Command::Member(c) => member::run(&client, &printer, c).await,
        Command::Alarm(c) => maintenance::alarm(&client, &printer, c).await,
        Command::User(c) => auth::user(&client, &printer, c).await,
        Command::Role(c) => auth::role(&client, &printer, c).await,
        Command::Auth(c) => auth::auth(&client, c).await,
        Command::Lock(a) => concurrency::lock(&client, &printer, a).await,
        Command::Elect(a) => concurrency::elect(&client, &printer, a).await,
        Command::MakeMirror(a) => mirror::make_mirror(&client, &settings, a).await,
        Command::Endpoint { .. }
        | Command::Defrag { .. }
        | Command::MoveLeader { .. }
        | Command::Snapshot(_)
        | Command::Check(_)
        | Command::Migrate(_)
        | Command::Version => Ok(()),
    }
}

/// Parse errors in cobra's words, which scripts and tests match.
fn cobra_style(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let invalid = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    match e.kind() {
        ErrorKind::InvalidSubcommand => {
            if let Some(cmd) = invalid(ContextKind::InvalidSubcommand) {
                // cobra reports it with a usage hint, then etcdctl reports it again.
                let text = format!("unknown command {cmd:?} for \"etcdctl\"");
                eprintln!("Error: {text}\nRun 'etcdctl --help' for usage.");
                return text;
            }
        }
        ErrorKind::UnknownArgument => {
            if let Some(arg) = invalid(ContextKind::InvalidArg) {
                let flag = arg.split('=').next().unwrap_or(&arg).to_string();
                return if flag.starts_with("--") {
                    format!("unknown flag: {flag}")
                } else {
                    format!(
                        "unknown shorthand flag: {:?} in {flag}",
                        flag.trim_start_matches('-').chars().next().unwrap_or('?')
                    )
                };
            }
        }
        _ => {}
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("bad arguments");
    first.trim_start_matches("error: ").to_string()
}

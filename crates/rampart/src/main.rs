//! The `rampart` binary: parses the command line and calls into the library crates.
//!
//! It is a multi-call binary: invoked through a link named `cfssl`, `cfssljson`, `etcd-ca`,
//! `etcd` or `etcdctl` it behaves as that tool, so the tutorials' command lines run unchanged.
//! etcdctl's commands also work as `rampart <command>` (`rampart get foo`, `rampart member list`).

mod commands;
mod logging;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "A secure, etcd-compatible, Raft-replicated key-value store",
    after_help = "Client commands (etcdctl 3.4's, also through a link named etcdctl):\n  rampart get|put|del|txn|compaction|watch|lease|member|endpoint|alarm|defrag|move-leader|\n          snapshot|user|role|auth|lock|elect|make-mirror|check|version   (`rampart get --help`)\n  rampart bench put|range|txn-put|watch|lease-keepalive   (load generator, `rampart bench --help`)\n  ETCDCTL_API=2 rampart set|get|ls|mk|mkdir|rm|rmdir|update|watch|member|cluster-health ..."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The built-in certificate authority (replaces cfssl and etcd-ca).
    Pki(commands::pki::PkiArgs),
    /// Run a member; takes etcd 3.4's flags and ETCD_* variables (`rampart server --help`).
    #[command(disable_help_flag = true)]
    Server {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Start a secure local 3-member cluster with its own CA (Ctrl-C stops it).
    Up(commands::up::UpArgs),
    /// Proxy clients to a cluster: clients know one address and one certificate.
    Proxy(commands::proxy::ProxyArgs),
}

/// Rampart's own subcommands; every other first word is an etcdctl command or flag.
const OWN_COMMANDS: &[&str] = &[
    "pki",
    "server",
    "up",
    "proxy",
    "help",
    "--help",
    "-h",
    "--version",
    "-V",
];

fn is_client_command(args: &[OsString]) -> bool {
    match args.get(1) {
        Some(first) => !OWN_COMMANDS.contains(&first.to_string_lossy().as_ref()),
        None => false,
    }
}

fn exit_code(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

/// The tool this process was invoked as, from the file name of argv[0].
fn invoked_as(argv0: &OsString) -> String {
    Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// mimalloc instead of glibc's malloc: allocation and free were ~17% of a member's CPU under a
/// put load (perf), most of it in glibc's arena bookkeeping.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let tool = args.first().map(invoked_as).unwrap_or_default();
    match tool.as_str() {
        "cfssl" => return commands::cfssl::run_cfssl(args),
        "cfssljson" => return commands::cfssl::run_cfssljson(args),
        "etcd-ca" => return commands::etcd_ca::run(args),
        "etcd" => return commands::server::run(args.into_iter().skip(1).collect()),
        "etcdctl" => return exit_code(rampart_ctl::run(args)),
        _ => {}
    }
    if args.get(1).is_some_and(|a| a == "bench") {
        let rest: Vec<OsString> = std::iter::once(OsString::from("rampart bench"))
            .chain(args.into_iter().skip(2))
            .collect();
        return exit_code(rampart_ctl::run_bench(rest));
    }
    if is_client_command(&args) {
        return exit_code(rampart_ctl::run(args));
    }
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Pki(pki) => commands::pki::run(pki),
        Command::Server { args } => commands::server::run(args),
        Command::Up(up) => commands::up::run(up),
        Command::Proxy(p) => commands::proxy::run_grpc_proxy(p),
    }
}

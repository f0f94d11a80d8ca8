//! The `rampart` binary: parses the command line and calls into the library crates.
//!
//! It is a multi-call binary: invoked through a link named `cfssl`, `cfssljson`, `etcd-ca` or
//! `etcd` it behaves as that tool, so the tutorials' command lines run unchanged.

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
    about = "A secure, etcd-compatible, Raft-replicated key-value store"
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

/// The tool this process was invoked as, from the file name of argv[0].
fn invoked_as(argv0: &OsString) -> String {
    Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let tool = args.first().map(invoked_as).unwrap_or_default();
    match tool.as_str() {
        "cfssl" => return commands::cfssl::run_cfssl(args),
        "cfssljson" => return commands::cfssl::run_cfssljson(args),
        "etcd-ca" => return commands::etcd_ca::run(args),
        "etcd" => return commands::server::run(args.into_iter().skip(1).collect()),
        _ => {}
    }
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Pki(pki) => commands::pki::run(pki),
        Command::Server { args } => commands::server::run(args),
        Command::Up(up) => commands::up::run(up),
        Command::Proxy(p) => commands::proxy::run_grpc_proxy(p),
    }
}

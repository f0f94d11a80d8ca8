//! Rampart's client commands, compatible with etcdctl 3.4: the same command names, flags,
//! `ETCDCTL_*` variables, output formats and exit codes, so scripts written for etcdctl run
//! unchanged against Rampart (or etcd) through a link named `etcdctl` or as `rampart <command>`.
//!
//! Owns: argument parsing, talking to the cluster (v3 gRPC, v2 HTTP) and printing.
//! Does not own: TLS plumbing (`rampart-tls`) or message definitions (`rampart-proto`).
//!
//! `ETCDCTL_API=2` selects the v2 commands (`v2`), anything else the v3 ones (`v3`).

mod bench;
mod exit;
mod gofmt;
mod output;
mod snapshot;
mod v2;
mod v3;

use std::ffi::OsString;

pub use exit::{CtlError, ExitCode};

/// Runs `rampart bench ...` (`args[0]` is the program name) and returns the exit status.
pub fn run_bench(args: Vec<OsString>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::Error as i32;
        }
    };
    let result = runtime.block_on(bench::run(args));
    runtime.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}

/// Runs one etcdctl command line (`args[0]` is the program name) and returns the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let api = std::env::var("ETCDCTL_API").unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::Error as i32;
        }
    };
    let result = if api.trim() == "2" {
        runtime.block_on(v2::run(args))
    } else {
        runtime.block_on(v3::run(args))
    };
    // Watches and keep-alives may still have tasks running; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}

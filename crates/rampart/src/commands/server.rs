//! `rampart server` (and the binary invoked as `etcd`): etcd's flags in, a running member out.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

/// Runs a member with etcd-style arguments (without argv[0]) until SIGINT/SIGTERM; etcd's
/// `grpc-proxy start` and `gateway start` subcommands run the proxy and the gateway.
pub fn run(args: Vec<OsString>) -> ExitCode {
    match args.first().and_then(|a| a.to_str()) {
        Some("grpc-proxy") => {
            let rest = args.iter().skip(2).cloned();
            let argv = std::iter::once(OsString::from("etcd grpc-proxy start")).chain(rest);
            return match crate::commands::proxy::ProxyArgs::try_parse_from(argv) {
                Ok(a) => crate::commands::proxy::run_etcd_grpc_proxy(a),
                Err(e) => {
                    let _ = e.print();
                    ExitCode::from(2)
                }
            };
        }
        Some("gateway") => return crate::commands::proxy::run_gateway(args[1..].to_vec()),
        _ => {}
    }
    let env = |name: &str| std::env::var(name).ok();
    let parsed = match rampart_config::parse(&args, &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if parsed.show_help {
        print!("{}", rampart_config::help_text());
        return ExitCode::SUCCESS;
    }
    if parsed.show_version {
        print!("{}", rampart_config::version_text());
        return ExitCode::SUCCESS;
    }
    crate::logging::init(&parsed.config.log_level, &parsed.config.log_outputs);
    for warning in &parsed.warnings {
        tracing::warn!("{warning}");
    }
    if matches!(parsed.config.proxy.as_str(), "on" | "readonly") {
        return crate::commands::proxy::run_from_server_config(&parsed.config);
    }
    let settings = match rampart_server::settings::from_config(&parsed.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match crate::commands::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let running = match rampart_server::run(settings).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        wait_for_signal().await;
        tracing::info!("received a stop signal; stopping the member");
        running.shutdown();
        ExitCode::SUCCESS
    })
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

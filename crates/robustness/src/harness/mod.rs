//! The cluster harness: N real `rampart server` processes with mutual TLS, each in its own
//! network namespace when the machine allows it ([`network`]), member-to-member traffic through
//! fault-injecting TCP relays ([`relay`]), and the nemeses that break things for a bounded time
//! and undo it ([`nemesis`]).

pub mod cluster;
pub mod nemesis;
pub mod network;
pub mod pki;
pub mod relay;

use std::path::PathBuf;

/// What can go wrong while setting up or driving a cluster.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("the rampart binary {0} does not exist: build it with `cargo build -p rampart` or pass its path (RAMPART_BIN / --rampart)")]
    MissingBinary(PathBuf),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("client TLS: {0}")]
    Tls(#[from] rampart_tls::TlsError),
    #[error("the cluster did not become healthy within {seconds}s; member logs are in {logs}")]
    Unhealthy { seconds: u64, logs: String },
}

/// Runs a command to completion, failing with its stderr.
pub(crate) fn run_command(program: &str, args: &[&str]) -> Result<String, HarnessError> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|source| HarnessError::Spawn {
            what: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `rampart` binary to run: `RAMPART_BIN` if set, else the one cargo built next to this
/// executable (`target/<profile>/rampart`, also from a test binary in `target/<profile>/deps`).
pub fn default_rampart_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RAMPART_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let beside = dir.join("rampart");
    if beside.exists() || !dir.ends_with("deps") {
        return beside;
    }
    dir.parent().map(|p| p.join("rampart")).unwrap_or(beside)
}

//! One module per subcommand family; each parses its own flags and calls a library crate.

pub mod cfssl;
pub mod etcd_ca;
pub mod pki;
pub mod proxy;
pub mod server;
pub mod up;

/// The Tokio runtime a long-running command (server, proxy, gateway) runs on; the error is the
/// exit code after telling the user.
pub fn runtime() -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        })
}

//! Log setup for long-running commands: etcd's `--log-level` and `--log-outputs` mapped onto
//! `tracing`. `RUST_LOG` overrides the level for debugging.

use tracing_subscriber::EnvFilter;

pub fn init(level: &str, outputs: &[String]) {
    let level = match level {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "panic" | "fatal" => "error",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{level},h2=warn,hyper=warn,tower=warn,rustls=warn"))
    });
    let to_stdout = outputs.iter().any(|o| o == "stdout");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    if to_stdout {
        let _ = builder.with_writer(std::io::stdout).try_init();
    } else {
        // etcd's default output is stderr.
        let _ = builder.with_writer(std::io::stderr).try_init();
    }
}

//! etcdctl 3.4's global flags (given anywhere on the line, or as `ETCDCTL_*` variables).

use std::time::Duration;

use clap::{ArgAction, Args};

use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt;

#[derive(Args, Debug, Clone)]
pub struct GlobalFlags {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// enable client-side debug logging
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub debug: bool,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple"
    )]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub hex: bool,
    /// dial timeout for client connections
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_DIAL_TIMEOUT",
        default_value = "2s"
    )]
    pub dial_timeout: String,
    /// timeout for short running command (excluding dial timeout)
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_COMMAND_TIMEOUT",
        default_value = "5s"
    )]
    pub command_timeout: String,
    /// keepalive time for client connections
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_KEEPALIVE_TIME",
        default_value = "2s"
    )]
    pub keepalive_time: String,
    /// keepalive timeout for client connections
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_KEEPALIVE_TIMEOUT",
        default_value = "6s"
    )]
    pub keepalive_timeout: String,
    /// disable transport security for client connections
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub insecure_transport: bool,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub insecure_discovery: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub insecure_skip_tls_verify: bool,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true, env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long, global = true, env = "ETCDCTL_DISCOVERY_SRV_NAME")]
    pub discovery_srv_name: Option<String>,
}

/// The connection settings a command needs, checked.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub endpoints: Vec<String>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    pub tls: Option<rampart_tls::ClientTlsOptions>,
    /// TLS for endpoints without a scheme.
    pub tls_by_default: bool,
    pub auth: Option<(String, String)>,
}

fn non_empty(flag: &str, v: &Option<String>) -> CtlResult<Option<String>> {
    match v {
        Some(s) if s.is_empty() => Err(CtlError::bad_args(format!(
            "empty string is passed to --{flag} option"
        ))),
        other => Ok(other.clone()),
    }
}

impl GlobalFlags {
    pub fn settings(&self) -> CtlResult<ConnSettings> {
        if self.discovery_srv.is_some() {
            return Err(CtlError::bad_args(
                "--discovery-srv (DNS SRV discovery) is not supported: list the members with --endpoints",
            ));
        }
        let dur = |v: &str| gofmt::parse_duration(v).map_err(|e| CtlError::error(e));
        let cert = non_empty("cert", &self.cert)?;
        let key = non_empty("key", &self.key)?;
        let cacert = non_empty("cacert", &self.cacert)?;
        let any_tls = cert.is_some() || key.is_some() || cacert.is_some();
        let tls = rampart_tls::ClientTlsOptions {
            trusted_ca_file: cacert.map(Into::into),
            cert_file: cert.map(Into::into),
            key_file: key.map(Into::into),
            server_name_override: None,
            insecure_skip_verify: self.insecure_skip_tls_verify,
        };
        let auth = match &self.user {
            None => None,
            Some(u) if u.is_empty() => None,
            Some(u) => match &self.password {
                Some(p) if !p.is_empty() => Some((u.clone(), p.clone())),
                _ => match u.split_once(':') {
                    Some((name, pw)) => Some((name.to_string(), pw.to_string())),
                    None => Some((u.clone(), read_password()?)),
                },
            },
        };
        Ok(ConnSettings {
            endpoints: self
                .endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            // 0 means no dial limit in clientv3; the command's own timeout still applies.
            dial_timeout: match dur(&self.dial_timeout)? {
                d if d.is_zero() => Duration::from_secs(30),
                d => d,
            },
            command_timeout: dur(&self.command_timeout)?,
            tls: Some(tls),
            tls_by_default: any_tls || !self.insecure_transport,
            auth,
        })
    }
}

/// etcdctl asks for the password on the terminal when `--user` has none.
fn read_password() -> CtlResult<String> {
    use std::io::{BufRead, Write};
    eprint!("Password: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CtlError::error(e.to_string()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Parses `--write-out`.
pub fn output_format(flags: &GlobalFlags) -> CtlResult<crate::output::Format> {
    crate::output::Format::parse(&flags.write_out)
        .ok_or_else(|| CtlError::new(ExitCode::BadFeature, "unsupported output format"))
}

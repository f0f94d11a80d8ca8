//! Go `flag`-style parsing of etcd's command line, `ETCD_*` variables and the YAML file.

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::flags::{closest, lookup, Kind, FLAGS};
use crate::server_config::ServerConfig;
use crate::ConfigError;

/// The outcome of parsing: a validated configuration, warnings to log, and whether only help
/// or the version was asked for.
#[derive(Debug)]
pub struct Parsed {
    pub config: ServerConfig,
    pub warnings: Vec<String>,
    pub show_version: bool,
    pub show_help: bool,
}

/// Explicitly given settings, by flag name.
pub(crate) type Values = BTreeMap<String, String>;

pub fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigError> {
    let mut values = Values::new();
    let mut show_version = false;
    let mut show_help = false;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(extra) = args.get(i) {
                return Err(ConfigError::Invalid(format!(
                    "'{extra}' is not a valid flag"
                )));
            }
            break;
        }
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(ConfigError::Invalid(format!("'{arg}' is not a valid flag")));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        match name {
            "version" => {
                show_version = true;
                continue;
            }
            "h" | "help" => {
                show_help = true;
                continue;
            }
            _ => {}
        }
        let Some(flag) = lookup(name) else {
            let hint = closest(name)
                .map(|c| format!(" (did you mean --{c}?)"))
                .unwrap_or_else(|| " (see `rampart server --help`)".to_string());
            return Err(ConfigError::UnknownFlag {
                name: name.to_string(),
                hint,
            });
        };
        let value = match (flag.kind, inline) {
            (Kind::Bool, Some(v)) => normalize_bool(name, &v)?,
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Text, Some(v)) => v,
            (Kind::Text, None) => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => return Err(ConfigError::MissingValue(name.to_string())),
            },
        };
        values.insert(name.to_string(), value);
    }

    let mut warnings = Vec::new();
    if let Some(file) = values.get("config-file").cloned() {
        // etcd 3.4: a config file replaces the command line and the environment.
        let from_file = crate::server_config::read_config_file(&file)?;
        if values.len() > 1 {
            warnings.push(format!(
                "--config-file {file} is given: other flags on the command line are ignored (as etcd does)"
            ));
        }
        values = from_file;
    } else {
        apply_env(&mut values, env, &mut warnings)?;
    }
    for (name, _) in values.iter() {
        if let Some(flag) = lookup(name) {
            if !flag.honoured {
                warnings.push(format!(
                    "flag --{name} is accepted for compatibility but has no effect in Rampart yet"
                ));
            }
        }
    }
    let config = ServerConfig::from_values(&values, &mut warnings)?;
    Ok(Parsed {
        config,
        warnings,
        show_version,
        show_help,
    })
}

fn normalize_bool(name: &str, v: &str) -> Result<String, ConfigError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok("true".into()),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok("false".into()),
        _ => Err(ConfigError::BadValue {
            name: name.to_string(),
            value: v.to_string(),
            reason: "parse error (want true or false)".into(),
        }),
    }
}

fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

/// `ETCD_*` variables fill flags not given on the command line; a variable that a flag shadows
/// is an error, as in etcd 3.4.
fn apply_env(
    values: &mut Values,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for flag in FLAGS {
        let var = env_name(flag.name);
        let Some(v) = env(&var) else { continue };
        if values.contains_key(flag.name) {
            return Err(ConfigError::Invalid(format!(
                "conflicting environment variable {var:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
            )));
        }
        let v = if flag.kind == Kind::Bool {
            normalize_bool(flag.name, &v)?
        } else {
            v
        };
        warnings.push(format!(
            "recognized and used environment variable {var}={}",
            redact(flag.name, &v)
        ));
        values.insert(flag.name.to_string(), v);
    }
    for (var, value) in std::env::vars() {
        if let Some(rest) = var.strip_prefix("ETCD_") {
            let name = rest.to_lowercase().replace('_', "-");
            // ETCDCTL_* are the client's; ETCD_UNSUPPORTED_ARCH is etcd's own switch.
            if lookup(&name).is_none() && rest != "UNSUPPORTED_ARCH" && env(&var).is_some() {
                warnings.push(format!("unrecognized environment variable {var}={value}"));
            }
        }
    }
    Ok(())
}

/// Never log secrets (none of etcd's flags carries one today except auth settings).
fn redact<'a>(name: &str, v: &'a str) -> &'a str {
    if name.contains("password") || name.contains("token") && name != "initial-cluster-token" {
        "<redacted>"
    } else {
        v
    }
}

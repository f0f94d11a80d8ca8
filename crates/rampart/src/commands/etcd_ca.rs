//! The etcd-ca command line of seed 001, on top of `rampart-pki`: `init`, `new-cert --ip
//! --domain NAME`, `sign NAME`, `export --insecure NAME` (a tar of NAME.crt and
//! NAME.key.insecure on stdout), `chain NAME`. The depot is `.etcd-ca` (`--depot-path`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use rampart_pki::ca::CaRequest;
use rampart_pki::{files, issue, Ca, IssueRequest, KeyType, PkiError, Profile};
use serde::{Deserialize, Serialize};

/// What `new-cert` records for `sign` to issue.
#[derive(Serialize, Deserialize)]
struct PendingCert {
    name: String,
    hosts: Vec<String>,
}

struct Parsed {
    depot: PathBuf,
    passphrase: Option<String>,
    insecure: bool,
    ips: Vec<String>,
    domains: Vec<String>,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Parsed, PkiError> {
    let mut p = Parsed {
        depot: PathBuf::from(".etcd-ca"),
        passphrase: None,
        insecure: false,
        ips: vec![],
        domains: vec![],
        positional: vec![],
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let (name, inline) = match a.trim_start_matches('-').split_once('=') {
            Some((n, v)) if a.starts_with('-') => (n.to_string(), Some(v.to_string())),
            _ => (a.trim_start_matches('-').to_string(), None),
        };
        if !a.starts_with('-') {
            p.positional.push(a.clone());
            continue;
        }
        let mut value = || -> Result<String, PkiError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| PkiError::Invalid(format!("etcd-ca: -{name} needs a value")))?;
            i += 1;
            Ok(v)
        };
        match name.as_str() {
            "depot-path" => p.depot = PathBuf::from(value()?),
            "passphrase" => p.passphrase = Some(value()?),
            "insecure" => p.insecure = true,
            "ip" => p.ips.extend(value()?.split(',').map(str::to_string)),
            "domain" => p.domains.extend(value()?.split(',').map(str::to_string)),
            "organization" | "country" | "key-bits" | "years" | "organizational-unit" => {
                let _ = value()?;
            }
            other => return Err(PkiError::Invalid(format!("etcd-ca: unknown flag -{other}"))),
        }
    }
    Ok(p)
}

fn passphrase(p: &Parsed) -> Option<&str> {
    p.passphrase.as_deref().filter(|s| !s.is_empty())
}

fn name_arg(p: &Parsed, cmd: &str) -> Result<String, PkiError> {
    p.positional
        .first()
        .cloned()
        .ok_or_else(|| PkiError::Invalid(format!("usage: etcd-ca {cmd} NAME")))
}

fn execute(args: &[String]) -> Result<(), PkiError> {
    let Some(cmd) = args.first() else {
        return Err(PkiError::Invalid(
            "usage: etcd-ca init|new-cert|sign|export|chain ...".into(),
        ));
    };
    let p = parse(&args[1..])?;
    let pending_path = |name: &str| p.depot.join(format!("{name}.pending.json"));
    match cmd.as_str() {
        "init" => {
            Ca::init(
                &p.depot,
                &CaRequest {
                    cn: "CA".into(),
                    ..Default::default()
                },
                passphrase(&p),
                false,
            )?;
            eprintln!("Created ca/key and ca/crt in {}", p.depot.display());
        }
        "new-cert" => {
            let name = name_arg(&p, "new-cert")?;
            let mut hosts = p.ips.clone();
            hosts.extend(p.domains.iter().cloned());
            let pending = PendingCert {
                name: name.clone(),
                hosts,
            };
            files::write_public(
                &pending_path(&name),
                &serde_json::to_string(&pending).expect("serialise"),
            )?;
            eprintln!("Created {name}/key and {name}/csr");
        }
        "sign" => {
            let name = name_arg(&p, "sign")?;
            let text = files::read_text(&pending_path(&name)).map_err(|_| {
                PkiError::Invalid(format!(
                    "etcd-ca: no request for {name}: run `etcd-ca new-cert {name}` first"
                ))
            })?;
            let pending: PendingCert =
                serde_json::from_str(&text).map_err(|e| PkiError::Invalid(e.to_string()))?;
            let ca = Ca::load(&p.depot, passphrase(&p))?;
            // etcd-ca's certificates serve both ends of a connection.
            let profile = Profile::builtin("peer").expect("built-in profile");
            let issued = issue(
                &ca,
                &IssueRequest {
                    cn: pending.name.clone(),
                    hosts: pending.hosts,
                    key_type: KeyType::Rsa2048,
                    profile,
                    expiry: None,
                    csr: None,
                },
            )?;
            files::write_private(&p.depot.join(format!("{name}.key")), &issued.key_pem)?;
            files::write_public(&p.depot.join(format!("{name}.crt")), &issued.cert_pem)?;
            eprintln!("Created {name}/crt from {name}/csr signed by ca.key");
        }
        "export" => {
            let name = name_arg(&p, "export")?;
            if !p.insecure {
                return Err(PkiError::Invalid(
                    "etcd-ca export: pass --insecure to export the unencrypted key".into(),
                ));
            }
            let cert = files::read_text(&p.depot.join(format!("{name}.crt")))?;
            let key = files::read_text(&p.depot.join(format!("{name}.key")))?;
            let mut out = tar::Builder::new(std::io::stdout().lock());
            for (file, body, mode) in [
                (format!("{name}.crt"), cert, 0o644),
                (format!("{name}.key.insecure"), key, 0o600),
            ] {
                let mut header = tar::Header::new_gnu();
                header.set_size(body.len() as u64);
                header.set_mode(mode);
                header.set_mtime(time::OffsetDateTime::now_utc().unix_timestamp() as u64);
                header.set_cksum();
                out.append_data(&mut header, &file, body.as_bytes())
                    .map_err(|e| PkiError::Invalid(format!("etcd-ca export: {e}")))?;
            }
            out.finish()
                .map_err(|e| PkiError::Invalid(format!("etcd-ca export: {e}")))?;
        }
        "chain" => {
            let _name = name_arg(&p, "chain")?;
            print!(
                "{}",
                files::read_text(&p.depot.join(rampart_pki::ca::CA_CERT))?
            );
        }
        other => {
            return Err(PkiError::Invalid(format!(
                "etcd-ca: unknown command {other:?} (init, new-cert, sign, export, chain)"
            )))
        }
    }
    Ok(())
}

/// `etcd-ca ...` (args include argv[0]).
pub fn run(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match execute(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etcd-ca: {e}");
            ExitCode::FAILURE
        }
    }
}

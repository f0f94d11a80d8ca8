//! `rampart pki ...`: the built-in CA's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rampart_pki::ca::{CaRequest, DEFAULT_CA_EXPIRY_HOURS};
use rampart_pki::verify::{diagnose, Role, VerifyInput};
use rampart_pki::{
    files, inspect, issue, parse_expiry, Ca, CaConfig, CsrJson, IssueRequest, KeyType, PkiError,
};

#[derive(Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the CA (ca.pem, ca-key.pem).
    Init {
        #[arg(long, default_value = "./tls")]
        dir: PathBuf,
        #[arg(long, default_value = "rampart-ca")]
        cn: String,
        #[arg(long, default_value = "ecdsa-p256")]
        key: String,
        #[arg(long, default_value = "87600h")]
        expiry: String,
        /// A cfssl CSR JSON for the CA's subject (CN, names, key).
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Encrypt the CA key with the passphrase in this file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue NAME.pem, NAME-key.pem and NAME.csr signed by the CA.
    Issue {
        name: String,
        #[arg(long, default_value = "./tls")]
        dir: PathBuf,
        /// server, client, peer, or a profile of --config.
        #[arg(long)]
        profile: String,
        /// Comma-separated DNS names and IP addresses.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        #[arg(long)]
        cn: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        expiry: Option<String>,
        /// A cfssl ca-config.json with more profiles.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A cfssl CSR JSON (CN, hosts, key, names).
        #[arg(long)]
        csr: Option<PathBuf>,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Describe certificates.
    Inspect {
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the certificate would be accepted for the use; otherwise say why.
    Verify {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        role: Option<String>,
        /// A CRL to check (default: crl.pem next to the CA, if present).
        #[arg(long)]
        crl: Option<PathBuf>,
    },
    /// Revoke NAME.pem: adds it to the CA's crl.pem.
    Revoke {
        name: String,
        #[arg(long, default_value = "./tls")]
        dir: PathBuf,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Create cfssl, cfssljson, etcd-ca, etcd and etcdctl links to this binary in DIR.
    Links { dir: PathBuf },
}

pub fn run(args: PkiArgs) -> ExitCode {
    match execute(args.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart pki: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn read_passphrase(file: Option<&Path>) -> Result<Option<String>, PkiError> {
    match file {
        None => Ok(None),
        Some(f) => {
            let text = files::read_text(f)?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
        }
    }
}

fn execute(command: PkiCommand) -> Result<ExitCode, PkiError> {
    match command {
        PkiCommand::Init {
            dir,
            cn,
            key,
            expiry,
            csr,
            passphrase_file,
            force,
        } => {
            let csr = csr.map(|p| CsrJson::load(&p)).transpose()?;
            let key_type = match csr.as_ref().and_then(|c| c.key.as_ref()) {
                Some(k) => KeyType::from_cfssl(&k.algo, k.size)?,
                None => KeyType::parse(&key)?,
            };
            let pass = read_passphrase(passphrase_file.as_deref())?;
            let expiry = if expiry.is_empty() {
                time::Duration::hours(DEFAULT_CA_EXPIRY_HOURS)
            } else {
                parse_expiry(&expiry)?
            };
            Ca::init(
                &dir,
                &CaRequest {
                    cn,
                    key_type,
                    expiry,
                    csr,
                },
                pass.as_deref(),
                force,
            )?;
            println!(
                "created CA {}/ca.pem and {}/ca-key.pem",
                dir.display(),
                dir.display()
            );
        }
        PkiCommand::Issue {
            name,
            dir,
            profile,
            hosts,
            cn,
            key,
            expiry,
            config,
            csr,
            passphrase_file,
        } => {
            let pass = read_passphrase(passphrase_file.as_deref())?;
            let config = match config {
                Some(c) => CaConfig::load(&c)?,
                None => CaConfig::default(),
            };
            let profile = config.profile(&profile)?;
            let csr = csr.map(|p| CsrJson::load(&p)).transpose()?;
            let ca = Ca::load(&dir, pass.as_deref())?;
            let key_type = match (&key, csr.as_ref().and_then(|c| c.key.as_ref())) {
                (Some(k), _) => KeyType::parse(k)?,
                (None, Some(k)) => KeyType::from_cfssl(&k.algo, k.size)?,
                (None, None) => KeyType::EcdsaP256,
            };
            let mut all_hosts = csr.as_ref().map(|c| c.hosts.clone()).unwrap_or_default();
            all_hosts.extend(hosts);
            let cn = cn
                .or_else(|| csr.as_ref().map(|c| c.cn.clone()).filter(|c| !c.is_empty()))
                .unwrap_or_else(|| name.clone());
            let expiry = expiry.map(|e| parse_expiry(&e)).transpose()?;
            let issued = issue(
                &ca,
                &IssueRequest {
                    cn,
                    hosts: all_hosts,
                    key_type,
                    profile,
                    expiry,
                    csr,
                },
            )?;
            rampart_pki::issue::write_issued(&dir, &name, &issued)?;
            println!(
                "issued {0}/{1}.pem, {0}/{1}-key.pem, {0}/{1}.csr",
                dir.display(),
                name
            );
        }
        PkiCommand::Inspect { files: paths, json } => {
            let mut infos = Vec::new();
            for p in &paths {
                let origin = p.display().to_string();
                for der in inspect::pem_certificates(&files::read_text(p)?, &origin)? {
                    infos.push(inspect::describe(&der, &origin)?);
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&infos).expect("serialise")
                );
            } else {
                for (i, info) in infos.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print!("{}", info.to_text());
                }
            }
        }
        PkiCommand::Verify {
            ca,
            cert,
            key,
            host,
            role,
            crl,
        } => {
            let ca_pem = files::read_text(&ca)?;
            let cert_pem = files::read_text(&cert)?;
            let key_pem = key.as_deref().map(files::read_text).transpose()?;
            let crl_path = crl.or_else(|| {
                let p = ca
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(rampart_pki::crl::CRL_FILE);
                p.exists().then_some(p)
            });
            let crl_pem = crl_path.as_deref().map(files::read_text).transpose()?;
            let role = role.as_deref().map(Role::parse).transpose()?;
            let problems = diagnose(&VerifyInput {
                ca_pem: &ca_pem,
                ca_origin: &ca.display().to_string(),
                cert_pem: &cert_pem,
                cert_origin: &cert.display().to_string(),
                key_pem: key_pem.as_deref(),
                host: host.as_deref(),
                role,
                crl_pem: crl_pem.as_deref(),
                now: time::OffsetDateTime::now_utc().unix_timestamp(),
            })?;
            if problems.is_empty() {
                println!("{}: OK", cert.display());
            } else {
                for p in &problems {
                    eprintln!("{}: {p}", cert.display());
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        PkiCommand::Revoke {
            name,
            dir,
            passphrase_file,
        } => {
            let pass = read_passphrase(passphrase_file.as_deref())?;
            let ca = Ca::load(&dir, pass.as_deref())?;
            let serial = rampart_pki::crl::revoke(&ca, &dir, &name)?;
            println!(
                "revoked {name} (serial {serial}); {}/crl.pem updated",
                dir.display()
            );
        }
        PkiCommand::Links { dir } => {
            let exe = std::env::current_exe().map_err(|e| PkiError::Invalid(e.to_string()))?;
            std::fs::create_dir_all(&dir).map_err(|e| PkiError::File {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            for name in ["cfssl", "cfssljson", "etcd-ca", "etcd", "etcdctl"] {
                let link = dir.join(name);
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&exe, &link).map_err(|e| PkiError::File {
                    path: link.display().to_string(),
                    reason: e.to_string(),
                })?;
                println!("{} -> {}", link.display(), exe.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

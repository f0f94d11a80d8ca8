//! The cfssl and cfssljson command lines the tutorials use, on top of `rampart-pki`:
//! `cfssl gencert -initca CSR.json`, `cfssl gencert -ca=.. -ca-key=.. -config=.. -profile=..
//! [-hostname=a,b] CSR.json` (JSON `{cert,key,csr}` on stdout), and `cfssljson -bare NAME`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_pki::ca::{CaRequest, DEFAULT_CA_EXPIRY_HOURS};
use rampart_pki::{files, issue, Ca, CaConfig, CsrJson, IssueRequest, KeyType, PkiError, Profile};

/// Go `flag` style: `-name=value`, `-name value`, `--name=value`; returns (flags, positionals).
fn go_flags(args: &[String], bools: &[&str]) -> (HashMap<String, String>, Vec<String>) {
    let mut flags = HashMap::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "-" || !a.starts_with('-') {
            rest.push(a.clone());
            continue;
        }
        let stripped = a.trim_start_matches('-');
        if let Some((k, v)) = stripped.split_once('=') {
            flags.insert(k.to_string(), v.to_string());
        } else if bools.contains(&stripped) {
            flags.insert(stripped.to_string(), "true".to_string());
        } else if let Some(v) = args.get(i) {
            flags.insert(stripped.to_string(), v.clone());
            i += 1;
        } else {
            flags.insert(stripped.to_string(), String::new());
        }
    }
    (flags, rest)
}

fn read_csr(arg: &str) -> Result<CsrJson, PkiError> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| PkiError::Invalid(format!("cannot read the CSR from stdin: {e}")))?;
        CsrJson::parse(&text, "stdin")
    } else {
        CsrJson::load(Path::new(arg))
    }
}

fn key_type(csr: &CsrJson) -> Result<KeyType, PkiError> {
    match &csr.key {
        Some(k) => KeyType::from_cfssl(if k.algo.is_empty() { "ecdsa" } else { &k.algo }, k.size),
        None => Ok(KeyType::EcdsaP256),
    }
}

fn gencert(args: &[String]) -> Result<String, PkiError> {
    let (flags, rest) = go_flags(args, &["initca"]);
    let csr_arg = rest
        .first()
        .ok_or_else(|| PkiError::Invalid("usage: cfssl gencert [-initca | -ca=ca.pem -ca-key=ca-key.pem -config=ca-config.json -profile=P] CSR.json".into()))?;
    let csr = read_csr(csr_arg)?;
    let (cert, key, csr_pem) = if flags.contains_key("initca") {
        let req = CaRequest {
            cn: csr.cn.clone(),
            key_type: key_type(&csr)?,
            expiry: time::Duration::hours(DEFAULT_CA_EXPIRY_HOURS),
            csr: Some(csr.clone()),
        };
        let (cert, key) = Ca::generate(&req)?;
        let csr_pem = rampart_pki::issue::csr_pem(&csr.cn, Some(&csr), &csr.hosts, &key)?;
        (cert, key.serialize_pem(), csr_pem)
    } else {
        let ca_cert = flags.get("ca").ok_or_else(|| {
            PkiError::Invalid("cfssl gencert: pass -ca=ca.pem (or -initca)".into())
        })?;
        let ca_key = flags
            .get("ca-key")
            .ok_or_else(|| PkiError::Invalid("cfssl gencert: pass -ca-key=ca-key.pem".into()))?;
        let ca = Ca::load_files(Path::new(ca_cert), Path::new(ca_key), None)?;
        let config = match flags.get("config") {
            Some(c) => CaConfig::load(Path::new(c))?,
            None => CaConfig::default(),
        };
        let profile: Profile = match flags.get("profile") {
            Some(p) => config.profile(p)?,
            None => config
                .profile("default")
                .or_else(|_| config.profile("peer"))?,
        };
        let mut hosts = csr.hosts.clone();
        if let Some(h) = flags.get("hostname") {
            hosts = h.split(',').map(str::to_string).collect();
        }
        let issued = issue(
            &ca,
            &IssueRequest {
                cn: csr.cn.clone(),
                hosts,
                key_type: key_type(&csr)?,
                profile,
                expiry: None,
                csr: Some(csr.clone()),
            },
        )?;
        (issued.cert_pem, issued.key_pem, issued.csr_pem)
    };
    let out = serde_json::json!({ "cert": cert, "key": key, "csr": csr_pem });
    Ok(out.to_string())
}

/// `cfssl ...` (args include argv[0]).
pub fn run_cfssl(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("gencert") => gencert(&args[1..]),
        Some("version") => Ok("Version: rampart (cfssl-compatible gencert)".to_string()),
        _ => Err(PkiError::Invalid(
            "rampart's cfssl supports: cfssl gencert -initca CSR.json | cfssl gencert -ca=.. -ca-key=.. -config=.. -profile=.. CSR.json".into(),
        )),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cfssl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bare(prefix: &str) -> Result<(), PkiError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| PkiError::Invalid(format!("cannot read stdin: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| PkiError::Json {
        path: "stdin".into(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    })?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let cert = field("cert");
    if cert.is_empty() {
        return Err(PkiError::Invalid(
            "cfssljson: the input has no \"cert\" (did cfssl gencert fail?)".into(),
        ));
    }
    let base = PathBuf::from(prefix);
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", base.display()));
    let key = field("key");
    if !key.is_empty() {
        files::write_private(&with("-key.pem"), &key)?;
    }
    let csr = field("csr");
    if !csr.is_empty() {
        files::write_public(&with(".csr"), &csr)?;
    }
    files::write_public(&with(".pem"), &cert)
}

/// `cfssljson -bare NAME` (args include argv[0]).
pub fn run_cfssljson(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (flags, rest) = go_flags(&args, &["stdout"]);
    let prefix = flags.get("bare").cloned().or_else(|| rest.first().cloned());
    let Some(prefix) = prefix else {
        eprintln!("cfssljson: usage: cfssl gencert ... | cfssljson -bare NAME");
        return ExitCode::FAILURE;
    };
    match bare(&prefix) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cfssljson: {e}");
            ExitCode::FAILURE
        }
    }
}

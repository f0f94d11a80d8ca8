//! `rampart up`, the README's main command: a secure local cluster and a proxy in front of it,
//! usable with the printed ETCDCTL_* lines (the members' or the proxy's alone), stopped by
//! Ctrl-C, reusing its data and certificates on the next run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ETCDCTL_* lines printed for the members, and those for the proxy alone.
struct Printed {
    members: Vec<(String, String)>,
    proxy: Vec<(String, String)>,
}

fn start(dir: &Path) -> (Child, Printed) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["up", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut env = Vec::new();
    let mut proxy_env: Option<Vec<(String, String)>> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(kv) = line.strip_prefix("export ") {
            let (k, v) = kv.split_once('=').unwrap();
            let to = proxy_env.as_mut().unwrap_or(&mut env);
            to.retain(|(old, _)| old != k);
            to.push((k.to_string(), v.to_string()));
        }
        if line.starts_with("or through the proxy alone") {
            proxy_env = Some(env.clone());
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
        assert!(Instant::now() < deadline, "rampart up did not come up");
    }
    // Keep reading so later output never meets a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    let printed = Printed {
        members: env,
        proxy: proxy_env.expect("no lines for the proxy printed"),
    };
    (child, printed)
}

fn stop(mut child: Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "rampart up exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rampart up did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn etcdctl(env: &[(String, String)], args: &[&str]) -> String {
    let out = Command::new("/usr/bin/etcdctl")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cluster_up_runs_a_secure_cluster_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (child, printed) = start(dir.path());
    let env = &printed.members;
    assert!(
        env.iter()
            .any(|(k, v)| k == "ETCDCTL_ENDPOINTS" && v.starts_with("https://")),
        "{env:?}"
    );
    assert_eq!(etcdctl(env, &["put", "greeting", "hello"]).trim(), "OK");
    assert_eq!(etcdctl(env, &["member", "list"]).lines().count(), 3);

    // The proxy alone: one address, mutual TLS, the whole cluster behind it.
    let proxy = &printed.proxy;
    let endpoint = &proxy
        .iter()
        .find(|(k, _)| k == "ETCDCTL_ENDPOINTS")
        .unwrap()
        .1;
    assert!(
        !endpoint.contains(',') && endpoint.starts_with("https://"),
        "{endpoint}"
    );
    assert_eq!(
        etcdctl(proxy, &["get", "greeting", "--print-value-only"]).trim(),
        "hello"
    );
    assert_eq!(etcdctl(proxy, &["put", "via", "proxy"]).trim(), "OK");
    assert_eq!(etcdctl(proxy, &["member", "list"]).lines().count(), 3);
    let without_cert = Command::new("/usr/bin/etcdctl")
        .envs(
            proxy
                .iter()
                .filter(|(k, _)| k != "ETCDCTL_CERT" && k != "ETCDCTL_KEY")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .args([
            "get",
            "greeting",
            "--dial-timeout=2s",
            "--command-timeout=3s",
        ])
        .output()
        .unwrap();
    assert!(
        !without_cert.status.success(),
        "the proxy served a client without a certificate"
    );
    stop(child);
    let key = dir.path().join("tls/ca-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ca_before = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();

    let (child, printed) = start(dir.path());
    assert_eq!(
        etcdctl(&printed.members, &["get", "via", "--print-value-only"]).trim(),
        "proxy"
    );
    stop(child);
    assert_eq!(
        std::fs::read(dir.path().join("tls/ca.pem")).unwrap(),
        ca_before,
        "the CA was replaced"
    );
}

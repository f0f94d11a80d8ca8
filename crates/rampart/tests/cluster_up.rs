//! `rampart up`, the README's main command: a secure local cluster, usable with the printed
//! ETCDCTL_* lines, stopped by Ctrl-C, reusing its data and certificates on the next run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(dir: &Path) -> (Child, Vec<(String, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["up", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut env = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(kv) = line.strip_prefix("export ") {
            let (k, v) = kv.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
        assert!(Instant::now() < deadline, "rampart up did not come up");
    }
    // Keep reading so later output never meets a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, env)
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
    let (child, env) = start(dir.path());
    assert!(
        env.iter()
            .any(|(k, v)| k == "ETCDCTL_ENDPOINTS" && v.starts_with("https://")),
        "{env:?}"
    );
    assert_eq!(etcdctl(&env, &["put", "greeting", "hello"]).trim(), "OK");
    assert_eq!(etcdctl(&env, &["member", "list"]).lines().count(), 3);
    stop(child);
    let key = dir.path().join("tls/ca-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ca_before = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();

    let (child, env) = start(dir.path());
    assert_eq!(
        etcdctl(&env, &["get", "greeting", "--print-value-only"]).trim(),
        "hello"
    );
    stop(child);
    assert_eq!(
        std::fs::read(dir.path().join("tls/ca.pem")).unwrap(),
        ca_before,
        "the CA was replaced"
    );
}

//! `rampart proxy` (etcd grpc-proxy style) in front of a cluster's client URLs, with its own
//! mutual-TLS listener, and reading Prometheus metrics from the proxy and the members.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{etcdctl_bin, free_port, rampart_bin, Pki};

pub struct GrpcProxy {
    child: Child,
    /// The client URL (https, mutual TLS with the cluster's CA).
    pub url: String,
    /// Plain-HTTP address of the proxy's /metrics (`--metrics-addr`).
    pub metrics_url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for GrpcProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GrpcProxy {
    /// Starts `rampart proxy --endpoints=<endpoints>` with the client certificate towards the
    /// members and the member certificate towards clients (client certificates required).
    pub fn start(pki: &Pki, endpoints: &str, extra: &[&str]) -> GrpcProxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let log = dir.path().join("proxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(rampart_bin())
            .arg("proxy")
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg(format!("--metrics-addr=http://127.0.0.1:{metrics_port}"))
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cacert={}", pki.file("ca.pem")))
            .arg(format!("--cert={}", pki.file("client.pem")))
            .arg(format!("--key={}", pki.file("client-key.pem")))
            .arg(format!("--cert-file={}", pki.file("member.pem")))
            .arg(format!("--key-file={}", pki.file("member-key.pem")))
            .arg(format!("--trusted-ca-file={}", pki.file("ca.pem")))
            .arg("--client-cert-auth")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .args(extra)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start rampart proxy");
        let proxy = GrpcProxy {
            child,
            url: format!("https://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = etcdctl(pki, &proxy.url)
                .args(["endpoint", "health"])
                .output()
                .unwrap()
                .status
                .success();
            if ok {
                return proxy;
            }
            assert!(
                Instant::now() < deadline,
                "proxy not healthy:\n{}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The proxy's own /metrics.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("{}/metrics", self.metrics_url))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A gRPC channel to the proxy with the client certificate (a connection of its own).
    pub fn channel(&self, pki: &Pki) -> tonic::transport::Channel {
        let tls = rampart_tls::ClientTls::new(rampart_tls::ClientTlsOptions {
            trusted_ca_file: Some(pki.file("ca.pem").into()),
            cert_file: Some(pki.file("client.pem").into()),
            key_file: Some(pki.file("client-key.pem").into()),
            server_name_override: None,
            insecure_skip_verify: false,
        })
        .expect("client TLS");
        rampart_tls::connect_channel_lazy(&self.url, Some(&tls)).expect("channel")
    }
}

/// The real etcdctl with the cluster's client certificate against `endpoints`.
pub fn etcdctl(pki: &Pki, endpoints: &str) -> Command {
    let mut c = Command::new(etcdctl_bin());
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", pki.file("ca.pem")))
        .arg(format!("--cert={}", pki.file("client.pem")))
        .arg(format!("--key={}", pki.file("client-key.pem")))
        .arg("--command-timeout=10s");
    c
}

/// A member's /metrics (client URL, mutual TLS).
pub fn member_metrics(pki: &Pki, client_url: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(["--cacert", &pki.file("ca.pem")])
        .args(["--cert", &pki.file("client.pem")])
        .args(["--key", &pki.file("client-key.pem")])
        .arg(format!("{client_url}/metrics"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

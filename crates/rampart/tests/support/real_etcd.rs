//! A 1-member real etcd 3.4 (Debian's `etcd-server`) with the test cluster's certificates, and
//! masking of run-specific output, for tests that compare Rampart with the reference.
#![allow(dead_code)] // each test file uses its own subset

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Cluster};

/// A 1-member real etcd with client mTLS, using the same CA and certificates.
pub struct RealEtcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl RealEtcd {
    pub fn start(cluster: &Cluster) -> RealEtcd {
        RealEtcd::start_with(cluster, &[])
    }

    /// With extra etcd flags (e.g. `--enable-v2`).
    pub fn start_with(cluster: &Cluster, extra: &[&str]) -> RealEtcd {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("https://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let pki = &cluster.pki;
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=ref")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ref={peer}"))
            .arg(format!("--cert-file={}", pki.file("member.pem")))
            .arg(format!("--key-file={}", pki.file("member-key.pem")))
            .arg(format!("--trusted-ca-file={}", pki.file("ca.pem")))
            .arg("--client-cert-auth")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let etcd = RealEtcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster
            .etcdctl(&etcd.url)
            .args(["endpoint", "health"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "reference etcd did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a command printed, with run-specific numbers (IDs, terms, timings) masked.
pub fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        for key in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"] {
            while let Some(pos) = l.find(key) {
                let start = pos + key.len();
                let end = l[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map(|e| start + e)
                    .unwrap_or(l.len());
                l = format!("{}{}N{}", &l[..pos], key.replace(':', "="), &l[end..]);
            }
        }
        l = mask_after(&l, "\"ts\":\"", |c: char| c == '"');
        l = mask_after(&l, "client-", |c: char| c == '/');
        l = mask_after(&l, "127.0.0.1:", |c: char| !c.is_ascii_digit());
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Replaces what follows each `marker` up to `stop` with `*`.
pub fn mask_after(line: &str, marker: &str, stop: impl Fn(char) -> bool + Copy) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find(marker) {
        out.push_str(&rest[..pos + marker.len()]);
        out.push('*');
        let tail = &rest[pos + marker.len()..];
        let end = tail.find(stop).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// One member of a [`RealEtcdCluster`].
pub struct RealMember {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub child: Option<Child>,
    pub log: std::path::PathBuf,
}

/// An n-member real etcd 3.4 cluster with client and peer mutual TLS (the seed's setup),
/// using the given CA's member certificate for both.
pub struct RealEtcdCluster {
    pub members: Vec<RealMember>,
    _dir: tempfile::TempDir,
}

impl RealEtcdCluster {
    pub fn start(pki: &super::Pki, n: usize) -> RealEtcdCluster {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut members: Vec<RealMember> = (0..n)
            .map(|i| RealMember {
                name: format!("e{i}"),
                client_url: format!("https://127.0.0.1:{}", free_port()),
                peer_url: format!("https://127.0.0.1:{}", free_port()),
                child: None,
                log: dir.path().join(format!("e{i}.log")),
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            let log = std::fs::File::create(&m.log).unwrap();
            let child = Command::new("/usr/bin/etcd")
                .arg(format!("--name={}", m.name))
                .arg(format!("--data-dir={}", dir.path().join(&m.name).display()))
                .arg(format!("--listen-client-urls={}", m.client_url))
                .arg(format!("--advertise-client-urls={}", m.client_url))
                .arg(format!("--listen-peer-urls={}", m.peer_url))
                .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
                .arg(format!("--initial-cluster={initial}"))
                .arg("--initial-cluster-token=real-etcd")
                .arg("--initial-cluster-state=new")
                .arg(format!("--cert-file={}", pki.file("member.pem")))
                .arg(format!("--key-file={}", pki.file("member-key.pem")))
                .arg(format!("--trusted-ca-file={}", pki.file("ca.pem")))
                .arg("--client-cert-auth")
                .arg(format!("--peer-cert-file={}", pki.file("member.pem")))
                .arg(format!("--peer-key-file={}", pki.file("member-key.pem")))
                .arg(format!("--peer-trusted-ca-file={}", pki.file("ca.pem")))
                .arg("--peer-client-cert-auth")
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("start etcd");
            m.child = Some(child);
        }
        let cluster = RealEtcdCluster { members, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in &cluster.members {
            while !super::proxy::etcdctl(pki, &m.client_url)
                .args(["endpoint", "health"])
                .output()
                .unwrap()
                .status
                .success()
            {
                assert!(
                    Instant::now() < deadline,
                    "real etcd member {} not healthy:\n{}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        cluster
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RealEtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

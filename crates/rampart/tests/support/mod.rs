//! Test support: a private CA made with `rampart pki`, and clusters of real `rampart server`
//! processes on loopback with mutual TLS, driven by the real `etcdctl`.
#![allow(dead_code)]

pub mod proxy;
pub mod real_etcd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn rampart_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rampart"))
}

/// Our binary under the name `etcdctl`: one link in cargo's scratch directory for integration
/// tests (not /tmp, where a directory per test process used to be left behind). Each process
/// makes its own link and renames it over the shared one, so concurrent tests never see the
/// link missing; all of them point at the same binary.
pub fn our_etcdctl() -> PathBuf {
    static LINK: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LINK.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("our-etcdctl");
        std::fs::create_dir_all(&dir).expect("link dir");
        let link = dir.join("etcdctl");
        let staged = dir.join(format!("etcdctl.{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        std::os::unix::fs::symlink(rampart_bin(), &staged).expect("etcdctl link");
        std::fs::rename(&staged, &link).expect("etcdctl link in place");
        link
    })
    .clone()
}

/// The real etcdctl; the test fails (not skips) without it, since CI installs it.
pub fn etcdctl_bin() -> PathBuf {
    let p = PathBuf::from("/usr/bin/etcdctl");
    assert!(
        p.exists(),
        "/usr/bin/etcdctl is missing: install Debian's etcd-client (scripts/test.sh does)"
    );
    p
}

pub use rampart_testkit::free_port;

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A CA with a member certificate (serverAuth + clientAuth, for 127.0.0.1/localhost) and a
/// client certificate (CN root), made with openssl so cluster tests do not depend on
/// `rampart pki` (which has tests of its own).
pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").current_dir(dir).args(args));
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=test-ca",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &ca);
        for (name, cn, ext) in [
            ("member", "member", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"),
            ("client", "root", "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"),
        ] {
            let key = format!("{name}-key.pem");
            let csr = format!("{name}.csr");
            let subj = format!("/CN={cn}");
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(dir, &req);
            let extfile = dir.join(format!("{name}.ext"));
            std::fs::write(&extfile, ext.replace("\\n", "\n")).unwrap();
            let cert = format!("{name}.pem");
            openssl(dir, &[
                "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", &cert, "-days", "2", "-extfile", extfile.to_str().unwrap(),
            ]);
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Joins a running cluster (`--initial-cluster-state=existing`) instead of bootstrapping one.
    pub joins: bool,
}

/// A 3-member (or n-member) cluster of `rampart server` processes with client and peer mTLS.
pub struct Cluster {
    pub members: Vec<Member>,
    pub pki: Pki,
    initial_cluster: String,
    /// Extra server flags and environment for every member.
    pub extra_args: Vec<String>,
    pub extra_env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Describes one more member (fresh ports, not started) that will join the running cluster;
    /// returns its index. Add it with `member add` before starting it.
    pub fn new_joining_member(&mut self) -> usize {
        let i = self.members.len();
        self.members.push(Member {
            name: format!("m{i}"),
            client_url: format!("https://127.0.0.1:{}", free_port()),
            peer_url: format!("https://127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(format!("m{i}.data")),
            child: None,
            log: self.dir.path().join(format!("m{i}.log")),
            joins: true,
        });
        self.initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        i
    }

    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[], &[])
    }

    pub fn start_with(n: usize, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(&dir.path().join("tls"));
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                client_url: format!("https://127.0.0.1:{}", free_port()),
                peer_url: format!("https://127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("m{i}.data")),
                child: None,
                log: dir.path().join(format!("m{i}.log")),
                joins: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            members,
            pki,
            initial_cluster,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir,
        };
        for i in 0..n {
            cluster.start_member(i);
        }
        cluster.wait_healthy(Duration::from_secs(20));
        cluster
    }

    pub fn start_member(&mut self, i: usize) {
        self.start_member_inner(i, None);
    }

    /// Starts member `i` with its peer certificate (and peer CA) taken from another CA.
    pub fn start_member_with_peer_pki(&mut self, i: usize, peer: &Pki) {
        self.start_member_inner(i, Some(peer));
    }

    fn start_member_inner(&mut self, i: usize, peer_pki: Option<&Pki>) {
        let pki = &self.pki;
        let peer = peer_pki.unwrap_or(pki);
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("log file");
        let child = Command::new(rampart_bin())
            .arg("server")
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={}", m.client_url))
            .arg(format!("--advertise-client-urls={}", m.client_url))
            .arg(format!("--listen-peer-urls={}", m.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-token=test-cluster")
            .arg(if m.joins {
                "--initial-cluster-state=existing"
            } else {
                "--initial-cluster-state=new"
            })
            .arg(format!("--cert-file={}", pki.file("member.pem")))
            .arg(format!("--key-file={}", pki.file("member-key.pem")))
            .arg(format!("--trusted-ca-file={}", pki.file("ca.pem")))
            .arg("--client-cert-auth")
            .arg(format!("--peer-cert-file={}", peer.file("member.pem")))
            .arg(format!("--peer-key-file={}", peer.file("member-key.pem")))
            .arg(format!("--peer-trusted-ca-file={}", peer.file("ca.pem")))
            .arg("--peer-client-cert-auth")
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rampart server");
        self.members[i].child = Some(child);
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcdctl` with the client certificate, against the given endpoints.
    pub fn etcdctl(&self, endpoints: &str) -> Command {
        self.etcdctl_using(&etcdctl_bin(), endpoints)
    }

    /// `etcdctl` from `bin` (the real one, or ours) with the cluster's client certificate.
    pub fn etcdctl_using(&self, bin: &Path, endpoints: &str) -> Command {
        let mut c = Command::new(bin);
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cacert={}", self.pki.file("ca.pem")))
            .arg(format!("--cert={}", self.pki.file("client.pem")))
            .arg(format!("--key={}", self.pki.file("client-key.pem")))
            .arg("--command-timeout=10s");
        c
    }

    pub fn ctl(&self, member: usize, args: &[&str]) -> Output {
        self.etcdctl(&self.members[member].client_url.clone())
            .args(args)
            .output()
            .expect("run etcdctl")
    }

    pub fn ctl_ok(&self, member: usize, args: &[&str]) -> String {
        let out = self.ctl(member, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} on member {member} failed: {}\n{}\n--- logs ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let running: Vec<usize> = (0..self.members.len())
                .filter(|i| self.members[*i].child.is_some())
                .collect();
            // Healthy, and every running member has published its client URL.
            let all_ok = running.iter().all(|i| {
                self.ctl(*i, &["endpoint", "health"]).status.success()
                    && String::from_utf8_lossy(&self.ctl(*i, &["member", "list"]).stdout)
                        .contains(&self.members[*i].client_url)
            });
            if all_ok {
                return;
            }
            if Instant::now() > deadline {
                panic!("cluster not healthy within {within:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            s.push_str(&format!("== {} ==\n", m.name));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// A gRPC channel to member `i` with the client certificate (for tests that speak the API
    /// directly).
    pub fn grpc_channel(&self, i: usize) -> tonic::transport::Channel {
        let tls = rampart_tls::ClientTls::new(rampart_tls::ClientTlsOptions {
            trusted_ca_file: Some(self.pki.file("ca.pem").into()),
            cert_file: Some(self.pki.file("client.pem").into()),
            key_file: Some(self.pki.file("client-key.pem").into()),
            server_name_override: None,
            insecure_skip_verify: false,
        })
        .expect("client TLS");
        rampart_tls::connect_channel_lazy(&self.members[i].client_url, Some(&tls)).expect("channel")
    }

    /// The member that currently leads, from `endpoint status`.
    pub fn leader(&self) -> usize {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let out = self.ctl(i, &["endpoint", "status", "-w", "json"]);
            if !out.status.success() {
                continue;
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value = serde_json::from_str(&text).expect("status json");
            let st = &v[0]["Status"];
            if st["leader"] == st["header"]["member_id"] {
                return i;
            }
        }
        panic!("no leader found\n{}", self.logs());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

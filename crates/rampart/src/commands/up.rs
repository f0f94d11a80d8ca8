//! `rampart up`: a secure local 3-member cluster in one command.
//!
//! Creates a CA and member/proxy/client certificates (once), starts three `rampart server`
//! processes on loopback with client and peer mutual TLS and a `rampart proxy` in front of them
//! (its own certificate, mutual TLS towards clients and members), prints the `ETCDCTL_*` lines to
//! talk to the members or to the proxy alone, and stops everything on Ctrl-C. The next run reuses
//! the certificates and the data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Client and peer ports of the three members (etcd's documented local-cluster ports, kept
/// below the ephemeral range).
const MEMBER_PORTS: [(u16, u16); 3] = [(2379, 2380), (12379, 12380), (22379, 22380)];

/// Where the proxy serves clients (etcd grpc-proxy's default port).
const PROXY_PORT: u16 = 23790;

/// How long the members get to elect a leader and publish themselves.
const READY_WITHIN: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for certificates, data and logs.
    #[arg(long, default_value = "./rampart-local")]
    pub dir: PathBuf,
    /// Also serve etcd's v2 API (as `--enable-v2`).
    #[arg(long)]
    pub enable_v2: bool,
    /// Do not start the proxy in front of the members.
    #[arg(long)]
    pub no_proxy: bool,
}

struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SIGTERM first so members log their stop; every acknowledged write is already durable.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rampart(exe: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(exe)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "rampart {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn ensure_certificates(exe: &Path, tls: &Path) -> Result<(), String> {
    let d = tls.to_str().ok_or("the --dir path is not UTF-8")?;
    if !tls.join("ca.pem").exists() {
        rampart(
            exe,
            &["pki", "init", "--dir", d, "--cn", "rampart-local-ca"],
        )?;
        println!("created a CA in {d}");
    }
    for (name, profile, extra) in [
        ("member", "peer", vec!["--hosts", "127.0.0.1,localhost,::1"]),
        // Server certificate towards clients, client certificate towards the members.
        (
            "proxy",
            "peer",
            vec![
                "--hosts",
                "127.0.0.1,localhost,::1",
                "--cn",
                "rampart-proxy",
            ],
        ),
        ("client", "client", vec!["--cn", "root"]),
    ] {
        if !tls.join(format!("{name}.pem")).exists() {
            let mut args = vec!["pki", "issue", name, "--profile", profile, "--dir", d];
            args.extend(extra);
            rampart(exe, &args)?;
        }
    }
    Ok(())
}

pub fn run(args: UpArgs) -> ExitCode {
    match up(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart up: {e}");
            ExitCode::FAILURE
        }
    }
}

fn up(args: UpArgs) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the rampart binary: {e}"))?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let tls = dir.join("tls");
    ensure_certificates(&exe, &tls)?;
    let file = |n: &str| tls.join(n).to_string_lossy().into_owned();
    let initial_cluster = MEMBER_PORTS
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");

    let mut members = Members(Vec::new());
    let mut logs = Vec::new();
    for (i, (client, peer)) in MEMBER_PORTS.iter().enumerate() {
        let log_path = dir.join(format!("m{i}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .arg(format!("--name=m{i}"))
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("m{i}.data")).display()
            ))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
            .arg(format!(
                "--advertise-client-urls=https://127.0.0.1:{client}"
            ))
            .arg(format!("--listen-peer-urls=https://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=https://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-token=rampart-local")
            .arg("--initial-cluster-state=new")
            .arg(format!("--cert-file={}", file("member.pem")))
            .arg(format!("--key-file={}", file("member-key.pem")))
            .arg(format!("--trusted-ca-file={}", file("ca.pem")))
            .arg("--client-cert-auth")
            .arg(format!("--peer-cert-file={}", file("member.pem")))
            .arg(format!("--peer-key-file={}", file("member-key.pem")))
            .arg(format!("--peer-trusted-ca-file={}", file("ca.pem")))
            .arg("--peer-client-cert-auth");
        if args.enable_v2 {
            cmd.arg("--enable-v2");
        }
        let child = cmd
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start member m{i}: {e}"))?;
        members.0.push(child);
        logs.push(log_path);
    }

    wait_ready(&mut members, &logs)?;
    let endpoints = MEMBER_PORTS
        .iter()
        .map(|(c, _)| format!("https://127.0.0.1:{c}"))
        .collect::<Vec<_>>()
        .join(",");
    if !args.no_proxy {
        let log_path = dir.join("proxy.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let child = Command::new(&exe)
            .arg("proxy")
            .arg(format!("--listen-addr=127.0.0.1:{PROXY_PORT}"))
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cert={}", file("proxy.pem")))
            .arg(format!("--key={}", file("proxy-key.pem")))
            .arg(format!("--cacert={}", file("ca.pem")))
            .arg(format!("--cert-file={}", file("proxy.pem")))
            .arg(format!("--key-file={}", file("proxy-key.pem")))
            .arg(format!("--trusted-ca-file={}", file("ca.pem")))
            .arg("--client-cert-auth")
            .arg(format!("--data-dir={}", dir.join("proxy.data").display()))
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start the proxy: {e}"))?;
        members.0.push(child);
        logs.push(log_path);
        wait_logged(
            &mut members,
            &logs[MEMBER_PORTS.len()..],
            MEMBER_PORTS.len(),
            PROXY_READY_LINE,
        )?;
    }
    println!(
        "rampart: a 3-member cluster with client and peer mutual TLS is up (logs: {}/m*.log)",
        dir.display()
    );
    println!("talk to it with etcdctl (or `rampart` as etcdctl) after:");
    println!("export ETCDCTL_API=3");
    println!("export ETCDCTL_ENDPOINTS={endpoints}");
    println!("export ETCDCTL_CACERT={}", file("ca.pem"));
    println!("export ETCDCTL_CERT={}", file("client.pem"));
    println!("export ETCDCTL_KEY={}", file("client-key.pem"));
    if !args.no_proxy {
        println!(
            "or through the proxy alone (one address, the same certificates; log: {}/proxy.log):",
            dir.display()
        );
        println!("export ETCDCTL_ENDPOINTS=https://127.0.0.1:{PROXY_PORT}");
    }
    println!(
        "press Ctrl-C to stop the members and the proxy (data and certificates stay in {})",
        dir.display()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    for (i, c) in members.0.iter_mut().enumerate() {
                        if let Ok(Some(status)) = c.try_wait() {
                            return Err(format!("{} exited ({status}); see {}", process_name(i), logs[i].display()));
                        }
                    }
                }
            }
        }
        Ok::<(), String>(())
    })?;
    eprintln!("stopping the members ...");
    drop(members);
    Ok(())
}

/// Waits until every member logged that it published itself (a leader exists and it applied).
fn wait_ready(members: &mut Members, logs: &[PathBuf]) -> Result<(), String> {
    wait_logged(members, logs, 0, MEMBER_READY_LINE)
}

/// What a member logs once it is part of the cluster.
const MEMBER_READY_LINE: &str = "published local member to cluster through raft";
/// What the proxy logs once it listens.
const PROXY_READY_LINE: &str = "ready to proxy client requests";

/// "member m1" or "the proxy", by position in [`Members`].
fn process_name(i: usize) -> String {
    if i < MEMBER_PORTS.len() {
        format!("member m{i}")
    } else {
        "the proxy".to_string()
    }
}

/// Waits until each of `logs` (of the processes from `first` on) contains `line`.
fn wait_logged(
    members: &mut Members,
    logs: &[PathBuf],
    first: usize,
    line: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        for (i, c) in members.0.iter_mut().enumerate().skip(first) {
            if let Ok(Some(status)) = c.try_wait() {
                let text = std::fs::read_to_string(&logs[i - first]).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                return Err(format!(
                    "{} exited ({status}) while starting; last log lines:\n{}",
                    process_name(i),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        let ready = logs.iter().all(|l| {
            std::fs::read_to_string(l)
                .map(|t| t.contains(line))
                .unwrap_or(false)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not become ready within {READY_WITHIN:?}; see the logs in {}",
                if first == 0 {
                    "the members"
                } else {
                    "the proxy"
                },
                logs[0]
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! Leases and watches through the real `etcdctl` 3.4: the same session against a 3-member
//! mutual-TLS Rampart cluster (commands spread over the members) and against the real etcd 3.4
//! gives the same output, once lease IDs and other run-specific numbers are masked.

mod support;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::real_etcd::{normalize, RealEtcd};
use support::Cluster;

/// Runs a lease and watch session; `endpoint(i)` is where step `i` goes.
struct Session<'a> {
    cluster: &'a Cluster,
    endpoint: &'a dyn Fn(usize) -> String,
    step: usize,
    /// Lease IDs as printed, in order of appearance (masked as <lease N>).
    leases: Vec<String>,
    out: Vec<String>,
}

impl Session<'_> {
    fn endpoint(&mut self) -> String {
        self.step += 1;
        (self.endpoint)(self.step)
    }

    fn mask(&self, text: &str) -> String {
        let mut t = normalize(text);
        for (i, id) in self.leases.iter().enumerate() {
            t = t.replace(id, &format!("<lease {i}>"));
            if let Ok(n) = i64::from_str_radix(id, 16) {
                t = t.replace(&n.to_string(), &format!("<lease {i}>"));
            }
        }
        t
    }

    fn run(&mut self, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| self.expand(a)).collect();
        let out = self
            .cluster
            .etcdctl(&self.endpoint())
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        self.note_leases(&stdout);
        self.out.push(format!(
            "$ etcdctl {}\nexit={}\n{}{}",
            self.mask(&args.join(" ")),
            out.status.code().unwrap_or(-1),
            self.mask(&stdout),
            self.mask(&String::from_utf8_lossy(&out.stderr))
        ));
        stdout
    }

    /// `{0}` in an argument is the first lease granted, and so on.
    fn expand(&self, arg: &str) -> String {
        let mut a = arg.to_string();
        for (i, id) in self.leases.iter().enumerate() {
            a = a.replace(&format!("{{{i}}}"), id);
        }
        a
    }

    fn note_leases(&mut self, stdout: &str) {
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("lease ") {
                if let Some(id) = rest.split_whitespace().next() {
                    if rest.contains("granted with TTL") && !self.leases.iter().any(|l| l == id) {
                        self.leases.push(id.to_string());
                    }
                }
            }
        }
    }

    /// Starts a long-running etcdctl (watch, keep-alive), with `stdin` written to it.
    fn spawn(&mut self, args: &[&str], stdin: Option<&str>) -> (Child, String) {
        let args: Vec<String> = args.iter().map(|a| self.expand(a)).collect();
        let mut child = self
            .cluster
            .etcdctl(&self.endpoint())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .as_mut()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        (child, args.join(" "))
    }

    fn finish(&mut self, (mut child, args): (Child, String)) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        self.out.push(format!(
            "$ etcdctl {} (stopped)\n{}",
            self.mask(&args),
            self.mask(&String::from_utf8_lossy(&out.stdout))
        ));
    }
}

fn session(cluster: &Cluster, endpoint: &dyn Fn(usize) -> String) -> Vec<String> {
    let mut s = Session {
        cluster,
        endpoint,
        step: 0,
        leases: Vec::new(),
        out: Vec::new(),
    };
    let pause = || std::thread::sleep(Duration::from_millis(1500));
    // Watchers started before the writes see them live.
    let live_prefix = s.spawn(&["watch", "--prefix", "k", "--prev-kv"], None);
    let live_key = s.spawn(&["watch", "k1"], None);
    // Interactive watchers on keys that never change in the same revision: each gets its own
    // stream, and two streams reporting one revision may print in either order (with etcd too).
    let interactive = s.spawn(
        &["watch", "-i"],
        Some("watch k3\nwatch --prefix k1 --prev-kv\n"),
    );
    pause();
    s.run(&["lease", "grant", "60"]);
    s.run(&["lease", "grant", "100"]);
    s.run(&["put", "--lease={0}", "k1", "v1"]);
    s.run(&["put", "--lease={0}", "k2", "v2"]);
    s.run(&["put", "--lease={1}", "k3", "v3"]);
    s.run(&["put", "k1", "v1-again"]);
    s.run(&["lease", "timetolive", "--keys", "{0}"]);
    s.run(&["lease", "timetolive", "{1}"]);
    s.run(&["lease", "list"]);
    s.run(&["lease", "keep-alive", "--once", "{0}"]);
    s.run(&["get", "--prefix", "k", "-w", "json"]);
    s.run(&["lease", "revoke", "{0}"]);
    s.run(&["get", "--prefix", "k"]);
    s.run(&["lease", "timetolive", "{0}"]);
    s.run(&["lease", "revoke", "{0}"]);
    s.run(&["lease", "keep-alive", "--once", "{0}"]);
    s.run(&["put", "--lease=123456", "k4", "v4"]);
    s.run(&["del", "k3"]);
    pause();
    s.finish(live_prefix);
    s.finish(live_key);
    s.finish(interactive);
    // History replays from a revision.
    let replay = s.spawn(&["watch", "--rev=2", "--prefix", "k"], None);
    let replay_prev = s.spawn(&["watch", "--rev=5", "--prev-kv", "k1"], None);
    pause();
    s.finish(replay);
    s.finish(replay_prev);
    s.run(&["compaction", "6"]);
    let compacted = s.spawn(&["watch", "--rev=3", "k1"], None);
    pause();
    s.finish(compacted);
    s.out
}

#[test]
fn cluster_etcdctl_lease_and_watch_match_real_etcd() {
    let cluster = Cluster::start(3);
    let etcd = RealEtcd::start(&cluster);
    let ours = session(&cluster, &|i| cluster.members[i % 3].client_url.clone());
    let reference = session(&cluster, &|_| etcd.url.clone());
    assert_eq!(ours.len(), reference.len());
    for (a, b) in ours.iter().zip(reference.iter()) {
        assert_eq!(
            a,
            b,
            "rampart (left) and etcd (right) differ\n{}",
            cluster.logs()
        );
    }
}

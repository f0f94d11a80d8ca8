//! `snapshot status` and `snapshot restore` against snapshots the real etcd 3.4 took: the same
//! output and errors as the real etcdctl, the same files as its restore, and the real etcd
//! starting (1 and 3 members) from what our restore wrote.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rampart_bbolt::{Buckets, Db, Value};
use support::{etcdctl_bin, free_port, our_etcdctl};

/// A member of a plain-HTTP real etcd, stopped on drop.
struct Etcd {
    child: Child,
    client: String,
    name: String,
}

impl Etcd {
    /// Starts `/usr/bin/etcd` with `data_dir` (new, or restored).
    fn start(name: &str, data_dir: &Path, peer: &str, initial_cluster: &str, token: &str) -> Etcd {
        Etcd::start_with(name, data_dir, peer, initial_cluster, token, &[])
    }

    fn start_with(
        name: &str,
        data_dir: &Path,
        peer: &str,
        initial_cluster: &str,
        token: &str,
        extra: &[String],
    ) -> Etcd {
        assert!(
            Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (scripts/test.sh does)"
        );
        let client = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-token={token}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        Etcd {
            child,
            client,
            name: name.to_string(),
        }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl(
            &etcdctl_bin(),
            &[&["--endpoints", &self.client], args].concat(),
        )
    }

    fn wait_healthy(&self, data_dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctl(&["endpoint", "health"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "etcd {} did not become healthy:\n{}",
                self.name,
                std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn get(&self, key: &str) -> String {
        let out = self.ctl(&["get", key, "--print-value-only"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(args)
        .output()
        .unwrap()
}

fn peer_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A snapshot of a real etcd with plain and leased keys, a multi-page value, deletions and a
/// compaction, saved by the real etcdctl.
fn real_snapshot(dir: &Path) -> PathBuf {
    let data = dir.join("source");
    let peer = peer_url();
    let etcd = Etcd::start("src", &data, &peer, &format!("src={peer}"), "etcd-cluster");
    etcd.wait_healthy(&data);
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for i in 0..30 {
        ok(etcd.ctl(&["put", &format!("key{i:02}"), &format!("value{i}")]));
    }
    ok(etcd.ctl(&["put", "big", &"b".repeat(12_000)]));
    ok(etcd.ctl(&["del", "key05"]));
    ok(etcd.ctl(&["compaction", "10"]));
    let lease = etcd.ctl(&["lease", "grant", "600"]);
    let id = String::from_utf8(lease.stdout).unwrap();
    let id = id.split_whitespace().nth(1).unwrap().to_string();
    ok(etcd.ctl(&["put", "leased", "yes", "--lease", &id]));
    let path = dir.join("snap.db");
    ok(etcd.ctl(&["snapshot", "save", path.to_str().unwrap()]));
    path
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Our output and exit code equal the real etcdctl's for the same arguments.
fn same_as_etcdctl(args: &[&str]) {
    let ours = ctl(&our_etcdctl(), args);
    let real = ctl(&etcdctl_bin(), args);
    assert_eq!(text(&ours.stdout), text(&real.stdout), "stdout of {args:?}");
    assert_eq!(text(&ours.stderr), text(&real.stderr), "stderr of {args:?}");
    assert_eq!(
        ours.status.code(),
        real.status.code(),
        "exit code of {args:?}"
    );
}

#[test]
fn status_prints_what_etcdctl_prints_in_every_format_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let snap = real_snapshot(dir.path());
    let s = snap.to_str().unwrap();
    for format in ["simple", "table", "json", "fields", "protobuf"] {
        same_as_etcdctl(&["snapshot", "status", s, "-w", format]);
    }
    // The status is of this snapshot, not a constant: 33 puts and a deletion (plus the
    // lease grant, which is no revision) make revision 34.
    let json = text(&ctl(&our_etcdctl(), &["snapshot", "status", s, "-w", "json"]).stdout);
    assert!(json.contains("\"revision\":34"), "{json}");

    let bytes = std::fs::read(&snap).unwrap();
    let write = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p.to_str().unwrap().to_string()
    };
    let short = write("short.db", &bytes[..5000]);
    let tiny = write("tiny.db", &bytes[..100]);
    let empty = write("empty.db", b"");
    let mut both_metas = bytes.clone();
    both_metas[16 + 40] ^= 1;
    both_metas[4096 + 16 + 40] ^= 1;
    let checksum = write("checksum.db", &both_metas);
    let mut one_meta = bytes.clone();
    one_meta[..512].fill(0);
    let fallback = write("fallback.db", &one_meta);
    let missing = dir.path().join("missing.db");
    let missing = missing.to_str().unwrap();
    for file in [&short, &tiny, &empty, &checksum, &fallback, missing] {
        same_as_etcdctl(&["snapshot", "status", file]);
    }
    same_as_etcdctl(&["snapshot", "status"]);
    same_as_etcdctl(&["snapshot", "status", dir.path().to_str().unwrap()]);
}

/// The top-level buckets of a data directory's `member/snap/db`.
fn backend(data_dir: &Path) -> Buckets {
    let db = Db::open(&data_dir.join("member/snap/db")).unwrap();
    assert_eq!(db.check(), Vec::<String>::new());
    let mut out = Buckets::new();
    for (name, v) in db.entries(&db.root()).unwrap() {
        let b = v.as_bucket().unwrap();
        let kvs = out.entry(name.to_vec()).or_default();
        for (k, v) in db.entries(&b).unwrap() {
            let Value::Plain(v) = v else {
                panic!("nested bucket")
            };
            kvs.insert(k.to_vec(), v.to_vec());
        }
    }
    out
}

/// etcdctl's log lines without their timestamps.
fn without_ts(stderr: &[u8]) -> String {
    text(stderr)
        .lines()
        .map(|l| support::real_etcd::mask_after(l, "\"ts\":", |c: char| c == ','))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn restore_writes_etcdctls_files_and_etcd_serves_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let snap = real_snapshot(dir.path());
    let peer = peer_url();
    let cluster = format!("m1={peer}");
    let restore = |bin: &Path, data: &Path| {
        ctl(
            bin,
            &[
                "snapshot",
                "restore",
                snap.to_str().unwrap(),
                "--name",
                "m1",
                "--initial-cluster",
                &cluster,
                "--initial-cluster-token",
                "tok",
                "--initial-advertise-peer-urls",
                &peer,
                "--data-dir",
                data.to_str().unwrap(),
            ],
        )
    };
    let ours_dir = dir.path().join("ours");
    let real_dir = dir.path().join("real");
    let ours = restore(&our_etcdctl(), &ours_dir);
    let real = restore(&etcdctl_bin(), &real_dir);
    assert!(ours.status.success(), "{}", text(&ours.stderr));
    assert!(real.status.success(), "{}", text(&real.stderr));
    assert_eq!(
        without_ts(&ours.stderr).replace("/ours", "/DIR"),
        without_ts(&real.stderr).replace("/real", "/DIR")
    );
    assert_eq!(text(&ours.stdout), text(&real.stdout));

    // The WAL and the v2 store snapshot are byte for byte etcd's; the backend holds the same
    // buckets and keys (bbolt's page layout differs: ours is compact).
    let wal = "member/wal/0000000000000000-0000000000000000.wal";
    let snapfile = "member/snap/0000000000000001-0000000000000001.snap";
    for file in [wal, snapfile] {
        let a = std::fs::read(ours_dir.join(file)).unwrap();
        let b = std::fs::read(real_dir.join(file)).unwrap();
        assert_eq!(a.len(), b.len(), "{file}");
        assert!(a == b, "{file} differs from etcdctl's");
    }
    let ours_db = backend(&ours_dir);
    assert_eq!(ours_db, backend(&real_dir));
    assert_eq!(
        ours_db[&b"meta"[..]][&b"consistent_index"[..]],
        1u64.to_be_bytes().to_vec()
    );
    for d in [&ours_dir, &real_dir] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }

    // The real etcd starts from our directory and serves the snapshot's keys.
    let etcd = Etcd::start("m1", &ours_dir, &peer, &cluster, "tok");
    etcd.wait_healthy(&ours_dir);
    assert_eq!(etcd.get("key07"), "value7");
    assert_eq!(etcd.get("big"), "b".repeat(12_000));
    assert_eq!(etcd.get("key05"), "");
    assert_eq!(etcd.get("leased"), "yes");
    let members = text(&etcd.ctl(&["member", "list"]).stdout);
    assert_eq!(members.lines().count(), 1, "{members}");
    assert!(members.contains(&format!(", m1, {peer}, ")), "{members}");
    // Writable, and the revision continues from the snapshot's.
    let put = etcd.ctl(&["put", "after", "restore", "-w", "json"]);
    assert!(
        text(&put.stdout).contains("\"revision\":35"),
        "{}",
        text(&put.stdout)
    );
}

#[test]
fn restore_of_three_members_starts_a_three_member_etcd_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let snap = real_snapshot(dir.path());
    let names = ["n1", "n2", "n3"];
    let peers: Vec<String> = names.iter().map(|_| peer_url()).collect();
    let cluster: Vec<String> = names
        .iter()
        .zip(&peers)
        .map(|(n, p)| format!("{n}={p}"))
        .collect();
    let cluster = cluster.join(",");
    let dirs: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    for ((name, peer), data) in names.iter().zip(&peers).zip(&dirs) {
        let out = ctl(
            &our_etcdctl(),
            &[
                "snapshot",
                "restore",
                snap.to_str().unwrap(),
                "--name",
                name,
                "--initial-cluster",
                &cluster,
                "--initial-cluster-token",
                "three",
                "--initial-advertise-peer-urls",
                peer,
                "--data-dir",
                data.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr).matches("\"added member\"").count(), 3);
    }
    let members: Vec<Etcd> = names
        .iter()
        .zip(&peers)
        .zip(&dirs)
        .map(|((n, p), d)| Etcd::start(n, d, p, &cluster, "three"))
        .collect();
    for (m, d) in members.iter().zip(&dirs) {
        m.wait_healthy(d);
    }
    for m in &members {
        assert_eq!(m.get("key29"), "value29");
        let list = text(&m.ctl(&["member", "list"]).stdout);
        assert_eq!(list.lines().count(), 3, "{list}");
    }
    // Replication works in the new cluster.
    assert!(members[0].ctl(&["put", "new", "value"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while members[2].get("new") != "value" {
        assert!(Instant::now() < deadline, "write did not replicate");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn restore_checks_the_hash_as_etcdctl_does() {
    let dir = tempfile::tempdir().unwrap();
    let snap = real_snapshot(dir.path());
    let bytes = std::fs::read(&snap).unwrap();
    let mut corrupt = bytes.clone();
    corrupt[..512].fill(0);
    let corrupt_path = dir.path().join("corrupt.db");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    // A database file copied out of a data directory has no hash.
    let no_hash = dir.path().join("nohash.db");
    std::fs::write(&no_hash, &bytes[..bytes.len() - 32]).unwrap();

    let run = |bin: &Path, file: &Path, data: &str, extra: &[&str]| {
        let d = dir.path().join(data);
        let out = ctl(
            bin,
            &[
                &[
                    "snapshot",
                    "restore",
                    file.to_str().unwrap(),
                    "--data-dir",
                    d.to_str().unwrap(),
                ],
                extra,
            ]
            .concat(),
        );
        (
            out.status.code(),
            without_ts(&out.stderr).replace(data, "DIR"),
        )
    };
    let ours = run(&our_etcdctl(), &corrupt_path, "c-ours", &[]);
    let real = run(&etcdctl_bin(), &corrupt_path, "c-real", &[]);
    assert_eq!(ours, real);
    assert!(ours.1.contains("Error: expected sha256 ["), "{}", ours.1);
    // Unlike etcdctl we leave no partial data directory behind.
    assert!(!dir.path().join("c-ours").exists());

    let ours = run(&our_etcdctl(), &no_hash, "n-ours", &[]);
    let real = run(&etcdctl_bin(), &no_hash, "n-real", &[]);
    assert_eq!(ours, real);
    assert!(ours
        .1
        .contains("Error: snapshot missing hash but --skip-hash-check=false"));

    // With --skip-hash-check the copied database restores, and etcd serves it.
    let peer = peer_url();
    let cluster = format!("d={peer}");
    let flags = [
        "--skip-hash-check",
        "--name",
        "d",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        &peer,
    ];
    let (code, log) = run(&our_etcdctl(), &no_hash, "skip", &flags);
    assert_eq!(code, Some(0), "{log}");
    let data = dir.path().join("skip");
    let etcd = Etcd::start("d", &data, &peer, &cluster, "etcd-cluster");
    etcd.wait_healthy(&data);
    assert_eq!(etcd.get("key12"), "value12");

    // Existing directories and bad flags fail as etcdctl's do (before writing anything).
    let existing = data.to_str().unwrap().to_string();
    let cases: [&[&str]; 4] = [
        &["--data-dir", &existing],
        &["--name", "other"],
        &["--initial-advertise-peer-urls", "http://127.0.0.1:1"],
        &["--initial-cluster", "default=ftp://x:1"],
    ];
    for args in cases {
        let full = [&["snapshot", "restore", snap.to_str().unwrap()], args].concat();
        same_as_etcdctl(&full);
    }
    same_as_etcdctl(&["snapshot", "restore"]);
}

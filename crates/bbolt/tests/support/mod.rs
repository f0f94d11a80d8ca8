//! Shared by the bbolt test files: a textual dump (the Go helper prints the same format),
//! reading a file back into `Buckets`, the Go helper, and a real etcd to take snapshots from.
#![allow(dead_code)] // each test file uses its own subset

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_bbolt::{Bucket, Buckets, Db, Value};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dump_bucket(db: &Db, b: &Bucket<'_>, depth: usize, out: &mut String) {
    for (k, v) in db.entries(b).expect("read bucket") {
        let pad = " ".repeat(depth);
        match v {
            Value::Bucket(child) => {
                writeln!(out, "{pad}bucket {}", hex(k)).unwrap();
                dump_bucket(db, &child, depth + 1, out);
            }
            Value::Plain(v) => writeln!(out, "{pad}kv {} {}", hex(k), hex(v)).unwrap(),
        }
    }
}

/// Every bucket and key/value in order, as `bboltcheck dump` prints it.
pub fn dump(db: &Db) -> String {
    let mut out = format!("size {}\n", db.size());
    for (name, v) in db.entries(&db.root()).expect("read root") {
        let b = v.as_bucket().expect("top-level entries are buckets");
        writeln!(out, "bucket {}", hex(name)).unwrap();
        dump_bucket(db, &b, 1, &mut out);
    }
    out
}

/// The top-level buckets and their plain key/values.
pub fn read_back(db: &Db) -> Buckets {
    let mut all = Buckets::new();
    for (name, v) in db.entries(&db.root()).unwrap() {
        let b = v.as_bucket().unwrap();
        let kvs = all.entry(name.to_vec()).or_default();
        for (k, v) in db.entries(&b).unwrap() {
            match v {
                Value::Plain(v) => {
                    kvs.insert(k.to_vec(), v.to_vec());
                }
                Value::Bucket(_) => panic!("unexpected nested bucket"),
            }
        }
    }
    all
}

/// The Go helper built against /usr/share/gocode's bbolt, or `None` (with a message) when Go or
/// the sources are missing.
pub fn go_helper() -> Option<PathBuf> {
    let src = Path::new("/usr/share/gocode/src/go.etcd.io/bbolt");
    let has_go = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_go || !src.exists() {
        println!(
            "SKIPPED the Go cross-check: `go` or {} is missing",
            src.display()
        );
        return None;
    }
    // Under the target directory (removed by `cargo clean`, never left in /tmp), one directory
    // per test process as they run in parallel; those of finished processes are removed, and
    // the Go build cache is shared so later builds are quick.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for old in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = old.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("bboltcheck-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
    }
    let dir = tmp.join(format!("bboltcheck-{}", std::process::id()));
    let pkg = dir.join("src/bboltcheck");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/bboltcheck.go"),
        pkg.join("main.go"),
    )
    .unwrap();
    let bin = dir.join("bboltcheck");
    let out = Command::new("nice")
        .args(["-n", "19", "go", "build", "-o"])
        .arg(&bin)
        .arg("bboltcheck")
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("/usr/share/gocode:{}", dir.display()))
        .env("GOCACHE", tmp.join("go-build-cache"))
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}

/// Runs the Go helper; panics with its stderr on failure.
pub fn go(bin: &Path, mode: &str, file: &Path) -> String {
    let out = Command::new(bin).arg(mode).arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "bboltcheck {mode} {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A 1-member real etcd on loopback (plain HTTP), stopped on drop.
pub struct RealEtcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl RealEtcd {
    pub fn start() -> RealEtcd {
        assert!(
            Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{}", rampart_testkit::free_port());
        let peer = format!("http://127.0.0.1:{}", rampart_testkit::free_port());
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=ref")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ref={peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let etcd = RealEtcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcd.ctl(&["endpoint", "health"]).status.success() {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }

    /// Runs the real etcdctl against this member.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url))
            .args(args)
            .output()
            .unwrap()
    }

    /// `etcdctl snapshot save path`.
    pub fn snapshot(&self, path: &Path) {
        let out = self.ctl(&["snapshot", "save", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "snapshot save: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `ETCDCTL_API=2 etcdctl backup` and `etcdctl migrate` with our etcdctl on data dirs the real
//! etcd 3.4 wrote: the real etcd starts from the backup with `--force-new-cluster` and serves
//! the v2 keys (and with `--with-v3` the v3 ones); after `migrate` it serves the v2 keys as v3
//! keys. The source data dir of a backup is left as it was.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{etcdctl_bin, free_port, our_etcdctl};

/// A one-member plain-HTTP real etcd with the v2 API, stopped on drop.
struct Etcd {
    child: Child,
    client: String,
    data_dir: PathBuf,
}

impl Etcd {
    fn start(data_dir: &Path, extra: &[&str]) -> Etcd {
        assert!(
            Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (scripts/test.sh does)"
        );
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=m")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=m={peer}"))
            .arg("--enable-v2")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let etcd = Etcd {
            child,
            client,
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcd.ctl("3", &["endpoint", "health"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy:\n{}",
                std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }

    /// The real etcdctl against this member, with `ETCDCTL_API=api`.
    fn ctl(&self, api: &str, args: &[&str]) -> Output {
        Command::new(etcdctl_bin())
            .env("ETCDCTL_API", api)
            .args(["--endpoints", &self.client])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, api: &str, args: &[&str]) -> String {
        let out = self.ctl(api, args);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            text(&out.stderr),
            std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
        );
        text(&out.stdout).trim_end().to_string()
    }

    /// Stops it as an operator would (SIGTERM, then wait).
    fn stop(mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Our etcdctl, offline.
fn ours(api: &str, args: &[&str]) -> Output {
    Command::new(our_etcdctl())
        .env("ETCDCTL_API", api)
        .args(args)
        .output()
        .unwrap()
}

/// Every file under `dir` with its bytes, to see that a command left it alone.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn backup_of_a_real_etcd_data_dir_restarts_with_force_new_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // A low snapshot count: the backup starts from a `.snap` with WAL entries after it.
    let etcd = Etcd::start(&src, &["--snapshot-count=5"]);
    etcd.ok("3", &["put", "v3key", "123"]);
    for i in 0..8 {
        etcd.ok("2", &["set", &format!("/dir/k{i}"), &format!("v{i}")]);
    }
    etcd.stop();
    let snaps = std::fs::read_dir(src.join("member/snap"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "snap")
        })
        .count();
    assert!(snaps > 0, "etcd took no snapshot");
    let before = tree(&src);

    let backup = |name: &str, v3: bool| {
        let dest = tmp.path().join(name);
        let mut args = vec![
            "backup",
            "--data-dir",
            src.to_str().unwrap(),
            "--backup-dir",
            dest.to_str().unwrap(),
        ];
        if v3 {
            args.push("--with-v3");
        }
        let out = ours("2", &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        dest
    };
    let plain = backup("plain", false);
    let with_v3 = backup("withv3", true);
    assert_eq!(tree(&src), before, "the source data dir changed");
    for dir in [&plain, &with_v3] {
        use std::os::unix::fs::PermissionsExt;
        for sub in ["member/snap", "member/wal"] {
            let mode = std::fs::metadata(dir.join(sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{sub}");
        }
        let db = std::fs::metadata(dir.join("member/snap/db")).unwrap();
        assert_eq!(db.permissions().mode() & 0o777, 0o600);
    }
    // A second backup into the same place is refused, as etcdctl refuses it.
    let again = ours(
        "2",
        &[
            "backup",
            "--data-dir",
            src.to_str().unwrap(),
            "--backup-dir",
            plain.to_str().unwrap(),
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("to be empty"),
        "{}",
        text(&again.stderr)
    );

    for (dir, v3) in [(&plain, false), (&with_v3, true)] {
        let etcd = Etcd::start(dir, &["--force-new-cluster"]);
        assert_eq!(etcd.ok("2", &["get", "/dir/k0"]), "v0");
        assert_eq!(etcd.ok("2", &["get", "/dir/k7"]), "v7");
        let v3key = etcd.ok("3", &["get", "v3key", "--print-value-only"]);
        assert_eq!(v3key, if v3 { "123" } else { "" }, "with-v3: {v3}");
        let members = etcd.ok("3", &["member", "list"]);
        assert_eq!(members.lines().count(), 1, "{members}");
        etcd.ok("2", &["set", "/after", "backup"]);
        assert_eq!(etcd.ok("2", &["get", "/after"]), "backup");
        etcd.ok("3", &["put", "after", "backup"]);
    }
}

#[test]
fn migrate_turns_a_real_etcds_v2_keys_into_v3_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let etcd = Etcd::start(&dir, &[]);
    for i in 0..3 {
        etcd.ok("2", &["set", &format!("foo_{i}"), &format!("bar_{i}")]);
    }
    etcd.ok("2", &["mkdir", "/emptydir"]);
    // The v2 index of the last write: the new revision continues after it.
    let last = etcd.ok("2", &["-o", "extended", "get", "/foo_2"]);
    let foo2_index: i64 = last
        .lines()
        .find_map(|l| l.strip_prefix("Modified-Index: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    etcd.stop();
    let out = ours("3", &["migrate", "--data-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "using default transformer\nfinished transforming keys\n"
    );
    let etcd = Etcd::start(&dir, &[]);
    assert_eq!(
        etcd.ok("3", &["get", "/foo_1", "--print-value-only"]),
        "bar_1"
    );
    // Revisions continue from the last key's v2 index (a directory is no key, no revision).
    let put = etcd.ok("3", &["put", "test", "value", "-w", "json"]);
    let expected = format!("\"revision\":{}", foo2_index + 1);
    assert!(put.contains(&expected), "{put}, expected {expected}");
    let all = etcd.ok("3", &["get", "", "--prefix", "--keys-only"]);
    assert_eq!(all.split_whitespace().count(), 4, "{all}");
}

//! Starting `rampart server` (and the binary as `etcd`): readiness lines, refusal of unknown
//! flags, and of a data dir that belongs to another member or cluster.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, rampart_bin};

fn member_args(data: &str, client: u16, peer: u16, token: &str) -> Vec<String> {
    vec![
        "server".into(),
        "--name=solo".into(),
        format!("--data-dir={data}"),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=solo=http://127.0.0.1:{peer}"),
        format!("--initial-cluster-token={token}"),
    ]
}

#[test]
fn server_start_checks_flags_and_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("solo.etcd");
    let data = data.to_str().unwrap();
    let (client, peer) = (free_port(), free_port());
    let log = dir.path().join("log");
    let mut child = Command::new(rampart_bin())
        .args(member_args(data, client, peer, "token-a"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("enabled capabilities for version")
            && text.contains("published local member to cluster through raft")
            && text.contains("ready to serve client requests")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness lines missing:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();

    // Same data dir, flags describing another cluster.
    let out = Command::new(rampart_bin())
        .args(member_args(data, client, peer, "token-b"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains("belongs to member") && err.contains("data dir"),
        "{err}"
    );

    // An etcd flag that does not exist, through the `etcd` name.
    let link = dir.path().join("etcd");
    std::os::unix::fs::symlink(rampart_bin(), &link).unwrap();
    let out = Command::new(&link).arg("--bogus-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("flag provided but not defined: -bogus-flag")
    );
    let out = Command::new(&link).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("etcd Version: 3.4.23"));
}

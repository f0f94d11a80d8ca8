//! A mutual-TLS cluster refuses plaintext clients, clients without a certificate, clients with a
//! certificate from another CA, and a member whose peer certificate comes from another CA.

mod support;

use std::process::Command;

use support::{etcdctl_bin, Cluster, Pki};

fn etcdctl_with(endpoint: &str, extra: &[String]) -> std::process::Output {
    Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s")
        .args(extra)
        .args(["put", "refused", "x"])
        .output()
        .unwrap()
}

#[test]
fn cluster_refuses_clients_and_peers_without_the_right_certificates() {
    let mut cluster = Cluster::start(3);
    let https = cluster.members[0].client_url.clone();
    let plain = https.replace("https://", "http://");
    let ca = cluster.pki.file("ca.pem");

    // Plaintext against the TLS port.
    assert!(
        !etcdctl_with(&plain, &[]).status.success(),
        "plaintext client accepted"
    );
    // TLS but no client certificate.
    assert!(
        !etcdctl_with(&https, &[format!("--cacert={ca}")])
            .status
            .success(),
        "client without a certificate accepted"
    );
    // A client certificate from another CA.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::new(other_dir.path());
    let out = etcdctl_with(
        &https,
        &[
            format!("--cacert={ca}"),
            format!("--cert={}", other.file("client.pem")),
            format!("--key={}", other.file("client-key.pem")),
        ],
    );
    assert!(
        !out.status.success(),
        "client with a certificate from another CA accepted"
    );
    // The right certificate works (the refusals above were not a broken cluster).
    cluster.ctl_ok(0, &["put", "allowed", "x"]);

    // A member restarted with peer certificates from another CA cannot rejoin.
    cluster.kill(2);
    cluster.start_member_with_peer_pki(2, &other);
    std::thread::sleep(std::time::Duration::from_secs(4));
    cluster.ctl_ok(0, &["put", "while-impostor-runs", "y"]);
    let out = cluster.ctl(2, &["get", "while-impostor-runs"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("while-impostor-runs\ny"),
        "a member with a foreign peer certificate received the cluster's data\n{}",
        cluster.logs()
    );
}

//! `rampart bench`: every workload against a 3-member mutual-TLS cluster, small and bounded;
//! the JSON report counts every request (and, for watch, every watcher's every event).

mod support;

use support::{rampart_bin, Cluster};

fn bench(cluster: &Cluster, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(rampart_bin())
        .arg("bench")
        .arg(format!("--endpoints={}", cluster.endpoints()))
        .arg(format!("--cacert={}", cluster.pki.file("ca.pem")))
        .arg(format!("--cert={}", cluster.pki.file("client.pem")))
        .arg(format!("--key={}", cluster.pki.file("client-key.pem")))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

#[test]
fn bench_every_workload_counts_every_request() {
    let cluster = Cluster::start(3);
    for (args, want) in [
        (
            vec![
                "put",
                "--clients=8",
                "--conns=2",
                "--total=400",
                "--val-size=256",
                "--key-space-size=100",
            ],
            400,
        ),
        (
            vec!["range", "--consistency=l", "--clients=4", "--total=200"],
            200,
        ),
        (
            vec!["range", "--consistency=s", "--clients=4", "--total=200"],
            200,
        ),
        (
            vec!["txn-put", "--txn-ops=2", "--clients=4", "--total=100"],
            100,
        ),
        (vec!["lease-keepalive", "--clients=4", "--total=200"], 200),
        (
            vec!["watch", "--watchers=20", "--conns=2", "--total=50"],
            20 * 50,
        ),
        (
            vec!["put", "--target-leader", "--sequential-keys", "--total=100"],
            100,
        ),
    ] {
        let r = bench(&cluster, &args);
        assert_eq!(r["errors"], 0, "{args:?}: {r}");
        assert_eq!(r["ops"], want, "{args:?}: {r}");
        assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        assert!(
            r["latency_ms"]["p99"].as_f64().unwrap() >= r["latency_ms"]["p50"].as_f64().unwrap()
        );
    }
    // --duration and --rate bound the run by time and pace it.
    let r = bench(&cluster, &["put", "--duration=2s", "--rate=50"]);
    let ops = r["ops"].as_u64().unwrap();
    assert!((80..=110).contains(&ops), "{r}");
}

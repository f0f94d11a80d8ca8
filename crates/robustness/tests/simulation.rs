//! The deterministic simulation of the consensus layer: many seeds under drops, reorders,
//! partitions and crashes stay safe and make progress, and a seed replays exactly.

use rampart_robustness::simulation::{simulate, SimConfig};

#[test]
fn simulated_members_stay_consistent_and_recover_under_faults() {
    let mut total = rampart_robustness::simulation::SimReport::default();
    for seed in 1..=30 {
        for members in [3, 5] {
            let dir = tempfile::tempdir_in(shm_or_tmp()).unwrap();
            let config = SimConfig {
                members,
                seed,
                ..SimConfig::default()
            };
            let report =
                simulate(&config, dir.path()).unwrap_or_else(|e| panic!("{members} members: {e}"));
            total.crashes += report.crashes;
            total.partitions += report.partitions;
            total.leaderships += report.leaderships;
            total.committed_index += report.committed_index;
            total.dropped += report.dropped;
            total.delivered += report.delivered;
            total.proposals += report.proposals;
        }
    }
    println!("{total:?}");
    // The faults did happen (otherwise this test would prove nothing).
    assert!(total.crashes > 10, "{total:?}");
    assert!(total.partitions > 10, "{total:?}");
    assert!(total.leaderships > 24, "{total:?}");
    assert!(total.committed_index > 1000, "{total:?}");
}

#[test]
fn a_member_that_forgets_its_wal_is_caught() {
    let mut caught = Vec::new();
    for seed in 1..=30 {
        let dir = tempfile::tempdir_in(shm_or_tmp()).unwrap();
        let config = SimConfig {
            seed,
            forget_wal_on_restart: true,
            ..SimConfig::default()
        };
        if let Err(e) = simulate(&config, dir.path()) {
            caught.push(e.to_string());
        }
    }
    println!("{}", caught.join("\n"));
    // Members disagreeing on an applied entry: the safety check itself fired (raft-rs's own
    // assertions catch the other seeds).
    assert!(
        caught
            .iter()
            .any(|e| e.contains("was applied there before")),
        "no divergence caught in 30 seeds with amnesiac members:\n{}",
        caught.join("\n")
    );
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        seed: 42,
        ..SimConfig::default()
    };
    let a = simulate(&config, tempfile::tempdir_in(shm_or_tmp()).unwrap().path()).unwrap();
    let b = simulate(&config, tempfile::tempdir_in(shm_or_tmp()).unwrap().path()).unwrap();
    assert_eq!(a, b);
    let other = simulate(
        &SimConfig { seed: 43, ..config },
        tempfile::tempdir_in(shm_or_tmp()).unwrap().path(),
    )
    .unwrap();
    assert_ne!(a, other);
}

/// WAL fsyncs are cheap in memory; the simulation does thousands.
fn shm_or_tmp() -> std::path::PathBuf {
    let shm = std::path::PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

//! The deterministic simulation of the consensus layer (the real Raft loop of
//! `rampart_raft_node`, driven turn by turn): many seeds under drops, reorders, partitions and
//! crashes stay safe and make progress, and a seed replays exactly.

use rampart_robustness::simulation::{simulate, SimConfig};

#[test]
fn simulated_members_stay_consistent_and_recover_under_faults() {
    let mut total = rampart_robustness::simulation::SimReport::default();
    // SIM_SEED=n runs seed n alone (both sizes), to replay a failure.
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (1..=30).collect(),
    };
    for seed in seeds {
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
            total.accepted += report.accepted;
            total.crashes_in_turn += report.crashes_in_turn;
            total.snapshots_taken += report.snapshots_taken;
            total.snapshots_sent += report.snapshots_sent;
            total.snapshots_installed += report.snapshots_installed;
            total.reads_answered += report.reads_answered;
            total.reads_failed += report.reads_failed;
            total.membership_changes += report.membership_changes;
        }
    }
    println!("{total:?}");
    // The faults did happen (otherwise this test would prove nothing).
    assert!(total.crashes > 10, "{total:?}");
    assert!(total.crashes_in_turn > 5, "{total:?}");
    assert!(total.partitions > 10, "{total:?}");
    assert!(total.leaderships > 24, "{total:?}");
    assert!(total.committed_index > 1000, "{total:?}");
    // And the paths of the Raft loop beyond plain replication ran: log compaction, snapshots
    // sent to members behind the log and installed through the apply loop, batched reads.
    assert!(total.snapshots_taken > 100, "{total:?}");
    assert!(total.snapshots_sent > 10, "{total:?}");
    assert!(total.snapshots_installed > 10, "{total:?}");
    assert!(total.reads_answered > 1000, "{total:?}");
    assert!(total.membership_changes > 20, "{total:?}");
}

/// The members run `rampart_raft_node::RaftCore`, not a copy of its `Ready` handling: the
/// simulation's own code never touches raft-rs's `RawNode`.
#[test]
fn the_simulation_has_no_raft_loop_of_its_own() {
    let sources = [
        include_str!("../src/simulation/mod.rs"),
        include_str!("../src/simulation/node.rs"),
        include_str!("../src/simulation/state_machine.rs"),
    ];
    for source in sources {
        for forbidden in [
            "RawNode",
            ".ready()",
            ".advance(",
            "advance_apply",
            ".save(",
        ] {
            assert!(
                !source.contains(forbidden),
                "the simulation does {forbidden} itself"
            );
        }
    }
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

/// The Raft loop as it was before the simulation found the bug: a restarted member numbered its
/// ReadIndex requests from 1 again, and took the leader's late answer to its previous run's
/// request for a new read. The read check catches that, and the loop as it is passes the same
/// seeds.
#[test]
fn reads_numbered_anew_after_a_restart_are_caught() {
    let mut caught = Vec::new();
    for seed in 1..=30 {
        // Short outages and many reads: a member is back while the leader still holds its
        // request from before the crash.
        let config = SimConfig {
            seed,
            crash_rate: 0.01,
            down_steps: 2..20,
            read_rate: 0.5,
            ..SimConfig::default()
        };
        let dir = tempfile::tempdir_in(shm_or_tmp()).unwrap();
        simulate(&config, dir.path()).unwrap_or_else(|e| panic!("the real loop: {e}"));
        let broken = SimConfig {
            reuse_read_numbers: true,
            ..config
        };
        let dir = tempfile::tempdir_in(shm_or_tmp()).unwrap();
        if let Err(e) = simulate(&broken, dir.path()) {
            caught.push(e.to_string());
        }
    }
    println!("{}", caught.join("\n"));
    assert!(
        caught.len() >= 3,
        "too few stale reads caught in 30 seeds with reads numbered from 1 on every start:\n{}",
        caught.join("\n")
    );
    // Nothing else went wrong: only the reads are broken.
    assert!(
        caught
            .iter()
            .all(|e| e.contains("was applied before it was asked for")),
        "{}",
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

//! The checkers on hand-made histories: good ones pass, and each kind of bug is reported.

use rampart_robustness::durability::check_durability;
use rampart_robustness::history::{
    EventKind, History, Operation, Outcome, Request, Response, WatchEvent, WatchLog,
};
use rampart_robustness::linearizability::{
    check_linearizability, KeyVerdict, DEFAULT_MAX_STEPS_PER_KEY,
};
use rampart_robustness::report::{check_history, longest_unavailability};
use rampart_robustness::watch_check::{check_watches, WatchAnomaly};

const MS: u64 = 1_000_000;

/// Builds operations with ids in order; times in milliseconds.
#[derive(Default)]
struct Builder {
    ops: Vec<Operation>,
}

impl Builder {
    fn op(&mut self, client: usize, key: &str, request: Request, at: (u64, u64), outcome: Outcome) {
        self.ops.push(Operation {
            id: self.ops.len(),
            client,
            key: key.into(),
            request,
            invoked: at.0 * MS,
            completed: at.1 * MS,
            outcome,
        });
    }

    fn put(&mut self, client: usize, key: &str, value: &str, at: (u64, u64), revision: i64) {
        self.op(
            client,
            key,
            Request::Put {
                value: value.into(),
            },
            at,
            Outcome::Ok(Response::Put { revision }),
        );
    }

    fn put_unknown(&mut self, client: usize, key: &str, value: &str, at: (u64, u64)) {
        self.op(
            client,
            key,
            Request::Put {
                value: value.into(),
            },
            at,
            Outcome::Unknown {
                error: "deadline exceeded".into(),
            },
        );
    }

    fn get(&mut self, client: usize, key: &str, value: Option<&str>, at: (u64, u64)) {
        self.op(
            client,
            key,
            Request::Get,
            at,
            Outcome::Ok(Response::Get {
                value: value.map(str::to_string),
                mod_revision: 0,
            }),
        );
    }

    fn cas(&mut self, client: usize, key: &str, from: &str, to: &str, at: (u64, u64), ok: bool) {
        self.op(
            client,
            key,
            Request::CompareAndSet {
                expected: from.into(),
                value: to.into(),
            },
            at,
            Outcome::Ok(Response::CompareAndSet {
                succeeded: ok,
                revision: 0,
            }),
        );
    }
}

fn verdict(ops: &[Operation], key: &str) -> KeyVerdict {
    check_linearizability(ops, DEFAULT_MAX_STEPS_PER_KEY).verdicts[key].clone()
}

#[test]
fn concurrent_writes_and_reads_that_fit_an_order_are_linearizable() {
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.put(1, "k", "b", (5, 15), 3);
    // Overlaps both writes: may see either.
    b.get(2, "k", Some("a"), (6, 20));
    b.get(2, "k", Some("b"), (21, 25));
    b.cas(0, "k", "b", "c", (30, 35), true);
    b.cas(1, "k", "b", "d", (36, 40), false);
    b.get(1, "k", Some("c"), (41, 42));
    let report = check_linearizability(&b.ops, DEFAULT_MAX_STEPS_PER_KEY);
    assert!(report.is_linearizable(), "{:?}", report.verdicts);
}

#[test]
fn a_stale_read_is_reported_with_the_operations_involved() {
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.put(0, "k", "b", (20, 30), 3);
    // Starts after "b" was acknowledged, yet returns "a".
    b.get(1, "k", Some("a"), (40, 50));
    let KeyVerdict::NotLinearizable(found) = verdict(&b.ops, "k") else {
        panic!("stale read not reported");
    };
    let text = found.to_string();
    assert!(text.contains("not linearizable"), "{text}");
    assert!(text.contains("get  -> \"a\""), "{text}");
    assert_eq!(found.longest_order, vec![0, 1], "{text}");
    assert!(found.blocked.contains(&2), "{text}");
}

#[test]
fn a_lost_write_is_reported() {
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    // Acknowledged, then reads after it see the older value.
    b.put(1, "k", "b", (20, 30), 3);
    b.get(2, "k", Some("a"), (40, 45));
    b.get(2, "k", Some("a"), (50, 55));
    assert!(matches!(
        verdict(&b.ops, "k"),
        KeyVerdict::NotLinearizable(_)
    ));
}

#[test]
fn a_read_of_a_value_never_written_is_reported() {
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.get(1, "k", Some("z"), (20, 30));
    assert!(matches!(
        verdict(&b.ops, "k"),
        KeyVerdict::NotLinearizable(_)
    ));
}

#[test]
fn a_wrong_compare_and_set_answer_is_reported() {
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    // The value is "a", yet the CAS from "a" says it failed.
    b.cas(1, "k", "a", "b", (20, 30), false);
    assert!(matches!(
        verdict(&b.ops, "k"),
        KeyVerdict::NotLinearizable(_)
    ));
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    // Took effect, after a later read.
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.put_unknown(1, "k", "b", (20, 30));
    b.get(2, "k", Some("a"), (40, 45));
    b.get(2, "k", Some("b"), (50, 55));
    assert!(matches!(verdict(&b.ops, "k"), KeyVerdict::Linearizable));
    // Never took effect.
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.put_unknown(1, "k", "b", (20, 30));
    b.get(2, "k", Some("a"), (40, 45));
    assert!(matches!(verdict(&b.ops, "k"), KeyVerdict::Linearizable));
    // But it cannot take effect before it was invoked.
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.get(2, "k", Some("b"), (12, 15));
    b.put_unknown(1, "k", "b", (20, 30));
    assert!(matches!(
        verdict(&b.ops, "k"),
        KeyVerdict::NotLinearizable(_)
    ));
}

#[test]
fn keys_are_checked_separately_and_only_the_bad_one_is_reported() {
    let mut b = Builder::default();
    b.put(0, "good", "a", (0, 10), 2);
    b.get(1, "good", Some("a"), (20, 30));
    b.put(0, "bad", "x", (0, 10), 3);
    b.get(1, "bad", None, (20, 30));
    let report = check_linearizability(&b.ops, DEFAULT_MAX_STEPS_PER_KEY);
    assert!(matches!(report.verdicts["good"], KeyVerdict::Linearizable));
    assert_eq!(report.anomalies().len(), 1);
    assert_eq!(report.anomalies()[0].key, "bad");
}

#[test]
fn a_search_over_its_bound_is_undecided_not_a_hang() {
    // Many concurrent unknown writes and reads: a big search space, cut by a tiny bound.
    let mut b = Builder::default();
    for i in 0..40 {
        b.put_unknown(i, "k", &format!("v{i}"), (i as u64, i as u64 + 1));
    }
    b.get(99, "k", Some("nope"), (100, 101));
    let report = check_linearizability(&b.ops, 1_000);
    assert!(matches!(report.verdicts["k"], KeyVerdict::Undecided { .. }));
}

#[test]
fn a_long_sequential_history_checks_quickly() {
    let mut b = Builder::default();
    let mut t = 0;
    for i in 0..3000 {
        let v = format!("v{i}");
        b.put(i % 4, "k", &v, (t, t + 2), i as i64 + 2);
        b.get((i + 1) % 4, "k", Some(&v), (t + 1, t + 3));
        t += 3;
    }
    let start = std::time::Instant::now();
    let report = check_linearizability(&b.ops, DEFAULT_MAX_STEPS_PER_KEY);
    assert!(report.is_linearizable());
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

fn event(kind: EventKind, key: &str, value: &str, revision: i64) -> WatchEvent {
    WatchEvent {
        kind,
        key: key.into(),
        value: value.into(),
        revision,
    }
}

fn three_writes() -> Builder {
    let mut b = Builder::default();
    b.put(0, "k1", "a", (0, 10), 2);
    b.put(1, "k2", "b", (0, 10), 3);
    b.op(
        0,
        "k1",
        Request::Delete,
        (20, 30),
        Outcome::Ok(Response::Delete {
            deleted: true,
            revision: 4,
        }),
    );
    b
}

fn log(events: Vec<WatchEvent>) -> WatchLog {
    WatchLog {
        watcher: 7,
        member: 0,
        start_revision: 1,
        events,
    }
}

#[test]
fn a_complete_ordered_watch_passes() {
    let b = three_writes();
    let good = log(vec![
        event(EventKind::Put, "k1", "a", 2),
        event(EventKind::Put, "k2", "b", 3),
        event(EventKind::Delete, "k1", "", 4),
    ]);
    assert!(check_watches(&b.ops, &[&good]).is_empty());
}

#[test]
fn a_reordered_watch_event_is_reported() {
    let b = three_writes();
    let bad = log(vec![
        event(EventKind::Put, "k2", "b", 3),
        event(EventKind::Put, "k1", "a", 2),
        event(EventKind::Delete, "k1", "", 4),
    ]);
    let found = check_watches(&b.ops, &[&bad]);
    assert!(
        found
            .iter()
            .any(|a| matches!(a, WatchAnomaly::OutOfOrder { .. })),
        "{found:?}"
    );
    assert!(found[0].to_string().contains("out of order"));
}

#[test]
fn a_duplicated_watch_event_is_reported() {
    let b = three_writes();
    let bad = log(vec![
        event(EventKind::Put, "k1", "a", 2),
        event(EventKind::Put, "k2", "b", 3),
        event(EventKind::Put, "k2", "b", 3),
        event(EventKind::Delete, "k1", "", 4),
    ]);
    let found = check_watches(&b.ops, &[&bad]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(matches!(found[0], WatchAnomaly::Duplicate { .. }));
}

#[test]
fn a_gap_in_a_watch_is_reported() {
    let b = three_writes();
    let bad = log(vec![
        event(EventKind::Put, "k1", "a", 2),
        event(EventKind::Delete, "k1", "", 4),
    ]);
    let found = check_watches(&b.ops, &[&bad]);
    assert_eq!(found.len(), 1, "{found:?}");
    let WatchAnomaly::Missing { write, .. } = &found[0] else {
        panic!("{found:?}");
    };
    assert_eq!(write.key, "k2");
}

#[test]
fn a_watch_event_that_disagrees_or_that_nobody_wrote_is_reported() {
    let mut b = three_writes();
    let bad = log(vec![
        event(EventKind::Put, "k1", "WRONG", 2),
        event(EventKind::Put, "k2", "b", 3),
        event(EventKind::Delete, "k1", "", 4),
        event(EventKind::Put, "k3", "ghost", 5),
    ]);
    let found = check_watches(&b.ops, &[&bad]);
    assert!(
        matches!(found[0], WatchAnomaly::Disagrees { .. }),
        "{found:?}"
    );
    assert!(
        matches!(found[1], WatchAnomaly::Phantom { .. }),
        "{found:?}"
    );
    assert_eq!(found.len(), 2);
    // A write whose outcome is unknown explains the last event.
    b.put_unknown(3, "k3", "ghost", (40, 50));
    let found = check_watches(&b.ops, &[&bad]);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn two_writes_answered_with_one_revision_are_reported() {
    let mut b = Builder::default();
    b.put(0, "k1", "a", (0, 10), 2);
    b.put(1, "k2", "b", (0, 10), 2);
    let found = check_watches(&b.ops, &[]);
    assert!(matches!(found[0], WatchAnomaly::RevisionReused { .. }));
}

#[test]
fn a_write_missing_after_restart_is_a_lost_write() {
    let b = three_writes();
    let replay = log(vec![
        event(EventKind::Put, "k1", "a", 2),
        event(EventKind::Delete, "k1", "", 4),
    ]);
    let lost = check_durability(&b.ops, &replay);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].write.key, "k2");
    assert!(lost[0].to_string().contains("lost after restart"));
    let complete = log(vec![
        event(EventKind::Put, "k1", "a", 2),
        event(EventKind::Put, "k2", "b", 3),
        event(EventKind::Delete, "k1", "", 4),
    ]);
    assert!(check_durability(&b.ops, &complete).is_empty());
}

#[test]
fn a_failing_history_is_saved_and_reads_back_the_same() {
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.get(1, "k", None, (20, 30));
    let history = History {
        operations: b.ops,
        watches: vec![],
        replay_after_restart: None,
        workload_ended: None,
    };
    let findings = check_history(&history, DEFAULT_MAX_STEPS_PER_KEY);
    assert_eq!(findings.anomaly_count(), 1);
    let dir = tempfile::tempdir().unwrap();
    let path =
        rampart_robustness::report::save_failure(dir.path(), "run-1", &history, &findings).unwrap();
    assert_eq!(History::load(&path).unwrap(), history);
    let text = std::fs::read_to_string(dir.path().join("run-1.findings.txt")).unwrap();
    assert!(text.contains("key \"k\" is not linearizable"), "{text}");
}

#[test]
fn unavailability_is_the_longest_stretch_without_a_success() {
    let mut b = Builder::default();
    b.put(0, "k", "a", (0, 10), 2);
    b.put_unknown(1, "k", "b", (20, 2000));
    b.get(2, "k", Some("b"), (2100, 2500));
    let history = History {
        operations: b.ops,
        ..History::default()
    };
    assert_eq!(
        longest_unavailability(&history),
        std::time::Duration::from_millis(2490)
    );
}

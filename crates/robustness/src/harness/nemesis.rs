//! Nemeses: faults injected into a running cluster, each held for a bounded time and then
//! undone, so the cluster is whole again when `inject` returns.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use super::cluster::Cluster;
use super::HarnessError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nemesis {
    /// Cut one member off from the others (and, with namespaces, from clients: its link goes
    /// down).
    IsolateOne,
    /// The same for the member that leads now.
    IsolateLeader,
    /// Split the members into a majority and a minority that cannot reach each other (peer
    /// traffic; clients still reach both sides).
    SplitMajorityMinority,
    /// `kill -9` one member, then start it again.
    KillRestart,
    /// SIGSTOP one member, then SIGCONT.
    Pause,
    /// Delay (with jitter) and lose member-to-member traffic.
    DelayLoss,
    /// `kill -9` every member at once, then start them all again.
    RestartAll,
}

pub const ALL_NEMESES: [Nemesis; 7] = [
    Nemesis::IsolateOne,
    Nemesis::IsolateLeader,
    Nemesis::SplitMajorityMinority,
    Nemesis::KillRestart,
    Nemesis::Pause,
    Nemesis::DelayLoss,
    Nemesis::RestartAll,
];

impl fmt::Display for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Nemesis::IsolateOne => "isolate-one",
            Nemesis::IsolateLeader => "isolate-leader",
            Nemesis::SplitMajorityMinority => "split",
            Nemesis::KillRestart => "kill",
            Nemesis::Pause => "pause",
            Nemesis::DelayLoss => "delay-loss",
            Nemesis::RestartAll => "restart-all",
        })
    }
}

impl FromStr for Nemesis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_NEMESES
            .into_iter()
            .find(|n| n.to_string() == s)
            .ok_or_else(|| {
                format!(
                    "unknown nemesis {s:?}: use one of {}",
                    ALL_NEMESES.map(|n| n.to_string()).join(", ")
                )
            })
    }
}

/// Delay and loss of the `DelayLoss` nemesis.
const INJECTED_DELAY: Duration = Duration::from_millis(50);
const INJECTED_JITTER: Duration = Duration::from_millis(100);
const INJECTED_LOSS: f64 = 0.05;

/// Cuts member-to-member traffic between the two groups, both ways.
fn cut_between(cluster: &Cluster, a: &[usize], b: &[usize]) {
    cluster.faults.update(|f| {
        for &x in a {
            for &y in b {
                f.cuts.insert((x, y));
                f.cuts.insert((y, x));
            }
        }
    });
}

fn isolate(cluster: &Cluster, member: usize) -> Result<(), HarnessError> {
    let others: Vec<usize> = (0..cluster.len()).filter(|&i| i != member).collect();
    cut_between(cluster, &[member], &others);
    cluster.network.set_link(member, false)?;
    Ok(())
}

/// Applies `nemesis` for `hold`, then undoes it. Returns what was done, for the log.
pub async fn inject(
    cluster: &mut Cluster,
    nemesis: Nemesis,
    hold: Duration,
    rng: &mut impl Rng,
) -> Result<String, HarnessError> {
    let n = cluster.len();
    let one = rng.random_range(0..n);
    let what = match nemesis {
        Nemesis::IsolateOne | Nemesis::IsolateLeader => {
            let member = if nemesis == Nemesis::IsolateLeader {
                cluster.leader().await.unwrap_or(one)
            } else {
                one
            };
            isolate(cluster, member)?;
            tokio::time::sleep(hold).await;
            cluster.network.set_link(member, true)?;
            cluster.faults.heal_all();
            format!("{nemesis} m{member} for {hold:?}")
        }
        Nemesis::SplitMajorityMinority => {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(rng);
            let (minority, majority) = order.split_at(n / 2);
            cut_between(cluster, minority, majority);
            tokio::time::sleep(hold).await;
            cluster.faults.heal_all();
            format!("split {minority:?} | {majority:?} for {hold:?}")
        }
        Nemesis::KillRestart => {
            cluster.kill(one);
            tokio::time::sleep(hold).await;
            cluster.start_member(one)?;
            format!("kill -9 m{one}, restart after {hold:?}")
        }
        Nemesis::Pause => {
            cluster.pause(one);
            tokio::time::sleep(hold).await;
            cluster.resume(one);
            format!("SIGSTOP m{one}, SIGCONT after {hold:?}")
        }
        Nemesis::DelayLoss => {
            cluster.faults.update(|f| {
                f.delay = INJECTED_DELAY;
                f.jitter = INJECTED_JITTER;
                f.loss = INJECTED_LOSS;
            });
            tokio::time::sleep(hold).await;
            cluster.faults.heal_all();
            format!(
                "delay {INJECTED_DELAY:?}+{INJECTED_JITTER:?} jitter, loss {INJECTED_LOSS} for {hold:?}"
            )
        }
        Nemesis::RestartAll => {
            restart_all(cluster)?;
            "kill -9 all members and restart them".to_string()
        }
    };
    Ok(what)
}

/// Kills every member with SIGKILL and starts them all again.
pub fn restart_all(cluster: &mut Cluster) -> Result<(), HarnessError> {
    for i in 0..cluster.len() {
        cluster.resume(i);
        cluster.kill(i);
    }
    for i in 0..cluster.len() {
        cluster.start_member(i)?;
    }
    Ok(())
}

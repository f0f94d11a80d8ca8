//! Robustness testing of Rampart: real `rampart server` clusters under injected faults, and the
//! checkers that judge what their clients saw.
//!
//! Owns: the history model ([`history`]), the linearizability checker ([`linearizability`],
//! Wing–Gong–Lowe with memoisation, per key), the watch checker ([`watch_check`]), the durability
//! checker ([`durability`]), the cluster harness with its network namespaces, fault-injecting
//! relays and nemeses ([`harness`]), the client workload ([`workload`]) and a whole run with its
//! summary table ([`run`]), and a seeded simulation of the consensus layer ([`simulation`]). Does not own: the server (it runs the `rampart` binary as a separate
//! process) or its test suites.

pub mod durability;
pub mod harness;
pub mod history;
pub mod linearizability;
pub mod report;
pub mod run;
pub mod simulation;
pub mod watch_check;
pub mod workload;

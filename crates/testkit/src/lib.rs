//! Helpers shared by the test suites of Rampart's crates.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// First port of the range tests pick from.
const RANGE_START: u16 = 12000;
/// How many ports the range holds (12000–19999).
const RANGE_LEN: u16 = 8000;

/// A loopback port that is free now, below the ephemeral range (32768–60999 here): a port the
/// kernel hands out for port 0 can be taken by an outgoing connection before the process under
/// test binds it, and two port-0 picks in a row can return the same port once the first listener
/// is closed. 12000–19999 stays clear of etcd's e2e ports (10000, 20000 and up). Every call in a
/// process returns a different port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        // Processes start at different places, so concurrent test binaries rarely try the same ports.
        let seed = (u64::from(std::process::id()) * 7919
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::from(d.subsec_nanos()))
                .unwrap_or(0))
            % u64::from(RANGE_LEN);
        let _ = NEXT.compare_exchange(0, seed.max(1) as u16, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..RANGE_LEN {
        let port = RANGE_START + NEXT.fetch_add(1, Ordering::Relaxed) % RANGE_LEN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port in {RANGE_START}-{}",
        RANGE_START + RANGE_LEN - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_ports_differ_and_are_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        assert!(ports
            .iter()
            .all(|p| (RANGE_START..RANGE_START + RANGE_LEN).contains(p)));
    }
}

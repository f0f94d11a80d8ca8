//! Handing out request numbers to the callers: as fast as they ask, or paced by `--rate`.
//!
//! Paced requests are spread evenly: request `n` is due `n / rate` seconds after the start. tokio's
//! timers tick in whole milliseconds, so sleeping on them until each request's due time would let
//! the requests out in bursts, one per millisecond (7 at once at 7,000/s), which the server can
//! batch as it never could a steady stream like `etcdctl check perf`'s. A clock thread, sleeping
//! with the operating system's finer timers, lets each request out when it falls due instead.
//! When the callers fall behind, the requests that fell due meanwhile go out as soon as a caller
//! is free, so the rate asked is the rate sent whenever the server keeps up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Hands out request numbers until the total or the duration is reached.
pub(super) struct Pacer {
    next: AtomicU64,
    total: u64,
    deadline: Option<Instant>,
    /// Requests that fell due and were not taken yet; `None` when not paced.
    due: Option<Arc<Semaphore>>,
}

impl Pacer {
    /// `rate` requests per second (0: unpaced), at most `total` of them, until `duration` has
    /// passed (when given, `total` is ignored).
    pub(super) fn new(rate: u64, total: u64, duration: Option<Duration>) -> Pacer {
        let start = Instant::now();
        let due = (rate > 0).then(|| {
            let due = Arc::new(Semaphore::new(0));
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            let clock = Arc::downgrade(&due);
            let spawned = std::thread::Builder::new()
                .name("bench-pacer".into())
                .spawn(move || run_clock(start, interval, clock));
            if spawned.is_err() {
                // No thread: nothing would ever fall due. Better unpaced than stuck.
                due.add_permits(Semaphore::MAX_PERMITS / 2);
            }
            due
        });
        Pacer {
            next: AtomicU64::new(0),
            total: if duration.is_some() { u64::MAX } else { total },
            deadline: duration.map(|d| start + d),
            due,
        }
    }

    /// The next request's number, once it is due; `None` when done.
    pub(super) async fn take(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= self.total || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if let Some(due) = &self.due {
            // Never closed, so this never gives up.
            due.acquire().await.ok()?.forget();
        }
        Some(n)
    }
}

/// Releases one request every `interval` from `start` on (those that fell due while the thread
/// slept longer than asked, all at once), until the pacer is gone.
fn run_clock(start: Instant, interval: Duration, due: Weak<Semaphore>) {
    let interval_ns = interval.as_nanos().max(1);
    let mut released: u128 = 0;
    loop {
        let Some(permits) = due.upgrade() else {
            return;
        };
        // Requests 0..=k are due once k intervals have passed.
        let fell_due = start.elapsed().as_nanos() / interval_ns + 1;
        if fell_due > released {
            let more = usize::try_from(fell_due - released).unwrap_or(usize::MAX);
            // A semaphore holds at most MAX_PERMITS; callers that far behind take what is there.
            let room = Semaphore::MAX_PERMITS - permits.available_permits();
            permits.add_permits(more.min(room));
            released = fell_due;
        }
        drop(permits);
        let next_ns = u64::try_from(released.saturating_mul(interval_ns)).unwrap_or(u64::MAX);
        let next_at = start + Duration::from_nanos(next_ns);
        std::thread::sleep(next_at.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unpaced_hands_out_the_total_at_once() {
        let pacer = Pacer::new(0, 5, None);
        let mut got = Vec::new();
        while let Some(n) = pacer.take().await {
            got.push(n);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn paced_requests_are_never_early() {
        // 2,000/s: request n is due n * 0.5 ms after the start.
        let start = Instant::now();
        let pacer = Pacer::new(2_000, 40, None);
        let mut count = 0;
        while let Some(n) = pacer.take().await {
            let earliest = Duration::from_micros(500 * n);
            assert!(
                start.elapsed() >= earliest,
                "request {n} went out at {:?}, before {earliest:?}",
                start.elapsed()
            );
            count += 1;
        }
        assert_eq!(count, 40);
    }

    #[tokio::test]
    async fn paced_requests_stop_at_the_deadline() {
        let pacer = Pacer::new(1_000, 0, Some(Duration::from_millis(50)));
        let mut count = 0u64;
        while pacer.take().await.is_some() {
            count += 1;
        }
        // At most one per millisecond of the 50, plus the one due at the start.
        assert!(
            (1..=51).contains(&count),
            "{count} requests in 50 ms at 1,000/s"
        );
    }

    #[test]
    fn the_clock_does_not_keep_the_pacer_alive() {
        let pacer = Pacer::new(100_000, 0, Some(Duration::from_secs(60)));
        let weak = Arc::downgrade(pacer.due.as_ref().expect("paced"));
        drop(pacer);
        // The clock thread holds the semaphore only for a moment at each release.
        let until = Instant::now() + Duration::from_secs(5);
        while weak.strong_count() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(weak.strong_count(), 0);
    }
}

//! Keeps the backend file's dirty pages few, so that a durable commit does not stall writes.
//!
//! Ordinary batches commit without a sync ([`redb::Durability::None`]): their pages sit dirty in
//! the kernel's page cache, which writes them out only after 30 s. The durable commit every
//! `--snapshot-count` entries then has to write all of them before its `fdatasync` returns, and
//! the apply loop waits: with 1 KiB values and 500 clients, a durable commit after 50,000 puts
//! raised the slowest put from 179–192 ms to 336–355 ms (`scripts/cpu-per-op.py` with
//! `ETCD_SNAPSHOT_COUNT=50000`), and 100,000 puts (the default) pushed `etcdctl check perf`'s
//! slowest request past its 0.5 s limit. So after a commit, at most every
//! [`WRITEBACK_INTERVAL`], the kernel is asked to start writing the file's dirty pages
//! (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`, as RocksDB's `bytes_per_sync` does), on a
//! thread of its own. That call does not wait for the disk to finish, and a page rewritten while
//! it is being written is simply dirtied again (this disk does not require stable pages).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often writeback of the backend file is started at most.
pub const WRITEBACK_INTERVAL: Duration = Duration::from_millis(100);

/// Starts writeback from a thread of its own: the call takes about 1 ms here (up to 5 ms seen,
/// `strace -T` on a member under 500 clients), which the apply loop should not wait for.
#[derive(Debug)]
pub(crate) struct Writeback {
    last: Mutex<Instant>,
    /// Wakes the writeback thread; it ends when this is dropped (the store closed or replaced
    /// its file).
    wake: SyncSender<()>,
}

impl Writeback {
    /// Starts the thread, with a second handle on the backend file (the kernel's writeback is
    /// per file, not per handle).
    pub fn open(path: &Path) -> std::io::Result<Writeback> {
        let file = File::open(path)?;
        let (wake, woken) = sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    start_writeback(&file);
                }
            })?;
        Ok(Writeback {
            last: Mutex::new(Instant::now()),
            wake,
        })
    }

    /// Called after a commit: has writeback of the file's dirty pages started if the interval
    /// has passed since the last start. Never waits.
    pub fn after_commit(&self) {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < WRITEBACK_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        // Full: a start is already pending, which covers this commit's pages too.
        let _ = self.wake.try_send(());
    }
}

fn start_writeback(file: &File) {
    // SAFETY: a plain system call on a descriptor the caller owns; no memory is passed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        // Only a hint: the durable commit's fdatasync still writes whatever is left.
        tracing::debug!(error = %std::io::Error::last_os_error(), "backend: sync_file_range failed");
    }
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::io::Write;

    /// Pages of `file` in the page cache that are dirty or being written, from `cachestat(2)`
    /// (Linux 6.5); `None` where the kernel lacks it.
    fn unwritten_pages(file: &File) -> Option<u64> {
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            cache: u64,
            dirty: u64,
            writeback: u64,
            evicted: u64,
            recently_evicted: u64,
        }
        const SYS_CACHESTAT: libc::c_long = 451;
        let range = Range { off: 0, len: 0 };
        let mut stat = Stat::default();
        // SAFETY: both pointers are to live structs of the layout the system call expects.
        let rc = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                file.as_raw_fd(),
                &range as *const Range,
                &mut stat as *mut Stat,
                0,
            )
        };
        (rc == 0).then_some(stat.dirty + stat.writeback)
    }

    #[test]
    fn a_commit_after_the_interval_starts_writing_the_dirty_pages_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backend");
        let mut file = File::create(&path).unwrap();
        file.write_all(&vec![7u8; 4 << 20]).unwrap();
        let writeback = Writeback::open(&path).unwrap();
        let Some(before) = unwritten_pages(&file) else {
            eprintln!("skipped: this kernel has no cachestat");
            return;
        };
        if before == 0 {
            // tmpfs, or the kernel wrote them already: nothing here to observe.
            eprintln!(
                "skipped: no dirty pages to observe in {}",
                dir.path().display()
            );
            return;
        }
        // Within the interval nothing is started: the pages stay dirty (the kernel's own
        // writeback waits 30 s).
        writeback.after_commit();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            unwritten_pages(&file).unwrap() > 0,
            "pages were written before the interval passed"
        );
        std::thread::sleep(WRITEBACK_INTERVAL);
        writeback.after_commit();
        let deadline = Instant::now() + Duration::from_secs(10);
        while unwritten_pages(&file).unwrap() > 0 {
            assert!(
                Instant::now() < deadline,
                "dirty pages were not written out after the commit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

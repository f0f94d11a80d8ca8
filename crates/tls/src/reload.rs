//! Noticing that files changed: a cheap `stat` signature (modification time, length, inode) of
//! each file, compared before a configuration is handed out.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the files are looked at, at most. Small, so a replaced certificate is used by the
/// next connection; large enough that a connection storm does not become a `stat` storm.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature(Vec<Option<(i64, i64, u64, u64)>>);

fn signature(files: &[PathBuf]) -> Signature {
    Signature(
        files
            .iter()
            .map(|f| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.mtime(), m.mtime_nsec(), m.len(), m.ino()))
            })
            .collect(),
    )
}

/// A value built from files, rebuilt when they change. A failed rebuild keeps the old value
/// (a half-copied certificate must not take a listener down) and is logged.
pub struct Reloading<T: Clone> {
    files: Vec<PathBuf>,
    state: Mutex<State<T>>,
    build: Box<dyn Fn() -> Result<T, crate::TlsError> + Send + Sync>,
    what: String,
}

struct State<T> {
    value: T,
    signature: Signature,
    /// Files seen broken last time: not rebuilt (nor warned about) again until they change.
    failed: Option<Signature>,
    checked: Instant,
}

impl<T: Clone> Reloading<T> {
    pub fn new(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        build: Box<dyn Fn() -> Result<T, crate::TlsError> + Send + Sync>,
    ) -> Result<Reloading<T>, crate::TlsError> {
        let sig = signature(&files);
        let value = build()?;
        Ok(Reloading {
            files,
            state: Mutex::new(State {
                value,
                signature: sig,
                failed: None,
                checked: Instant::now(),
            }),
            build,
            what: what.into(),
        })
    }

    /// The current value, rebuilt first if the files changed.
    pub fn get(&self) -> T {
        let mut state = self.state.lock().expect("reload state");
        if state.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.checked = Instant::now();
            let sig = signature(&self.files);
            if sig != state.signature && state.failed.as_ref() != Some(&sig) {
                match (self.build)() {
                    Ok(value) => {
                        state.value = value;
                        state.signature = sig;
                        state.failed = None;
                        tracing::info!(what = %self.what, "TLS files changed; reloaded");
                    }
                    Err(e) => {
                        // Often a rotation caught halfway (key replaced, certificate not yet);
                        // the next change of the files is tried again.
                        tracing::warn!(what = %self.what, error = %e, "TLS files changed but cannot be loaded; keeping the previous ones");
                        state.failed = Some(sig);
                    }
                }
            }
        }
        state.value.clone()
    }
}

//! etcd's simple tokens (`--auth-token simple`): random strings handed out by Authenticate,
//! each naming a user, valid until unused for `--auth-token-ttl` seconds. Every member assigns
//! the token when it applies the Authenticate entry, so any member accepts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString as _};

/// etcd's default `--auth-token-ttl` (seconds).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Length of the random part of a token, as etcd's.
const RANDOM_LEN: usize = 16;

#[derive(Debug)]
pub struct SimpleTokens {
    /// Time to live in milliseconds (set from `--auth-token-ttl` once the member starts).
    ttl_ms: AtomicU64,
    /// Off when the member hands out JWTs instead (nothing to remember then).
    off: AtomicBool,
    tokens: Mutex<HashMap<String, Holder>>,
}

#[derive(Debug)]
struct Holder {
    user: String,
    expires: Instant,
}

impl Default for SimpleTokens {
    fn default() -> Self {
        SimpleTokens::new(DEFAULT_TOKEN_TTL)
    }
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl_ms: AtomicU64::new(ttl.as_millis() as u64),
            off: AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A new token: random letters and digits, then `.` and `suffix` (etcd puts the Raft index
    /// there; any unique number does).
    pub fn generate(suffix: u64) -> String {
        let random = Alphanumeric.sample_string(&mut rand::rng(), RANDOM_LEN);
        format!("{random}.{suffix}")
    }

    /// Sets how long an unused token stays valid (`--auth-token-ttl`).
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(ttl.as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops remembering tokens (the member uses JWTs, which carry their user themselves).
    pub fn turn_off(&self) {
        self.off.store(true, Ordering::Relaxed);
        self.clear();
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Holder>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `token` to `user` (applying Authenticate). Expired tokens are dropped here.
    pub fn assign(&self, token: &str, user: &str) {
        if self.off.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut tokens = self.lock();
        tokens.retain(|_, h| h.expires > now);
        tokens.insert(
            token.to_string(),
            Holder {
                user: user.to_string(),
                expires: now + self.ttl(),
            },
        );
    }

    /// The user holding `token`, if it is valid; using it restarts its time to live.
    pub fn user_of(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut tokens = self.lock();
        match tokens.get_mut(token) {
            Some(h) if h.expires > now => {
                h.expires = now + self.ttl();
                Some(h.user.clone())
            }
            Some(_) => {
                tokens.remove(token);
                None
            }
            None => None,
        }
    }

    /// Drops every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, h| h.user != user);
    }

    /// Drops every token (auth disabled).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_until_invalidated() {
        let tokens = SimpleTokens::default();
        let a = SimpleTokens::generate(7);
        let b = SimpleTokens::generate(8);
        assert_ne!(a, b);
        assert!(a.ends_with(".7") && a.len() == RANDOM_LEN + 2);
        tokens.assign(&a, "alice");
        tokens.assign(&b, "bob");
        assert_eq!(tokens.user_of(&a).as_deref(), Some("alice"));
        tokens.invalidate_user("alice");
        assert_eq!(tokens.user_of(&a), None);
        assert_eq!(tokens.user_of(&b).as_deref(), Some("bob"));
        tokens.clear();
        assert_eq!(tokens.user_of(&b), None);
    }

    #[test]
    fn an_unused_token_expires_and_a_used_one_does_not() {
        let tokens = SimpleTokens::new(Duration::from_millis(200));
        tokens.assign("used", "u");
        tokens.assign("idle", "i");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(80));
            assert!(tokens.user_of("used").is_some());
        }
        assert_eq!(tokens.user_of("idle"), None);
    }
}

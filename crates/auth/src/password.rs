//! Password hashes: bcrypt, as etcd stores them (`--bcrypt-cost`, default 10). Hashing takes
//! tens of milliseconds on purpose; callers run it off the async workers.

/// etcd's default `--bcrypt-cost`.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// A bcrypt hash of `password` at `cost` (4 to 31).
pub fn hash(password: &str, cost: u32) -> Result<String, String> {
    bcrypt::hash(password, cost).map_err(|e| e.to_string())
}

/// Whether `password` matches `hashed` (false for a malformed hash).
pub fn verify(password: &str, hashed: &[u8]) -> bool {
    std::str::from_utf8(hashed)
        .ok()
        .and_then(|h| bcrypt::verify(password, h).ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = super::hash("secret", 4).unwrap();
        assert!(super::verify("secret", h.as_bytes()));
        assert!(!super::verify("Secret", h.as_bytes()));
        assert!(!super::verify("secret", b"not a hash"));
        assert!(super::hash("x", 3).is_err());
    }
}

//! Secrets: random tokens, their hashes, constant-time comparison, and
//! argon2id for passwords. Nothing here logs or formats a secret.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 32 random bytes from the operating system, as 43 URL-safe base64 characters.
pub fn random_token() -> Result<String, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// `n` random bytes as lowercase hex (identifiers: public, but unguessable).
pub fn random_hex(n: usize) -> Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of a high-entropy token, hex. Only for random tokens (sessions,
/// API keys): passwords go through [`PasswordHashing`].
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Compares two secrets (or their hashes) in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// argon2id with the configured cost. Hashing is CPU- and memory-bound:
/// callers run it on the blocking pool.
#[derive(Clone)]
pub struct PasswordHashing {
    params: Params,
    /// A hash of a random password, verified against when the account does
    /// not exist, so that a failed login takes as long either way.
    decoy: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

impl PasswordHashing {
    /// `memory_kib` and `iterations` as in the configuration (OWASP's
    /// argon2id baseline is 19 MiB, 2 iterations, 1 lane).
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, HashingError> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| HashingError::Params(e.to_string()))?;
        let mut hashing = Self {
            params,
            decoy: String::new(),
        };
        let decoy_password = random_token().map_err(|e| HashingError::Random(e.to_string()))?;
        hashing.decoy = hashing.hash(&decoy_password)?;
        Ok(hashing)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string (`$argon2id$v=19$m=...`), with a random salt.
    pub fn hash(&self, password: &str) -> Result<String, HashingError> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashingError::Hash(e.to_string()))
    }

    /// Whether `password` matches `phc` (the parameters stored in the hash
    /// are used, so raising the cost later keeps old hashes valid). Without a
    /// hash, a decoy is verified so the answer takes the same time.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let target = phc.unwrap_or(&self.decoy);
        let ok = self.argon2().verify_password(password.as_bytes(), target).is_ok();
        ok && phc.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = PasswordHashing::new(1024, 1).unwrap();
        let phc = h.hash("réverbère-allumé-42").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(h.verify("réverbère-allumé-42", Some(&phc)));
        assert!(!h.verify("réverbère-allumé-43", Some(&phc)));
        assert!(!h.verify("réverbère-allumé-42", None));
        assert!(!h.verify("x", Some("not a phc string")));
        assert_ne!(phc, h.hash("réverbère-allumé-42").unwrap(), "salted");
    }

    #[test]
    fn tokens_are_random_and_hashes_compare_in_constant_time() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert!(same_secret(&token_hash(&a), &token_hash(&a)));
        assert!(!same_secret(&token_hash(&a), &token_hash(&b)));
        assert!(!same_secret("abc", "abcd"));
        assert_eq!(random_hex(8).unwrap().len(), 16);
    }
}

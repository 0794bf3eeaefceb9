//! Device secrets: MQTT passwords, stored only as salted hashes.
//!
//! # Why salted SHA-256 and not argon2
//!
//! A slow password hash (argon2id, bcrypt) protects *low-entropy* human
//! passwords against offline guessing. Device secrets are not human
//! passwords: the ones Vigie generates carry 160 random bits, and supplied
//! ones must be at least [`MIN_PASSWORD_LEN`] characters. Guessing a 128-bit
//! secret is out of reach whatever the hash speed, so a fast hash loses
//! nothing there, while an argon2id tuned to its recommended cost (~50 ms and
//! 19 MiB per check) would turn the reconnection of 34,000 street lights after
//! a broker restart into half an hour of CPU on a small server, and make
//! every CONNECT a denial-of-service lever. So a password is stored as
//! `sha256$<salt>$<digest>`: a 128-bit random salt per device (no two devices
//! share a digest, no precomputed tables) and `SHA-256(salt || password)`,
//! compared in constant time ([`subtle`]).
//!
//! The consequence, documented for operators: do not give devices short,
//! human-chosen passwords; let Vigie generate them.
//!
//! This module is pure: randomness (salts, generated secrets) comes from the
//! caller.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest password accepted from an operator (generated ones are 40 hex digits).
pub const MIN_PASSWORD_LEN: usize = 16;
/// Longest password accepted (MQTT allows 65,535 bytes; nothing needs that).
pub const MAX_PASSWORD_LEN: usize = 256;
/// Random bytes in a generated password (160 bits).
pub const GENERATED_SECRET_BYTES: usize = 20;
/// Random bytes in a salt (128 bits).
pub const SALT_BYTES: usize = 16;

const SCHEME: &str = "sha256";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the MQTT password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters (got {0})")]
    PasswordLength(usize),
    #[error("the MQTT password must be printable ASCII without spaces")]
    PasswordCharacters,
    #[error("'{0}' is not a password hash of the form sha256$<32 hex digits salt>$<64 hex digits>")]
    HashFormat(String),
}

/// A plaintext secret, as received from an operator or just generated. Its
/// `Debug` never shows the value, so it cannot leak into a log by accident.
/// It deserializes from a string but never serializes.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Checks an operator-supplied password: long enough to be unguessable
    /// (see the module documentation), printable ASCII.
    pub fn new(password: String) -> Result<Self, CredentialError> {
        let len = password.chars().count();
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
            return Err(CredentialError::PasswordLength(len));
        }
        if !password.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::PasswordCharacters);
        }
        Ok(Self(password))
    }

    /// A secret as configured for Vigie's own login on an external broker:
    /// not checked, that broker's rules apply.
    pub fn from_configured(password: String) -> Self {
        Self(password)
    }

    /// A generated secret: the random bytes in lowercase hex.
    pub fn from_random(bytes: [u8; GENERATED_SECRET_BYTES]) -> Self {
        Self(hex(&bytes))
    }

    /// The plaintext, for the one place that must hand it out (the
    /// provisioning response, the MQTT client's CONNECT).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A stored password hash, `sha256$<salt hex>$<digest hex>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PasswordHash {
    salt: [u8; SALT_BYTES],
    digest: [u8; 32],
}

impl PasswordHash {
    /// Hashes `secret` with `salt` (which must be random, one per secret).
    pub fn new(secret: &Secret, salt: [u8; SALT_BYTES]) -> Self {
        Self {
            salt,
            digest: digest(&salt, secret.0.as_bytes()),
        }
    }

    /// Whether `password` is the secret this hash was made from, compared in
    /// constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_LEN * 4 {
            return false;
        }
        digest(&self.salt, password).ct_eq(&self.digest).into()
    }
}

fn digest(salt: &[u8], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password);
    h.finalize().into()
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(sha256)")
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}${}${}", hex(&self.salt), hex(&self.digest))
    }
}

impl std::str::FromStr for PasswordHash {
    type Err = CredentialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CredentialError::HashFormat(s.chars().take(120).collect());
        let mut parts = s.split('$');
        let (Some(SCHEME), Some(salt), Some(digest), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        Ok(Self {
            salt: unhex(salt).ok_or_else(err)?,
            digest: unhex(digest).ok_or_else(err)?,
        })
    }
}

impl TryFrom<String> for PasswordHash {
    type Error = CredentialError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PasswordHash> for String {
    fn from(h: PasswordHash) -> String {
        h.to_string()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16);
        let hi = u8::try_from(digit(pair[0])?).ok()?;
        let lo = u8::try_from(digit(pair[1])?).ok()?;
        out[i] = hi << 4 | lo;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let secret = Secret::from_random([7; GENERATED_SECRET_BYTES]);
        assert_eq!(secret.expose().len(), 40);
        let hash = PasswordHash::new(&secret, [1; SALT_BYTES]);
        assert!(hash.verify(secret.expose().as_bytes()));
        assert!(!hash.verify(b"0707070707070707070707070707070707070706"));
        assert!(!hash.verify(b""));
        // Another salt, another digest.
        let other = PasswordHash::new(&secret, [2; SALT_BYTES]);
        assert_ne!(hash.to_string(), other.to_string());
        assert!(other.verify(secret.expose().as_bytes()));
    }

    #[test]
    fn hashes_round_trip_as_text() {
        let hash = PasswordHash::new(&Secret::new("correct-horse-battery".into()).unwrap(), [0xab; 16]);
        let text = hash.to_string();
        assert!(text.starts_with("sha256$abababababababababababababababab$"), "{text}");
        assert_eq!(text.len(), 6 + 1 + 32 + 1 + 64);
        let back: PasswordHash = text.parse().unwrap();
        assert_eq!(back, hash);
        assert!(back.verify(b"correct-horse-battery"));
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<PasswordHash>(&json).unwrap(), hash);
        for bad in [
            "",
            "sha256$00$00",
            "md5$abababababababababababababababab$00",
            &format!("{text}$x"),
            &text.replace('a', "g"),
        ] {
            assert!(bad.parse::<PasswordHash>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Secret::new("a-long-enough-password".into()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let h = PasswordHash::new(&s, [0; 16]);
        assert!(!format!("{h:?}").contains('$'));
    }

    #[test]
    fn short_or_odd_passwords_are_refused() {
        assert_eq!(
            Secret::new("short".into()).unwrap_err(),
            CredentialError::PasswordLength(5)
        );
        assert_eq!(
            Secret::new("has a space in it!".into()).unwrap_err(),
            CredentialError::PasswordCharacters
        );
        assert!(Secret::new("x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}

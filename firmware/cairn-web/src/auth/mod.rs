//! Accounts, roles, sessions and login throttling, kept in `web.db` beside `cairn.db`.
//!
//! `web.db` is the panel's own SQLite file (WAL, synchronous=FULL) with its own schema
//! version (`PRAGMA user_version`); `cairn-store` never reads it. Passwords are argon2id PHC
//! strings; session tokens are kept only as their SHA-256. The one-time setup code exists
//! only in memory while no account exists.

mod db;
mod throttle;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::WebError;

pub use db::AuthDb;
pub use throttle::{Throttle, ACCOUNT_FAILS, ADDRESS_FAILS, FAIL_WINDOW_SECS};

/// What a person may do; the route table's permissions (`routes::Perm`) hold the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users and settings.
    Admin,
    /// Disks and media; no patient data.
    Technician,
    /// Clinic staff: studies, media, silence.
    Staff,
    /// Reads studies and status only.
    Reader,
}

impl Role {
    /// All roles, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Technician, Role::Staff, Role::Reader];

    /// The lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Staff => "staff",
            Role::Reader => "reader",
        }
    }

    /// Parse the lowercase word.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Seconds since the Unix epoch, with an offset tests can advance.
#[derive(Debug, Default)]
pub struct Clock {
    offset: AtomicU64,
}

impl Clock {
    /// Now, in seconds.
    pub fn now(&self) -> u64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        real + self.offset.load(Ordering::Relaxed)
    }

    /// Move time forward (tests: session expiry, throttle windows).
    pub fn advance(&self, secs: u64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

/// How expensive password hashing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCost {
    /// argon2id with the crate's recommended parameters (19 MiB, 2 passes).
    Production,
    /// Cheap parameters for tests only.
    Test,
}

fn argon(cost: HashCost) -> Argon2<'static> {
    let params = match cost {
        HashCost::Production => Params::default(),
        HashCost::Test => Params::new(256, 1, 1, None).unwrap_or_default(),
    };
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password as an argon2id PHC string.
pub fn hash_password(password: &str, cost: HashCost) -> Result<String, WebError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| WebError::Internal(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| WebError::Internal(e.to_string()))?;
    argon(cost)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::Internal(e.to_string()))
}

/// Check a password against a PHC string (parameters are read from the string).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, WebError> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(hex::encode(b))
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compare two secrets without an early exit.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A person's account, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// A disabled account cannot log in.
    pub disabled: bool,
    /// When it was made (seconds since the epoch).
    pub created_at: u64,
}

/// A logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who.
    pub username: String,
    /// Their role now.
    pub role: Role,
    /// The CSRF token every change must carry.
    pub csrf: String,
}

/// Check a login name: 1 to 32 of `a-z 0-9 . _ -`.
pub fn valid_username(name: &str) -> Result<(), WebError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(WebError::BadRequest(
            "a user name is 1 to 32 characters: lowercase letters, digits, '.', '_' or '-'".into(),
        ))
    }
}

/// Check a new password: 10 to 256 characters.
pub fn valid_password(pw: &str) -> Result<(), WebError> {
    let n = pw.chars().count();
    if (10..=256).contains(&n) {
        Ok(())
    } else {
        Err(WebError::BadRequest(
            "a password needs at least 10 characters (at most 256)".into(),
        ))
    }
}

/// A one-time setup code like `4821-0937-5562`.
pub fn new_setup_code() -> Result<String, WebError> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| WebError::Internal(e.to_string()))?;
    let n = u64::from_le_bytes(b) % 1_000_000_000_000;
    // Three groups of four digits, by arithmetic (no slicing of text by byte index).
    Ok(format!(
        "{:04}-{:04}-{:04}",
        n / 100_000_000,
        n / 10_000 % 10_000,
        n % 10_000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_roundtrip() {
        let phc = hash_password("correct horse battery", HashCost::Test).unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("wrong horse battery", &phc));
    }

    #[test]
    fn setup_code_shape() {
        let c = new_setup_code().unwrap();
        assert_eq!(c.len(), 14);
        assert!(c.chars().all(|ch| ch.is_ascii_digit() || ch == '-'));
    }

    #[test]
    fn names_and_passwords() {
        assert!(valid_username("alice").is_ok());
        assert!(valid_username("Alice").is_err());
        assert!(valid_username("<b>").is_err());
        assert!(valid_password("short").is_err());
        assert!(valid_password("long enough pw").is_ok());
    }
}

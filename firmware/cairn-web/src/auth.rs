//! Accounts, roles, sessions and login throttling, kept in `web.db` beside `cairn.db`.
//!
//! `web.db` is the panel's own SQLite file (WAL, synchronous=FULL) with its own schema
//! version (`PRAGMA user_version`); `cairn-store` never reads it. Passwords are argon2id PHC
//! strings; session tokens are kept only as their SHA-256. The one-time setup code exists
//! only in memory while no account exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::WebError;

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

/// Failed attempts from one key (an address or an account).
#[derive(Debug, Clone, Copy, Default)]
struct Fails {
    count: u32,
    window_start: u64,
    locked_until: u64,
}

/// Failures allowed per account in a window before it is locked for a while.
pub const ACCOUNT_FAILS: u32 = 5;
/// Failures allowed per address in a window.
pub const ADDRESS_FAILS: u32 = 20;
/// The window (and the longest lock), seconds.
pub const FAIL_WINDOW_SECS: u64 = 900;

/// Login throttling per address and per account (in memory: a restart forgets it).
#[derive(Debug, Default)]
pub struct Throttle {
    fails: Mutex<HashMap<String, Fails>>,
}

impl Throttle {
    /// Seconds to wait before `key` may try again, if locked.
    pub fn locked(&self, key: &str, now: u64) -> Option<u64> {
        let g = self.fails.lock().ok()?;
        g.get(key)
            .filter(|f| f.locked_until > now)
            .map(|f| f.locked_until - now)
    }

    /// Count a failure; lock after `limit` in the window (60 s, doubling, at most the window).
    pub fn fail(&self, key: &str, limit: u32, now: u64) {
        let Ok(mut g) = self.fails.lock() else {
            return;
        };
        let f = g.entry(key.to_string()).or_default();
        if now.saturating_sub(f.window_start) > FAIL_WINDOW_SECS {
            *f = Fails {
                count: 0,
                window_start: now,
                locked_until: 0,
            };
        }
        f.count += 1;
        if f.count >= limit {
            let extra = (f.count - limit).min(4);
            f.locked_until = now + (60u64 << extra).min(FAIL_WINDOW_SECS);
        }
    }

    /// Forget the failures of `key` (after a success).
    pub fn clear(&self, key: &str) {
        if let Ok(mut g) = self.fails.lock() {
            g.remove(key);
        }
    }
}

/// The panel's account and session database.
pub struct AuthDb {
    conn: Mutex<Connection>,
    cost: HashCost,
    dummy_phc: String,
}

impl std::fmt::Debug for AuthDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthDb").finish_non_exhaustive()
    }
}

const SCHEMA_VERSION: i64 = 1;

/// A session's last use is written at most this often (the idle limit is that much coarse).
const TOUCH_SECS: u64 = 15;

impl AuthDb {
    /// Open (creating) `web.db` at `path`.
    pub fn open(path: &Path, cost: HashCost) -> Result<AuthDb, WebError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
        )?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(WebError::Internal(format!(
                "web.db schema version {version} is newer than this cairn understands"
            )));
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS users (
                    username TEXT PRIMARY KEY,
                    role TEXT NOT NULL,
                    phc TEXT NOT NULL,
                    disabled INTEGER NOT NULL DEFAULT 0,
                    created_at INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS sessions (
                    token_sha256 TEXT PRIMARY KEY,
                    username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
                    csrf TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    last_seen INTEGER NOT NULL
                 );
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        let dummy_phc = hash_password("not a password of anyone", cost)?;
        Ok(AuthDb {
            conn: Mutex::new(conn),
            cost,
            dummy_phc,
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, WebError> {
        self.conn
            .lock()
            .map_err(|_| WebError::Internal("web.db lock poisoned".into()))
    }

    /// How many accounts exist.
    pub fn user_count(&self) -> Result<i64, WebError> {
        Ok(self
            .conn()?
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
    }

    /// Every account, by name.
    pub fn users(&self) -> Result<Vec<User>, WebError> {
        let c = self.conn()?;
        let mut st =
            c.prepare("SELECT username, role, disabled, created_at FROM users ORDER BY username")?;
        let rows = st.query_map([], |r| {
            let role: String = r.get(1)?;
            Ok(User {
                username: r.get(0)?,
                role: Role::parse(&role).unwrap_or(Role::Reader),
                disabled: r.get::<_, i64>(2)? != 0,
                created_at: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Make an account (the password is hashed here: call from a blocking thread).
    pub fn create_user(
        &self,
        username: &str,
        role: Role,
        password: &str,
        now: u64,
    ) -> Result<(), WebError> {
        valid_username(username)?;
        valid_password(password)?;
        let phc = hash_password(password, self.cost)?;
        let c = self.conn()?;
        let n = c.execute(
            "INSERT INTO users (username, role, phc, disabled, created_at) VALUES (?1, ?2, ?3, 0, ?4)
             ON CONFLICT(username) DO NOTHING",
            params![username, role.as_str(), phc, now as i64],
        )?;
        if n == 0 {
            return Err(WebError::Conflict(format!(
                "a user named '{username}' already exists"
            )));
        }
        Ok(())
    }

    /// Change an account's role, password or disabled flag. Its sessions end when the
    /// password changes or it is disabled. The last enabled admin cannot be demoted or disabled.
    pub fn update_user(
        &self,
        username: &str,
        role: Option<Role>,
        password: Option<&str>,
        disabled: Option<bool>,
    ) -> Result<(), WebError> {
        if let Some(p) = password {
            valid_password(p)?;
        }
        let phc = match password {
            Some(p) => Some(hash_password(p, self.cost)?),
            None => None,
        };
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        let current: Option<(String, i64)> = tx
            .query_row(
                "SELECT role, disabled FROM users WHERE username = ?1",
                [username],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((cur_role, cur_disabled)) = current else {
            return Err(WebError::NotFound(format!("no user named '{username}'")));
        };
        let stays_admin = role.map_or(cur_role == "admin", |r| r == Role::Admin)
            && !disabled.unwrap_or(cur_disabled != 0);
        if cur_role == "admin" && cur_disabled == 0 && !stays_admin {
            let admins: i64 = tx.query_row(
                "SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0",
                [],
                |r| r.get(0),
            )?;
            if admins <= 1 {
                return Err(WebError::Conflict(
                    "this is the last admin: make another admin first".into(),
                ));
            }
        }
        if let Some(r) = role {
            tx.execute(
                "UPDATE users SET role = ?1 WHERE username = ?2",
                params![r.as_str(), username],
            )?;
        }
        if let Some(phc) = &phc {
            tx.execute(
                "UPDATE users SET phc = ?1 WHERE username = ?2",
                params![phc, username],
            )?;
        }
        if let Some(d) = disabled {
            tx.execute(
                "UPDATE users SET disabled = ?1 WHERE username = ?2",
                params![d as i64, username],
            )?;
        }
        if phc.is_some() || disabled == Some(true) {
            tx.execute("DELETE FROM sessions WHERE username = ?1", [username])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Check a name and password (slow: call from a blocking thread). An unknown or disabled
    /// account costs the same time as a wrong password.
    pub fn check_password(&self, username: &str, password: &str) -> Result<bool, WebError> {
        let row: Option<(String, i64)> = self
            .conn()?
            .query_row(
                "SELECT phc, disabled FROM users WHERE username = ?1",
                [username],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            Some((phc, 0)) => verify_password(password, &phc),
            Some(_) => {
                verify_password(password, &self.dummy_phc);
                false
            }
            None => {
                verify_password(password, &self.dummy_phc);
                false
            }
        })
    }

    /// Start a session; returns the cookie token (only its hash is stored) and the CSRF token.
    pub fn create_session(&self, username: &str, now: u64) -> Result<(String, String), WebError> {
        let token = random_hex(32)?;
        let csrf = random_hex(32)?;
        self.conn()?.execute(
            "INSERT INTO sessions (token_sha256, username, csrf, created_at, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![token_hash(&token), username, csrf, now as i64],
        )?;
        Ok((token, csrf))
    }

    /// The session for a cookie token, if it exists, is not idle longer than `idle_secs`, and
    /// its account is enabled; touching it restarts the idle clock. An idle one is deleted.
    pub fn session(
        &self,
        token: &str,
        now: u64,
        idle_secs: u64,
    ) -> Result<Option<Session>, WebError> {
        let h = token_hash(token);
        let c = self.conn()?;
        let row: Option<(String, String, i64, String, i64)> = c
            .query_row(
                "SELECT s.username, s.csrf, s.last_seen, u.role, u.disabled
                 FROM sessions s JOIN users u ON u.username = s.username
                 WHERE s.token_sha256 = ?1",
                [&h],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((username, csrf, last_seen, role, disabled)) = row else {
            return Ok(None);
        };
        if disabled != 0 || now.saturating_sub(last_seen as u64) > idle_secs {
            c.execute("DELETE FROM sessions WHERE token_sha256 = ?1", [&h])?;
            return Ok(None);
        }
        // Touch at most every TOUCH_SECS: each write is an fsync of web.db.
        if now.saturating_sub(last_seen as u64) >= TOUCH_SECS {
            c.execute(
                "UPDATE sessions SET last_seen = ?1 WHERE token_sha256 = ?2",
                params![now as i64, h],
            )?;
            // Idle sessions of anyone are swept at the same time.
            c.execute(
                "DELETE FROM sessions WHERE last_seen < ?1",
                [now.saturating_sub(idle_secs) as i64],
            )?;
        }
        Ok(Some(Session {
            username,
            role: Role::parse(&role).unwrap_or(Role::Reader),
            csrf,
        }))
    }

    /// End a session.
    pub fn delete_session(&self, token: &str) -> Result<(), WebError> {
        self.conn()?.execute(
            "DELETE FROM sessions WHERE token_sha256 = ?1",
            [token_hash(token)],
        )?;
        Ok(())
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
    fn throttle_locks_and_unlocks() {
        let t = Throttle::default();
        for _ in 0..ACCOUNT_FAILS - 1 {
            t.fail("u:a", ACCOUNT_FAILS, 1000);
        }
        assert_eq!(t.locked("u:a", 1000), None);
        t.fail("u:a", ACCOUNT_FAILS, 1000);
        assert_eq!(t.locked("u:a", 1000), Some(60));
        assert_eq!(t.locked("u:a", 1061), None);
        t.clear("u:a");
        assert_eq!(t.locked("u:a", 1000), None);
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

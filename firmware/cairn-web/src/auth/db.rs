//! `web.db`: the accounts and sessions, in the panel's own SQLite file.

use super::{
    hash_password, random_hex, token_hash, valid_password, valid_username, verify_password,
    HashCost, Role, Session, User,
};
use crate::WebError;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

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

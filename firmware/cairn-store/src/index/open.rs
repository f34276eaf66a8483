//! Connections to the index: the writer's (read-write, migrated) and read-only ones.

use super::schema::migrate;
use crate::StoreError;
use rusqlite::Connection;

/// Open the index for writing: WAL, migrations applied.
///
/// `synchronous=NORMAL` keeps the database consistent on a crash; durability of each commit
/// comes from the writer's `syncfs` of the whole store filesystem after the commit, which
/// flushes the WAL together with the object files and their directories in one go.
pub(crate) fn open_rw(path: &std::path::Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Open the index read-only (for the CLI and queries).
pub(crate) fn open_ro(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

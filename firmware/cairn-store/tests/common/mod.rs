//! What the migration tests share: a fresh index taken back to an older schema version, and
//! opening it again through the store so that the migrations run.
#![allow(dead_code, clippy::unwrap_used)]

use cairn_store::{DataDir, Store};
use rusqlite::Connection;

/// The index's schema version.
pub fn version(c: &Connection) -> i64 {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// A fresh store closed again, its index at the newest version `newest` (checked), then changed
/// by `back` (which drops the newer objects, adds rows and sets `PRAGMA user_version`).
pub fn taken_back(newest: i64, back: &str) -> (tempfile::TempDir, DataDir) {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    Store::open(data.clone()).unwrap().close().unwrap();
    let c = Connection::open(data.db()).unwrap();
    assert_eq!(version(&c), newest);
    c.execute_batch(back).unwrap();
    drop(c);
    (d, data)
}

/// Open the store on `data` (the migrations run) and close it; a connection to its index with
/// foreign keys on.
pub fn migrate(data: &DataDir) -> Connection {
    Store::open(data.clone()).unwrap().close().unwrap();
    let c = Connection::open(data.db()).unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    c
}

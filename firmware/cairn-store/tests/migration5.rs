//! Index schema migration 5 (storage commitment tables): a database at version 4, with the
//! tables (made by builds that created them outside the migrations) or without them, opens at
//! version 5 with both tables and every existing row kept.
#![allow(clippy::unwrap_used)]

use cairn_store::commitment as sc;
use cairn_store::{DataDir, Store};
use rusqlite::Connection;

fn version(c: &Connection) -> i64 {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn tables(c: &Connection) -> Vec<String> {
    let mut s = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'commitment_%' \
             ORDER BY name",
        )
        .unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The version of a new index (later migrations run again after version 4 and must keep it).
fn newest() -> i64 {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    Store::open(data.clone()).unwrap().close().unwrap();
    version(&Connection::open(data.db()).unwrap())
}

/// A fresh store closed again, its index put back to version 4 by `change`.
fn version4(change: &str) -> (tempfile::TempDir, DataDir) {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let store = Store::open(data.clone()).unwrap();
    sc::ensure_schema(&store).unwrap();
    store.close().unwrap();
    let c = Connection::open(data.db()).unwrap();
    assert!(version(&c) >= 5, "a new index is at version 5 or later");
    assert_eq!(version(&c), newest());
    c.execute_batch(change).unwrap();
    c.pragma_update(None, "user_version", 4).unwrap();
    drop(c);
    (d, data)
}

#[test]
fn version_4_with_the_tables_keeps_its_requests() {
    let (_d, data) = version4(
        "INSERT INTO commitment_requests (id, transaction_uid, calling_ae, received_at, \
         deadline_unix, state) VALUES (7, '1.2.3.4', 'MODALITY', '2026-01-01T00:00:00Z', 1, \
         'pending');
         INSERT INTO commitment_items VALUES (7, 0, '1.2.840.10008.5.1.4.1.1.2', '1.2.3.4.5');",
    );
    let store = Store::open(data.clone()).unwrap();
    sc::ensure_schema(&store).unwrap();
    let p = sc::pending_request(&data, 7).unwrap().unwrap();
    assert_eq!(
        (p.transaction_uid.as_str(), p.calling_ae.as_str()),
        ("1.2.3.4", "MODALITY")
    );
    assert_eq!(sc::request_items(&data, 7).unwrap().len(), 1);
    store.close().unwrap();
    let c = Connection::open(data.db()).unwrap();
    assert_eq!(version(&c), newest());
    assert_eq!(tables(&c), ["commitment_items", "commitment_requests"]);
}

#[test]
fn version_4_without_the_tables_gets_them() {
    let (_d, data) = version4("DROP TABLE commitment_items; DROP TABLE commitment_requests;");
    {
        let c = Connection::open(data.db()).unwrap();
        assert!(tables(&c).is_empty());
    }
    let store = Store::open(data.clone()).unwrap();
    sc::ensure_schema(&store).unwrap();
    assert!(sc::pending_request(&data, 1).unwrap().is_none());
    store.close().unwrap();
    let c = Connection::open(data.db()).unwrap();
    assert_eq!(version(&c), newest());
    assert_eq!(tables(&c), ["commitment_items", "commitment_requests"]);
}

#[test]
fn ensure_schema_names_a_missing_table() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let store = Store::open(data.clone()).unwrap();
    let c = Connection::open(data.db()).unwrap();
    c.execute_batch("DROP TABLE commitment_items;").unwrap();
    let e = sc::ensure_schema(&store).unwrap_err();
    assert!(e.to_string().contains("commitment_items"), "{e}");
    drop(c);
    store.close().unwrap();
}

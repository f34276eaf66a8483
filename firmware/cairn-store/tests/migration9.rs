//! Index schema migration 9 (removal): a database at version 8 with archive copies opens at
//! version 9 with the tombstone, destruction and pending-unlink tables and `copies.removed`
//! (NULL on every existing copy, only 'rejected' or 'expired' accepted); running it again keeps
//! its rows.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_store::{DataDir, Store};
use common::{migrate, taken_back, version};
use rusqlite::Connection;

/// A fresh store closed again, its index taken back to version 8 (the objects of migration 9
/// dropped), with one archive copy.
fn version8() -> (tempfile::TempDir, DataDir) {
    taken_back(
        9,
        "DROP TABLE removed_instances;
         DROP TABLE removed_studies;
         DROP TABLE destruction_records;
         DROP TABLE pending_unlinks;
         ALTER TABLE copies DROP COLUMN removed;
         INSERT INTO cold_targets (id, name, kind, added_at) VALUES (1, 't', 'tape', 'x');
         INSERT INTO volumes (id, volume_id, kind, box_id, target_ref, state, location,
           format_version, block_size, labelled_at, updated_at)
           VALUES (1, 'V1', 'tape', 'box', 1, 'append', 'in_drive', 1, 262144, 'x', 'x');
         INSERT INTO bundles (id, bundle_id, volume_ref, file_number, state, started_at)
           VALUES (1, 'B1', 1, 1, 'verified', 'x');
         INSERT INTO copies (bundle_ref, sop_instance_uid, sha256, size, verified)
           VALUES (1, '1.2.3', 'aa', 10, 1);
         PRAGMA user_version = 8;",
    )
}

fn migrated() -> (tempfile::TempDir, DataDir, Connection) {
    let (d, data) = version8();
    let c = migrate(&data);
    (d, data, c)
}

#[test]
fn version_8_migrates_with_copies_not_removed() {
    let (_d, _data, c) = migrated();
    assert_eq!(version(&c), 9);
    let removed: Option<String> = c
        .query_row(
            "SELECT removed FROM copies WHERE sop_instance_uid = '1.2.3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(removed, None);
    for table in [
        "destruction_records",
        "removed_studies",
        "removed_instances",
        "pending_unlinks",
    ] {
        let n: i64 = c
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
}

#[test]
fn copies_removed_takes_only_the_two_marks() {
    let (_d, _data, c) = migrated();
    c.execute("UPDATE copies SET removed = 'rejected'", [])
        .unwrap();
    c.execute("UPDATE copies SET removed = 'expired'", [])
        .unwrap();
    assert!(c.execute("UPDATE copies SET removed = 'gone'", []).is_err());
}

#[test]
fn tombstones_check_their_kind_and_parent() {
    let (_d, _data, c) = migrated();
    c.execute_batch(
        "INSERT INTO destruction_records (id, patient_id, issuer, expires_on, expiry_reason,
           approved_by, approval_reason, approved_at, studies, instances, bytes)
           VALUES (1, 'P1', '', '2020-01-01', 'r', 'user:a', 'due', 'now', 1, 1, 10);
         INSERT INTO removed_studies (id, kind, study_uid, patient_id, issuer, study_date,
           instances, bytes, reason, removed_by, removed_at, destruction_ref)
           VALUES (1, 'destroyed', '1.2', 'P1', '', '20100101', 1, 10, 'due', 'user:a', 'now', 1);
         INSERT INTO removed_instances (sop_instance_uid, sha256, removed_ref)
           VALUES ('1.2.3', 'aa', 1);
         INSERT INTO pending_unlinks (path) VALUES ('objects/aa/bb/x.dcm');",
    )
    .unwrap();
    assert!(c
        .execute(
            "INSERT INTO removed_studies (kind, study_uid, patient_id, issuer, study_date,
               instances, bytes, reason, removed_by, removed_at)
               VALUES ('lost', '1.3', 'P1', '', '', 0, 0, 'r', 'a', 'now')",
            [],
        )
        .is_err());
    assert!(c
        .execute(
            "INSERT INTO removed_instances (sop_instance_uid, sha256, removed_ref)
               VALUES ('1.2.4', 'bb', 99)",
            [],
        )
        .is_err());
}

#[test]
fn running_migration_9_again_keeps_its_rows() {
    let (_d, data, c) = migrated();
    c.execute_batch(
        "UPDATE copies SET removed = 'expired';
         INSERT INTO pending_unlinks (path) VALUES ('objects/aa/bb/x.dcm');
         PRAGMA user_version = 8;",
    )
    .unwrap();
    drop(c);
    Store::open(data.clone()).unwrap().close().unwrap();
    let c = Connection::open(data.db()).unwrap();
    assert_eq!(version(&c), 9);
    let removed: Option<String> = c
        .query_row("SELECT removed FROM copies", [], |r| r.get(0))
        .unwrap();
    assert_eq!(removed.as_deref(), Some("expired"));
}

//! Index schema migration 8 (the patient lifecycle): a database at version 7 with patients opens
//! at version 8 with every patient marked dirty, and from then on a new study, a changed study
//! date, birth date or death date marks the patient dirty in the same statement.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_store::{DataDir, Store};
use common::{migrate, taken_back, version};
use rusqlite::{params, Connection};

/// The dirty flag of patient `id`'s retention row, `None` without a row.
fn dirty(c: &Connection, id: i64) -> Option<i64> {
    c.query_row(
        "SELECT dirty FROM patient_retention WHERE patient_ref = ?1",
        params![id],
        |r| r.get(0),
    )
    .ok()
}

fn clean_all(c: &Connection) {
    c.execute("UPDATE patient_retention SET dirty = 0", [])
        .unwrap();
}

/// A fresh store closed again, its index taken back to version 7 (the objects of migration 8
/// dropped), with two patients and a study.
fn version7() -> (tempfile::TempDir, DataDir) {
    taken_back(
        9,
        "DROP TRIGGER studies_mark_retention;
         DROP TRIGGER studies_date_mark_retention;
         DROP TRIGGER patients_mark_retention;
         DROP TABLE patient_retention;
         DROP TABLE holds;
         DROP INDEX studies_tier;
         ALTER TABLE studies DROP COLUMN tier;
         ALTER TABLE studies DROP COLUMN archived_at;
         ALTER TABLE patients DROP COLUMN death_date;
         INSERT INTO patients (id, patient_id, birth_date, updated_at)
           VALUES (1, 'P1', '19800101', 'x'), (2, 'P2', '', 'x');
         INSERT INTO studies (id, study_uid, patient_ref, study_date, updated_at)
           VALUES (10, '1.2.10', 1, '20100101', 'x');
         PRAGMA user_version = 7;",
    )
}

fn migrated() -> (tempfile::TempDir, DataDir, Connection) {
    let (d, data) = version7();
    let c = migrate(&data);
    (d, data, c)
}

#[test]
fn version_7_migrates_with_every_patient_dirty() {
    let (_d, _data, c) = migrated();
    assert_eq!(version(&c), 9);
    assert_eq!(dirty(&c, 1), Some(1));
    assert_eq!(dirty(&c, 2), Some(1));
    let (death, tier, archived): (String, String, Option<String>) = c
        .query_row(
            "SELECT p.death_date, s.tier, s.archived_at FROM studies s
             JOIN patients p ON p.id = s.patient_ref WHERE s.id = 10",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (death.as_str(), tier.as_str(), archived),
        ("", "storage", None)
    );
    let expires: Option<String> = c
        .query_row(
            "SELECT expires_on FROM patient_retention WHERE patient_ref = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(expires, None);
}

#[test]
fn a_new_study_marks_its_patient_dirty() {
    let (_d, _data, c) = migrated();
    clean_all(&c);
    c.execute(
        "INSERT INTO studies (study_uid, patient_ref, updated_at) VALUES ('1.2.11', 2, 'x')",
        [],
    )
    .unwrap();
    assert_eq!(dirty(&c, 2), Some(1));
    assert_eq!(dirty(&c, 1), Some(0), "the other patient stays clean");
    // a patient without a retention row gets one
    c.execute_batch(
        "INSERT INTO patients (id, patient_id, updated_at) VALUES (3, 'P3', 'x');
         INSERT INTO studies (study_uid, patient_ref, updated_at) VALUES ('1.2.12', 3, 'x');",
    )
    .unwrap();
    assert_eq!(dirty(&c, 3), Some(1));
}

#[test]
fn fact_changes_mark_the_patient_dirty_and_other_updates_do_not() {
    let (_d, _data, c) = migrated();
    clean_all(&c);
    c.execute(
        "UPDATE patients SET updated_at = 'y', birth_date = birth_date WHERE id = 1",
        [],
    )
    .unwrap();
    assert_eq!(
        dirty(&c, 1),
        Some(0),
        "an unchanged birth date is no change"
    );
    c.execute(
        "UPDATE patients SET birth_date = '19800102' WHERE id = 1",
        [],
    )
    .unwrap();
    assert_eq!(dirty(&c, 1), Some(1));
    clean_all(&c);
    c.execute(
        "UPDATE patients SET death_date = '20200101' WHERE id = 1",
        [],
    )
    .unwrap();
    assert_eq!(dirty(&c, 1), Some(1));
    clean_all(&c);
    c.execute(
        "UPDATE studies SET study_date = '20110101' WHERE id = 10",
        [],
    )
    .unwrap();
    assert_eq!(dirty(&c, 1), Some(1));
    clean_all(&c);
    c.execute("UPDATE studies SET patient_ref = 2 WHERE id = 10", [])
        .unwrap();
    assert_eq!(
        (dirty(&c, 1), dirty(&c, 2)),
        (Some(1), Some(1)),
        "both patients"
    );
}

#[test]
fn holds_name_a_patient_or_a_study_with_a_reason() {
    let (_d, _data, c) = migrated();
    let add = |p: Option<i64>, s: Option<i64>, reason: &str| {
        c.execute(
            "INSERT INTO holds (patient_ref, study_ref, reason, placed_by, placed_at)
             VALUES (?1, ?2, ?3, 'user:a', 'now')",
            params![p, s, reason],
        )
    };
    add(Some(1), None, "case").unwrap();
    add(None, Some(10), "case").unwrap();
    assert!(add(Some(1), Some(10), "case").is_err(), "not both");
    assert!(add(None, None, "case").is_err(), "not neither");
    assert!(add(Some(1), None, "").is_err(), "a reason");
    assert!(add(Some(99), None, "case").is_err(), "an existing patient");
    assert!(c
        .execute("UPDATE studies SET tier = 'cold' WHERE id = 10", [])
        .is_err());
}

#[test]
fn deleting_a_patient_drops_its_retention_row() {
    let (_d, _data, c) = migrated();
    c.execute("DELETE FROM patients WHERE id = 2", []).unwrap();
    assert_eq!(dirty(&c, 2), None);
}

#[test]
fn running_migration_8_again_keeps_its_rows() {
    let (_d, data, c) = migrated();
    c.execute_batch(
        "UPDATE patients SET death_date = '20200101' WHERE id = 1;
         UPDATE patient_retention SET dirty = 0, expires_on = '2040-01-01';
         UPDATE studies SET tier = 'archive' WHERE id = 10;
         INSERT INTO holds (patient_ref, reason, placed_by, placed_at)
           VALUES (1, 'case', 'user:a', 'now');
         PRAGMA user_version = 7;",
    )
    .unwrap();
    drop(c);
    Store::open(data.clone()).unwrap().close().unwrap();
    let c = Connection::open(data.db()).unwrap();
    assert_eq!(version(&c), 9);
    let row: (String, String, i64, Option<String>) = c
        .query_row(
            "SELECT p.death_date, s.tier, (SELECT count(*) FROM holds), r.expires_on
             FROM patients p JOIN studies s ON s.patient_ref = p.id
             JOIN patient_retention r ON r.patient_ref = p.id WHERE p.id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "20200101".into(),
            "archive".into(),
            1,
            Some("2040-01-01".into())
        )
    );
    assert_eq!(dirty(&c, 1), Some(1), "marked dirty again, never stale");
}

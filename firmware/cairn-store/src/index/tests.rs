//! Indexing rules and migrations, checked against a real database.

#![allow(clippy::unwrap_used)]

use super::schema::{schema_version, MIGRATIONS};
use super::*;
use crate::merge::Conflict;
use rusqlite::Connection;

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_rw(&dir.path().join("cairn.db")).unwrap();
    (dir, conn)
}

fn rec(sop: &str, study: &str, pid: &str, name: &str) -> InstanceRecord {
    let mut r = InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    r.patient.id = pid.into();
    r.patient.name = name.into();
    r.study.uid = study.into();
    r.series.uid = format!("{study}.1");
    r
}

fn put(conn: &Connection, r: &InstanceRecord) -> Vec<Conflict> {
    let tx = conn.unchecked_transaction().unwrap();
    let sha = format!("{:0>64}", r.sop_instance_uid.replace('.', ""));
    let (_, c) = index_instance(&tx, r, &sha, 1, "TEST", "2026-01-01T00:00:00Z").unwrap();
    tx.commit().unwrap();
    c
}

fn study(conn: &Connection, uid: &str) -> (String, String, String, String, i64) {
    conn.query_row(
        "SELECT study_date, study_time, description, accession, patient_ref FROM studies
         WHERE study_uid = ?1",
        [uid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .unwrap()
}

fn conflicts(conn: &Connection) -> Vec<(String, String, String, String, String)> {
    let mut st = conn
        .prepare("SELECT level, field, kept, received, reason FROM field_conflicts ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_later_instance_never_blanks_and_never_overwrites() {
    let (_d, conn) = db();
    let mut first = rec("1.1", "9.1", "P1", "DOE^JOHN");
    first.study.date = "20240131".into();
    first.study.time = "101500".into();
    first.study.description = "CHEST".into();
    first.patient.birth_date = "19600101".into();
    assert!(put(&conn, &first).is_empty());

    // a PDF made with --study-from: the same study, the fields empty
    let mut pdf = rec("1.2", "9.1", "P1", "DOE^JOHN");
    pdf.series.uid = "9.1.2".into();
    pdf.study.accession = "ACC1".into(); // an empty field is filled in
    assert!(put(&conn, &pdf).is_empty());
    assert_eq!(
        study(&conn, "9.1"),
        (
            "20240131".into(),
            "101500".into(),
            "CHEST".into(),
            "ACC1".into(),
            1
        )
    );

    // a different value keeps the first and is recorded once
    let mut other = rec("1.3", "9.1", "P1", "doe^john^^");
    other.study.description = "ABDOMEN".into();
    let new = put(&conn, &other);
    assert_eq!(new.len(), 1, "{new:?}");
    let mut again = other.clone();
    again.sop_instance_uid = "1.4".into();
    assert!(
        put(&conn, &again).is_empty(),
        "the same conflict is recorded once"
    );
    assert_eq!(study(&conn, "9.1").2, "CHEST");
    assert_eq!(
        conflicts(&conn),
        vec![(
            "study".into(),
            "StudyDescription".into(),
            "CHEST".into(),
            "ABDOMEN".into(),
            "differs".into()
        )]
    );

    // a study keeps its patient: another Patient ID is a conflict, not a move
    let mut moved = rec("1.5", "9.1", "P2", "ROE^RICHARD");
    moved.study.description = "CHEST".into();
    put(&conn, &moved);
    assert_eq!(study(&conn, "9.1").4, 1);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM patients", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let fields: Vec<String> = conflicts(&conn).into_iter().map(|c| c.1).collect();
    assert_eq!(fields, ["StudyDescription", "PatientID", "PatientName"]);
}

#[test]
fn invalid_dates_and_times_are_indexed_empty_and_recorded() {
    let (_d, conn) = db();
    let mut r = rec("2.1", "9.2", "P1", "X");
    r.study.date = "123é567".into();
    r.study.time = "12é3000".into();
    r.patient.birth_date = "19éé0101".into();
    let new = put(&conn, &r);
    assert_eq!(new.len(), 3);
    let s = study(&conn, "9.2");
    assert_eq!((s.0.as_str(), s.1.as_str()), ("", ""));
    let c = conflicts(&conn);
    assert!(
        c.iter().all(|c| c.4 == "invalid" && c.2.is_empty()),
        "{c:?}"
    );
    let received: Vec<(&str, &str)> = c.iter().map(|c| (c.1.as_str(), c.3.as_str())).collect();
    assert_eq!(
        received,
        [
            ("PatientBirthDate", "19éé0101"),
            ("StudyDate", "123é567"),
            ("StudyTime", "12é3000")
        ]
    );
    // a valid date later fills it in
    let mut ok = rec("2.2", "9.2", "P1", "X");
    ok.study.date = "20240229".into();
    assert!(put(&conn, &ok).is_empty());
    assert_eq!(study(&conn, "9.2").0, "20240229");
}

#[test]
fn empty_patient_ids_join_only_the_same_name_and_birth_date() {
    let (_d, conn) = db();
    put(&conn, &rec("3.1", "9.31", "", "Anonymized"));
    put(&conn, &rec("3.6", "9.36", "", "^^^^"));
    let mut us = rec("3.2", "9.32", "", "^^^^");
    us.patient.birth_date = "19970512".into();
    put(&conn, &us);
    put(&conn, &rec("3.3", "9.33", "", "ANONYMIZED"));
    let mut born = rec("3.4", "9.34", "", "Anonymized");
    born.patient.birth_date = "20010101".into();
    put(&conn, &born);
    put(&conn, &rec("3.5", "9.35", "P9", "Anonymized"));
    let refs: Vec<i64> = ["9.31", "9.32", "9.33", "9.34", "9.35"]
        .iter()
        .map(|u| study(&conn, u).4)
        .collect();
    assert_eq!(refs[0], refs[2]);
    let distinct: std::collections::BTreeSet<i64> = refs.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{refs:?}");
    let name: String = conn
        .query_row(
            "SELECT p.name FROM patients p JOIN studies st ON st.patient_ref = p.id
             WHERE st.study_uid = '9.36'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(name, "^^^^", "a name is kept as received");
    assert!(conflicts(&conn).is_empty());
}

#[test]
fn migration_6_keeps_rows_and_their_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for (i, sql) in MIGRATIONS[..5].iter().enumerate() {
            tx.execute_batch(sql).unwrap();
            if i == 0 {
                cairn_audit::ensure_schema(&tx).unwrap();
            }
        }
        tx.execute_batch(
            "INSERT INTO patients (id, patient_id, name, updated_at, name_norm)
               VALUES (7, '', 'Anonymized', 'x', 'ANONYMIZED');
             INSERT INTO studies (id, study_uid, patient_ref, updated_at)
               VALUES (3, '1.2.3', 7, 'x');
             PRAGMA user_version = 5;",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let conn = open_rw(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema_version());
    let fk: bool = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert!(fk, "foreign keys are on again after migrating");
    assert_eq!(study(&conn, "1.2.3").4, 7);
    // the patients table no longer forbids two patients with an empty ID
    put(&conn, &rec("4.1", "9.4", "", "Someone^Else"));
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM patients WHERE patient_id = ''",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2);
    // and a non-empty ID stays unique
    assert!(conn
        .execute(
            "INSERT INTO patients (patient_id, updated_at) VALUES ('A', 'x'), ('A', 'x')",
            []
        )
        .is_err());
}

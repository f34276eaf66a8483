//! Removing instances: rows out in one transaction, files deleted once it is durable, and a
//! crash between the two leaves no file behind after the next open (nothing quarantined).
#![allow(clippy::unwrap_used)]

use cairn_store::remove::remove_instances;
use cairn_store::{fsck, stats, DataDir, FsckOptions, InstanceRecord, Store, StoreJob};
use rusqlite::Connection;

fn record(sop: &str, study: &str, series: &str) -> InstanceRecord {
    let mut r = InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    r.patient.id = "P1".into();
    r.study.uid = study.into();
    r.study.date = "20240102".into();
    r.series.uid = series.into();
    r
}

fn put(store: &Store, sop: &str, study: &str, series: &str, bytes: &[u8]) {
    let mut w = store.spool().unwrap();
    w.write(bytes).unwrap();
    store
        .commit(StoreJob {
            spool: w.finish().unwrap(),
            record: record(sop, study, series),
            source_ae: "TEST".into(),
        })
        .unwrap();
}

/// Two studies of one patient: 1.2 with series 1.2.1 (two instances) and 1.2.2 (one), 1.3
/// with one instance.
fn filled() -> (tempfile::TempDir, DataDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    put(&store, "1.2.1.1", "1.2", "1.2.1", b"one");
    put(&store, "1.2.1.2", "1.2", "1.2.1", b"two");
    put(&store, "1.2.2.1", "1.2", "1.2.2", b"three");
    put(&store, "1.3.1.1", "1.3", "1.3.1", b"four");
    (tmp, data, store)
}

/// Remove the instances of series (or study) `uid` through the writer; returns (rows, files).
fn remove_where(store: &Store, clause: &'static str, uid: &str) -> (usize, usize) {
    let uid = uid.to_string();
    store
        .transact(move |conn, _| {
            let ids: Vec<i64> = conn
                .prepare(&format!(
                    "SELECT i.id FROM instances i JOIN series se ON se.id = i.series_ref
                     JOIN studies st ON st.id = se.study_ref WHERE {clause} = ?1"
                ))?
                .query_map([&uid], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let r = remove_instances(conn, &ids)?;
            Ok(((r.instances.len(), r.files), Vec::new()))
        })
        .unwrap()
}

fn count(data: &DataDir, sql: &str) -> i64 {
    Connection::open(data.db())
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            n += files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn removing_a_series_keeps_its_study_and_deletes_its_files() {
    let (_t, data, store) = filled();
    assert_eq!(remove_where(&store, "se.series_uid", "1.2.1"), (2, 2));
    assert_eq!(count(&data, "SELECT count(*) FROM pending_unlinks"), 2);
    assert_eq!(files(&data.objects()), 4);
    // files about to be deleted are not orphans
    let r = fsck(&data, FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.files, 2);
    assert_eq!(store.finish_unlinks().unwrap(), 2);
    assert_eq!(files(&data.objects()), 2);
    assert_eq!(count(&data, "SELECT count(*) FROM pending_unlinks"), 0);
    store.close().unwrap();
    let s = stats(&data).unwrap();
    assert_eq!((s.instances, s.studies, s.patients), (2, 2, 1));
    assert_eq!(count(&data, "SELECT count(*) FROM series"), 2);
    let r = fsck(&data, FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn removing_every_study_removes_the_patient_unless_it_has_hold_history() {
    let (_t, data, store) = filled();
    store
        .transact(|conn, _| {
            conn.execute(
                "INSERT INTO holds (patient_ref, reason, placed_by, placed_at, released_at)
                 SELECT id, 'case', 'user:a', 'now', 'later' FROM patients",
                [],
            )?;
            Ok(((), Vec::new()))
        })
        .unwrap();
    remove_where(&store, "st.study_uid", "1.2");
    remove_where(&store, "st.study_uid", "1.3");
    store.finish_unlinks().unwrap();
    assert_eq!(count(&data, "SELECT count(*) FROM studies"), 0);
    assert_eq!(count(&data, "SELECT count(*) FROM patients"), 1);
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM patients WHERE patient_id = 'P1' AND name = '' AND birth_date = ''"
        ),
        1
    );
    let conn = Connection::open(data.db()).unwrap();
    let q = cairn_store::find::Query {
        level: cairn_store::find::Level::Patient,
        study_root: false,
        keys: vec![(0x0010_0020, cairn_store::find::Matcher::Universal)],
        limit: 100,
    };
    let mut rows = 0;
    cairn_store::find::find(&conn, &q, |_| {
        rows += 1;
        std::ops::ControlFlow::Continue(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(rows, 0, "a patient without studies is no C-FIND answer");
    drop(conn);
    store
        .transact(|conn, _| {
            conn.execute("DELETE FROM holds", [])?;
            Ok(((), Vec::new()))
        })
        .unwrap();
    put(&store, "1.4.1.1", "1.4", "1.4.1", b"five");
    remove_where(&store, "st.study_uid", "1.4");
    store.close().unwrap();
    assert_eq!(count(&data, "SELECT count(*) FROM patients"), 0);
    assert_eq!(count(&data, "SELECT count(*) FROM patient_retention"), 0);
}

#[test]
fn a_crash_before_the_unlink_leaves_no_file_after_the_next_open() {
    let (_t, data, store) = filled();
    remove_where(&store, "st.study_uid", "1.2");
    // the removal is durable, its files still there: a crash now (no clean stop, no unlink)
    drop(store);
    std::fs::remove_file(data.root().join("clean-shutdown")).ok();
    assert_eq!(files(&data.objects()), 4);
    let store = Store::open(data.clone()).unwrap();
    assert_eq!(files(&data.objects()), 1);
    assert_eq!(files(&data.quarantine()), 0);
    store.close().unwrap();
    assert_eq!(count(&data, "SELECT count(*) FROM pending_unlinks"), 0);
    let r = fsck(&data, FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn the_same_bytes_received_again_keep_their_file() {
    let (_t, data, store) = filled();
    remove_where(&store, "se.series_uid", "1.2.2");
    put(&store, "1.2.2.1", "1.2", "1.2.2", b"three");
    assert_eq!(store.finish_unlinks().unwrap(), 0);
    store.close().unwrap();
    assert_eq!(files(&data.objects()), 4);
    let r = fsck(&data, FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn removed_instances_leave_the_archive_queue() {
    let (_t, data, store) = filled();
    store
        .transact(|conn, _| {
            conn.execute_batch(
                "INSERT INTO cold_targets (id, name, kind, added_at) VALUES (1, 't', 'tape', 'x');
                 INSERT INTO archive_queue (target_ref, instance_ref, queued_at)
                   SELECT 1, id, 'x' FROM instances;",
            )?;
            Ok(((), Vec::new()))
        })
        .unwrap();
    remove_where(&store, "st.study_uid", "1.2");
    store.close().unwrap();
    assert_eq!(count(&data, "SELECT count(*) FROM archive_queue"), 1);
}

#[test]
fn removed_instances_are_neither_found_nor_committed() {
    use cairn_store::commitment::{evaluate, CommitItem, ItemState, NO_SUCH_OBJECT_INSTANCE};
    use cairn_store::find::{find, resolve, Level, Matcher, Query};
    let (_t, data, store) = filled();
    remove_where(&store, "st.study_uid", "1.2");
    store.finish_unlinks().unwrap();
    let class = "1.2.840.10008.5.1.4.1.1.2";
    let items = [
        CommitItem {
            sop_class_uid: class.into(),
            sop_instance_uid: "1.2.1.1".into(),
        },
        CommitItem {
            sop_class_uid: class.into(),
            sop_instance_uid: "1.3.1.1".into(),
        },
    ];
    let states = evaluate(&data, &items).unwrap();
    assert_eq!(states[0], ItemState::Failed(NO_SUCH_OBJECT_INSTANCE));
    assert_eq!(states[1], ItemState::Pending);
    let conn = Connection::open(data.db()).unwrap();
    let study = |uid: &str| Query {
        level: Level::Study,
        study_root: true,
        keys: vec![(0x0020_000D, Matcher::Single(uid.into()))],
        limit: 100,
    };
    let mut rows = 0;
    find(&conn, &study("1.2"), |_| {
        rows += 1;
        std::ops::ControlFlow::Continue(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(rows, 0, "C-FIND no longer finds the removed study");
    assert!(resolve(&conn, &study("1.2")).unwrap().unwrap().is_empty());
    assert_eq!(resolve(&conn, &study("1.3")).unwrap().unwrap().len(), 1);
    store.close().unwrap();
}

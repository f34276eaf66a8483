//! The writer end to end: outcomes, units of work, the archive queue, recovery.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::index;

fn put(store: &Store, sop: &str, bytes: &[u8]) -> StoreOutcome {
    put_in(store, "1.2.3", sop, bytes).unwrap()
}

/// Commits `bytes` as instance `sop` of `study` (series `<study>.1`).
fn put_in(store: &Store, study: &str, sop: &str, bytes: &[u8]) -> Result<StoreOutcome, StoreError> {
    store.commit(job(store, study, sop, bytes))
}

fn job(store: &Store, study: &str, sop: &str, bytes: &[u8]) -> StoreJob {
    let mut w = store.spool().unwrap();
    w.write(bytes).unwrap();
    let spool = w.finish().unwrap();
    let mut record = InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    record.study.uid = study.into();
    record.series.uid = format!("{study}.1");
    StoreJob {
        spool,
        record,
        source_ae: "TEST".into(),
    }
}

fn sha_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn count(data: &DataDir, sql: &str) -> i64 {
    let c = index::open_ro(&data.db()).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn queue_rows_commit_with_the_instance_and_transact_is_isolated() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    // no cold target yet: nothing queued
    assert_eq!(put(&store, "1.2.3.1.1", b"a"), StoreOutcome::Stored);
    let n: i64 = store
        .transact(|c, now| {
            c.execute(
                "INSERT INTO cold_targets (name, kind, added_at) VALUES ('tape0', 'tape', ?1),
                   ('disc0', 'optical', ?1)",
                [now],
            )?;
            Ok((
                2,
                vec![AuditEvent {
                    actor: "system".into(),
                    action: "archive-target".into(),
                    object: "tape0".into(),
                    detail: "{}".into(),
                }],
            ))
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(put(&store, "1.2.3.1.2", b"b"), StoreOutcome::Stored);
    assert_eq!(put(&store, "1.2.3.1.2", b"b"), StoreOutcome::Duplicate);
    assert_eq!(put(&store, "1.2.3.1.2", b"c"), StoreOutcome::NewVersion);
    // a failing unit of work changes nothing, and the store keeps working
    let e = store.transact(|c, _| -> Result<((), Vec<AuditEvent>), StoreError> {
        c.execute("DELETE FROM archive_queue", [])?;
        c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
        Ok(((), vec![]))
    });
    assert!(e.is_err());
    assert_eq!(put(&store, "1.2.3.1.3", b"d"), StoreOutcome::Stored);
    store.close().unwrap();
    // two new instances plus one new version, each queued for both targets
    assert_eq!(count(&data, "SELECT count(*) FROM archive_queue"), 6);
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM audit WHERE action = 'archive-target'"
        ),
        1
    );
    let r = crate::fsck(&data, crate::FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);

    // recovery after an unclean stop: a queued row whose file is gone is rolled back
    // with its queue rows (the store still opens)
    let sha: String = {
        let c = index::open_ro(&data.db()).unwrap();
        c.query_row(
            "SELECT sha256 FROM instances ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    {
        let c = Connection::open(data.db()).unwrap();
        c.execute("UPDATE store_state SET value = 0", []).unwrap();
    }
    std::fs::remove_file(data.root().join(CLEAN_MARK)).unwrap();
    std::fs::remove_file(data.object_path(&sha)).unwrap();
    let store = Store::open(data.clone()).unwrap();
    store.close().unwrap();
    assert_eq!(count(&data, "SELECT count(*) FROM archive_queue"), 4);
    assert_eq!(count(&data, "SELECT count(*) FROM instances"), 3);
}

#[test]
fn a_study_in_the_archive_tier_refuses_changed_and_new_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    assert_eq!(put(&store, "1.2.3.1.1", b"kept"), StoreOutcome::Stored);
    store
        .transact(|c, _| {
            c.execute(
                "UPDATE studies SET tier = 'archive' WHERE study_uid = '1.2.3'",
                [],
            )?;
            Ok(((), vec![]))
        })
        .unwrap();
    let audit_rows = |d: &DataDir| count(d, "SELECT count(*) FROM audit");
    let rows_before = audit_rows(&data);
    // the same bytes again: a duplicate, as before
    assert_eq!(put(&store, "1.2.3.1.1", b"kept"), StoreOutcome::Duplicate);
    // different bytes for the same instance: refused, nothing indexed, no file left
    let e = put_in(&store, "1.2.3", "1.2.3.1.1", b"changed").unwrap_err();
    assert!(matches!(e.kind(), crate::ErrorKind::Refused), "{e}");
    assert_eq!(
        e.to_string(),
        "study 1.2.3 is in the archive tier (fixed): a changed instance is refused"
    );
    assert!(!data.object_path(&sha_of(b"changed")).exists());
    // even when the new bytes claim another study, the instance's archived study decides
    let e = put_in(&store, "9.9.9", "1.2.3.1.1", b"moved").unwrap_err();
    assert!(e.to_string().contains("study 1.2.3 is"), "{e}");
    assert!(!data.object_path(&sha_of(b"moved")).exists());
    // a new instance into the archived study: refused too
    let e = put_in(&store, "1.2.3", "1.2.3.1.2", b"new").unwrap_err();
    assert_eq!(
        e.to_string(),
        "study 1.2.3 is in the archive tier (fixed): a new instance is refused"
    );
    assert!(!data.object_path(&sha_of(b"new")).exists());
    // other studies are not affected, and the store keeps working
    assert_eq!(
        put_in(&store, "4.5.6", "4.5.6.1.1", b"other").unwrap(),
        StoreOutcome::Stored
    );
    store.close().unwrap();
    assert_eq!(count(&data, "SELECT count(*) FROM instances"), 2);
    assert_eq!(count(&data, "SELECT count(*) FROM studies"), 2);
    assert_eq!(
        count(
            &data,
            &format!(
                "SELECT count(*) FROM instances WHERE sop_instance_uid = '1.2.3.1.1'
                   AND sha256 = '{}' AND current = 1",
                sha_of(b"kept")
            )
        ),
        1
    );
    // the writer audits the duplicate and the new study's store, not the refusals (the
    // DICOM node audits what it refused)
    assert_eq!(audit_rows(&data), rows_before + 2);
    // fsck: the archived file lacks its immutable attribute (where it could have been set),
    // and is clean once it has it
    use cairn_files::immutable::{set_immutable, Flag};
    let kept = data.object_path(&sha_of(b"kept"));
    let r = crate::fsck(&data, crate::FsckOptions::default()).unwrap();
    let fixable = r.immutable_checked
        && cairn_files::immutable::immutable_flag(&kept).unwrap() != Flag::Unsupported;
    if fixable {
        assert_eq!(
            r.problems,
            vec![crate::Problem::NotImmutable {
                path: kept.clone(),
                study_uid: "1.2.3".into()
            }]
        );
        assert!(r.problems[0]
            .to_string()
            .contains("lacks the immutable attribute"));
        assert_eq!(set_immutable(&kept, true).unwrap(), Flag::Set);
    }
    let r = crate::fsck(&data, crate::FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    if fixable {
        set_immutable(&kept, false).unwrap();
    }
}

#[test]
fn a_restore_replaces_a_fixed_damaged_file_and_fixes_it_again() {
    use cairn_files::immutable::{immutable_flag, set_immutable, Flag};
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    assert_eq!(put(&store, "1.2.3.1.1", b"kept"), StoreOutcome::Stored);
    store
        .transact(|c, _| {
            c.execute("UPDATE studies SET tier = 'archive'", [])?;
            Ok(((), vec![]))
        })
        .unwrap();
    let path = data.object_path(&sha_of(b"kept"));
    // damage the file, then fix it as the tier pass would
    std::fs::write(&path, b"rot!").unwrap();
    if set_immutable(&path, true).is_err() || immutable_flag(&path).unwrap() != Flag::Set {
        // no flag here (filesystem or capability): the rename path is tested elsewhere
        store.close().unwrap();
        return;
    }
    let out = store
        .commit_restored(job(&store, "1.2.3", "1.2.3.1.1", b"kept"), "user:test")
        .unwrap();
    assert_eq!(out, StoreOutcome::Duplicate);
    assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    assert_eq!(immutable_flag(&path).unwrap(), Flag::Set);
    store.close().unwrap();
    set_immutable(&path, false).unwrap();
}

/// A restore that puts back a missing file of an archived study gives it the attribute of the
/// archive tier, unless the box leaves the attribute off (a demo). Needs a filesystem with the
/// attribute and CAP_LINUX_IMMUTABLE (root on ext4, as tools/test runs): it fails otherwise.
#[test]
fn a_restore_of_a_missing_archived_file_fixes_it_unless_turned_off() {
    use cairn_files::immutable::{immutable_flag, set_immutable, Flag};
    for on in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        let store = Store::open(data.clone()).unwrap();
        store.set_immutable_files(on);
        assert_eq!(put(&store, "1.2.3.1.1", b"kept"), StoreOutcome::Stored);
        store
            .transact(|c, _| {
                c.execute("UPDATE studies SET tier = 'archive'", [])?;
                Ok(((), vec![]))
            })
            .unwrap();
        let path = data.object_path(&sha_of(b"kept"));
        std::fs::remove_file(&path).unwrap();
        store
            .commit_restored(job(&store, "1.2.3", "1.2.3.1.1", b"kept"), "user:test")
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        let want = if on { Flag::Set } else { Flag::Clear };
        assert_eq!(
            immutable_flag(&path).unwrap(),
            want,
            "immutable_files = {on}"
        );
        store.close().unwrap();
        set_immutable(&path, false).unwrap();
    }
}

/// A study under a legal hold (on it or on its patient) keeps its bytes: different bytes for
/// one of its instances are refused; a new instance (ongoing care) and the same bytes are
/// kept; after the release a change is a new version again.
#[test]
fn a_held_study_refuses_changed_instances_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    assert_eq!(put(&store, "1.2.3.1.1", b"kept"), StoreOutcome::Stored);
    for on in ["study_ref", "patient_ref"] {
        let sql = format!(
            "INSERT INTO holds ({on}, reason, placed_by, placed_at)
             SELECT {}, 'case 17', 'user:test', 'now' FROM studies WHERE study_uid = '1.2.3'",
            if on == "study_ref" {
                "id"
            } else {
                "patient_ref"
            }
        );
        store
            .transact(move |c, _| {
                c.execute("UPDATE holds SET released_at = 'then'", [])?;
                c.execute(&sql, [])?;
                Ok(((), vec![]))
            })
            .unwrap();
        let e = put_in(&store, "1.2.3", "1.2.3.1.1", b"changed").unwrap_err();
        assert!(matches!(e.kind(), crate::ErrorKind::Refused), "{e}");
        assert_eq!(
            e.to_string(),
            "study 1.2.3 is under a legal hold: a changed instance is refused"
        );
        assert!(!data.object_path(&sha_of(b"changed")).exists());
        assert_eq!(put(&store, "1.2.3.1.1", b"kept"), StoreOutcome::Duplicate);
    }
    assert_eq!(
        put_in(&store, "1.2.3", "1.2.3.1.2", b"new").unwrap(),
        StoreOutcome::Stored
    );
    store
        .transact(|c, _| {
            c.execute("UPDATE holds SET released_at = 'then'", [])?;
            Ok(((), vec![]))
        })
        .unwrap();
    assert_eq!(
        put_in(&store, "1.2.3", "1.2.3.1.1", b"changed").unwrap(),
        StoreOutcome::NewVersion
    );
    store.close().unwrap();
}

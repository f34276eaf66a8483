//! The writer end to end: outcomes, units of work, the archive queue, recovery.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::index;

fn put(store: &Store, sop: &str, bytes: &[u8]) -> StoreOutcome {
    let mut w = store.spool().unwrap();
    w.write(bytes).unwrap();
    let spool = w.finish().unwrap();
    let mut record = InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    record.study.uid = "1.2.3".into();
    record.series.uid = "1.2.3.1".into();
    store
        .commit(StoreJob {
            spool,
            record,
            source_ae: "TEST".into(),
        })
        .unwrap()
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

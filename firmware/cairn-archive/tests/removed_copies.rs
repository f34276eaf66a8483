//! Copies of removed (rejected or destroyed) instances stay removed: a restore refuses the
//! study, and a scan that rebuilds the volume's copies marks them again from the tombstones.
//! The removal is done as cairn-lifecycle does it: instance rows out through the store, a
//! tombstone with its instances, the copies marked.
#![allow(clippy::unwrap_used)]

mod common;

use common::{insert_blank as cartridge, put, q, tape_archiver};

use cairn_hal::tape::emulator;
use cairn_store::remove::remove_instances;
use cairn_store::{DataDir, Store};
use rusqlite::params;

/// Reject study `uid` the way the lifecycle does.
fn reject(store: &Store, uid: &str) {
    let uid = uid.to_owned();
    store
        .transact(move |c, now| {
            let ids: Vec<i64> = c
                .prepare(
                    "SELECT i.id FROM instances i JOIN series se ON se.id = i.series_ref
                     JOIN studies st ON st.id = se.study_ref WHERE st.study_uid = ?1",
                )?
                .query_map([&uid], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let removal = remove_instances(c, &ids)?;
            c.execute(
                "INSERT INTO removed_studies (kind, study_uid, patient_id, issuer, study_date,
                   instances, bytes, reason, removed_by, removed_at)
                 VALUES ('rejected', ?1, 'PID-1', '', '20250101', ?2, 0, 'test', 'user:a', ?3)",
                params![uid, removal.instances.len() as i64, now],
            )?;
            let stone = c.last_insert_rowid();
            for i in &removal.instances {
                c.execute(
                    "INSERT INTO removed_instances (sop_instance_uid, sha256, removed_ref)
                     VALUES (?1, ?2, ?3)",
                    params![i.sop_instance_uid, i.sha256, stone],
                )?;
                c.execute(
                    "UPDATE copies SET removed = 'rejected' WHERE sop_instance_uid = ?1 AND sha256 = ?2",
                    params![i.sop_instance_uid, i.sha256],
                )?;
            }
            Ok(((), Vec::new()))
        })
        .unwrap();
    store.finish_unlinks().unwrap();
}

#[test]
fn neither_restore_nor_scan_brings_a_removed_study_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let drive = tmp.path().join("tape");
    emulator::init_drive(&drive).unwrap();
    cartridge(&drive, "TAPE01", 1 << 30, (1 << 30) - (1 << 20));
    let store = Store::open(data.clone()).unwrap();
    let mut a = tape_archiver(&store, &drive, "BOX", 64 << 20);
    put(&store, 3, 20_000, "1.2.3.1", 0);
    put(&store, 2, 20_000, "1.2.3.2", 7);
    a.flush(None).unwrap();
    assert_eq!(
        q(&data, "SELECT count(*) FROM copies WHERE verified = 1"),
        5
    );

    reject(&store, "1.2.3.1");
    assert_eq!(
        q(
            &data,
            "SELECT count(*) FROM copies WHERE removed = 'rejected'"
        ),
        3
    );
    let err = a.restore("1.2.3.1", "user:alice").unwrap_err().to_string();
    assert!(err.contains("study 1.2.3.1 was rejected on"), "{err}");
    assert_eq!(q(&data, "SELECT count(*) FROM instances"), 2);

    a.scan(None, "user:alice").unwrap();
    assert_eq!(
        q(&data, "SELECT count(*) FROM copies WHERE verified = 1"),
        5
    );
    assert_eq!(
        q(
            &data,
            "SELECT count(*) FROM copies WHERE removed = 'rejected'"
        ),
        3
    );
    assert_eq!(
        q(&data, "SELECT count(*) FROM copies WHERE removed IS NULL"),
        2
    );
    assert_eq!(q(&data, "SELECT count(*) FROM instances"), 2);
    // the kept study restores as before
    let msg = a.restore("1.2.3.2", "user:alice").unwrap();
    assert!(msg.contains("nothing to restore"), "{msg}");
    store.close().unwrap();
}

//! Storage commitment in the index: the decision rule per instance, and the durable request
//! life cycle (recorded, due, reported or undeliverable), each change with its audit row.
#![allow(clippy::unwrap_used)]

use cairn_store::commitment::{self as sc, CommitItem, ItemState};
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";

fn put(store: &Store, sop: &str, bytes: &[u8]) {
    let mut w = store.spool().unwrap();
    w.write(bytes).unwrap();
    let spool = w.finish().unwrap();
    let mut record = InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: CT.into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    record.patient.id = "P1".into();
    record.study.uid = "1.2.3".into();
    record.series.uid = "1.2.3.1".into();
    store
        .commit(StoreJob {
            spool,
            record,
            source_ae: "TEST".into(),
        })
        .unwrap();
}

fn sha(store: &Store, sop: &str) -> String {
    let sop = sop.to_string();
    store
        .transact(move |conn, _| {
            let s: String = conn.query_row(
                "SELECT sha256 FROM instances WHERE sop_instance_uid = ?1 AND current = 1",
                [sop],
                |r| r.get(0),
            )?;
            Ok((s, Vec::new()))
        })
        .unwrap()
}

/// A copy of `sop` in a bundle in `state`, `verified` or not (the archive tables, schema v4).
fn copy(store: &Store, sop: &str, bundle_state: &str, verified: bool, n: i64) {
    let sha = sha(store, sop);
    let (sop, state) = (sop.to_string(), bundle_state.to_string());
    store
        .transact(move |conn, now| {
            conn.execute(
                "INSERT OR IGNORE INTO volumes (id, volume_id, kind, box_id, state, location,
                     format_version, block_size, labelled_at, updated_at)
                 VALUES (1, 'TAPE01', 'tape', 'BOX', 'append', 'in_drive', 1, 262144, ?1, ?1)",
                [now],
            )?;
            conn.execute(
                "INSERT INTO bundles (id, bundle_id, volume_ref, file_number, state, started_at)
                 VALUES (?1, ?2, 1, ?1, ?3, ?4)",
                rusqlite::params![n, format!("B{n}"), state, now],
            )?;
            conn.execute(
                "INSERT INTO copies (bundle_ref, sha256, sop_instance_uid, size, verified)
                 VALUES (?1, ?2, ?3, 10, ?4)",
                rusqlite::params![n, sha, sop, verified],
            )?;
            Ok(((), Vec::new()))
        })
        .unwrap();
}

fn item(class: &str, sop: &str) -> CommitItem {
    CommitItem {
        sop_class_uid: class.into(),
        sop_instance_uid: sop.into(),
    }
}

#[test]
fn only_a_hot_file_with_a_verified_cold_copy_is_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    for (sop, body) in [
        ("1.1", "a"),
        ("1.2", "b"),
        ("1.3", "c"),
        ("1.4", "d"),
        ("1.5", "e"),
    ] {
        put(&store, sop, body.as_bytes());
    }
    copy(&store, "1.1", "verified", true, 1);
    copy(&store, "1.2", "writing", false, 2); // bundle still being written
    copy(&store, "1.3", "verified", false, 3); // copy not verified
    copy(&store, "1.5", "verified", true, 5);
    std::fs::remove_file(data.object_path(&sha(&store, "1.5"))).unwrap();
    let items = [
        item(CT, "1.1"),
        item(CT, "1.2"),
        item(CT, "1.3"),
        item(CT, "1.4"),
        item(CT, "1.5"),
        item(CT, "9.9"),
        item("1.2.840.10008.5.1.4.1.1.4", "1.1"),
    ];
    let got = sc::evaluate(&data, &items).unwrap();
    assert_eq!(
        got,
        vec![
            ItemState::Committed,
            ItemState::Pending,
            ItemState::Pending,
            ItemState::Pending,
            ItemState::Failed(sc::PROCESSING_FAILURE),
            ItemState::Failed(sc::NO_SUCH_OBJECT_INSTANCE),
            ItemState::Failed(sc::CLASS_INSTANCE_CONFLICT),
        ]
    );
    store.close().unwrap();
}

#[test]
fn a_request_is_durable_until_reported_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    assert!(sc::due_requests(&data, sc::unix_now()).unwrap().is_empty());
    let id = sc::record_request(
        &store,
        "1.2.3.4",
        "PACS",
        "127.0.0.1:5000",
        vec![item(CT, "1.1"), item(CT, "1.2")],
        60,
        |_| {},
    )
    .unwrap();
    store.close().unwrap();

    // After a restart the request is still there, due, with its instances in order.
    let store = Store::open(data.clone()).unwrap();
    let due = sc::due_requests(&data, sc::unix_now()).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].id, due[0].transaction_uid.as_str()),
        (id, "1.2.3.4")
    );
    assert!(due[0].deadline_unix >= sc::unix_now() + 55);
    let items = sc::request_items(&data, id).unwrap();
    assert_eq!(items, vec![item(CT, "1.1"), item(CT, "1.2")]);

    sc::mark_attempt_failed(
        &store,
        id,
        sc::unix_now() + 1000,
        "connection refused",
        false,
    )
    .unwrap();
    assert!(
        sc::due_requests(&data, sc::unix_now()).unwrap().is_empty(),
        "retry later"
    );
    assert!(sc::pending_request(&data, id).unwrap().is_some());
    sc::mark_reported(&store, id, 2, 0, 2, "new association").unwrap();
    assert!(sc::pending_request(&data, id).unwrap().is_none());
    sc::mark_reported(&store, id, 2, 0, 2, "again").unwrap(); // no second audit row

    let id2 = sc::record_request(
        &store,
        "1.2.3.5",
        "PACS",
        "-",
        vec![item(CT, "1.1")],
        0,
        |_| {},
    )
    .unwrap();
    sc::mark_attempt_failed(&store, id2, 0, "no peer", true).unwrap();
    assert!(sc::pending_request(&data, id2).unwrap().is_none());
    let actions: Vec<String> = store
        .transact(|conn, _| {
            let mut s = conn.prepare(
                "SELECT action FROM audit WHERE action LIKE 'commitment-%' ORDER BY seq",
            )?;
            let v = s
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((v, Vec::new()))
        })
        .unwrap();
    assert_eq!(
        actions,
        [
            "commitment-request",
            "commitment-report",
            "commitment-request",
            "commitment-undeliverable"
        ]
    );
    store.close().unwrap();
}

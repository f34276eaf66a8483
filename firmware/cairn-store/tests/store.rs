//! The store's guarantees, checked through its public API on a real directory.
#![allow(clippy::unwrap_used)]

use cairn_store::{
    fsck, stats, DataDir, FsckOptions, InstanceRecord, Problem, Store, StoreJob, StoreOutcome,
};

fn record(sop: &str, study: &str) -> InstanceRecord {
    let mut r = InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    r.patient.id = "P1".into();
    r.patient.name = "Doe^Jane".into();
    r.study.uid = study.into();
    r.study.date = "20240102".into();
    r.series.uid = format!("{study}.1");
    r.series.modality = "CT".into();
    r
}

fn put(store: &Store, sop: &str, bytes: &[u8]) -> StoreOutcome {
    let mut w = store.spool().unwrap();
    w.write(bytes).unwrap();
    let spool = w.finish().unwrap();
    store
        .commit(StoreJob {
            spool,
            record: record(sop, "1.2.3"),
            source_ae: "TEST".into(),
        })
        .unwrap()
}

fn spool_is_empty(d: &DataDir) -> bool {
    std::fs::read_dir(d.spool()).unwrap().next().is_none()
}

#[test]
fn stores_dedups_and_keeps_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    assert_eq!(put(&store, "1.2.3.1", b"first"), StoreOutcome::Stored);
    assert_eq!(put(&store, "1.2.3.1", b"first"), StoreOutcome::Duplicate);
    assert_eq!(put(&store, "1.2.3.1", b"second"), StoreOutcome::NewVersion);
    assert_eq!(put(&store, "1.2.3.2", b"other"), StoreOutcome::Stored);
    assert!(spool_is_empty(&data));
    store.close().unwrap();

    let s = stats(&data).unwrap();
    assert_eq!(
        (s.instances, s.older_versions, s.studies, s.patients),
        (2, 1, 1, 1)
    );
    let r = fsck(&data, FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.files, 3);
    // 4 stores + nothing else
    assert_eq!(s.audit_rows, 4);
}

#[test]
fn fsck_reports_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    put(&store, "1.2.3.1", b"one");
    put(&store, "1.2.3.2", b"two");
    put(&store, "1.2.3.3", b"three");
    store.close().unwrap();
    let files: Vec<_> = walk(&data.objects());
    assert_eq!(files.len(), 3);
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::write(&files[1], b"tw0").unwrap();
    std::fs::write(data.objects().join("stray.dcm"), b"x").unwrap();
    std::fs::write(data.spool().join("left.part"), b"x").unwrap();
    let r = fsck(&data, FsckOptions::default()).unwrap();
    let kinds: Vec<&str> = r
        .problems
        .iter()
        .map(|p| match p {
            Problem::Missing { .. } => "missing",
            Problem::WrongHash { .. } => "hash",
            Problem::Orphan { .. } => "orphan",
            Problem::SpoolLeftover { .. } => "spool",
            _ => "other",
        })
        .collect();
    for k in ["missing", "hash", "orphan", "spool"] {
        assert!(kinds.contains(&k), "{k} not in {kinds:?}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn recovery_after_unclean_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let store = Store::open(data.clone()).unwrap();
    put(&store, "1.2.3.1", b"kept");
    put(&store, "1.2.3.2", b"lost");
    // Simulate a crash: no close (no clean mark), a leftover spool file, an orphan object file,
    // and the last instance's file missing as if its data never reached the disk.
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let _ = std::fs::remove_file(data.root().join("clean-shutdown"));
    std::fs::write(data.spool().join("9-9.part"), b"partial").unwrap();
    let orphan_sha = "ab".repeat(32);
    let orphan = data.object_path(&orphan_sha);
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"never indexed").unwrap();
    // Push the watermark back so the last row counts as not yet known durable.
    {
        let c = rusqlite_open(&data);
        c.execute(
            "UPDATE store_state SET value = 1 WHERE key = 'synced_instance_id'",
            [],
        )
        .unwrap();
        let sha: String = c
            .query_row("SELECT sha256 FROM instances WHERE id = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        std::fs::remove_file(data.object_path(&sha)).unwrap();
    }

    let store = Store::open(data.clone()).unwrap();
    store.close().unwrap();
    let r = fsck(&data, FsckOptions::default()).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let s = stats(&data).unwrap();
    assert_eq!(s.instances, 1);
    assert_eq!(s.quarantined, 1);
    assert!(spool_is_empty(&data));
}

fn rusqlite_open(data: &DataDir) -> rusqlite::Connection {
    rusqlite::Connection::open(data.db()).unwrap()
}

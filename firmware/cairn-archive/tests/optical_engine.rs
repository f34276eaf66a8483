//! The archive writer against the disc emulator (real xorriso on `stdio:` images): sessions
//! written and verified, a disc without room, extraction with `xorriso -osirrox`, scan, restore.
#![allow(clippy::unwrap_used)]

use cairn_archive::catalog;
use cairn_archive::engine::{Archiver, Drive, Policy, TargetSpec};
use cairn_hal::optical::emulator as disc;
use cairn_hal::optical::XorrisoDrive;
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use rusqlite::Connection;
use std::process::Command;
use std::time::Duration;

fn put(store: &Store, n: usize, size: usize, study: &str, salt: u8) -> Vec<String> {
    let mut shas = Vec::new();
    for i in 0..n {
        let mut w = store.spool().unwrap();
        let bytes: Vec<u8> = (0..size)
            .map(|k| (k as u8).wrapping_mul(3) ^ (i as u8) ^ salt)
            .chain((i as u32).to_le_bytes())
            .collect();
        w.write(&bytes).unwrap();
        let spool = w.finish().unwrap();
        shas.push(spool.sha256.clone());
        let mut record = InstanceRecord {
            sop_instance_uid: format!("{study}.9.{i}"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        record.patient.id = "P-OPT".into();
        record.study.uid = study.into();
        record.series.uid = format!("{study}.9");
        store
            .commit(StoreJob {
                spool,
                record,
                source_ae: "TEST".into(),
            })
            .unwrap();
    }
    shas
}

fn q(data: &DataDir, sql: &str) -> i64 {
    let c = Connection::open(data.db()).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn sessions_verify_fill_a_disc_and_scan_and_restore() {
    assert!(
        Command::new("xorriso").arg("-version").output().is_ok(),
        "xorriso is needed (tools/test installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let tray = tmp.path().join("tray");
    disc::init_tray(&tray).unwrap();
    // a small disc: room for the first bundle only
    disc::insert_blank(&tray, "D1", 6 << 20).unwrap();
    let store = Store::open(data.clone()).unwrap();
    let t = tray.clone();
    let mut a = Archiver::new(
        store.clone(),
        Policy {
            box_id: "TESTBOX".into(),
            bundle_max_bytes: 3 << 20,
            bundle_max_age: Duration::from_secs(3600),
            bundle_max_members: 100_000,
            volume_name_prefix: "CAIRN".into(),
        },
        vec![TargetSpec {
            name: "disc0".into(),
            kind: "optical".into(),
            open: Box::new(move || Ok(Drive::Optical(Box::new(XorrisoDrive::emulated(&t))))),
        }],
    )
    .unwrap();
    let shas = put(&store, 20, 120_000, "1.2.3.700", 9);
    let first = a.flush(None);
    // ~2.4 MiB fits; the next bundle may not: either way nothing verified is lost
    let verified = q(&data, "SELECT count(*) FROM copies WHERE verified = 1");
    assert!(verified >= 1, "{first:?}");
    let shas2 = put(&store, 30, 120_000, "1.2.3.701", 10);
    let e = a.flush(None).unwrap_err().to_string();
    assert!(e.contains("still queued"), "{e}");
    assert!(
        q(
            &data,
            "SELECT count(*) FROM bundles WHERE state = 'incomplete'"
        ) >= 1
    );
    assert_eq!(
        q(&data, "SELECT count(*) FROM volumes WHERE state = 'full'"),
        1
    );
    assert!(catalog::archive_status(&data).unwrap().medium_needed);
    a.eject(None, catalog::Location::OnsiteShelf, "user:test")
        .unwrap();
    disc::insert_blank(&tray, "D2", 64 << 20).unwrap();
    a.load(None, "user:test").unwrap();
    a.flush(None).unwrap();
    assert_eq!(q(&data, "SELECT count(*) FROM archive_queue"), 0);
    assert_eq!(
        q(
            &data,
            "SELECT count(DISTINCT sha256) FROM copies WHERE verified = 1"
        ),
        50
    );

    // xorriso -osirrox extracts a session's bundle; sha256sum checks it
    let img = disc::image_path(&tray, "D2").unwrap();
    let x = tmp.path().join("x");
    let out = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&img)
        .args(["-extract", "/", x.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle_dir = std::fs::read_dir(&x)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("MANIFEST.sha256").exists())
        .unwrap();
    let st = Command::new("sha256sum")
        .args(["-c", "MANIFEST.sha256"])
        .current_dir(&bundle_dir)
        .output()
        .unwrap();
    assert!(st.status.success());
    assert!(x.join("CAIRN-VOLUME.json").exists());

    // scan rebuilds the disc's rows
    let before: i64 = q(
        &data,
        "SELECT count(*) FROM copies c JOIN bundles b ON b.id = c.bundle_ref
        JOIN volumes v ON v.id = b.volume_ref WHERE v.location = 'in_drive' AND c.verified = 1",
    );
    store
        .transact(|c, _| {
            c.execute_batch(
                "DELETE FROM copies WHERE bundle_ref IN (SELECT b.id FROM bundles b JOIN volumes v
                   ON v.id = b.volume_ref WHERE v.location = 'in_drive');
                 DELETE FROM bundles WHERE volume_ref IN
                   (SELECT id FROM volumes WHERE location = 'in_drive');",
            )?;
            Ok(((), vec![]))
        })
        .unwrap();
    a.scan(None, "user:test").unwrap();
    let after: i64 = q(
        &data,
        "SELECT count(*) FROM copies c JOIN bundles b ON b.id = c.bundle_ref
        JOIN volumes v ON v.id = b.volume_ref WHERE v.location = 'in_drive' AND c.verified = 1",
    );
    assert_eq!(before, after);

    // restore deleted hot files of the second study from the disc in the drive
    let orig: Vec<Vec<u8>> = shas2
        .iter()
        .map(|s| std::fs::read(data.object_path(s)).unwrap())
        .collect();
    for s in &shas2 {
        std::fs::remove_file(data.object_path(s)).unwrap();
    }
    let m = a.restore("1.2.3.701", "user:test").unwrap();
    assert!(m.contains("30 of 30"), "{m}");
    for (s, o) in shas2.iter().zip(&orig) {
        assert_eq!(&std::fs::read(data.object_path(s)).unwrap(), o);
    }
    // the first study is on the shelved disc D1: the answer names the volume to load
    for s in &shas {
        std::fs::remove_file(data.object_path(s)).unwrap();
    }
    let d1 = catalog::list_volumes(&data)
        .unwrap()
        .into_iter()
        .find(|v| v.location == catalog::Location::OnsiteShelf)
        .unwrap();
    let e = a.restore("1.2.3.700", "user:test").unwrap_err().to_string();
    // by the short name people read on the disc, not the internal id
    assert!(e.contains(&d1.name) && !e.contains(&d1.volume_id), "{e}");
    store.close().unwrap();
}

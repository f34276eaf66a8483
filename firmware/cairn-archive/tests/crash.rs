//! A power cut (SIGKILL) while a bundle is written to the emulated tape: after the restart the
//! unfinished tape file is closed, the bundle is written again after it, and every instance is
//! verified; nothing is lost.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_archive::engine::Archiver;
use cairn_hal::tape::emulator::{self, CartridgeSpec};
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

const CHILD: &str = "CAIRN_ARCHIVE_CRASH_CHILD";

fn archiver(store: &Store, drive: &Path) -> Archiver {
    common::tape_archiver(store, drive, "CRASH", 1 << 30)
}

#[test]
fn sigkill_while_a_bundle_is_written_loses_nothing() {
    if let Ok(dir) = std::env::var(CHILD) {
        // the child: write everything queued, until it is killed
        let dir = Path::new(&dir);
        let store = Store::open(DataDir::new(dir.join("data"))).unwrap();
        let mut a = archiver(&store, &dir.join("tape"));
        let _ = a.flush(None);
        panic!("the child should have been killed before its flush ended");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let drive = tmp.path().join("tape");
    emulator::insert_blank(
        &drive,
        &CartridgeSpec {
            id: "CRASH1".into(),
            capacity: 4 << 30,
            early_warning: 3 << 30,
        },
    )
    .unwrap();
    let store = Store::open(data.clone()).unwrap();
    // catalog the target (and label the tape) first, so the instances are queued
    archiver(&store, &drive).load(None, "test").unwrap();
    let n = 40;
    for i in 0..n {
        let mut w = store.spool().unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|k: u32| (k ^ i) as u8).collect();
        w.write(&chunk).unwrap();
        w.write(&i.to_le_bytes()).unwrap();
        let spool = w.finish().unwrap();
        let mut record = InstanceRecord {
            sop_instance_uid: format!("1.2.3.77.{i}"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        record.study.uid = "1.2.3.77".into();
        record.series.uid = "1.2.3.77.0".into();
        store
            .commit(StoreJob {
                spool,
                record,
                source_ae: "TEST".into(),
            })
            .unwrap();
    }
    store.close().unwrap();

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_while_a_bundle_is_written_loses_nothing",
            "--nocapture",
        ])
        .env(CHILD, tmp.path())
        .spawn()
        .unwrap();
    let file1 = emulator::tape_file_path(&drive, "CRASH1", 1).unwrap();
    let start = Instant::now();
    while std::fs::metadata(&file1).map(|m| m.len()).unwrap_or(0) < 4 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the child wrote nothing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended by itself"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let cut = std::fs::metadata(&file1).unwrap().len();
    assert!(cut < 40 << 20, "killed mid-bundle ({cut} bytes written)");

    // restart: recovery, then everything is written again and verified
    let store = Store::open(data.clone()).unwrap();
    let mut a = archiver(&store, &drive);
    a.flush(None).unwrap();
    let c = Connection::open(data.db()).unwrap();
    let q = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(q("SELECT count(*) FROM archive_queue"), 0);
    assert_eq!(
        q("SELECT count(DISTINCT sha256) FROM copies WHERE verified = 1"),
        i64::from(n)
    );
    assert_eq!(q("SELECT count(*) FROM bundles WHERE state = 'failed'"), 1);
    assert_eq!(
        q("SELECT file_number FROM bundles WHERE state = 'verified'"),
        2
    );
    // the cut file is still there (less a record the kill left without its length: the
    // emulator drops it on mount, as a drive loses its unflushed buffer); the new bundle is
    // tape file 2 and reads with tar
    let kept = std::fs::metadata(&file1).unwrap().len();
    assert!(kept > 0 && kept <= cut, "{kept} of {cut}");
    let file2 = emulator::tape_file_path(&drive, "CRASH1", 2).unwrap();
    let x = tmp.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(std::process::Command::new("tar")
        .args(["-b", "512", "-xf"])
        .arg(&file2)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap()
        .success());
    assert!(std::process::Command::new("sha256sum")
        .args(["--quiet", "-c", "MANIFEST.sha256"])
        .current_dir(&x)
        .status()
        .unwrap()
        .success());
    drop(a);
    store.close().unwrap();
}

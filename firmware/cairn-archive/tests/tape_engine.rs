//! The archive writer against the tape emulator (cairn-hal), through a real store: bundles
//! written and verified, end of medium mid-bundle, write errors, write protect, no medium,
//! verify mismatch, catalog rebuilt by scanning, restore of deleted hot files.
#![allow(clippy::unwrap_used)]

mod common;

use common::{insert_blank as cartridge, put, q};

use cairn_archive::catalog;
use cairn_archive::engine::{Archiver, Drive, Outcome, Policy, TargetSpec};
use cairn_hal::tape::emulator::{self};
use cairn_hal::tape::EmulatedTape;
use cairn_store::{DataDir, Store};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Rig {
    _tmp: tempfile::TempDir,
    data: DataDir,
    drive: PathBuf,
}

fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let drive = tmp.path().join("tape");
    emulator::init_drive(&drive).unwrap();
    Rig {
        _tmp: tmp,
        data,
        drive,
    }
}

fn verified_instances(data: &DataDir) -> i64 {
    q(
        data,
        "SELECT count(*) FROM instances i WHERE EXISTS (SELECT 1 FROM copies c
           WHERE c.sha256 = i.sha256 AND c.verified = 1)",
    )
}

#[test]
fn bundles_are_written_verified_and_read_by_gnu_tar() {
    let r = rig();
    cartridge(&r.drive, "TAPE01", 1 << 30, (1 << 30) - (1 << 20));
    let store = Store::open(r.data.clone()).unwrap();
    let mut a = archiver(&store, &r.drive, 8 << 20);
    let shas = put(&store, 40, 100_000, "1.2.3.100", 0);
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 40);
    // below the size limit and young: nothing is due yet
    let out = a.tick(false);
    assert_eq!(out[0].1, Outcome::Idle);
    assert_eq!(q(&r.data, "SELECT count(*) FROM bundles"), 0);
    // flush writes everything and verifies it
    a.flush(None).unwrap();
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 0);
    assert_eq!(verified_instances(&r.data), 40);
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM bundles WHERE state = 'verified'"
        ),
        1
    );
    let st = catalog::archive_status(&r.data).unwrap();
    assert_eq!(st.targets[0].queue.instances, 0);
    assert!(st.targets[0].last_verified.is_some());
    let vols = catalog::list_volumes(&r.data).unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].state, catalog::VolumeState::Append);
    assert_eq!(vols[0].location, catalog::Location::InDrive);
    // audit rows for the label and its location
    assert!(
        q(
            &r.data,
            "SELECT count(*) FROM audit WHERE action = 'volume-state'"
        ) >= 1
    );

    // someone swaps the cartridge without an eject: the catalog moves the old one out
    emulator::eject(&r.drive).unwrap();
    cartridge(&r.drive, "TAPE02", 1 << 30, (1 << 30) - (1 << 20));
    a.load(None, "user:swap").unwrap();
    let vols = catalog::list_volumes(&r.data).unwrap();
    assert_eq!(vols.len(), 2);
    let old = vols.iter().find(|v| v.verified_copies == 40).unwrap();
    assert_eq!(old.location, catalog::Location::OnsiteShelf);
    assert_eq!(old.state, catalog::VolumeState::Ejected);
    assert_eq!(
        vols.iter()
            .filter(|v| v.location == catalog::Location::InDrive)
            .count(),
        1
    );

    // GNU tar reads tape file 1 straight from the emulator's file; sha256sum checks it
    drop(a);
    let f1 = emulator::tape_file_path(&r.drive, "TAPE01", 1).unwrap();
    let x = r._tmp.path().join("x");
    common::gnu_tar_extract(&f1, &x);
    assert!(common::sha256sum_check(&x).contains(&shas[0]));
    // the label is tape file 0: JSON
    let f0 = emulator::tape_file_path(&r.drive, "TAPE01", 0).unwrap();
    let label: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(f0).unwrap().trim()).unwrap();
    assert_eq!(label["box_id"], "TESTBOX");
    assert_eq!(label["block_size"], 262144);
    store.close().unwrap();
}

#[test]
fn early_warning_rewrites_the_bundle_whole_on_the_next_volume() {
    let r = rig();
    // early warning after ~1.5 MiB: a 3 MiB bundle cannot fit
    cartridge(&r.drive, "SMALL1", 8 << 20, 3 << 19);
    let store = Store::open(r.data.clone()).unwrap();
    let mut a = archiver(&store, &r.drive, 64 << 20);
    put(&store, 30, 100_000, "1.2.3.200", 1);
    let e = a.flush(None).unwrap_err().to_string();
    assert!(e.contains("still queued"), "{e}");
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 30);
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM bundles WHERE state = 'incomplete'"
        ),
        1
    );
    assert_eq!(
        q(&r.data, "SELECT count(*) FROM volumes WHERE state = 'full'"),
        1
    );
    assert_eq!(verified_instances(&r.data), 0);
    let st = catalog::archive_status(&r.data).unwrap();
    assert!(st.medium_needed, "{st:?}");
    // eject to the shelf, a new cartridge: the whole bundle goes there
    a.eject(None, catalog::Location::OnsiteShelf, "user:test")
        .unwrap();
    cartridge(&r.drive, "BIG002", 1 << 30, (1 << 30) - (1 << 20));
    a.load(None, "user:test").unwrap();
    a.flush(None).unwrap();
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 0);
    assert_eq!(verified_instances(&r.data), 30);
    let vols = catalog::list_volumes(&r.data).unwrap();
    let small = vols.iter().find(|v| v.verified_copies == 0).unwrap();
    assert_eq!(small.state, catalog::VolumeState::Full);
    assert_eq!(small.location, catalog::Location::OnsiteShelf);
    assert!(
        q(
            &r.data,
            "SELECT count(*) FROM audit WHERE action = 'volume-location'
                     AND actor = 'user:test'"
        ) >= 1
    );
    store.close().unwrap();
}

#[test]
fn write_error_and_write_protect_and_no_medium_lose_nothing() {
    let r = rig();
    let store = Store::open(r.data.clone()).unwrap();
    let mut a = archiver(&store, &r.drive, 64 << 20);
    put(&store, 10, 50_000, "1.2.3.300", 2);
    // no medium: everything stays queued, the box says a medium is needed
    assert!(a.flush(None).is_err());
    assert!(catalog::archive_status(&r.data).unwrap().medium_needed);
    // a write-protected blank: not labelled, still queued
    cartridge(&r.drive, "WP0001", 1 << 30, (1 << 30) - (1 << 20));
    emulator::set_write_protect(&r.drive, "WP0001", true).unwrap();
    a.load(None, "user:test").unwrap();
    assert!(a.flush(None).is_err());
    assert_eq!(q(&r.data, "SELECT count(*) FROM volumes"), 0);
    a.eject(None, catalog::Location::OnsiteShelf, "user:test")
        .unwrap();
    // a write error mid-bundle: the bundle fails, the volume goes to error, nothing lost
    cartridge(&r.drive, "ERR001", 1 << 30, (1 << 30) - (1 << 20));
    a.load(None, "user:test").unwrap();
    emulator::inject_write_error(&r.drive, "ERR001", Some(300_000)).unwrap();
    assert!(a.flush(None).is_err());
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 10);
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM volumes WHERE state = 'error'"
        ),
        1
    );
    assert_eq!(
        q(&r.data, "SELECT count(*) FROM copies WHERE verified = 1"),
        0
    );
    a.eject(None, catalog::Location::OnsiteShelf, "user:test")
        .unwrap();
    cartridge(&r.drive, "GOOD01", 1 << 30, (1 << 30) - (1 << 20));
    a.load(None, "user:test").unwrap();
    a.flush(None).unwrap();
    assert_eq!(verified_instances(&r.data), 10);
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 0);
    store.close().unwrap();
}

#[test]
fn a_labelled_volume_is_never_overwritten() {
    let r = rig();
    let store = Store::open(r.data.clone()).unwrap();
    put(&store, 3, 1000, "1.2.3.400", 3);
    // a cartridge holding someone else's data
    cartridge(&r.drive, "FOREIGN", 1 << 30, (1 << 30) - (1 << 20));
    {
        use cairn_hal::tape::TapeDrive;
        let mut d = EmulatedTape::open(&r.drive).unwrap();
        d.set_block_size(0).unwrap();
        d.write_block(b"not a cairn tape").unwrap();
        d.write_filemarks(1).unwrap();
    }
    let mut a = archiver(&store, &r.drive, 64 << 20);
    assert!(a.flush(None).is_err());
    let f0 = emulator::tape_file_path(&r.drive, "FOREIGN", 0).unwrap();
    assert_eq!(std::fs::read(f0).unwrap(), b"not a cairn tape");
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 3);
    let st = catalog::archive_status(&r.data).unwrap();
    assert_eq!(st.targets[0].drive, "foreign medium");
    store.close().unwrap();
}

type CatalogRows = (
    Vec<(String, String, i64, String, i64, i64, String)>,
    Vec<(String, String, i64)>,
);

fn catalog_rows(data: &DataDir) -> CatalogRows {
    let c = Connection::open(data.db()).unwrap();
    let mut s = c
        .prepare(
            "SELECT b.bundle_id, v.volume_id, b.file_number, b.state, b.members, b.bytes,
               b.manifest_sha256 FROM bundles b JOIN volumes v ON v.id = b.volume_ref ORDER BY 1",
        )
        .unwrap();
    let bundles = s
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let mut s = c
        .prepare(
            "SELECT b.bundle_id, c.sha256, c.verified FROM copies c
             JOIN bundles b ON b.id = c.bundle_ref ORDER BY 1, 2",
        )
        .unwrap();
    let copies = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (bundles, copies)
}

#[test]
fn scan_rebuilds_the_catalog_and_restore_brings_back_deleted_files() {
    let r = rig();
    cartridge(&r.drive, "SCAN01", 1 << 30, (1 << 30) - (1 << 20));
    let store = Store::open(r.data.clone()).unwrap();
    let mut a = archiver(&store, &r.drive, 1 << 20);
    let shas = put(&store, 25, 90_000, "1.2.3.500", 4);
    put(&store, 5, 10_000, "1.2.3.501", 5);
    a.flush(None).unwrap();
    let before = catalog_rows(&r.data);
    assert!(before.0.len() >= 2);
    let vols_before = catalog::list_volumes(&r.data).unwrap();
    // wipe the catalog tables
    store
        .transact(|c, _| {
            c.execute_batch("DELETE FROM copies; DELETE FROM bundles; DELETE FROM volumes;")?;
            Ok(((), vec![]))
        })
        .unwrap();
    assert_eq!(verified_instances(&r.data), 0);
    let msg = a.scan(None, "user:test").unwrap();
    assert!(msg.contains("verified"), "{msg}");
    let after = catalog_rows(&r.data);
    assert_eq!(before, after);
    let vols_after = catalog::list_volumes(&r.data).unwrap();
    assert_eq!(vols_before.len(), vols_after.len());
    assert_eq!(vols_before[0].volume_id, vols_after[0].volume_id);
    assert_eq!(vols_before[0].bytes_written, vols_after[0].bytes_written);
    assert_eq!(vols_before[0].state, vols_after[0].state);

    // delete the hot files of study 500, restore them from tape
    let originals: Vec<Vec<u8>> = shas
        .iter()
        .map(|s| std::fs::read(r.data.object_path(s)).unwrap())
        .collect();
    for s in &shas {
        std::fs::remove_file(r.data.object_path(s)).unwrap();
    }
    // damage one more in place
    let msg = a.restore("1.2.3.500", "user:test").unwrap();
    assert!(msg.contains("25 of 25"), "{msg}");
    for (s, orig) in shas.iter().zip(&originals) {
        assert_eq!(&std::fs::read(r.data.object_path(s)).unwrap(), orig);
    }
    assert!(a
        .restore("1.2.3.500", "user:test")
        .unwrap()
        .contains("nothing to restore"));
    assert!(a.restore("9.9.9", "user:test").is_err());
    // appending still works after the restore moved the tape
    put(&store, 2, 5000, "1.2.3.502", 6);
    a.flush(None).unwrap();
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 0);
    store.close().unwrap();
    let rep = cairn_store::fsck(&r.data, cairn_store::FsckOptions::default()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

#[test]
fn a_verify_mismatch_is_detected_and_nothing_is_marked_verified() {
    // a drive that flips one byte of whatever is read back
    use cairn_hal::tape::{TapeDrive, TapeError, TapeStatus};
    struct Flaky(EmulatedTape);
    impl TapeDrive for Flaky {
        fn status(&mut self) -> Result<TapeStatus, TapeError> {
            self.0.status()
        }
        fn set_block_size(&mut self, s: u32) -> Result<(), TapeError> {
            self.0.set_block_size(s)
        }
        fn rewind(&mut self) -> Result<(), TapeError> {
            self.0.rewind()
        }
        fn write_block(&mut self, d: &[u8]) -> Result<(), TapeError> {
            self.0.write_block(d)
        }
        fn write_filemarks(&mut self, c: u32) -> Result<(), TapeError> {
            self.0.write_filemarks(c)
        }
        fn read_block(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
            let n = self.0.read_block(buf)?;
            if n > 200_000 {
                buf[200_000] ^= 1;
            }
            Ok(n)
        }
        fn space_filemarks(&mut self, c: i32) -> Result<(), TapeError> {
            self.0.space_filemarks(c)
        }
        fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
            self.0.seek_end_of_data()
        }
        fn unload(&mut self) -> Result<(), TapeError> {
            self.0.unload()
        }
    }
    let r = rig();
    cartridge(&r.drive, "FLAKY1", 1 << 30, (1 << 30) - (1 << 20));
    let store = Store::open(r.data.clone()).unwrap();
    let d = r.drive.clone();
    let mut a = Archiver::new(
        store.clone(),
        Policy {
            box_id: "TESTBOX".into(),
            bundle_max_bytes: 64 << 20,
            bundle_max_age: Duration::from_secs(3600),
            bundle_max_members: 1000,
            volume_name_prefix: "CAIRN".into(),
        },
        vec![TargetSpec {
            name: "tape0".into(),
            kind: "tape".into(),
            open: Box::new(move || Ok(Drive::Tape(Box::new(Flaky(EmulatedTape::open(&d)?))))),
        }],
    )
    .unwrap();
    put(&store, 8, 100_000, "1.2.3.600", 7);
    assert!(a.flush(None).is_err());
    assert_eq!(
        q(&r.data, "SELECT count(*) FROM copies WHERE verified = 1"),
        0
    );
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 8);
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM bundles WHERE state = 'failed'"
        ),
        1
    );
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM volumes WHERE state = 'error'"
        ),
        1
    );
    store.close().unwrap();
}

#[test]
fn a_missing_or_damaged_hot_copy_stays_queued_and_the_rest_is_archived() {
    let r = rig();
    cartridge(&r.drive, "HOT001", 1 << 30, (1 << 30) - (1 << 20));
    let store = Store::open(r.data.clone()).unwrap();
    let mut a = archiver(&store, &r.drive, 64 << 20);
    let shas = put(&store, 6, 20_000, "1.2.3.800", 11);
    std::fs::remove_file(r.data.object_path(&shas[1])).unwrap();
    // same size, other bytes: found while streaming
    let p = r.data.object_path(&shas[4]);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 0xff;
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, bytes).unwrap();
    let e = a.flush(None).unwrap_err().to_string();
    assert!(e.contains("2 instance(s) still queued"), "{e}");
    assert_eq!(verified_instances(&r.data), 4);
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 2);
    // the damaged one cost one failed bundle; the missing one none
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM bundles WHERE state = 'failed'"
        ),
        1
    );
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM volumes WHERE state = 'error'"
        ),
        0
    );
    let st = catalog::archive_status(&r.data).unwrap();
    assert!(st.targets[0].last_error.is_some());
    drop(a);
    store.close().unwrap();
}

fn archiver(store: &Store, drive: &Path, max_bytes: u64) -> Archiver {
    common::tape_archiver(store, drive, "TESTBOX", max_bytes)
}

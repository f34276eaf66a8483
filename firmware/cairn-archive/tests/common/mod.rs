//! Helpers shared by the archive's integration tests: index records, objects put through a
//! real store, an archiver on one emulated tape drive, blank cartridges, one-number queries.
#![allow(dead_code, clippy::unwrap_used)]

use cairn_archive::engine::{Archiver, Drive, Policy, TargetSpec};
use cairn_hal::tape::emulator::{self, CartridgeSpec};
use cairn_hal::tape::EmulatedTape;
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// The index record of instance `i` of `study` (one series, one patient).
pub fn record(i: usize, study: &str) -> InstanceRecord {
    let mut r = InstanceRecord {
        sop_instance_uid: format!("{study}.1.{i}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        instance_number: i.to_string(),
        ..Default::default()
    };
    r.patient.id = "PID-1".into();
    r.patient.name = "Test^Patient".into();
    r.study.uid = study.into();
    r.study.date = "20250101".into();
    r.series.uid = format!("{study}.1");
    r.series.modality = "OT".into();
    r
}

/// Store `n` objects of `size` (+4) bytes in `study`; `salt` makes the bytes differ between
/// calls. Returns their SHA-256s in order.
pub fn put(store: &Store, n: usize, size: usize, study: &str, salt: u8) -> Vec<String> {
    let mut shas = Vec::new();
    for i in 0..n {
        let mut w = store.spool().unwrap();
        let bytes: Vec<u8> = (0..size)
            .map(|k| (k as u8) ^ (i as u8).wrapping_mul(13) ^ salt)
            .chain((i as u32).to_le_bytes())
            .collect();
        w.write(&bytes).unwrap();
        let spool = w.finish().unwrap();
        shas.push(spool.sha256.clone());
        store
            .commit(StoreJob {
                spool,
                record: record(i, study),
                source_ae: "TEST".into(),
            })
            .unwrap();
    }
    shas
}

/// An archiver with one target, `tape0`, on the emulated drive at `drive`.
pub fn tape_archiver(store: &Store, drive: &Path, box_id: &str, bundle_max_bytes: u64) -> Archiver {
    let d = drive.to_path_buf();
    Archiver::new(
        store.clone(),
        Policy {
            box_id: box_id.into(),
            bundle_max_bytes,
            bundle_max_age: Duration::from_secs(3600),
            bundle_max_members: 100_000,
            volume_name_prefix: "CAIRN".into(),
        },
        vec![TargetSpec {
            name: "tape0".into(),
            kind: "tape".into(),
            open: Box::new(move || Ok(Drive::Tape(Box::new(EmulatedTape::open(&d)?)))),
        }],
    )
    .unwrap()
}

/// Load a blank cartridge into the emulated drive.
pub fn insert_blank(drive: &Path, id: &str, capacity: u64, early_warning: u64) {
    emulator::insert_blank(
        drive,
        &CartridgeSpec {
            id: id.into(),
            capacity,
            early_warning,
        },
    )
    .unwrap();
}

/// Extract a bundle's tape file (the emulator keeps it as a plain file) into `dir` with GNU
/// tar alone: strict POSIX reading, 256 KiB records.
pub fn gnu_tar_extract(tape_file: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    assert!(std::process::Command::new("tar")
        .args(["--format=posix", "-b", "512", "-xf"])
        .arg(tape_file)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap()
        .success());
}

/// `sha256sum --strict -c MANIFEST.sha256` in an extracted bundle: it must succeed; its
/// output (`<path>: OK` lines).
pub fn sha256sum_check(dir: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .args(["--strict", "-c", "MANIFEST.sha256"])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

/// One number from the index.
pub fn q(data: &DataDir, sql: &str) -> i64 {
    let c = Connection::open(data.db()).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A real store and an emulated tape drive holding a blank 1 GiB cartridge, in a temporary
/// directory (kept while this lives).
pub struct TapeBox {
    pub tmp: tempfile::TempDir,
    pub data: DataDir,
    pub drive: std::path::PathBuf,
    pub store: Store,
}

/// A [`TapeBox`] whose drive holds the blank cartridge `id`.
pub fn tape_box(id: &str) -> TapeBox {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let drive = tmp.path().join("tape");
    emulator::init_drive(&drive).unwrap();
    insert_blank(&drive, id, 1 << 30, (1 << 30) - (1 << 20));
    let store = Store::open(data.clone()).unwrap();
    TapeBox {
        tmp,
        data,
        drive,
        store,
    }
}

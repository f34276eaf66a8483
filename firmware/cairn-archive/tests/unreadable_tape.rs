//! A tape whose beginning cannot be read (the first read at BOT fails with an I/O error, as
//! Debian's tgt answers for a blank tape and some drives for a new or degaussed cartridge):
//! never written on the archive's own, refused by a plain load with what to do, labelled only
//! on a person's explicit request (audited with who and when, before the tape is written),
//! and never labelled that way when a label, foreign data or anything else was read.
#![allow(clippy::unwrap_used)]

mod common;

use common::q;

use cairn_archive::catalog;
use cairn_archive::engine::{Archiver, Outcome};
use cairn_archive::Request;
use cairn_hal::tape::emulator::{self};
use cairn_hal::tape::{EmulatedTape, TapeDrive};
use cairn_store::{DataDir, Store};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Rig {
    _tmp: tempfile::TempDir,
    data: DataDir,
    drive: PathBuf,
    store: Store,
}

fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let drive = tmp.path().join("tape");
    emulator::init_drive(&drive).unwrap();
    let store = Store::open(data.clone()).unwrap();
    Rig {
        _tmp: tmp,
        data,
        drive,
        store,
    }
}

fn insert(drive: &Path, id: &str) {
    common::insert_blank(drive, id, 1 << 30, (1 << 30) - (1 << 20));
}

fn archiver(r: &Rig) -> Archiver {
    common::tape_archiver(&r.store, &r.drive, "TESTBOX", 8 << 20)
}

/// Store `n` objects of `size` (+4) bytes in `study`.
fn put(store: &Store, n: usize, size: usize, study: &str) {
    common::put(store, n, size, study, 0);
}

fn live(data: &DataDir) -> catalog::LiveTarget {
    let s: catalog::LiveStatus =
        serde_json::from_slice(&std::fs::read(data.root().join("archive.json")).unwrap()).unwrap();
    s.targets.into_iter().next().unwrap()
}

fn cartridge(drive: &Path, id: &str) -> emulator::CartridgeInfo {
    emulator::list_cartridges(drive)
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap()
}

fn label_unreadable(a: &mut Archiver, by: &str) -> cairn_archive::requests::Answer {
    a.handle(Request::LabelUnreadable {
        target: Some("tape0".into()),
        by: by.into(),
    })
}

#[test]
fn an_unreadable_tape_is_refused_then_labelled_on_request_audited_and_written() {
    let r = rig();
    insert(&r.drive, "NEW01");
    emulator::set_unreadable_when_blank(&r.drive, "NEW01", true).unwrap();
    put(&r.store, 5, 50_000, "1.2.3.7");
    let mut a = archiver(&r);

    // the archive never writes it on its own, and the status says what to do
    let out = a.tick(true);
    assert_eq!(out[0].1, Outcome::MediumNeeded);
    let l = live(&r.data);
    assert_eq!(l.drive, "unreadable medium");
    assert!(l.medium_needed);
    assert!(
        l.last_error
            .as_deref()
            .unwrap()
            .contains("Input/output error"),
        "{l:?}"
    );
    assert!(
        l.message.contains("cannot be read at its start")
            && l.message
                .contains("cairnctl archive load --label-unreadable"),
        "{}",
        l.message
    );
    assert!(a.flush(None).is_err());
    // a plain load is refused with the same advice
    let ans = a.handle(Request::Load {
        target: None,
        by: "user:bob".into(),
    });
    assert!(!ans.ok, "{ans:?}");
    assert!(
        ans.message.contains("cannot be read at its start")
            && ans.message.contains("--label-unreadable"),
        "{}",
        ans.message
    );
    let c = cartridge(&r.drive, "NEW01");
    assert_eq!((c.bytes_used, c.filemarks), (0, 0));
    assert_eq!(q(&r.data, "SELECT count(*) FROM volumes"), 0);

    // the person's explicit action labels it
    let ans = label_unreadable(&mut a, "user:alice");
    assert!(ans.ok, "{ans:?}");
    assert!(ans.message.contains("labelled"), "{}", ans.message);
    let vols = catalog::list_volumes(&r.data).unwrap();
    assert_eq!(vols.len(), 1);
    let vid = vols[0].volume_id.clone();
    assert_eq!(vols[0].state, catalog::VolumeState::Labelled);
    assert_eq!(vols[0].updated_by, "user:alice");
    // audited with who and when, before the tape was written (ahead of the volume's rows)
    let c = Connection::open(r.data.db()).unwrap();
    let (seq, at, detail): (i64, String, String) = c
        .query_row(
            "SELECT seq, at, detail FROM audit WHERE action = 'volume-label-unreadable'
               AND actor = 'user:alice' AND object = ?1",
            [&vid],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert!(at.starts_with("20"), "{at}");
    assert!(detail.contains("Input/output error"), "{detail}");
    let state_seq: i64 = c
        .query_row(
            "SELECT min(seq) FROM audit WHERE action = 'volume-state' AND object = ?1",
            [&vid],
            |row| row.get(0),
        )
        .unwrap();
    assert!(seq < state_seq);
    let l = live(&r.data);
    assert_eq!(l.drive, "ready");
    assert_eq!(l.last_error, None);
    // tape file 0 is the label
    let label = std::fs::read(emulator::tape_file_path(&r.drive, "NEW01", 0).unwrap()).unwrap();
    assert!(String::from_utf8_lossy(&label).contains(&vid));

    // and the archive writes, verifies, and GNU tar reads the bundle
    a.flush(None).unwrap();
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 0);
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM bundles WHERE state = 'verified'"
        ),
        1
    );
    let file1 = emulator::tape_file_path(&r.drive, "NEW01", 1).unwrap();
    let out = Command::new("tar")
        .args(["-b", "512", "-tf"])
        .arg(&file1)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listing.matches(".dcm").count(), 5, "{listing}");

    // once labelled, the action is refused: a label is read, nothing is written
    let before = cartridge(&r.drive, "NEW01");
    let ans = label_unreadable(&mut a, "user:alice");
    assert!(!ans.ok && ans.message.contains("not labelled"), "{ans:?}");
    let after = cartridge(&r.drive, "NEW01");
    assert_eq!(
        (before.bytes_used, before.filemarks),
        (after.bytes_used, after.filemarks)
    );
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM audit WHERE action = 'volume-label-unreadable'"
        ),
        1
    );
}

#[test]
fn a_foreign_or_protected_tape_is_never_labelled_this_way_and_a_blank_one_as_usual() {
    let r = rig();
    // foreign data on a cartridge that would fail a read at its start while blank: data is
    // read, so it is foreign, and stays untouched
    insert(&r.drive, "FOR01");
    {
        let mut d = EmulatedTape::open(&r.drive).unwrap();
        d.set_block_size(0).unwrap();
        d.write_block(&vec![b'x'; 10_240]).unwrap();
        d.write_filemarks(1).unwrap();
    }
    emulator::set_unreadable_when_blank(&r.drive, "FOR01", true).unwrap();
    put(&r.store, 2, 10_000, "1.2.3.8");
    let mut a = archiver(&r);
    let before = cartridge(&r.drive, "FOR01");
    let ans = label_unreadable(&mut a, "user:carol");
    assert!(!ans.ok, "{ans:?}");
    assert!(
        ans.message.contains("not labelled") && ans.message.contains("foreign medium"),
        "{}",
        ans.message
    );
    let after = cartridge(&r.drive, "FOR01");
    assert_eq!(
        (before.bytes_used, before.filemarks),
        (after.bytes_used, after.filemarks)
    );
    assert_eq!(q(&r.data, "SELECT count(*) FROM volumes"), 0);

    // an unreadable, write-protected tape: refused, nothing written
    emulator::eject(&r.drive).unwrap();
    insert(&r.drive, "WP01");
    emulator::set_unreadable_when_blank(&r.drive, "WP01", true).unwrap();
    emulator::set_write_protect(&r.drive, "WP01", true).unwrap();
    let ans = label_unreadable(&mut a, "user:carol");
    assert!(
        !ans.ok && ans.message.contains("write-protected"),
        "{ans:?}"
    );
    assert_eq!(cartridge(&r.drive, "WP01").filemarks, 0);
    assert_eq!(q(&r.data, "SELECT count(*) FROM volumes"), 0);

    // a blank tape that reads as blank: labelled as a load would
    emulator::eject(&r.drive).unwrap();
    insert(&r.drive, "BLK01");
    let ans = label_unreadable(&mut a, "user:carol");
    assert!(ans.ok, "{ans:?}");
    assert_eq!(q(&r.data, "SELECT count(*) FROM volumes"), 1);
    assert_eq!(
        q(
            &r.data,
            "SELECT count(*) FROM audit WHERE action = 'volume-label-unreadable'"
        ),
        0
    );
    a.flush(None).unwrap();
    assert_eq!(q(&r.data, "SELECT count(*) FROM archive_queue"), 0);
}

//! Recycling a tape whose every copy was removed, on the tape emulator through a real store:
//! refused while a copy stands, while the tape is not in a drive, for an unknown name; then
//! erased in its drive (label kept), forgotten by the catalog, audited, and written again.
#![allow(clippy::unwrap_used)]

mod common;

use common::{put, q, tape_archiver, tape_box};

use cairn_archive::catalog::{self, Location, VolumeState};
use cairn_archive::Request;
use cairn_hal::tape::emulator;
use cairn_store::DataDir;
use rusqlite::Connection;

fn recycle(a: &mut cairn_archive::engine::Archiver, volume: &str) -> (bool, String) {
    let answer = a.handle(Request::Recycle {
        volume: volume.into(),
        by: "user:alice".into(),
    });
    (answer.ok, answer.message)
}

fn tape01(data: &DataDir) -> catalog::VolumeRow {
    let conn = catalog::open_read(data).unwrap();
    catalog::volume_named(&conn, "TAPE01").unwrap().unwrap()
}

#[test]
fn a_tape_whose_every_copy_was_removed_is_erased_and_used_again() {
    let b = tape_box("TAPE01");
    let (data, drive, store) = (&b.data, &b.drive, &b.store);
    let mut a = tape_archiver(store, drive, "BOX", 64 << 20);
    put(store, 10, 50_000, "1.2.3.1", 0);
    a.flush(None).unwrap();
    assert_eq!(tape01(data).verified_copies, 10);
    assert!(!tape01(data).recyclable);

    let (ok, msg) = recycle(&mut a, "TAPE01");
    assert!(!ok);
    assert!(msg.contains("neither rejected nor expired"), "{msg}");
    let (ok, msg) = recycle(&mut a, "NOSUCH");
    assert!(!ok);
    assert_eq!(msg, "no volume NOSUCH in the catalog");

    // every image on it was removed (as the removal marks the catalog)
    let c = Connection::open(data.db()).unwrap();
    c.execute("UPDATE copies SET removed = 'expired'", [])
        .unwrap();
    drop(c);
    assert!(tape01(data).recyclable);
    let conn = catalog::open_read(data).unwrap();
    assert_eq!(catalog::recyclable_volumes(&conn).unwrap(), ["TAPE01"]);
    drop(conn);

    // not in a drive: refused, nothing changes
    a.eject(None, Location::OnsiteShelf, "user:alice").unwrap();
    let (ok, msg) = recycle(&mut a, "TAPE01");
    assert!(!ok);
    assert!(msg.contains("load volume TAPE01 first"), "{msg}");
    assert_eq!(
        q(
            data,
            "SELECT count(*) FROM audit WHERE action = 'volume-recycle'"
        ),
        0
    );

    emulator::load(drive, "TAPE01").unwrap();
    a.load(None, "user:alice").unwrap();
    let (ok, msg) = recycle(&mut a, "TAPE01");
    assert!(ok, "{msg}");
    assert!(msg.contains("volume TAPE01 recycled"), "{msg}");
    let v = tape01(data);
    assert_eq!(v.verified_copies, 0);
    assert_eq!(v.verified_bundles, 0);
    assert!(!v.recyclable);
    assert_eq!(v.bytes_written, 0);
    assert_eq!(
        v.state,
        VolumeState::Labelled,
        "taken into use again at once"
    );
    assert_eq!(v.location, Location::InDrive);
    assert_eq!(q(data, "SELECT count(*) FROM copies"), 0);
    assert_eq!(q(data, "SELECT count(*) FROM bundles"), 0);
    let c = Connection::open(data.db()).unwrap();
    let (actor, object, detail): (String, String, String) = c
        .query_row(
            "SELECT actor, object, detail FROM audit WHERE action = 'volume-recycle'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(actor, "user:alice");
    assert_eq!(object, v.volume_id);
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["copies_forgotten"], 10);
    assert_eq!(detail["bundles_forgotten"], 1);
    assert_eq!(detail["to"], "blank");
    // on the tape only the label is left
    assert!(!emulator::tape_file_path(drive, "TAPE01", 1)
        .unwrap()
        .exists());
    assert!(emulator::tape_file_path(drive, "TAPE01", 0)
        .unwrap()
        .exists());

    // recycled twice: nothing left to recycle
    let (ok, msg) = recycle(&mut a, "TAPE01");
    assert!(!ok);
    assert!(msg.contains("holds no image copies"), "{msg}");

    // and it takes new bundles under the same name
    put(store, 5, 50_000, "1.2.3.2", 7);
    a.flush(None).unwrap();
    let v = tape01(data);
    assert_eq!(v.verified_copies, 5);
    assert_eq!(v.state, VolumeState::Append);
}

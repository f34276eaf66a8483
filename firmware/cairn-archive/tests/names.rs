//! Every volume has one short name: the name printed on the cartridge when
//! the drive can read it (the emulator's cartridge id), else the next free `<prefix>NN` the box
//! asks the person to write on it; written in the label beside the internal volume id, kept in
//! the catalog, used in every message, typed back by people; a catalog from before names
//! (no name rows) calls its volumes by their ids. A restore is audited as a restore by the
//! person who asked for it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{insert_blank, put, q, tape_archiver};

use cairn_archive::catalog::{self, Location};
use cairn_archive::label::Label;
use cairn_hal::tape::emulator;
use cairn_store::{DataDir, Store};

fn rig() -> (tempfile::TempDir, DataDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let drive = tmp.path().join("tape");
    emulator::init_drive(&drive).unwrap();
    (tmp, data, drive)
}

fn label_on(drive: &std::path::Path, cartridge: &str) -> Label {
    let path = emulator::tape_file_path(drive, cartridge, 0).unwrap();
    Label::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn in_drive(data: &DataDir) -> catalog::VolumeRow {
    catalog::archive_status(data).unwrap().targets[0]
        .volume
        .clone()
        .unwrap()
}

#[test]
fn printed_names_are_adopted_and_others_get_the_next_free_name() {
    let (_t, data, drive) = rig();
    let store = Store::open(data.clone()).unwrap();
    let mut a = tape_archiver(&store, &drive, "BOX", 1 << 20);

    // the emulator's cartridge TAPE02 is a valid printed name: adopted
    insert_blank(&drive, "TAPE02", 64 << 20, 60 << 20);
    let msg = a.load(None, "user:test").unwrap();
    let v = in_drive(&data);
    assert_eq!(v.name, "TAPE02");
    assert!(v.volume_id.starts_with("BOX-T"), "{}", v.volume_id);
    assert!(
        msg.contains("TAPE02") && !msg.contains(&v.volume_id),
        "{msg}"
    );
    assert!(
        !msg.contains("write"),
        "an adopted name needs no writing: {msg}"
    );
    let l = label_on(&drive, "TAPE02");
    assert_eq!(
        (l.name.as_str(), l.volume_id.as_str()),
        ("TAPE02", v.volume_id.as_str())
    );

    // a cartridge whose printed name is not a valid short name: the box names it
    a.eject(None, Location::OnsiteShelf, "user:test").unwrap();
    insert_blank(&drive, "scratch_a", 64 << 20, 60 << 20);
    let msg = a.load(None, "user:test").unwrap();
    assert_eq!(in_drive(&data).name, "CAIRN01");
    assert!(msg.contains("write CAIRN01 on"), "{msg}");
    assert_eq!(label_on(&drive, "scratch_a").name, "CAIRN01");
    a.eject(None, Location::OnsiteShelf, "user:test").unwrap();
    insert_blank(&drive, "scratch_b", 64 << 20, 60 << 20);
    a.load(None, "user:test").unwrap();
    assert_eq!(in_drive(&data).name, "CAIRN02");

    // names are typed back: a location by name; an unknown name is refused, nothing changes
    catalog::set_location(&store, "TAPE02", Location::OffsiteVault, "user:test").unwrap();
    let vols = catalog::list_volumes(&data).unwrap();
    let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["CAIRN01", "CAIRN02", "TAPE02"]);
    assert_eq!(vols[2].location, Location::OffsiteVault);
    let e = catalog::set_location(&store, "NOSUCH", Location::Returned, "user:test")
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOSUCH"), "{e}");
    let e = catalog::set_location(&store, "CAIRN02", Location::Returned, "user:test")
        .unwrap_err()
        .to_string();
    assert!(e.contains("CAIRN02") && e.contains("eject it first"), "{e}");

    // bundles are shown by the volume's name; messages never show the long id
    put(&store, 5, 10_000, "1.2.3.900", 1);
    let msg = a.flush(None).unwrap();
    let st = catalog::archive_status(&data).unwrap();
    let t = &st.targets[0];
    assert_eq!(t.last_verified.as_ref().unwrap().name, "CAIRN02.1");
    let long = &t.volume.as_ref().unwrap().volume_id;
    assert!(!t.message.contains(long.as_str()) && !msg.contains(long.as_str()));
    assert!(t.message.contains("CAIRN02.1"), "{}", t.message);
    store.close().unwrap();
}

#[test]
fn a_catalog_from_before_names_calls_volumes_by_their_ids_and_a_scan_brings_names_back() {
    let (_t, data, drive) = rig();
    let store = Store::open(data.clone()).unwrap();
    let mut a = tape_archiver(&store, &drive, "BOX", 1 << 20);
    insert_blank(&drive, "OLD01", 64 << 20, 60 << 20);
    a.load(None, "user:test").unwrap();
    put(&store, 3, 10_000, "1.2.3.901", 2);
    a.flush(None).unwrap();
    let id = in_drive(&data).volume_id;
    // as a catalog written before names existed: no name rows
    store
        .transact(|c, _| {
            c.execute("DELETE FROM volume_names", [])?;
            Ok(((), vec![]))
        })
        .unwrap();
    let v = in_drive(&data);
    assert_eq!(
        (v.name.as_str(), v.volume_id.as_str()),
        (id.as_str(), id.as_str())
    );
    let st = catalog::archive_status(&data).unwrap();
    assert_eq!(
        st.targets[0].last_verified.as_ref().unwrap().name,
        format!("{id}.1")
    );
    // it is still written to, and its id is typed where its name would be
    put(&store, 2, 10_000, "1.2.3.902", 3);
    a.flush(None).unwrap();
    assert_eq!(q(&data, "SELECT count(*) FROM archive_queue"), 0);
    // a catalog rebuilt from the tape alone: the name comes back from the label
    store
        .transact(|c, _| {
            c.execute_batch("DELETE FROM copies; DELETE FROM bundles; DELETE FROM volumes;")?;
            Ok(((), vec![]))
        })
        .unwrap();
    a.scan(None, "user:test").unwrap();
    let v = in_drive(&data);
    assert_eq!(
        (v.name.as_str(), v.volume_id.as_str()),
        ("OLD01", id.as_str())
    );
    store.close().unwrap();
}

#[test]
fn a_restore_is_audited_as_a_restore_by_who_asked() {
    let (_t, data, drive) = rig();
    let store = Store::open(data.clone()).unwrap();
    let mut a = tape_archiver(&store, &drive, "BOX", 1 << 20);
    insert_blank(&drive, "TAPE01", 64 << 20, 60 << 20);
    let shas = put(&store, 4, 10_000, "1.2.3.903", 4);
    a.flush(None).unwrap();
    let before = q(&data, "SELECT max(seq) FROM audit");
    std::fs::remove_file(data.object_path(&shas[0])).unwrap();
    // a damaged file is replaced by the restored bytes
    std::fs::write(data.object_path(&shas[1]), b"damaged").unwrap();
    let msg = a.restore("1.2.3.903", "user:nurse").unwrap();
    assert!(msg.contains("2 of 2"), "{msg}");
    for s in &shas[..2] {
        let bytes = std::fs::read(data.object_path(s)).unwrap();
        assert_eq!(
            &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            s
        );
    }
    let c = rusqlite::Connection::open(data.db()).unwrap();
    let rows: Vec<(String, String, String)> = c
        .prepare("SELECT actor, action, detail FROM audit WHERE seq > ?1 ORDER BY seq")
        .unwrap()
        .query_map([before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        rows.iter().all(|(_, action, _)| action != "store"),
        "{rows:?}"
    );
    let restores: Vec<_> = rows.iter().filter(|(_, a, _)| a == "restore").collect();
    assert_eq!(restores.len(), 3, "two instances and the study: {rows:?}");
    assert!(
        restores.iter().all(|(actor, _, _)| actor == "user:nurse"),
        "{rows:?}"
    );
    assert!(restores[0].2.contains(&shas[0]) || restores[0].2.contains(&shas[1]));
    store.close().unwrap();
}

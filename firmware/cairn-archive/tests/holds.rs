//! Legal holds travel with the cold copy: every bundle written on the emulated tape holds
//! `holds.csv` with every hold the index knew when it was built (active and released), listed
//! in the manifest with its SHA-256, readable with plain GNU tar.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_archive::bundle;
use cairn_hal::tape::emulator;
use common::{put, tape_archiver, tape_box, TapeBox};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::Command;

/// Run SQL through the store's writer (the only writer of the index).
fn sql(b: &TapeBox, statements: &'static str) {
    b.store
        .transact(move |conn, _now| {
            conn.execute_batch(statements)?;
            Ok(((), Vec::new()))
        })
        .unwrap();
}

/// The emulator keeps each tape file as a plain file: tape file `n` of cartridge TAPE01.
fn tape_file(b: &TapeBox, n: u32) -> PathBuf {
    emulator::tape_file_path(&b.drive, "TAPE01", n).unwrap()
}

/// A member of a bundle's tape file, extracted by GNU tar alone.
fn gnu_tar_member(file: &PathBuf, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--format=posix", "-b", "512", "-xOf"])
        .arg(file)
        .arg(member)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The SHA-256 the bundle's manifest lists for `member`.
fn manifest_hash(file: &PathBuf, member: &str) -> String {
    let text = String::from_utf8(gnu_tar_member(file, bundle::MANIFEST)).unwrap();
    bundle::parse_manifest(&text)
        .unwrap()
        .into_iter()
        .find(|(_, p)| p == member)
        .map(|(h, _)| h)
        .unwrap_or_else(|| panic!("{member} is not in the manifest:\n{text}"))
}

#[test]
fn every_bundle_after_a_hold_carries_it_in_holds_csv() {
    let b = tape_box("TAPE01");
    let mut a = tape_archiver(&b.store, &b.drive, "TESTBOX", 8 << 20);

    // tape file 1: no hold yet, holds.csv is its header alone
    put(&b.store, 3, 1000, "1.2.3.100", 0);
    a.flush(None).unwrap();
    let first = String::from_utf8(gnu_tar_member(&tape_file(&b, 1), bundle::HOLDS_CSV)).unwrap();
    assert_eq!(first.lines().count(), 1, "{first}");
    assert_eq!(bundle::parse_holds_csv(&first).unwrap(), vec![]);

    // a hold on the patient (a reason with quotes, a comma and a line break) and one on the
    // study, released
    sql(
        &b,
        "INSERT INTO holds (patient_ref, reason, placed_by, placed_at)
             SELECT id, 'court order \"Doe\", case 7
second line', 'admin', '2026-12-01T09:00:00Z' FROM patients WHERE patient_id = 'PID-1';
         INSERT INTO holds (study_ref, reason, placed_by, placed_at, released_by, released_at,
                            release_reason)
             SELECT id, 'audit', 'dpo', '2026-12-01T10:00:00Z', 'admin',
                    '2026-12-01T11:00:00Z', 'done' FROM studies WHERE study_uid = '1.2.3.100';",
    );
    put(&b.store, 2, 1000, "1.2.3.200", 1);
    a.flush(None).unwrap();
    drop(a);

    let f2 = tape_file(&b, 2);
    let raw = gnu_tar_member(&f2, bundle::HOLDS_CSV);
    assert_eq!(
        hex::encode(Sha256::digest(&raw)),
        manifest_hash(&f2, bundle::HOLDS_CSV),
        "holds.csv matches its manifest line"
    );
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.contains("\"court order \"\"Doe\"\", case 7\nsecond line\""),
        "{text}"
    );
    let holds = bundle::parse_holds_csv(&text).unwrap();
    assert_eq!(holds.len(), 2, "{text}");
    assert_eq!(holds[0].patient_id.as_deref(), Some("PID-1"));
    assert_eq!(holds[0].issuer.as_deref(), Some(""));
    assert_eq!(holds[0].study_uid, None);
    assert_eq!(holds[0].reason, "court order \"Doe\", case 7\nsecond line");
    assert_eq!(holds[0].placed_by, "admin");
    assert_eq!(holds[0].released_at, None);
    assert_eq!(holds[1].study_uid.as_deref(), Some("1.2.3.100"));
    assert_eq!(holds[1].released_by.as_deref(), Some("admin"));
    assert_eq!(holds[1].release_reason.as_deref(), Some("done"));

    // our own reader checks every member against the manifest and returns the holds
    let rb = bundle::read_back(std::fs::File::open(&f2).unwrap()).unwrap();
    assert!(rb.all_good(), "{rb:?}");
    assert!(!rb.bad.contains(&bundle::HOLDS_CSV.to_string()));
    assert_eq!(rb.holds.as_ref(), Some(&holds));
    assert_eq!(rb.holds, Some(cairn_store::all_holds(&ro(&b)).unwrap()));

    // sha256sum in the extracted directory checks holds.csv with the rest
    let x = b.tmp.path().join("x");
    common::gnu_tar_extract(&f2, &x);
    assert!(common::sha256sum_check(&x).contains("holds.csv: OK"));
}

fn ro(b: &TapeBox) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(b.data.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
}

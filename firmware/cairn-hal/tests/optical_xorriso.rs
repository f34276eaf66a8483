//! Multisession discs written by the real xorriso onto emulated disc images: sessions
//! appended, files extracted and compared, MD5 checks (passing, and failing on a damaged
//! image), capacity refusal, no disc, refused inputs.

#![allow(clippy::unwrap_used)]

use cairn_hal::optical::{emulator, DiscState, OpticalDrive, OpticalErrorKind, XorrisoDrive};
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn host_file(dir: &Path, name: &str, seed: u64, len: usize) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content(seed, len)).unwrap();
    p
}

#[test]
fn two_sessions_are_appended_extracted_and_md5_checked() {
    let tray = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    emulator::insert_blank(tray.path(), "DISC01", 64 * MIB).unwrap();
    let mut drive = XorrisoDrive::emulated(tray.path());
    let st = drive.status().unwrap();
    assert!(st.loaded);
    assert_eq!(
        (st.state, st.sessions, st.capacity),
        (Some(DiscState::Blank), 0, 64 * MIB)
    );
    assert!(drive.list().unwrap().is_empty());

    let a = host_file(src.path(), "a", 1, 300_000);
    let b = host_file(src.path(), "b", 2, 1_000_001);
    let s1 = drive
        .write_session(
            "CAIRN_0001",
            &[
                ("/objects/a.dcm".into(), a.clone()),
                ("/MANIFEST.sha256".into(), b.clone()),
            ],
        )
        .unwrap();
    assert_eq!(s1.number, 1);
    let c = host_file(src.path(), "c", 3, 50_000);
    let s2 = drive
        .write_session("CAIRN_0002", &[("/b2/objects/c.dcm".into(), c.clone())])
        .unwrap();
    assert_eq!(s2.number, 2);
    assert!(s2.bytes_used > s1.bytes_used);

    let st = drive.status().unwrap();
    assert_eq!(st.state, Some(DiscState::Appendable));
    assert_eq!(
        (st.sessions, st.volume_label.as_deref()),
        (2, Some("CAIRN_0002"))
    );
    let image = emulator::image_path(tray.path(), "DISC01").unwrap();
    assert_eq!(st.bytes_used, std::fs::metadata(&image).unwrap().len());

    let list = drive.list().unwrap();
    let got: Vec<(&str, u64)> = list.iter().map(|e| (e.path.as_str(), e.size)).collect();
    assert_eq!(
        got,
        vec![
            ("/MANIFEST.sha256", 1_000_001),
            ("/b2/objects/c.dcm", 50_000),
            ("/objects/a.dcm", 300_000)
        ]
    );
    let out = tempfile::tempdir().unwrap();
    for (iso, host) in [
        ("/objects/a.dcm", &a),
        ("/MANIFEST.sha256", &b),
        ("/b2/objects/c.dcm", &c),
    ] {
        let dest = out
            .path()
            .join(iso.trim_start_matches('/').replace('/', "_"));
        drive.extract(iso, &dest).unwrap();
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(host).unwrap(),
            "{iso}"
        );
    }
    assert_eq!(
        drive
            .extract("/nope.dcm", &out.path().join("nope"))
            .unwrap_err()
            .kind(),
        OpticalErrorKind::Io
    );
    drive.check_md5().unwrap();

    // Session 1 alone, read by xorriso itself: it lacks session 2's file.
    let s1_dir = out.path().join("s1");
    let x = std::process::Command::new("/usr/bin/xorriso")
        .args(["-osirrox", "on", "-load", "session", "1", "-indev"])
        .arg(format!("stdio:{}", image.display()))
        .args(["-extract", "/"])
        .arg(&s1_dir)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    assert!(s1_dir.join("objects/a.dcm").exists());
    assert!(!s1_dir.join("b2").exists());

    // Damage one byte of a file's data in the image: the MD5 check must catch it.
    let mut img = std::fs::read(&image).unwrap();
    let needle = &content(2, 1_000_001)[5000..5064];
    let at = img
        .windows(64)
        .position(|w| w == needle)
        .expect("file data in the image");
    img[at] ^= 0xFF;
    std::fs::write(&image, &img).unwrap();
    assert_eq!(
        drive.check_md5().unwrap_err().kind(),
        OpticalErrorKind::ChecksumMismatch
    );
}

#[test]
fn a_session_that_does_not_fit_is_refused_and_nothing_written() {
    let tray = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    emulator::insert_blank(tray.path(), "SMALL", 4 * MIB).unwrap();
    let mut drive = XorrisoDrive::emulated(tray.path());
    let big = host_file(src.path(), "big", 4, 5 * MIB as usize);
    let e = drive
        .write_session("CAIRN_0001", &[("/big.dcm".into(), big.clone())])
        .unwrap_err();
    assert_eq!(e.kind(), OpticalErrorKind::Full, "{e}");
    let image = emulator::image_path(tray.path(), "SMALL").unwrap();
    assert_eq!(std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0), 0);

    let part = host_file(src.path(), "part", 5, 2 * MIB as usize);
    drive
        .write_session("CAIRN_0001", &[("/part.dcm".into(), part)])
        .unwrap();
    let before = std::fs::read(&image).unwrap();
    let more = host_file(src.path(), "more", 6, 2 * MIB as usize);
    let e = drive
        .write_session("CAIRN_0002", &[("/more.dcm".into(), more.clone())])
        .unwrap_err();
    assert_eq!(e.kind(), OpticalErrorKind::Full);
    assert!(
        std::fs::read(&image).unwrap() == before,
        "a refused session changes nothing"
    );
    let st = drive.status().unwrap();
    assert_eq!(st.sessions, 1);
    assert!(st.bytes_used <= st.capacity);
    drive.check_md5().unwrap();

    // The same session goes onto a bigger disc.
    drive.eject().unwrap();
    emulator::insert_blank(tray.path(), "BIG", 64 * MIB).unwrap();
    drive
        .write_session("CAIRN_0002", &[("/more.dcm".into(), more)])
        .unwrap();
    drive.check_md5().unwrap();
}

#[test]
fn no_disc_and_refused_inputs_change_nothing() {
    let tray = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    emulator::init_tray(tray.path()).unwrap();
    let mut drive = XorrisoDrive::emulated(tray.path());
    let st = drive.status().unwrap();
    assert!(!st.loaded && st.state.is_none());
    let f = host_file(src.path(), "f", 7, 1000);
    let e = drive
        .write_session("L", &[("/f".into(), f.clone())])
        .unwrap_err();
    assert_eq!(e.kind(), OpticalErrorKind::NoMedium);
    assert_eq!(
        drive.eject().unwrap_err().kind(),
        OpticalErrorKind::NoMedium
    );

    emulator::insert_blank(tray.path(), "D1", 16 * MIB).unwrap();
    for (label, iso, host) in [
        ("lower", "/f", f.clone()),
        ("OK", "/../etc/passwd", f.clone()),
        ("OK", "/a b", f.clone()),
        ("OK", "/f", src.path().join("missing")),
    ] {
        let e = drive
            .write_session(label, &[(iso.into(), host)])
            .unwrap_err();
        assert_eq!(e.kind(), OpticalErrorKind::Invalid, "{label} {iso}: {e}");
    }
    assert_eq!(drive.status().unwrap().state, Some(DiscState::Blank));
    drive.write_session("OK", &[("/f".into(), f)]).unwrap();
    drive.eject().unwrap();
    assert!(!drive.status().unwrap().loaded);
    emulator::load(tray.path(), "D1").unwrap();
    let st = drive.status().unwrap();
    assert_eq!((st.sessions, st.state), (1, Some(DiscState::Appendable)));
    let discs = emulator::list_discs(tray.path()).unwrap();
    assert_eq!(discs.len(), 1);
    assert!(discs[0].loaded && discs[0].bytes_used > 0);
}

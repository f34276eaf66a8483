//! The tape emulator against Linux st semantics (Documentation/scsi/st.rst): filemarks, end of
//! data, early warning then end of medium, write protect, no medium, unload, an injected write
//! error, GNU tar reading a tape file, and a writer killed mid-write.

#![allow(clippy::unwrap_used)]

use cairn_hal::tape::emulator::{self, CartridgeSpec};
use cairn_hal::tape::{EmulatedTape, TapeDrive, TapeErrorKind};
use std::path::Path;
use std::process::Command;

const KIB: u64 = 1024;

fn spec(id: &str, capacity: u64, early_warning: u64) -> CartridgeSpec {
    CartridgeSpec {
        id: id.into(),
        capacity,
        early_warning,
    }
}

/// A recognisable record: its number in the first 8 bytes, then a pattern from it.
fn record(n: u64, len: usize) -> Vec<u8> {
    let mut r: Vec<u8> = (0..len)
        .map(|i| ((i as u64 * 31 + n * 7) % 251) as u8)
        .collect();
    r[..8].copy_from_slice(&n.to_le_bytes());
    r
}

fn drive_with_blank(dir: &Path, id: &str) -> EmulatedTape {
    emulator::insert_blank(dir, &spec(id, 64 * 1024 * KIB, 60 * 1024 * KIB)).unwrap();
    EmulatedTape::open(dir).unwrap()
}

#[test]
fn filemarks_end_of_data_and_spacing_follow_st() {
    let d = tempfile::tempdir().unwrap();
    let mut t = drive_with_blank(d.path(), "T1");
    let st = t.status().unwrap();
    assert!(st.online && st.bot && st.eod && !st.door_open && !st.early_warning);
    for n in 0..3 {
        t.write_block(&record(n, 1000)).unwrap();
    }
    t.write_filemarks(1).unwrap();
    for n in 3..5 {
        t.write_block(&record(n, 2000)).unwrap();
    }
    t.write_filemarks(1).unwrap();
    let st = t.status().unwrap();
    assert_eq!(
        (st.file_number, st.block_number, st.eod),
        (Some(2), Some(0), true)
    );

    t.rewind().unwrap();
    assert!(t.status().unwrap().bot);
    let mut buf = vec![0u8; 4096];
    for n in 0..3 {
        assert_eq!(t.read_block(&mut buf).unwrap(), 1000);
        assert_eq!(&buf[..1000], &record(n, 1000)[..]);
    }
    assert_eq!(t.read_block(&mut buf).unwrap(), 0, "filemark after file 0");
    let st = t.status().unwrap();
    assert_eq!((st.file_number, st.block_number), (Some(1), Some(0)));
    for n in 3..5 {
        assert_eq!(t.read_block(&mut buf).unwrap(), 2000);
        assert_eq!(&buf[..2000], &record(n, 2000)[..]);
    }
    assert_eq!(t.read_block(&mut buf).unwrap(), 0, "filemark after file 1");
    // End of data right after a filemark: one more zero read, then an error.
    assert_eq!(
        t.read_block(&mut buf).unwrap(),
        0,
        "second zero read = end of data"
    );
    assert_eq!(
        t.read_block(&mut buf).unwrap_err().kind(),
        TapeErrorKind::EndOfData
    );

    // MTFSF: after the filemark; past the last one: EIO at end of data.
    t.rewind().unwrap();
    t.space_filemarks(1).unwrap();
    let st = t.status().unwrap();
    assert_eq!((st.file_number, st.block_number), (Some(1), Some(0)));
    assert_eq!(t.read_block(&mut buf).unwrap(), 2000);
    assert_eq!(
        t.space_filemarks(5).unwrap_err().kind(),
        TapeErrorKind::EndOfData
    );
    assert!(t.status().unwrap().eod);

    // MTBSF: before the filemark (end of the previous file), block number unknown.
    t.space_filemarks(-1).unwrap();
    let st = t.status().unwrap();
    assert_eq!(
        (st.file_number, st.block_number, st.eod),
        (Some(1), None, false)
    );
    assert_eq!(
        t.read_block(&mut buf).unwrap(),
        0,
        "the filemark just in front"
    );
    assert_eq!(t.status().unwrap().file_number, Some(2));
    t.space_filemarks(-2).unwrap();
    assert_eq!(t.status().unwrap().file_number, Some(0));
    assert_eq!(t.read_block(&mut buf).unwrap(), 0);
    assert_eq!(t.read_block(&mut buf).unwrap(), 2000);
    assert_eq!(t.read_block(&mut buf).unwrap(), 2000);
    assert_eq!(
        t.space_filemarks(-5).unwrap_err().kind(),
        TapeErrorKind::BeginningOfMedium
    );
    assert!(t.status().unwrap().bot);

    t.seek_end_of_data().unwrap();
    let st = t.status().unwrap();
    assert_eq!((st.file_number, st.eod), (Some(2), true));
    // Reading at end of data not reached through a filemark is an error at once.
    assert_eq!(
        t.read_block(&mut buf).unwrap_err().kind(),
        TapeErrorKind::EndOfData
    );

    // A blank tape read from BOT: end of data.
    emulator::create_blank(d.path(), &spec("T2", 1 << 20, 1 << 19)).unwrap();
    t.unload().unwrap();
    emulator::load(d.path(), "T2").unwrap();
    assert_eq!(
        t.read_block(&mut buf).unwrap_err().kind(),
        TapeErrorKind::EndOfData
    );
}

#[test]
fn writing_in_the_middle_discards_what_follows() {
    let d = tempfile::tempdir().unwrap();
    let mut t = drive_with_blank(d.path(), "OVR");
    for f in 0..3u64 {
        t.write_block(&record(f, 500)).unwrap();
        t.write_block(&record(f + 10, 500)).unwrap();
        t.write_filemarks(1).unwrap();
    }
    let cart = d.path().join("cartridges/OVR");
    assert!(cart.join("file-0002").exists());
    t.rewind().unwrap();
    t.space_filemarks(1).unwrap();
    let mut buf = vec![0u8; 1000];
    assert_eq!(t.read_block(&mut buf).unwrap(), 500);
    t.write_block(&record(99, 700)).unwrap(); // overwrites from block 1 of file 1
    t.write_filemarks(1).unwrap();
    assert!(!cart.join("file-0002").exists(), "file 2 is gone");
    assert_eq!(
        std::fs::metadata(cart.join("file-0001")).unwrap().len(),
        1200
    );
    let info = &emulator::list_cartridges(d.path()).unwrap()[0];
    assert_eq!((info.filemarks, info.bytes_used), (2, 1000 + 1200));
    t.rewind().unwrap();
    t.space_filemarks(1).unwrap();
    assert_eq!(t.read_block(&mut buf).unwrap(), 500);
    assert_eq!(&buf[..500], &record(1, 500)[..]);
    assert_eq!(t.read_block(&mut buf).unwrap(), 700);
    assert_eq!(&buf[..700], &record(99, 700)[..]);
    assert_eq!(t.read_block(&mut buf).unwrap(), 0);
    assert_eq!(t.read_block(&mut buf).unwrap(), 0);
    assert_eq!(
        t.read_block(&mut buf).unwrap_err().kind(),
        TapeErrorKind::EndOfData
    );
}

#[test]
fn early_warning_alternates_then_end_of_medium() {
    let d = tempfile::tempdir().unwrap();
    let rec = 64 * KIB;
    emulator::insert_blank(d.path(), &spec("EW", 10 * rec, 6 * rec + 100)).unwrap();
    let mut t = EmulatedTape::open(d.path()).unwrap();
    let mut outcomes = Vec::new();
    let mut n = 0;
    for _ in 0..16 {
        match t.write_block(&record(n, rec as usize)) {
            Ok(()) => {
                outcomes.push('w');
                n += 1;
            }
            Err(e) => outcomes.push(match e.kind() {
                TapeErrorKind::EarlyWarning => 'E',
                TapeErrorKind::EndOfMedium => 'M',
                k => panic!("unexpected {k:?}"),
            }),
        }
    }
    // 7 writes (the 7th crosses the early warning and completes), then refusal and success
    // alternate until the capacity (10 records) is used, then end of medium.
    let got: String = outcomes.into_iter().collect();
    assert_eq!(got, "wwwwwwwEwEwEwMMM");
    assert!(t.status().unwrap().early_warning);
    t.write_filemarks(1).unwrap(); // filemarks still go on after early warning
    t.rewind().unwrap();
    assert!(!t.status().unwrap().early_warning);
    let mut buf = vec![0u8; rec as usize];
    for i in 0..10 {
        assert_eq!(t.read_block(&mut buf).unwrap(), rec as usize);
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), i);
    }
    assert_eq!(t.read_block(&mut buf).unwrap(), 0);
}

#[test]
fn write_protect_no_medium_and_unload() {
    let d = tempfile::tempdir().unwrap();
    let mut t = EmulatedTape::open(d.path()).unwrap();
    let st = t.status().unwrap();
    assert!(!st.online && st.door_open && st.file_number.is_none());
    assert_eq!(
        t.write_block(b"x").unwrap_err().kind(),
        TapeErrorKind::NoMedium
    );
    assert_eq!(
        t.read_block(&mut [0u8; 8]).unwrap_err().kind(),
        TapeErrorKind::NoMedium
    );
    assert_eq!(t.rewind().unwrap_err().kind(), TapeErrorKind::NoMedium);

    // Inserted by "another process" (the control API) while the drive is open.
    emulator::insert_blank(d.path(), &spec("WP", 1 << 20, 1 << 19)).unwrap();
    assert!(t.status().unwrap().online);
    t.write_block(&record(1, 100)).unwrap();
    emulator::set_write_protect(d.path(), "WP", true).unwrap();
    assert!(t.status().unwrap().write_protected);
    assert_eq!(
        t.write_block(&record(2, 100)).unwrap_err().kind(),
        TapeErrorKind::WriteProtected
    );
    assert_eq!(
        t.write_filemarks(1).unwrap_err().kind(),
        TapeErrorKind::WriteProtected
    );
    emulator::set_write_protect(d.path(), "WP", false).unwrap();
    t.write_block(&record(2, 100)).unwrap();

    // Unload after a write: st writes a filemark first, then the drive is empty.
    t.unload().unwrap();
    let st = t.status().unwrap();
    assert!(st.door_open && !st.online);
    assert_eq!(emulator::loaded(d.path()).unwrap(), None);
    let info = &emulator::list_cartridges(d.path()).unwrap()[0];
    assert_eq!(
        (info.filemarks, info.bytes_used, info.loaded),
        (1, 200, false)
    );
    assert_eq!(
        t.write_block(b"x").unwrap_err().kind(),
        TapeErrorKind::NoMedium
    );

    // Loading refuses an occupied drive; a loaded cartridge starts at BOT.
    emulator::load(d.path(), "WP").unwrap();
    assert!(emulator::load(d.path(), "WP").is_err());
    assert!(emulator::insert_blank(d.path(), &spec("OTHER", 1 << 20, 1 << 19)).is_err());
    let st = t.status().unwrap();
    assert!(st.online && st.bot);
    let mut buf = [0u8; 100];
    assert_eq!(t.read_block(&mut buf).unwrap(), 100);
    assert_eq!(&buf[..], &record(1, 100)[..]);

    // The eject button while open: the next operation finds no medium.
    assert_eq!(emulator::eject(d.path()).unwrap().as_deref(), Some("WP"));
    assert_eq!(
        t.read_block(&mut buf).unwrap_err().kind(),
        TapeErrorKind::NoMedium
    );
    assert!(
        emulator::load(d.path(), "../etc").is_err(),
        "ids are validated"
    );
}

#[test]
fn injected_write_error_fires_once_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut t = drive_with_blank(d.path(), "ERR");
    emulator::inject_write_error(d.path(), "ERR", Some(300_000)).unwrap();
    let rec = 64 * 1024;
    for n in 0..4 {
        t.write_block(&record(n, rec)).unwrap();
    }
    let e = t.write_block(&record(4, rec)).unwrap_err();
    assert_eq!(e.kind(), TapeErrorKind::Io);
    assert_eq!(
        emulator::list_cartridges(d.path()).unwrap()[0].inject_write_error_at,
        None
    );
    t.write_block(&record(5, rec)).unwrap();
    t.write_filemarks(1).unwrap();
    t.rewind().unwrap();
    let mut buf = vec![0u8; rec];
    let mut seen = Vec::new();
    while t.read_block(&mut buf).unwrap() > 0 {
        seen.push(u64::from_le_bytes(buf[..8].try_into().unwrap()));
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 5]);
}

#[test]
fn exclusive_open_block_sizes_and_state_across_opens() {
    let d = tempfile::tempdir().unwrap();
    let mut t = drive_with_blank(d.path(), "BS");
    assert_eq!(
        EmulatedTape::open(d.path()).unwrap_err().kind(),
        TapeErrorKind::Busy
    );
    t.set_block_size(512).unwrap();
    assert_eq!(
        t.write_block(&[1u8; 700]).unwrap_err().kind(),
        TapeErrorKind::Invalid
    );
    t.write_block(&[2u8; 1024]).unwrap();
    assert_eq!(
        t.status().unwrap().block_number,
        Some(2),
        "two fixed records"
    );
    drop(t); // close after a write: st writes a filemark

    let mut t = EmulatedTape::open(d.path()).unwrap();
    let st = t.status().unwrap();
    assert_eq!(
        (st.file_number, st.block_size, st.eod),
        (Some(1), 512, true)
    );
    t.rewind().unwrap();
    let mut buf = [0u8; 4096];
    assert_eq!(
        t.read_block(&mut buf).unwrap(),
        1024,
        "fixed mode reads whole records"
    );
    t.set_block_size(0).unwrap();
    t.write_filemarks(0).unwrap();
    t.rewind().unwrap();
    // Variable mode: a buffer smaller than the record is refused and the record skipped.
    assert_eq!(
        t.read_block(&mut buf[..100]).unwrap_err().kind(),
        TapeErrorKind::Invalid
    );
    assert_eq!(t.read_block(&mut buf).unwrap(), 512);
    assert_eq!(t.read_block(&mut buf).unwrap(), 0);
}

#[test]
fn gnu_tar_reads_a_tape_file_written_as_256k_records() {
    let d = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("objects")).unwrap();
    for i in 0..20u64 {
        let body = record(i, 10_000 + (i as usize) * 37_123);
        std::fs::write(src.path().join(format!("objects/{i:02}.dcm")), body).unwrap();
    }
    let out = Command::new("tar")
        .args(["--format=pax", "-b", "512", "-cf", "-", "-C"])
        .arg(src.path())
        .arg("objects")
        .output()
        .expect("GNU tar must be installed (tools/test installs it)");
    assert!(out.status.success());
    let archive = out.stdout;
    assert_eq!(archive.len() % (256 * 1024), 0);

    let mut t = drive_with_blank(d.path(), "TAR");
    t.write_block(b"CAIRN-LABEL").unwrap(); // file 0: a label
    t.write_filemarks(1).unwrap();
    for chunk in archive.chunks(256 * 1024) {
        t.write_block(chunk).unwrap();
    }
    t.write_filemarks(1).unwrap();

    let file1 = emulator::tape_file_path(d.path(), "TAR", 1).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let x = Command::new("tar")
        .args(["-b", "512", "-xf"])
        .arg(&file1)
        .arg("-C")
        .arg(dest.path())
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    for i in 0..20u64 {
        let name = format!("objects/{i:02}.dcm");
        assert_eq!(
            std::fs::read(dest.path().join(&name)).unwrap(),
            std::fs::read(src.path().join(&name)).unwrap(),
            "{name}"
        );
    }
    // And through the drive: the records come back as written.
    t.rewind().unwrap();
    t.space_filemarks(1).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut back = Vec::new();
    loop {
        let n = t.read_block(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, 256 * 1024);
        back.extend_from_slice(&buf[..n]);
    }
    assert!(back == archive);
}

/// The killed writer: this test runs itself again as a child (env var set) that writes
/// records until it is killed with SIGKILL, then checks the cartridge.
#[test]
fn killed_writer_leaves_every_written_record_readable() {
    const REC: usize = 256 * 1024;
    if let Ok(dir) = std::env::var("CAIRN_TAPE_KILL_CHILD") {
        let dir = Path::new(&dir);
        let mut t = EmulatedTape::open(dir).unwrap();
        let progress = dir.join("progress");
        for n in 0u64.. {
            t.write_block(&record(n, REC)).unwrap();
            std::fs::write(&progress, (n + 1).to_string()).unwrap();
        }
        unreachable!();
    }
    let d = tempfile::tempdir().unwrap();
    emulator::insert_blank(d.path(), &spec("KILL", 1 << 40, 1 << 39)).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "killed_writer_leaves_every_written_record_readable",
            "--exact",
            "--nocapture",
        ])
        .env("CAIRN_TAPE_KILL_CHILD", d.path())
        .spawn()
        .unwrap();
    let progress = d.path().join("progress");
    let acked = loop {
        let n: u64 = std::fs::read_to_string(&progress)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if n >= 40 {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "child writer died on its own"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL: no close, no filemark
    child.wait().unwrap();
    // Simulate the worst case too: half a record on the tape without its length.
    let f0 = emulator::tape_file_path(d.path(), "KILL", 0).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&f0).unwrap();
    std::io::Write::write_all(&mut f, &vec![0xEE; REC / 2]).unwrap();
    drop(f);

    let mut t = EmulatedTape::open(d.path()).unwrap();
    t.rewind().unwrap();
    let mut buf = vec![0u8; REC];
    let mut n = 0u64;
    loop {
        match t.read_block(&mut buf) {
            Ok(len) => {
                assert_eq!(len, REC);
                assert!(buf == record(n, REC), "record {n} intact");
                n += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), TapeErrorKind::EndOfData);
                break;
            }
        }
    }
    assert!(n >= acked, "{n} records readable, {acked} acknowledged");
    assert_eq!(
        std::fs::metadata(&f0).unwrap().len(),
        n * REC as u64,
        "no partial record"
    );
    // Appending continues after the last whole record.
    t.write_block(&record(n, REC)).unwrap();
    t.write_filemarks(1).unwrap();
    assert_eq!(
        emulator::list_cartridges(d.path()).unwrap()[0].bytes_used,
        (n + 1) * REC as u64
    );
}

//! The emulator's "unreadable while blank" cartridge: a read at its beginning fails with an I/O
//! error (EIO) like Debian's tgt answers for a blank tape, until something is written; without
//! the knob a blank tape reports the end of data.
#![allow(clippy::unwrap_used)]

use cairn_hal::tape::emulator::{self, CartridgeSpec};
use cairn_hal::tape::{EmulatedTape, TapeDrive, TapeErrorKind};

fn spec(id: &str) -> CartridgeSpec {
    CartridgeSpec {
        id: id.into(),
        capacity: 1 << 24,
        early_warning: 1 << 23,
    }
}

#[test]
fn a_blank_cartridge_can_answer_a_read_at_bot_with_eio_until_written() {
    let d = tempfile::tempdir().unwrap();
    emulator::insert_blank(d.path(), &spec("U1")).unwrap();
    let mut buf = vec![0u8; 1024];
    {
        let mut t = EmulatedTape::open(d.path()).unwrap();
        t.rewind().unwrap();
        let e = t.read_block(&mut buf).unwrap_err();
        assert_eq!(e.kind(), TapeErrorKind::EndOfData, "{e}");
    }
    emulator::set_unreadable_when_blank(d.path(), "U1", true).unwrap();
    assert!(emulator::list_cartridges(d.path()).unwrap()[0].unreadable_when_blank);
    let mut t = EmulatedTape::open(d.path()).unwrap();
    t.rewind().unwrap();
    let e = t.read_block(&mut buf).unwrap_err();
    assert_eq!(e.kind(), TapeErrorKind::Io, "{e}");
    assert!(e.to_string().contains("Input/output error"), "{e}");
    // writing works; once something is recorded it reads normally
    t.rewind().unwrap();
    t.write_block(b"label").unwrap();
    t.write_filemarks(1).unwrap();
    t.rewind().unwrap();
    assert_eq!(t.read_block(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"label");
    assert_eq!(t.read_block(&mut buf).unwrap(), 0);
}

//! The tape emulator: a drive directory that behaves like a Linux `st` drive, shared by every
//! process that opens it (cairnd, cairnctl, tests), plus the controls a person would use on a
//! real drive (insert, eject, write-protect tab) and test hooks (inject a write error; a
//! cartridge that answers a read at its beginning with an I/O error while it holds nothing, as
//! Debian's tgt does for a blank tape and some drives do for a new or degaussed one).
//!
//! Layout of a drive directory:
//! ```text
//! drive.json                  which cartridge is loaded: {"loaded": "TAPE01", "generation": 3}
//! position.json               where the tape is (file, block), written on motion and close
//! lock                        held (flock) by the one open EmulatedTape, like st's exclusive open
//! control.lock                serialises changes to drive.json and cartridge.json
//! cartridges/<id>/cartridge.json   capacity, early warning, write protect, filemark count
//! cartridges/<id>/file-0000        tape file 0: its records back to back (`tar -b 512 -xf` reads it)
//! cartridges/<id>/file-0000.rec    record lengths of file 0 (u32 length, u32 count, little endian)
//! ```
//! A cartridge holds `filemarks + 1` tape files (a missing `file-NNNN` is an empty file); end of
//! data is after the last one. A process killed mid-write leaves every record written so far
//! readable: a record's bytes are appended before its length, and on mount a trailing record
//! without its length is cut off. Writing filemarks fsyncs the data and then the metadata (a
//! filemark is a synchronisation point, as on a real drive).
//!
//! The emulator follows the st semantics documented in [`super`]; capacity, early warning and
//! an injected write error are byte positions counted from the beginning of the tape over the
//! records recorded (filemarks take no space).

mod commands;
mod controls;
mod drive;
mod files;
mod mount;
mod runs;

pub use controls::{
    create_blank, eject, init_drive, inject_write_error, insert_blank, list_cartridges, load,
    loaded, set_unreadable_when_blank, set_write_protect, tape_file_path,
};
pub use drive::EmulatedTape;
pub use files::{CartridgeInfo, CartridgeSpec};

//! The tape emulator: a drive directory that behaves like a Linux `st` drive, shared by every
//! process that opens it (cairnd, cairnctl, tests), plus the controls a person would use on a
//! real drive (insert, eject, write-protect tab) and a test hook (inject a write error).
//!
//! Layout of a drive directory:
//! ```text
//! drive.json                  which cartridge is loaded ({"loaded": "TAPE01"} or null)
//! position.json               where the tape is (file, block), written on motion and close
//! lock                        held (flock) by the one open EmulatedTape, like st's exclusive open
//! cartridges/<id>/cartridge.json   capacity, early warning, write protect, filemark count
//! cartridges/<id>/file-0000        tape file 0: its records back to back (`tar -b 512 -xf` reads it)
//! cartridges/<id>/file-0000.rec    record lengths of file 0 (u32 length, u32 count, little endian)
//! ```
//! A cartridge holds `filemarks + 1` tape files (a missing `file-NNNN` is an empty file); end of
//! data is after the last one. A process killed mid-write leaves every record written so far
//! readable (the data is appended before its length; on open, a trailing record without its
//! length is cut off). Writing filemarks fsyncs the data and then the metadata.

use super::{TapeDrive, TapeError, TapeStatus};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A new blank cartridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartridgeSpec {
    /// Its id (barcode): 1 to 32 characters of `A-Z a-z 0-9 - _`.
    pub id: String,
    /// Physical capacity in bytes (end of medium).
    pub capacity: u64,
    /// Byte position of the early warning; must not exceed `capacity`.
    pub early_warning: u64,
}

/// What the emulator knows about one cartridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartridgeInfo {
    /// Its id (barcode).
    pub id: String,
    /// Physical capacity in bytes.
    pub capacity: u64,
    /// Byte position of the early warning.
    pub early_warning: u64,
    /// The write-protect tab is set.
    pub write_protected: bool,
    /// An injected write error fires when a write would cross this byte position (one shot).
    pub inject_write_error_at: Option<u64>,
    /// Filemarks recorded (the cartridge holds `filemarks + 1` tape files).
    pub filemarks: u32,
    /// Bytes of records recorded.
    pub bytes_used: u64,
    /// It is in the drive.
    pub loaded: bool,
    /// Its directory (the tape files are `file-NNNN` in it).
    pub dir: PathBuf,
}

/// Creates the drive directory if it does not exist (empty drive).
pub fn init_drive(drive_dir: &Path) -> Result<(), TapeError> {
    let _ = drive_dir;
    Err(not_yet(drive_dir))
}

/// Creates a blank cartridge on the shelf (not loaded). Refuses an existing id.
pub fn create_blank(drive_dir: &Path, spec: &CartridgeSpec) -> Result<CartridgeInfo, TapeError> {
    let _ = spec;
    Err(not_yet(drive_dir))
}

/// Creates a blank cartridge and loads it (refuses if the drive is occupied).
pub fn insert_blank(drive_dir: &Path, spec: &CartridgeSpec) -> Result<CartridgeInfo, TapeError> {
    let _ = spec;
    Err(not_yet(drive_dir))
}

/// Loads an existing cartridge into the empty drive; the tape is at BOT.
pub fn load(drive_dir: &Path, id: &str) -> Result<(), TapeError> {
    let _ = id;
    Err(not_yet(drive_dir))
}

/// Ejects whatever is loaded (the eject button); returns its id.
pub fn eject(drive_dir: &Path) -> Result<Option<String>, TapeError> {
    Err(not_yet(drive_dir))
}

/// The id of the loaded cartridge, if any.
pub fn loaded(drive_dir: &Path) -> Result<Option<String>, TapeError> {
    Err(not_yet(drive_dir))
}

/// Sets or clears a cartridge's write-protect tab (takes effect on the next operation).
pub fn set_write_protect(drive_dir: &Path, id: &str, on: bool) -> Result<(), TapeError> {
    let _ = (id, on);
    Err(not_yet(drive_dir))
}

/// Arms (or with `None` disarms) a one-shot write error at a byte position of the cartridge.
pub fn inject_write_error(drive_dir: &Path, id: &str, at: Option<u64>) -> Result<(), TapeError> {
    let _ = (id, at);
    Err(not_yet(drive_dir))
}

/// Every cartridge of this drive, by id.
pub fn list_cartridges(drive_dir: &Path) -> Result<Vec<CartridgeInfo>, TapeError> {
    Err(not_yet(drive_dir))
}

/// The path of tape file `file_number` on a cartridge (it may not exist: an empty file).
pub fn tape_file_path(drive_dir: &Path, id: &str, file_number: u32) -> Result<PathBuf, TapeError> {
    let _ = (id, file_number);
    Err(not_yet(drive_dir))
}

fn not_yet(drive_dir: &Path) -> TapeError {
    TapeError::Invalid {
        device: drive_dir.to_path_buf(),
        message: "tape emulator: not implemented yet (API published first)".into(),
    }
}

/// An open emulated drive (exclusive, like st: a second open fails with `Busy`).
#[derive(Debug)]
pub struct EmulatedTape {
    dir: PathBuf,
}

impl EmulatedTape {
    /// Opens the drive in `drive_dir` (creating an empty drive if needed).
    pub fn open(drive_dir: &Path) -> Result<Self, TapeError> {
        Err(not_yet(drive_dir))
    }
}

impl TapeDrive for EmulatedTape {
    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        Err(not_yet(&self.dir))
    }
    fn set_block_size(&mut self, _size: u32) -> Result<(), TapeError> {
        Err(not_yet(&self.dir))
    }
    fn rewind(&mut self) -> Result<(), TapeError> {
        Err(not_yet(&self.dir))
    }
    fn write_block(&mut self, _data: &[u8]) -> Result<(), TapeError> {
        Err(not_yet(&self.dir))
    }
    fn write_filemarks(&mut self, _count: u32) -> Result<(), TapeError> {
        Err(not_yet(&self.dir))
    }
    fn read_block(&mut self, _buf: &mut [u8]) -> Result<usize, TapeError> {
        Err(not_yet(&self.dir))
    }
    fn space_filemarks(&mut self, _count: i32) -> Result<(), TapeError> {
        Err(not_yet(&self.dir))
    }
    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        Err(not_yet(&self.dir))
    }
    fn unload(&mut self) -> Result<(), TapeError> {
        Err(not_yet(&self.dir))
    }
}

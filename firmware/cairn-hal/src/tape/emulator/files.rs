//! The drive directory's state files: what `drive.json`, `position.json` and each
//! `cartridge.json` hold, where a cartridge's tape files live, and how the files are read,
//! written and locked.

use crate::medium::{is_valid_id, ID_RULE};
use crate::tape::TapeError;
use cairn_files::{atomic_write, Durability};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
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
    /// While nothing is recorded, a read fails with an I/O error (EIO) instead of reporting
    /// the end of data (see [`super::set_unreadable_when_blank`]).
    pub unreadable_when_blank: bool,
    /// Filemarks recorded (the cartridge holds `filemarks + 1` tape files).
    pub filemarks: u32,
    /// Bytes of records recorded.
    pub bytes_used: u64,
    /// It is in the drive.
    pub loaded: bool,
    /// Its directory (the tape files are `file-NNNN` in it).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CartridgeMeta {
    pub(super) id: String,
    pub(super) capacity: u64,
    pub(super) early_warning: u64,
    pub(super) write_protected: bool,
    pub(super) inject_write_error_at: Option<u64>,
    #[serde(default)]
    pub(super) unreadable_when_blank: bool,
    pub(super) filemarks: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DriveState {
    pub(super) loaded: Option<String>,
    pub(super) generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SavedPosition {
    pub(super) generation: u64,
    pub(super) cartridge: Option<String>,
    pub(super) file: u32,
    pub(super) block: u64,
    pub(super) block_known: bool,
    pub(super) block_size: u32,
}

pub(super) const DRIVE_JSON: &str = "drive.json";
pub(super) const POSITION_JSON: &str = "position.json";
pub(super) const CARTRIDGE_JSON: &str = "cartridge.json";

pub(super) fn io_err(dir: &Path, op: &'static str, source: std::io::Error) -> TapeError {
    TapeError::Io {
        device: dir.to_path_buf(),
        op,
        source,
    }
}

pub(super) fn invalid(dir: &Path, message: impl Into<String>) -> TapeError {
    TapeError::Invalid {
        device: dir.to_path_buf(),
        message: message.into(),
    }
}

pub(super) fn check_id(dir: &Path, id: &str) -> Result<(), TapeError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(invalid(dir, format!("cartridge id {id:?}: use {ID_RULE}")))
    }
}

pub(super) fn cartridge_path(drive_dir: &Path, id: &str) -> PathBuf {
    drive_dir.join("cartridges").join(id)
}

pub(super) fn data_path(cdir: &Path, file: u32) -> PathBuf {
    cdir.join(format!("file-{file:04}"))
}

pub(super) fn rec_path(cdir: &Path, file: u32) -> PathBuf {
    cdir.join(format!("file-{file:04}.rec"))
}

/// Writes `value` as JSON to `path` atomically and durably (temp file, fsync, rename, fsync dir).
pub(super) fn write_json<T: Serialize>(
    dev: &Path,
    path: &Path,
    value: &T,
) -> Result<(), TapeError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| invalid(dev, e.to_string()))?;
    // Synced: the emulated tape's state stands for what is on the cartridge.
    atomic_write(path, &body, Durability::Synced).map_err(|e| io_err(dev, "write state", e))
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(
    dev: &Path,
    path: &Path,
) -> Result<T, TapeError> {
    let body = fs::read(path).map_err(|e| io_err(dev, "read state", e))?;
    serde_json::from_slice(&body).map_err(|e| invalid(dev, format!("{}: {e}", path.display())))
}

/// Identity of a state file version (each write is a rename, so a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp(u64, i64, i64, u64);

pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    fs::metadata(path)
        .ok()
        .map(|m| Stamp(m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

pub(super) fn control_lock(drive_dir: &Path) -> Result<Flock<File>, TapeError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(drive_dir.join("control.lock"))
        .map_err(|e| io_err(drive_dir, "open control.lock", e))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err(drive_dir, "lock control.lock", e.into()))
}

pub(super) fn read_drive(drive_dir: &Path) -> Result<DriveState, TapeError> {
    let p = drive_dir.join(DRIVE_JSON);
    if !p.exists() {
        return Err(invalid(
            drive_dir,
            "not a tape emulator drive directory (no drive.json)",
        ));
    }
    read_json(drive_dir, &p)
}

pub(super) fn read_meta(drive_dir: &Path, id: &str) -> Result<CartridgeMeta, TapeError> {
    let p = cartridge_path(drive_dir, id).join(CARTRIDGE_JSON);
    if !p.exists() {
        return Err(invalid(drive_dir, format!("no cartridge {id:?}")));
    }
    read_json(drive_dir, &p)
}

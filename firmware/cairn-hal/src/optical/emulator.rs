//! The disc emulator: a tray directory whose loaded disc is an image file that `xorriso`
//! writes as a `stdio:` pseudo-drive, with a capacity like a real blank disc.
//!
//! ```text
//! tray.json            {"loaded": "DISC01"} or null
//! discs/<id>.iso       the disc image (absent or empty: blank)
//! discs/<id>.json      its capacity in bytes
//! ```

use super::OpticalError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the emulator knows about one disc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscInfo {
    /// Its id (1 to 32 of `A-Z a-z 0-9 - _`).
    pub id: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes of image written.
    pub bytes_used: u64,
    /// It is in the tray.
    pub loaded: bool,
    /// The image file.
    pub image: PathBuf,
}

/// Creates the tray directory if missing (empty tray).
pub fn init_tray(tray_dir: &Path) -> Result<(), OpticalError> {
    Err(not_yet(tray_dir))
}

/// Creates a blank disc of `capacity` bytes and loads it (refuses if the tray is occupied).
pub fn insert_blank(tray_dir: &Path, id: &str, capacity: u64) -> Result<DiscInfo, OpticalError> {
    let _ = (id, capacity);
    Err(not_yet(tray_dir))
}

/// Loads an existing disc into the empty tray.
pub fn load(tray_dir: &Path, id: &str) -> Result<(), OpticalError> {
    let _ = id;
    Err(not_yet(tray_dir))
}

/// Ejects the loaded disc; returns its id.
pub fn eject(tray_dir: &Path) -> Result<Option<String>, OpticalError> {
    Err(not_yet(tray_dir))
}

/// The loaded disc, if any.
pub fn loaded(tray_dir: &Path) -> Result<Option<DiscInfo>, OpticalError> {
    Err(not_yet(tray_dir))
}

/// Every disc of this tray, by id.
pub fn list_discs(tray_dir: &Path) -> Result<Vec<DiscInfo>, OpticalError> {
    Err(not_yet(tray_dir))
}

fn not_yet(dir: &Path) -> OpticalError {
    OpticalError::Invalid {
        device: dir.display().to_string(),
        message: "disc emulator: not implemented yet (API published first)".into(),
    }
}

//! cairn's hardware layer: the only crate that touches `/dev` and `/sys`.
//!
//! Owns: reading md RAID state from sysfs ([`md`]), md actions through md's sysfs attributes
//! ([`md::MdControl`]), disk bays and the disks in them ([`disks`], [`board`]), buzzers
//! ([`buzzer`]), md 1.2 superblocks for replacement members ([`superblock`]), kernel uevents
//! ([`uevent`]), SMART through `smartctl --json` ([`smart`]), and an md emulator that keeps a
//! sysfs-shaped tree ([`emulator`]); tape drives (`st` ioctls and an emulator, [`tape`]) and
//! optical discs through `xorriso` (with a disc-image emulator, [`optical`]).
//! Every path is taken relative to an injectable root (`/` on the box), so the same code reads
//! fixture trees in tests and the emulator's tree in the demo.
//!
//! Must never: decide policy (health classes, what to add, when to sound) or parse another
//! program's text output to act; it reports facts and carries out explicit requests.

pub mod board;
pub mod buzzer;
pub mod disks;
pub mod emulator;
pub mod md;
mod medium;
pub mod optical;
pub mod smart;
pub mod superblock;
mod sysfs;
pub mod tape;
pub mod uevent;

use std::path::PathBuf;
use thiserror::Error;

/// A hardware access problem.
#[derive(Debug, Error)]
pub enum HalError {
    /// A file under the root could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file or request held something this layer cannot use.
    #[error("{what}: {message}")]
    Invalid {
        /// What was being read or asked.
        what: String,
        /// Why it is unusable.
        message: String,
    },
}

/// What a caller may branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The OS refused or failed.
    Io,
    /// Bad content or a refused request.
    Invalid,
}

impl HalError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HalError::Io { .. } => ErrorKind::Io,
            HalError::Invalid { .. } => ErrorKind::Invalid,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HalError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        HalError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Milliseconds since the Unix epoch (for tone records and events).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! Optical discs written by the real `xorriso` program: multisession ISO 9660 with Rock Ridge,
//! one session per call, MD5 checksums recorded for every file and session (`-md5 on`).
//!
//! [`XorrisoDrive`] drives either a real burner (`/dev/sr0`) or the disc emulator
//! ([`emulator`]): a tray directory whose loaded disc is a `stdio:` image file of a configured
//! capacity. A session that would not fit is refused with [`OpticalErrorKind::Full`] before
//! anything is written.
//!
//! Must never: choose what to write (the archive writer does), or close a disc (sessions are
//! always written with `-close off`, so the disc stays appendable).

pub mod emulator;
pub mod xorriso;

pub use xorriso::XorrisoDrive;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The recording state of the disc in the drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscState {
    /// Nothing recorded yet.
    Blank,
    /// Has sessions and more can be appended.
    Appendable,
    /// Closed (finalised): nothing more can be written.
    Closed,
}

/// What the drive reports about itself and its disc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpticalStatus {
    /// A disc is in the drive.
    pub loaded: bool,
    /// Its recording state (`None` without a disc).
    pub state: Option<DiscState>,
    /// Sessions recorded.
    pub sessions: u32,
    /// The volume label of the latest session.
    pub volume_label: Option<String>,
    /// Bytes used on the disc.
    pub bytes_used: u64,
    /// Bytes the disc holds in total (used + free).
    pub capacity: u64,
}

/// One file in the disc's (cumulative, latest-session) tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoEntry {
    /// Its absolute path in the ISO tree, e.g. `/objects/ab...cd.dcm`.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What one written session ended up as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Its number, 1 for the first session.
    pub number: u32,
    /// Bytes used on the disc after it.
    pub bytes_used: u64,
}

/// An optical operation that failed.
#[derive(Debug, Error)]
pub enum OpticalError {
    /// No disc in the drive.
    #[error("{device}: no disc in the drive")]
    NoMedium {
        /// The drive.
        device: String,
    },
    /// The session does not fit on the disc; nothing was written.
    #[error("{device}: the session needs {needed} bytes, the disc has {free} free")]
    Full {
        /// The drive.
        device: String,
        /// Bytes the session needs.
        needed: u64,
        /// Bytes left on the disc.
        free: u64,
    },
    /// The disc is closed (finalised) and takes no more sessions.
    #[error("{device}: the disc is closed")]
    Closed {
        /// The drive.
        device: String,
    },
    /// The recorded MD5 of a file or session does not match its data.
    #[error("{device}: MD5 check failed: {detail}")]
    ChecksumMismatch {
        /// The drive.
        device: String,
        /// xorriso's report, for the technician.
        detail: String,
    },
    /// A bad request (a path or label this layer refuses, a missing host file).
    #[error("{device}: {message}")]
    Invalid {
        /// The drive.
        device: String,
        /// What was wrong.
        message: String,
    },
    /// xorriso failed.
    #[error("{device}: xorriso {action} failed ({status}): {stderr}")]
    Tool {
        /// The drive.
        device: String,
        /// What was being done.
        action: &'static str,
        /// Its exit status.
        status: String,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a caller may branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpticalErrorKind {
    /// No disc.
    NoMedium,
    /// Session does not fit: change discs.
    Full,
    /// Disc closed: change discs.
    Closed,
    /// Data does not match its MD5.
    ChecksumMismatch,
    /// Bad request.
    Invalid,
    /// Tool or OS failure.
    Io,
}

impl OpticalError {
    /// The class of this error.
    pub fn kind(&self) -> OpticalErrorKind {
        match self {
            OpticalError::NoMedium { .. } => OpticalErrorKind::NoMedium,
            OpticalError::Full { .. } => OpticalErrorKind::Full,
            OpticalError::Closed { .. } => OpticalErrorKind::Closed,
            OpticalError::ChecksumMismatch { .. } => OpticalErrorKind::ChecksumMismatch,
            OpticalError::Invalid { .. } => OpticalErrorKind::Invalid,
            OpticalError::Tool { .. } | OpticalError::Io { .. } => OpticalErrorKind::Io,
        }
    }
}

/// An optical drive that appends ISO 9660 sessions.
pub trait OpticalDrive: Send {
    /// The drive and disc state.
    fn status(&mut self) -> Result<OpticalStatus, OpticalError>;

    /// Appends one session labelled `volume_label` (ISO volume id: 1 to 32 of `A-Z 0-9 _`)
    /// holding `files` as `(path_in_iso, host_path)` pairs; the new session's tree also keeps
    /// every earlier file. MD5s are recorded (`-md5 on`); the disc stays appendable.
    fn write_session(
        &mut self,
        volume_label: &str,
        files: &[(String, PathBuf)],
    ) -> Result<SessionInfo, OpticalError>;

    /// Reads back every file of the latest tree and compares it with its recorded MD5.
    fn check_md5(&mut self) -> Result<(), OpticalError>;

    /// Copies one file (or directory tree) from the disc to `host_dest` (which must not exist).
    fn extract(&mut self, path_in_iso: &str, host_dest: &Path) -> Result<(), OpticalError>;

    /// Every file of the latest tree, sorted by path.
    fn list(&mut self) -> Result<Vec<IsoEntry>, OpticalError>;

    /// Ejects the disc.
    fn eject(&mut self) -> Result<(), OpticalError>;

    /// The name printed on the disc in the drive, when the drive can tell (a lone burner
    /// cannot: `None`, the default). The disc emulator answers with the disc's id.
    fn disc_name(&mut self) -> Option<String> {
        None
    }
}

//! The cold copy: bundles of stored objects written as POSIX pax
//! tars to tape (fixed 256 KiB records between filemarks) or as one ISO 9660 session each to
//! optical discs, read back and compared SHA-256 by SHA-256 before any copy counts as verified;
//! the catalog of volumes, bundles and copies; the catalog rebuilt from volumes alone; restore.
//!
//! Owns: the bundle format ([`bundle`], [`pax`], [`label`]), the archive writer's policy
//! ([`engine`]), the catalog tables' reads and changes ([`catalog`]), the request files between
//! `cairnctl`/the panel and the daemon ([`requests`]).
//!
//! Invariants: a queue row is deleted only in the transaction that marks a verified copy of its
//! instance on a volume of its target; a copy is marked verified only after its bundle was read
//! back from the medium and every SHA-256 matched; every volume state and location change is an
//! audit row; index changes go through the store's writer ([`cairn_store::Store::transact`]).
//!
//! Must never: overwrite a labelled volume that holds data; hold a whole object in memory;
//! name a file in a bundle after a received string (objects are named by their SHA-256);
//! touch `/dev` directly (drives come from `cairn-hal`).

pub mod bundle;
pub mod catalog;
mod csv;
pub mod engine;
pub mod holds_csv;
pub mod label;
pub mod medium;
pub mod optical;
pub mod pax;
pub mod requests;
pub mod tape;

pub use catalog::{
    archive_status, list_volumes, request, set_location, ArchiveStatus, Location, QueueStatus,
    TargetStatus, VolumeRow, VolumeState,
};
pub use medium::MediumKind;
pub use requests::Request;

use thiserror::Error;

/// Archive failures. `kind()` tells callers what to do.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// The tape drive failed or refused.
    #[error("tape: {0}")]
    Tape(#[from] cairn_hal::tape::TapeError),
    /// The optical drive failed or refused.
    #[error("optical: {0}")]
    Optical(String),
    /// The index failed.
    #[error("index: {0}")]
    Store(#[from] cairn_store::StoreError),
    /// The index failed (direct read).
    #[error("index: {0}")]
    Db(#[from] rusqlite::Error),
    /// Reading a hot object failed.
    #[error("reading the hot copy: {0}")]
    Source(String),
    /// A hot object no longer hashes to its name: it is not archived.
    #[error("the hot copy of {sha256} is missing or damaged (unreadable, or its bytes no longer match its SHA-256)")]
    HotCopyDamaged {
        /// The object.
        sha256: String,
    },
    /// A volume or bundle does not follow the format.
    #[error("format: {0}")]
    Format(String),
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
    /// A request that cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
}

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The medium is past its early warning: close the bundle, change volumes.
    EarlyWarning,
    /// No medium, or not writable: wait for a person.
    MediumNeeded,
    /// The medium or drive failed: the volume goes to state `error`.
    Medium,
    /// A hot copy is damaged: leave it queued, raise it.
    HotCopy,
    /// The request was refused.
    Refused,
    /// Anything else (index, I/O).
    Other,
}

impl ArchiveError {
    /// Classify.
    pub fn kind(&self) -> ErrorKind {
        use cairn_hal::tape::TapeErrorKind as T;
        match self {
            ArchiveError::Tape(e) => match e.kind() {
                T::EarlyWarning | T::EndOfMedium => ErrorKind::EarlyWarning,
                T::NoMedium | T::WriteProtected => ErrorKind::MediumNeeded,
                _ => ErrorKind::Medium,
            },
            ArchiveError::Optical(_) => ErrorKind::Medium,
            ArchiveError::HotCopyDamaged { .. } | ArchiveError::Source(_) => ErrorKind::HotCopy,
            ArchiveError::Refused(_) => ErrorKind::Refused,
            _ => ErrorKind::Other,
        }
    }
}

/// Lowercase hex SHA-256?
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Tape record size: 256 KiB (`tar -b 512`).
pub const RECORD_SIZE: usize = 256 * 1024;

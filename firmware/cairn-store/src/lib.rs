//! The hot store: where received images become durable.
//!
//! Owns: the data directory (`objects/`, `spool/`, `quarantine/`, `cairn.db`), the index schema
//! and its migrations, the single writer thread, fsck and read-only queries.
//!
//! Invariants (they are what lets a caller answer "stored" and mean it across a power cut):
//! - an object file is named by the SHA-256 of its bytes, never by a received string;
//! - a file is received into `spool/` (its writeback starts while it arrives and completes
//!   before it leaves the receiving thread), renamed into `objects/`, and its index row is
//!   committed (WAL); then one `syncfs` per batch makes files, directories and WAL durable;
//! - after an unclean stop, rows above the durability watermark are checked against their
//!   files before the store serves (see `writer::recover`);
//! - every change commits together with its audit row, in the writer thread only;
//! - a caller learns "stored" only after all of the above.
//!
//! Must never: overwrite an object file, leave a row without its file, hold a whole object in memory.

pub mod commitment;
pub mod find;
mod fsck;
mod index;
mod layout;
mod merge;
mod oneshot;
mod query;
pub mod remove;
mod spool;
mod writer;

pub use fsck::{fsck, verify_audit, FsckOptions, FsckReport, Problem};
pub use index::{ArchivedChange, InstanceRecord, PatientInfo, SeriesInfo, StudyInfo};
pub use layout::DataDir;
pub use merge::{is_valid_date, is_valid_time};
pub use query::{
    all_holds, images_received_since, list_studies, search_studies, series_bytes, stats,
    study_conflicts, study_series, study_summary, typed_person_name, typed_text, DateRange,
    FieldConflict, HoldRecord, SeriesSummary, Stats, StudyFilter, StudyKeys, StudyRow,
    StudySummary,
};
pub use spool::{FinishedSpool, SpoolWriter};
pub use writer::{Store, StoreJob, StoreOutcome};

use thiserror::Error;

/// Store failures. `kind()` tells callers what to answer.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The index database failed.
    #[error("index: {0}")]
    Db(#[from] rusqlite::Error),
    /// The audit trail failed.
    #[error("audit: {0}")]
    Audit(#[from] cairn_audit::AuditError),
    /// The writer thread has stopped (shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// A search value that cannot be used (the message says why; it holds no stored data).
    #[error("{0}")]
    BadSearch(String),
    /// Refused, nothing written: the object would change a study fixed in the archive tier
    /// (different bytes for one of its instances, or a new instance).
    #[error("{0}")]
    Archived(ArchivedChange),
    /// The data directory was made by a newer cairn.
    #[error("index schema version {found} is newer than this cairn understands ({supported})")]
    SchemaTooNew {
        /// Version on disk.
        found: i64,
        /// Newest known here.
        supported: i64,
    },
}

/// What kind of failure, for callers that must choose a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Disk full, quota, I/O error: "out of resources", try later.
    OutOfResources,
    /// The store is stopping.
    ShuttingDown,
    /// Refused by policy (a study fixed in the archive tier): sending again will not help.
    Refused,
    /// Anything else.
    Other,
}

impl StoreError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            what: what.into(),
            source,
        }
    }

    /// Classify for the caller.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Io { .. } => ErrorKind::OutOfResources,
            StoreError::Db(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::DatabaseBusy
                ) =>
            {
                ErrorKind::OutOfResources
            }
            StoreError::Audit(cairn_audit::AuditError::Anchor(_)) => ErrorKind::OutOfResources,
            StoreError::Closed => ErrorKind::ShuttingDown,
            StoreError::Archived(_) => ErrorKind::Refused,
            _ => ErrorKind::Other,
        }
    }
}

/// Current UTC time as RFC 3339, to the microsecond.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

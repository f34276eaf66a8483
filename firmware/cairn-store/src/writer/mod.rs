//! The one writer: every state change goes through this thread, batched into group commits.
//!
//! [`Store`] is the handle callers hold (`handle`); it sends requests to the writer thread,
//! which gathers them into batches (`batch`), moves each object file into place (`place`),
//! commits every row and audit row of a batch in one transaction (`commit`) and makes it all
//! durable with one flush (`flush`) before anyone hears "stored". `recover` runs at each
//! start, before the thread: it empties the spool and, after an unclean stop, checks the last
//! rows against their files.

mod batch;
mod commit;
mod flush;
mod handle;
mod place;
mod recover;
#[cfg(test)]
mod tests;

pub use handle::Store;

use crate::index::InstanceRecord;
use crate::layout::DataDir;
use crate::oneshot;
use crate::spool::FinishedSpool;
use crate::StoreError;
use cairn_audit::AuditEvent;
use rusqlite::Connection;
use std::path::PathBuf;

/// A received object ready to be made durable.
#[derive(Debug)]
pub struct StoreJob {
    /// The fsynced spool file.
    pub spool: FinishedSpool,
    /// What the index needs.
    pub record: InstanceRecord,
    /// Calling AE title of the sender.
    pub source_ae: String,
}

/// What happened to a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A new instance, stored and indexed.
    Stored,
    /// The same bytes were already stored: nothing new written.
    Duplicate,
    /// Same SOP Instance UID, different bytes: both kept, the new one indexed as current.
    NewVersion,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Where an object handed to the writer comes from: its audit row says so.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// Received over DICOM: a `store` by `ae:<calling AE>`.
    Received,
    /// Read back from a cold copy: a `restore` by the person who asked for it.
    Restored {
        /// Who asked (`user:<name>`).
        by: String,
    },
}

/// Work run by the writer thread inside its next group commit (see [`Store::transact`]).
type Work = Box<dyn FnOnce(&Connection, &str) -> Result<Vec<AuditEvent>, StoreError> + Send>;

enum Request {
    /// An object to commit, the thread (association) that asks, and where it comes from.
    Store(
        Box<StoreJob>,
        Reply<StoreOutcome>,
        std::thread::ThreadId,
        Origin,
    ),
    Audit(AuditEvent, Option<Reply<()>>),
    Exec(Work, Reply<()>),
    Stop,
}

/// The file whose presence at start says the last stop was clean (no recovery needed).
const CLEAN_MARK: &str = "clean-shutdown";

/// The writer thread's state.
struct Writer {
    /// Whether a restored file of an archived study gets the immutable attribute
    /// ([`Store::set_immutable_files`]).
    immutable_files: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The threads (one per association) that stored recently, and when they last did.
    storing: Vec<(std::thread::ThreadId, std::time::Instant)>,
    data: DataDir,
    conn: Connection,
    /// The data directory, for `syncfs`.
    sync_fd: std::fs::File,
    /// Every instance row up to this id is on disk with its file.
    synced_max: i64,
    /// A flush failed: refuse further work until a restart re-checks the store.
    poisoned: bool,
    /// When the watermark was last recorded (it is refreshed at most every `WATERMARK_EVERY`).
    watermark_written: std::time::Instant,
    /// When the anchor file was last written, and the head not yet written there.
    anchor_written: std::time::Instant,
    anchor_pending: Option<cairn_audit::Head>,
}

/// A store request in the batch being committed.
struct Pending {
    job: Box<StoreJob>,
    reply: Reply<StoreOutcome>,
    origin: Origin,
    /// Set when this request created the object file (so a failed commit removes it).
    created: Option<PathBuf>,
    failed: Option<StoreError>,
}

/// A unit of work ([`Store::transact`]) in the batch being committed.
struct Exec {
    work: Option<Work>,
    reply: Reply<()>,
    failed: Option<StoreError>,
}

//! The handle callers hold: open the store, hand objects and audit events to the writer
//! thread and wait for their commit, close it cleanly.

use super::flush::check_one_filesystem;
use super::recover::recover;
use super::{Origin, Request, StoreJob, StoreOutcome, Work, Writer, CLEAN_MARK};
use crate::index;
use crate::layout::{fsync_dir, DataDir};
use crate::oneshot;
use crate::spool::SpoolWriter;
use crate::StoreError;
use cairn_audit::AuditEvent;
use crossbeam_channel::{unbounded, Sender};
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

struct Inner {
    tx: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<bool>>>,
    /// Whether restored files of archived studies get the immutable attribute (shared with
    /// the writer).
    immutable_files: Arc<AtomicBool>,
}

/// Handle to the store. Cheap to clone; all clones talk to the same writer thread.
#[derive(Clone)]
pub struct Store {
    data: DataDir,
    tx: Sender<Request>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("data", &self.data).finish()
    }
}

impl Store {
    /// Open (creating if needed) the data directory, migrate the index, recover from an unclean
    /// stop (spool emptied; files with no row moved to `quarantine/`), start the writer.
    pub fn open(data: DataDir) -> Result<Store, StoreError> {
        data.create()?;
        check_one_filesystem(&data)?;
        let sync_fd = std::fs::File::open(data.root())
            .map_err(|e| StoreError::io("open data directory", e))?;
        let conn = index::open_rw(&data.db())?;
        recover(&data, &conn, &sync_fd)?;
        let synced_max = index::max_instance_id(&conn)?;
        let (tx, rx) = unbounded();
        let immutable_files = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            immutable_files: immutable_files.clone(),
            storing: Vec::new(),
            data: data.clone(),
            conn,
            sync_fd,
            synced_max,
            poisoned: false,
            watermark_written: std::time::Instant::now(),
            anchor_written: std::time::Instant::now(),
            anchor_pending: None,
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::io("start writer thread", e))?;
        Ok(Store {
            data,
            tx: tx.clone(),
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                immutable_files,
            }),
        })
    }

    /// Whether a restore that puts back a missing file of a study in the archive tier gives it
    /// the immutable attribute (on by default; a demo box, whose data a person must be able to
    /// delete, turns it off). A restore over a damaged file keeps the attribute it had either way.
    pub fn set_immutable_files(&self, on: bool) {
        self.inner.immutable_files.store(on, Ordering::Relaxed);
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    /// Start receiving a new object into the spool.
    pub fn spool(&self) -> Result<SpoolWriter, StoreError> {
        SpoolWriter::create(&self.data.spool())
    }

    /// Make an object durable and indexed; returns once the commit is on disk.
    pub fn commit(&self, job: StoreJob) -> Result<StoreOutcome, StoreError> {
        self.commit_from(job, Origin::Received)
    }

    /// Put back an object read from a cold copy (a restore `by` a person): made durable like
    /// [`Store::commit`], but its audit row is a `restore` by that person, not a `store` by
    /// the AE that first sent it, and a damaged file under its name is replaced (the bytes
    /// were hashed to that name on the way in).
    pub fn commit_restored(&self, job: StoreJob, by: &str) -> Result<StoreOutcome, StoreError> {
        self.commit_from(job, Origin::Restored { by: by.into() })
    }

    fn commit_from(&self, job: StoreJob, origin: Origin) -> Result<StoreOutcome, StoreError> {
        // The object's directory is made here, on the receiving thread, so that the writer
        // only renames. An empty directory is harmless; the commit's syncfs makes it durable.
        if let Some(leaf) = self.data.object_path(&job.spool.sha256).parent() {
            std::fs::create_dir_all(leaf)
                .map_err(|e| StoreError::io("create object directory", e))?;
        }
        let (rtx, rrx) = oneshot::channel();
        let from = std::thread::current().id();
        self.tx
            .send(Request::Store(Box::new(job), rtx, from, origin))
            .map_err(|_| StoreError::Closed)?;
        rrx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Record an audit event durably; returns once committed.
    pub fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send(Request::Audit(event, Some(rtx)))
            .map_err(|_| StoreError::Closed)?;
        rrx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Run `work` in the writer thread, inside the next group commit, and return its value once
    /// that commit is durable (committed and `syncfs`ed).
    ///
    /// This is how other crates change index tables they own (the archive catalog and queue):
    /// the store's writer stays the only writer. `work` gets the transaction's connection and
    /// the commit's timestamp (RFC 3339) and returns its value and the audit events to append
    /// in the same transaction. It runs inside a savepoint: when it fails, only its own changes
    /// are rolled back, its error is returned, and the rest of the batch commits.
    /// `work` must be short (no I/O beyond the index): every store waits for it.
    pub fn transact<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str) -> Result<(T, Vec<AuditEvent>), StoreError> + Send + 'static,
    {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let boxed: Work = Box::new(move |conn: &Connection, now: &str| {
            let (value, events) = work(conn, now)?;
            if let Ok(mut g) = out.lock() {
                *g = Some(value);
            }
            Ok(events)
        });
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send(Request::Exec(boxed, rtx))
            .map_err(|_| StoreError::Closed)?;
        rrx.recv().map_err(|_| StoreError::Closed)??;
        let value = slot.lock().ok().and_then(|mut g| g.take());
        value.ok_or(StoreError::Closed)
    }

    /// Record an audit event in the next commit, without waiting.
    pub fn audit_later(&self, event: AuditEvent) {
        if self.tx.send(Request::Audit(event, None)).is_err() {
            tracing::warn!("audit event dropped: store closed");
        }
    }

    /// Stop the writer after everything queued is committed, and mark a clean shutdown.
    /// Requests sent by other clones after this are refused with `Closed`.
    /// After a disk error the clean mark is not written, so the next start re-checks.
    pub fn close(self) -> Result<(), StoreError> {
        let Store {
            data, tx, inner, ..
        } = self;
        let _ = tx.send(Request::Stop);
        drop(tx);
        if let Ok(mut g) = inner.tx.lock() {
            g.take();
        }
        let handle = inner.thread.lock().ok().and_then(|mut g| g.take());
        let clean = match handle {
            Some(h) => h.join().unwrap_or_else(|_| {
                tracing::error!("store writer thread panicked");
                false
            }),
            None => false,
        };
        if !clean {
            return Err(StoreError::io(
                "close",
                std::io::Error::other(
                    "the store had disk errors; it will be re-checked at next start",
                ),
            ));
        }
        let mark = data.root().join(CLEAN_MARK);
        std::fs::write(&mark, b"cairn stopped cleanly\n")
            .and_then(|_| std::fs::File::open(&mark)?.sync_all())
            .map_err(|e| StoreError::io("write clean-shutdown mark", e))?;
        fsync_dir(data.root())
    }
}

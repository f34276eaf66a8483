//! The one writer: every state change goes through this thread, batched into group commits.

use crate::index::{self, Indexed, InstanceRecord};
use crate::layout::{fsync_dir, is_sha256_hex, walk_objects, DataDir};
use crate::oneshot;
use crate::spool::{FinishedSpool, SpoolWriter};
use crate::{now_rfc3339, StoreError};
use cairn_audit::AuditEvent;
use crossbeam_channel::{unbounded, Receiver, Sender};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The largest number of requests folded into one commit.
const MAX_BATCH: usize = 512;

/// When several associations are storing, the writer waits at most this long for the ones not
/// yet in the batch before it commits, so that one disk flush serves all of them. A single
/// association is never delayed.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(800);

/// An association (its receiving thread) counts as storing for this long after its last commit.
const STORING_RECENTLY: std::time::Duration = std::time::Duration::from_millis(20);

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

struct Inner {
    tx: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<bool>>>,
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

const CLEAN_MARK: &str = "clean-shutdown";

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
        let writer = Writer {
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
            }),
        })
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

/// Startup recovery. The spool never holds anything acknowledged. After an unclean stop, the
/// last batches may have reached the database without their files (or the reverse): instance
/// rows above the durability watermark are checked against their files and rolled back when the
/// file is missing or damaged (they were never acknowledged), and files with no row are moved
/// to `quarantine/`.
fn recover(data: &DataDir, conn: &Connection, sync_fd: &std::fs::File) -> Result<(), StoreError> {
    let mut removed = 0usize;
    if let Ok(rd) = std::fs::read_dir(data.spool()) {
        for e in rd.flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed unfinished spool files from an earlier run"
        );
    }
    let mark = data.root().join(CLEAN_MARK);
    if mark.exists() {
        std::fs::remove_file(&mark).map_err(|e| StoreError::io("remove clean mark", e))?;
        return sync_all(sync_fd);
    }

    let at = now_rfc3339();
    let watermark = index::synced_watermark(conn)?;
    let mut suspects = Vec::new();
    {
        let mut stmt =
            conn.prepare("SELECT id, sha256, size FROM instances WHERE id > ?1 ORDER BY id")?;
        let rows = stmt.query_map([watermark], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (id, sha, size) = row?;
            let path = data.object_path(&sha);
            let intact = is_sha256_hex(&sha)
                && crate::fsck::sha256_file(&path)
                    .map(|(h, n)| h == sha && n == size as u64)
                    .unwrap_or(false);
            if !intact {
                suspects.push(id);
            }
        }
    }
    if !suspects.is_empty() {
        let tx = conn.unchecked_transaction()?;
        for id in &suspects {
            if let Some(uid) = index::roll_back_instance(&tx, *id)? {
                cairn_audit::append(
                    &tx,
                    &at,
                    &AuditEvent {
                        actor: "system".into(),
                        action: "recovery-rollback".into(),
                        object: uid,
                        detail: "{\"reason\":\"indexed but its file never reached the disk; it was never acknowledged\"}".into(),
                    },
                )?;
            }
        }
        tx.commit()?;
        tracing::warn!(
            count = suspects.len(),
            "rolled back unacknowledged index rows whose files are missing"
        );
    }

    let mut quarantined = Vec::new();
    for path in walk_objects(&data.objects()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let sha = name.strip_suffix(".dcm").unwrap_or("");
        let known = is_sha256_hex(sha) && index::sha_indexed(conn, sha)?;
        if !known {
            let dest = data
                .quarantine()
                .join(format!("{}-{}", at.replace(':', ""), name));
            std::fs::rename(&path, &dest)
                .map_err(|e| StoreError::io("quarantine orphan file", e))?;
            quarantined.push(path);
        }
    }
    let tx = conn.unchecked_transaction()?;
    if !quarantined.is_empty() {
        tracing::warn!(
            count = quarantined.len(),
            "moved unindexed object files (never acknowledged) to quarantine/"
        );
        cairn_audit::append(
            &tx,
            &at,
            &AuditEvent {
                actor: "system".into(),
                action: "recovery".into(),
                object: "objects".into(),
                detail: format!("{{\"quarantined\":{}}}", quarantined.len()),
            },
        )?;
    }
    index::set_synced_watermark(&tx, index::max_instance_id(&tx)?)?;
    tx.commit()?;
    sync_all(sync_fd)
}

/// Flush every dirty page and inode of the store's filesystem (data, directories, the WAL).
fn sync_all(fd: &std::fs::File) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    nix::unistd::syncfs(fd.as_raw_fd())
        .map_err(|e| StoreError::io("syncfs", std::io::Error::from_raw_os_error(e as i32)))
}

/// The store must sit on one filesystem for `syncfs` to cover everything.
fn check_one_filesystem(data: &DataDir) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| StoreError::io(format!("stat {}", p.display()), e))
    };
    let root = dev(data.root())?;
    for p in [data.objects(), data.spool(), data.quarantine()] {
        if dev(&p)? != root {
            return Err(StoreError::io(
                format!(
                    "{} is on another filesystem than {}",
                    p.display(),
                    data.root().display()
                ),
                std::io::Error::other("the data directory must be a single filesystem"),
            ));
        }
    }
    Ok(())
}

struct Writer {
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

/// The durability watermark is recorded at most this often: after an unclean stop, recovery
/// re-checks the rows of about this much time.
const WATERMARK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The audit anchor file is refreshed at most this often (and always at close).
const ANCHOR_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

struct Pending {
    job: Box<StoreJob>,
    reply: Reply<StoreOutcome>,
    origin: Origin,
    /// Set when this request created the object file (so a failed commit removes it).
    created: Option<PathBuf>,
    failed: Option<StoreError>,
}

struct Exec {
    work: Option<Work>,
    reply: Reply<()>,
    failed: Option<StoreError>,
}

fn replicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io { what, source } => StoreError::Io {
            what: what.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Io {
            what: "commit".into(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

impl Writer {
    /// Returns true when it stopped with everything durable.
    fn run(mut self, rx: Receiver<Request>) -> bool {
        let mut stop = false;
        while !stop {
            let Ok(first) = rx.recv() else { break };
            let mut batch = vec![first];
            self.gather(&rx, &mut batch);
            if let Some(i) = batch.iter().position(|r| matches!(r, Request::Stop)) {
                // everything queued before the stop is committed; anything after is refused
                batch.truncate(i);
                stop = true;
            }
            if !batch.is_empty() {
                self.process(batch);
            }
        }
        self.flush_anchor();
        if !self.poisoned {
            let done = index::set_synced_watermark(&self.conn, self.synced_max)
                .and_then(|_| sync_all(&self.sync_fd));
            if let Err(e) = done {
                tracing::error!(error = %e, "final flush failed");
                return false;
            }
        }
        tracing::debug!("store writer stopped");
        !self.poisoned
    }

    /// Add what is queued to `batch`. While associations that stored recently have nothing in
    /// it yet (their next object is on its way), wait up to `GATHER_WAIT` for them so that
    /// they share this commit's flush.
    fn gather(&mut self, rx: &Receiver<Request>, batch: &mut Vec<Request>) {
        let start = std::time::Instant::now();
        self.storing
            .retain(|(_, at)| start.duration_since(*at) < STORING_RECENTLY);
        let deadline = start + GATHER_WAIT;
        loop {
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let senders: Vec<std::thread::ThreadId> = batch
                .iter()
                .filter_map(|r| match r {
                    Request::Store(_, _, from, _) => Some(*from),
                    _ => None,
                })
                .collect();
            let stopping = batch.iter().any(|r| matches!(r, Request::Stop));
            let missing = self.storing.iter().any(|(t, _)| !senders.contains(t));
            if senders.is_empty() || stopping || batch.len() >= MAX_BATCH || !missing {
                break;
            }
            match rx.recv_deadline(deadline) {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let now = std::time::Instant::now();
        for r in batch.iter() {
            if let Request::Store(_, _, from, _) = r {
                match self.storing.iter_mut().find(|(t, _)| t == from) {
                    Some(entry) => entry.1 = now,
                    None => self.storing.push((*from, now)),
                }
            }
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let now = now_rfc3339();
        let mut stores = Vec::new();
        let mut audits = Vec::new();
        let mut execs = Vec::new();
        for r in batch {
            match r {
                Request::Store(job, reply, _, origin) => stores.push(Pending {
                    job,
                    reply,
                    origin,
                    created: None,
                    failed: None,
                }),
                Request::Audit(ev, reply) => audits.push((ev, reply)),
                Request::Exec(work, reply) => execs.push(Exec {
                    work: Some(work),
                    reply,
                    failed: None,
                }),
                Request::Stop => {}
            }
        }

        if self.poisoned {
            let e = StoreError::io(
                "store",
                std::io::Error::other("a disk flush failed earlier; restart the box to re-check"),
            );
            self.fail_all(stores, audits, execs, &e);
            return;
        }

        // Phase 1: files into place.
        for p in &mut stores {
            let replace = matches!(p.origin, Origin::Restored { .. });
            match self.place(&mut p.job.spool, replace) {
                Ok(created) => p.created = created,
                Err(e) => p.failed = Some(e),
            }
        }

        // Phase 2: one transaction for every row and its audit row.
        let result = self.commit(&mut stores, &audits, &mut execs, &now);

        // Phase 3: one flush of the whole filesystem makes files, directories and WAL durable.
        let result = result.and_then(|r| match sync_all(&self.sync_fd) {
            Ok(()) => {
                self.synced_max = index::max_instance_id(&self.conn)?;
                Ok(r)
            }
            Err(e) => {
                self.poisoned = true;
                tracing::error!(error = %e, "flushing the store failed: refusing images until restart");
                Err(e)
            }
        });
        match result {
            Ok((outcomes, head)) => {
                self.anchor_pending = Some(head);
                if self.anchor_written.elapsed() >= ANCHOR_EVERY {
                    self.flush_anchor();
                }
                for (p, o) in stores.into_iter().zip(outcomes) {
                    p.reply.send(match p.failed {
                        Some(e) => Err(e),
                        None => Ok(o),
                    });
                }
                for (_, reply) in audits {
                    if let Some(r) = reply {
                        r.send(Ok(()));
                    }
                }
                for x in execs {
                    x.reply.send(match x.failed {
                        Some(e) => Err(e),
                        None => Ok(()),
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "index commit failed");
                self.fail_all(stores, audits, execs, &e);
            }
        }
    }

    fn flush_anchor(&mut self) {
        if let Some(head) = self.anchor_pending.take() {
            if let Err(e) = cairn_audit::write_anchor(&self.data.audit_anchor(), &head) {
                tracing::warn!(error = %e, "could not update the audit anchor file");
            }
            self.anchor_written = std::time::Instant::now();
        }
    }

    /// Move a spool file to its object path. Returns the path when this call created it, and
    /// `None` when a file with the same bytes (the same name) is already there. With
    /// `replace` (a restore), a file already under the name is replaced.
    fn place(
        &self,
        spool: &mut FinishedSpool,
        replace: bool,
    ) -> Result<Option<PathBuf>, StoreError> {
        use nix::fcntl::{renameat2, RenameFlags};
        let dest = self.data.object_path(&spool.sha256);
        let rename = |spool: &FinishedSpool| {
            if replace {
                // a restore: whatever holds the name (a damaged file) gives way to the bytes
                // that hash to it
                return std::fs::rename(spool.path(), &dest)
                    .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)));
            }
            match renameat2(
                None,
                spool.path(),
                None,
                &dest,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                // A filesystem without RENAME_NOREPLACE: look, then rename (one writer).
                Err(nix::errno::Errno::EINVAL) if dest.exists() => Err(nix::errno::Errno::EEXIST),
                Err(nix::errno::Errno::EINVAL) => std::fs::rename(spool.path(), &dest)
                    .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))),
                other => other,
            }
        };
        let mut done = rename(spool);
        if done == Err(nix::errno::Errno::ENOENT) && spool.path().exists() {
            // The directory was removed since the receiving thread made it.
            if let Some(leaf) = dest.parent() {
                std::fs::create_dir_all(leaf)
                    .map_err(|e| StoreError::io("create object directory", e))?;
            }
            done = rename(spool);
        }
        match done {
            Ok(()) => {
                spool.disarm();
                Ok(Some(dest))
            }
            // Same bytes already on disk: the spool copy is dropped (and removed) by the caller.
            Err(nix::errno::Errno::EEXIST) => Ok(None),
            Err(e) => Err(StoreError::io(
                "move object into place",
                std::io::Error::from_raw_os_error(e as i32),
            )),
        }
    }

    fn commit(
        &mut self,
        stores: &mut [Pending],
        audits: &[(AuditEvent, Option<Reply<()>>)],
        execs: &mut [Exec],
        now: &str,
    ) -> Result<(Vec<StoreOutcome>, cairn_audit::Head), StoreError> {
        let mut tx = self.conn.transaction()?;
        if self.watermark_written.elapsed() >= WATERMARK_EVERY {
            index::set_synced_watermark(&tx, self.synced_max)?;
            self.watermark_written = std::time::Instant::now();
        }
        let mut outcomes = Vec::with_capacity(stores.len());
        let mut head = cairn_audit::head(&tx)?;
        for p in stores.iter() {
            if p.failed.is_some() {
                outcomes.push(StoreOutcome::Duplicate);
                continue;
            }
            let j = &p.job;
            let (indexed, conflicts) = index::index_instance(
                &tx,
                &j.record,
                &j.spool.sha256,
                j.spool.size,
                &j.source_ae,
                now,
            )?;
            let outcome = match indexed {
                Indexed::New => StoreOutcome::Stored,
                Indexed::Duplicate => StoreOutcome::Duplicate,
                Indexed::NewVersion => StoreOutcome::NewVersion,
            };
            if outcome == StoreOutcome::NewVersion {
                tracing::warn!(
                    sha256 = %j.spool.sha256,
                    "same SOP Instance UID received with different bytes: both versions kept"
                );
            }
            let (actor, action, outcome_word) = match &p.origin {
                Origin::Received => (
                    format!("ae:{}", j.source_ae),
                    "store",
                    match outcome {
                        StoreOutcome::Stored => "stored",
                        StoreOutcome::Duplicate => "duplicate",
                        StoreOutcome::NewVersion => "new-version",
                    },
                ),
                Origin::Restored { by } => (
                    by.clone(),
                    "restore",
                    match outcome {
                        // the row was there, its file missing or damaged: the file is back
                        StoreOutcome::Duplicate => "file-restored",
                        _ => "restored",
                    },
                ),
            };
            head = cairn_audit::append(
                &tx,
                now,
                &AuditEvent {
                    actor,
                    action: action.into(),
                    object: j.record.sop_instance_uid.clone(),
                    detail: format!(
                        "{{\"outcome\":\"{}\",\"sha256\":\"{}\",\"size\":{},\"study\":\"{}\"}}",
                        outcome_word, j.spool.sha256, j.spool.size, j.record.study.uid
                    ),
                },
            )?;
            for c in &conflicts {
                // the values may be patient data: the audit row holds them, the log does not
                tracing::info!(
                    level = c.level.as_str(),
                    field = c.field,
                    reason = c.reason.as_str(),
                    "a received value was not indexed as received (recorded in field_conflicts)"
                );
                head = cairn_audit::append(&tx, now, &conflict_event(&j.source_ae, j, c))?;
            }
            outcomes.push(outcome);
        }
        for (ev, _) in audits {
            head = cairn_audit::append(&tx, now, ev)?;
        }
        for x in execs.iter_mut() {
            let Some(work) = x.work.take() else { continue };
            let sp = tx.savepoint()?;
            let done = work(&sp, now).and_then(|events| {
                let mut h = None;
                for ev in &events {
                    h = Some(cairn_audit::append(&sp, now, ev)?);
                }
                Ok(h)
            });
            match done {
                Ok(h) => {
                    sp.commit()?;
                    if let Some(h) = h {
                        head = h;
                    }
                }
                Err(e) => {
                    // dropping the savepoint rolls back this work only
                    drop(sp);
                    x.failed = Some(e);
                }
            }
        }
        tx.commit()?;
        Ok((outcomes, head))
    }

    fn fail_all(
        &self,
        stores: Vec<Pending>,
        audits: Vec<(AuditEvent, Option<Reply<()>>)>,
        execs: Vec<Exec>,
        e: &StoreError,
    ) {
        for x in execs {
            x.reply.send(Err(x.failed.unwrap_or_else(|| replicate(e))));
        }
        let mut dirs = BTreeSet::new();
        for p in stores {
            if let Some(path) = &p.created {
                if std::fs::remove_file(path).is_ok() {
                    if let Some(d) = path.parent() {
                        dirs.insert(d.to_path_buf());
                    }
                }
            }
            p.reply.send(Err(p.failed.unwrap_or_else(|| replicate(e))));
        }
        for d in dirs {
            let _ = fsync_dir(&d);
        }
        for (ev, reply) in audits {
            match reply {
                Some(r) => {
                    r.send(Err(replicate(e)));
                }
                None => {
                    tracing::error!(action = %ev.action, "audit event lost with a failed commit")
                }
            }
        }
    }
}

/// The audit row of a conflict: it names the field and both values.
fn conflict_event(source_ae: &str, job: &StoreJob, c: &crate::merge::Conflict) -> AuditEvent {
    AuditEvent {
        actor: format!("ae:{source_ae}"),
        action: "field-conflict".into(),
        object: job.record.study.uid.clone(),
        detail: serde_json::json!({
            "level": c.level.as_str(),
            "field": c.field,
            "kept": c.kept,
            "received": c.received,
            "reason": c.reason.as_str(),
            "instance": job.record.sop_instance_uid,
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn put(store: &Store, sop: &str, bytes: &[u8]) -> StoreOutcome {
        let mut w = store.spool().unwrap();
        w.write(bytes).unwrap();
        let spool = w.finish().unwrap();
        let mut record = InstanceRecord {
            sop_instance_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        record.study.uid = "1.2.3".into();
        record.series.uid = "1.2.3.1".into();
        store
            .commit(StoreJob {
                spool,
                record,
                source_ae: "TEST".into(),
            })
            .unwrap()
    }

    fn count(data: &DataDir, sql: &str) -> i64 {
        let c = index::open_ro(&data.db()).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn queue_rows_commit_with_the_instance_and_transact_is_isolated() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        let store = Store::open(data.clone()).unwrap();
        // no cold target yet: nothing queued
        assert_eq!(put(&store, "1.2.3.1.1", b"a"), StoreOutcome::Stored);
        let n: i64 = store
            .transact(|c, now| {
                c.execute(
                    "INSERT INTO cold_targets (name, kind, added_at) VALUES ('tape0', 'tape', ?1),
                       ('disc0', 'optical', ?1)",
                    [now],
                )?;
                Ok((
                    2,
                    vec![AuditEvent {
                        actor: "system".into(),
                        action: "archive-target".into(),
                        object: "tape0".into(),
                        detail: "{}".into(),
                    }],
                ))
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(put(&store, "1.2.3.1.2", b"b"), StoreOutcome::Stored);
        assert_eq!(put(&store, "1.2.3.1.2", b"b"), StoreOutcome::Duplicate);
        assert_eq!(put(&store, "1.2.3.1.2", b"c"), StoreOutcome::NewVersion);
        // a failing unit of work changes nothing, and the store keeps working
        let e = store.transact(|c, _| -> Result<((), Vec<AuditEvent>), StoreError> {
            c.execute("DELETE FROM archive_queue", [])?;
            c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(((), vec![]))
        });
        assert!(e.is_err());
        assert_eq!(put(&store, "1.2.3.1.3", b"d"), StoreOutcome::Stored);
        store.close().unwrap();
        // two new instances plus one new version, each queued for both targets
        assert_eq!(count(&data, "SELECT count(*) FROM archive_queue"), 6);
        assert_eq!(
            count(
                &data,
                "SELECT count(*) FROM audit WHERE action = 'archive-target'"
            ),
            1
        );
        let r = crate::fsck(&data, crate::FsckOptions::default()).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);

        // recovery after an unclean stop: a queued row whose file is gone is rolled back
        // with its queue rows (the store still opens)
        let sha: String = {
            let c = index::open_ro(&data.db()).unwrap();
            c.query_row(
                "SELECT sha256 FROM instances ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        {
            let c = Connection::open(data.db()).unwrap();
            c.execute("UPDATE store_state SET value = 0", []).unwrap();
        }
        std::fs::remove_file(data.root().join(CLEAN_MARK)).unwrap();
        std::fs::remove_file(data.object_path(&sha)).unwrap();
        let store = Store::open(data.clone()).unwrap();
        store.close().unwrap();
        assert_eq!(count(&data, "SELECT count(*) FROM archive_queue"), 4);
        assert_eq!(count(&data, "SELECT count(*) FROM instances"), 3);
    }
}

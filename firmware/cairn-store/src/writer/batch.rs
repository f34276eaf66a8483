//! The writer thread's loop: gather requests into a batch, place its files, commit it, flush
//! it, answer every request.

use super::flush::{sync_all, ANCHOR_EVERY};
use super::{Exec, Origin, Pending, Reply, Request, Writer};
use crate::index;
use crate::layout::fsync_dir;
use crate::now_rfc3339;
use crate::StoreError;
use cairn_audit::AuditEvent;
use crossbeam_channel::Receiver;
use std::collections::BTreeSet;

/// The largest number of requests folded into one commit.
const MAX_BATCH: usize = 512;

/// When several associations are storing, the writer waits at most this long for the ones not
/// yet in the batch before it commits, so that one disk flush serves all of them. A single
/// association is never delayed.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(800);

/// An association (its receiving thread) counts as storing for this long after its last commit.
const STORING_RECENTLY: std::time::Duration = std::time::Duration::from_millis(20);

impl Writer {
    /// Returns true when it stopped with everything durable.
    pub(super) fn run(mut self, rx: Receiver<Request>) -> bool {
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

//! The commit of one batch: every index row and its audit row in one transaction.

use super::{Exec, Origin, Pending, Reply, StoreJob, StoreOutcome, Writer};
use crate::index::{self, Indexed};
use crate::StoreError;
use cairn_audit::AuditEvent;

/// The durability watermark is recorded at most this often: after an unclean stop, recovery
/// re-checks the rows of about this much time.
const WATERMARK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Writer {
    pub(super) fn commit(
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
        for p in stores.iter_mut() {
            if p.failed.is_some() {
                outcomes.push(StoreOutcome::Duplicate);
                continue;
            }
            let (indexed, conflicts) = index::index_instance(
                &tx,
                &p.job.record,
                &p.job.spool.sha256,
                p.job.spool.size,
                &p.job.source_ae,
                now,
            )?;
            let outcome = match indexed {
                Indexed::New => StoreOutcome::Stored,
                Indexed::Duplicate => StoreOutcome::Duplicate,
                Indexed::NewVersion => StoreOutcome::NewVersion,
                Indexed::Refused(change) => {
                    refuse(p, change);
                    // a placeholder: a request that failed is answered with its error
                    outcomes.push(StoreOutcome::Duplicate);
                    continue;
                }
            };
            let j = &p.job;
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
}

/// A refused object: nothing of it was indexed, and the file it placed under `objects/` (named
/// by its own bytes, which no row names) is removed; the batch's flush makes that durable.
/// The caller (the DICOM node) answers the refusal and audits it.
fn refuse(p: &mut Pending, change: index::ArchivedChange) {
    tracing::warn!(
        sha256 = %p.job.spool.sha256,
        "refused: the object would change a study in the archive tier or under a legal hold"
    );
    if let Some(path) = p.created.take() {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::error!(error = %e, path = %path.display(), "cannot remove a refused object");
        }
    }
    p.failed = Some(StoreError::Archived(change));
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

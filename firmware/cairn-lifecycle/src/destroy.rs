//! Destruction at the end of retention: the patients past their expiry and not held are *due*;
//! nothing goes without an approval (by a person, or by `system` when `auto_destroy` is on).
//! An approval re-checks the patient from its current facts in the same transaction, then
//! removes every study of it (tombstones of kind `destroyed`, catalog copies marked `expired`)
//! and keeps one destruction record: what, how much, which rule, who approved, when and why.
//!
//! A patient is due from the day after its `expires_on` (the last day it is kept).

use crate::facts::{find_patient, read_facts, Patient};
use crate::input::{actor, event, reason};
use crate::recompute::{compute, Computed};
use crate::tombstone::{remove_study, studies_of_patient, RemovalKind, Tombstone};
use crate::LifecycleError;
use cairn_audit::AuditEvent;
use cairn_retention::RuleSet;
use cairn_store::Store;
use jiff::civil::Date;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::sync::Arc;

/// A patient due for destruction (the JSON of `cairnctl destruction list --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueRow {
    /// The `patients` row id.
    #[serde(skip)]
    pub patient_ref: i64,
    /// Patient ID.
    pub patient_id: String,
    /// Issuer of Patient ID (`""` for none).
    pub issuer: String,
    /// The last day kept (`YYYY-MM-DD`).
    pub expires_on: String,
    /// Why that day (the clause, in words).
    pub reason: String,
    /// How many studies, instances (every version) and bytes would go.
    pub studies: u64,
    /// Instances.
    pub instances: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The patients due for destruction on `today`: stored expiry before today, not held, with
/// studies left. A patient whose expiry waits to be recomputed is computed now from its
/// current facts with `rules` (without `rules` it is left out until the daemon's pass).
pub fn due(
    conn: &Connection,
    today: Date,
    rules: Option<&RuleSet>,
) -> Result<Vec<DueRow>, LifecycleError> {
    let day = today.to_string();
    let rows: Vec<(i64, String, String, Option<String>, String, bool)> = conn
        .prepare_cached(
            "SELECT p.id, p.patient_id, p.issuer, r.expires_on, r.reason, r.dirty
             FROM patients p JOIN patient_retention r ON r.patient_ref = p.id
             WHERE (r.dirty = 1 OR (r.expires_on IS NOT NULL AND r.expires_on < ?1))
               AND EXISTS (SELECT 1 FROM studies s WHERE s.patient_ref = p.id)
             ORDER BY r.expires_on, p.patient_id, p.issuer",
        )?
        .query_map(params![day], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut due = Vec::new();
    for (id, patient_id, issuer, expires_on, why, dirty) in rows {
        let facts = read_facts(conn, id)?;
        if facts.held {
            continue;
        }
        let (expires_on, why) = match (dirty, rules) {
            (false, _) => (expires_on, why),
            (true, Some(rules)) => {
                let c = compute(&facts, rules);
                (c.expires_on, c.reason)
            }
            (true, None) => continue,
        };
        let Some(expires_on) = expires_on.filter(|d| *d < day) else {
            continue;
        };
        let (studies, instances, bytes) = sizes(conn, id)?;
        due.push(DueRow {
            patient_ref: id,
            patient_id,
            issuer,
            expires_on,
            reason: why,
            studies,
            instances,
            bytes,
        });
    }
    Ok(due)
}

/// How many studies, instance rows and bytes patient row `id` has.
fn sizes(conn: &Connection, id: i64) -> Result<(u64, u64, u64), LifecycleError> {
    let (s, i, b): (i64, i64, i64) = conn.query_row(
        "SELECT (SELECT count(*) FROM studies WHERE patient_ref = ?1),
                count(i.id), coalesce(sum(i.size), 0)
         FROM instances i JOIN series se ON se.id = i.series_ref
         JOIN studies st ON st.id = se.study_ref WHERE st.patient_ref = ?1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok((s.max(0) as u64, i.max(0) as u64, b.max(0) as u64))
}

/// Whom an approval covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroyTarget {
    /// One patient, by ID (and issuer when the ID alone is ambiguous).
    Patient {
        /// Patient ID.
        patient_id: String,
        /// Issuer of Patient ID.
        issuer: Option<String>,
    },
    /// Every patient due now.
    All,
}

impl DestroyTarget {
    /// The target from a request's parts: a patient ID or `all`, exactly one.
    pub fn from_parts(
        patient_id: Option<String>,
        issuer: Option<String>,
        all: bool,
    ) -> Result<DestroyTarget, LifecycleError> {
        match (patient_id.filter(|p| !p.trim().is_empty()), all) {
            (Some(patient_id), false) => Ok(DestroyTarget::Patient {
                patient_id: patient_id.trim().to_owned(),
                issuer,
            }),
            (None, true) if issuer.is_none() => Ok(DestroyTarget::All),
            _ => Err(LifecycleError::BadRequest(
                "approve either one patient (--patient ID) or every patient due (--all)".into(),
            )),
        }
    }
}

/// An approval of destruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Whom.
    pub target: DestroyTarget,
    /// Why (kept on the destruction record and in the audit log).
    pub reason: String,
    /// Who approves (`user:alice`, or `system` for `auto_destroy`).
    pub by: String,
}

/// What an approval destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Destroyed {
    /// The destruction records written, one per patient.
    pub records: Vec<i64>,
    /// Studies removed.
    pub studies: u64,
    /// Instance rows removed.
    pub instances: u64,
    /// Bytes removed.
    pub bytes: u64,
}

impl Destroyed {
    /// In words, for the answer to the person who approved.
    pub fn words(&self) -> String {
        match self.records.as_slice() {
            [] => "nothing is due for destruction: nothing was destroyed".to_owned(),
            [one] => format!(
                "destroyed {} studies ({} instances, {} bytes): destruction record {one}",
                self.studies, self.instances, self.bytes
            ),
            many => format!(
                "destroyed {} patients, {} studies ({} instances, {} bytes): destruction records {}",
                many.len(),
                self.studies,
                self.instances,
                self.bytes,
                many.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// Approve destruction, inside the writer's transaction (`now`: the commit time, `today`: the
/// lifecycle date, `rules`: the configured rule set). A named patient is re-checked from its
/// current facts and refused, with nothing destroyed, when held or not due; `All` destroys
/// every patient due now. Each destroyed patient gets a destruction record and a `destroy`
/// audit row; its files are left to [`cairn_store::Store::finish_unlinks`].
pub fn approve(
    conn: &Connection,
    now: &str,
    today: Date,
    rules: &RuleSet,
    a: &Approval,
) -> Result<(Destroyed, Vec<AuditEvent>), LifecycleError> {
    let why = reason(&a.reason)?;
    let by = actor(&a.by)?;
    let mut done = Destroyed::default();
    let mut events = Vec::new();
    let patients = match &a.target {
        DestroyTarget::Patient { patient_id, issuer } => {
            let patient = find_patient(conn, patient_id, issuer.as_deref())?;
            let computed = check_due(conn, &patient, today, rules)?;
            vec![(patient, computed)]
        }
        DestroyTarget::All => {
            let mut all = Vec::new();
            for row in due(conn, today, Some(rules))? {
                let patient = Patient {
                    id: row.patient_ref,
                    patient_id: row.patient_id,
                    issuer: row.issuer,
                };
                let computed = check_due(conn, &patient, today, rules)?;
                all.push((patient, computed));
            }
            all
        }
    };
    for (patient, computed) in patients {
        let ctx = Context {
            now,
            why: &why,
            by: &by,
            rule_set: rules.name(),
        };
        let ev = destroy_patient(conn, &patient, &computed, ctx, &mut done)?;
        events.push(ev);
    }
    Ok((done, events))
}

/// The patient's expiry computed now from its current facts (and stored), when it is due;
/// refused when it is held or not due.
fn check_due(
    conn: &Connection,
    patient: &Patient,
    today: Date,
    rules: &RuleSet,
) -> Result<Computed, LifecycleError> {
    let facts = read_facts(conn, patient.id)?;
    if facts.held {
        let hold: Option<i64> = conn.query_row(
            "SELECT min(id) FROM holds WHERE released_at IS NULL AND (patient_ref = ?1
               OR study_ref IN (SELECT id FROM studies WHERE patient_ref = ?1))",
            params![patient.id],
            |r| r.get(0),
        )?;
        return Err(LifecycleError::BadRequest(format!(
            "patient {} is under a legal hold (hold {}): nothing was destroyed",
            patient.key(),
            hold.unwrap_or_default()
        )));
    }
    if facts.studies.is_empty() {
        return Err(LifecycleError::BadRequest(format!(
            "patient {} has no studies left: nothing to destroy",
            patient.key()
        )));
    }
    let computed = compute(&facts, rules);
    conn.execute(
        "UPDATE patient_retention SET dirty = 0, expires_on = ?2, reason = ?3, review = ?4,
           last_visit = ?5, rule_set = ?6 WHERE patient_ref = ?1",
        params![
            patient.id,
            computed.expires_on,
            computed.reason,
            computed.review,
            computed.last_visit.as_deref().unwrap_or(""),
            rules.name()
        ],
    )?;
    match &computed.expires_on {
        Some(last) if *last < today.to_string() => Ok(computed),
        Some(last) => Err(LifecycleError::BadRequest(format!(
            "patient {} is not due for destruction: kept until {last} ({}): nothing was destroyed",
            patient.key(),
            computed.reason
        ))),
        None => Err(LifecycleError::BadRequest(format!(
            "patient {} is not due for destruction: {}: nothing was destroyed",
            patient.key(),
            computed.reason
        ))),
    }
}

/// The approval's common parts.
#[derive(Clone, Copy)]
struct Context<'a> {
    now: &'a str,
    why: &'a str,
    by: &'a str,
    rule_set: &'a str,
}

/// Remove every study of `patient` under a new destruction record; adds to `done`.
fn destroy_patient(
    conn: &Connection,
    patient: &Patient,
    computed: &Computed,
    ctx: Context<'_>,
    done: &mut Destroyed,
) -> Result<AuditEvent, LifecycleError> {
    let expires_on = computed.expires_on.clone().unwrap_or_default();
    let expiry_reason = format!("{} (rule set {})", computed.reason, ctx.rule_set);
    conn.execute(
        "INSERT INTO destruction_records (patient_id, issuer, expires_on, expiry_reason,
           approved_by, approval_reason, approved_at, studies, instances, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, 0)",
        params![
            patient.patient_id,
            patient.issuer,
            expires_on,
            expiry_reason,
            ctx.by,
            ctx.why,
            ctx.now
        ],
    )?;
    let record = conn.last_insert_rowid();
    let stone = Tombstone {
        kind: RemovalKind::Destroyed,
        reason: ctx.why,
        by: ctx.by,
        at: ctx.now,
        destruction: Some(record),
    };
    let (mut studies, mut instances, mut bytes) = (0u64, 0u64, 0u64);
    for study in studies_of_patient(conn, patient.id)? {
        let (_, removal) = remove_study(conn, &study, None, stone)?;
        studies += 1;
        instances += removal.instances.len() as u64;
        bytes += removal.bytes();
    }
    conn.execute(
        "UPDATE destruction_records SET studies = ?2, instances = ?3, bytes = ?4 WHERE id = ?1",
        params![record, studies as i64, instances as i64, bytes as i64],
    )?;
    done.records.push(record);
    done.studies += studies;
    done.instances += instances;
    done.bytes += bytes;
    Ok(event(
        ctx.by,
        "destroy",
        &patient.key(),
        serde_json::json!({
            "record": record,
            "studies": studies,
            "instances": instances,
            "bytes": bytes,
            "expires_on": expires_on,
            "rule_set": ctx.rule_set,
            "reason": ctx.why,
        }),
    ))
}

/// Carry out an approval through the store's writer, then delete the files it removed.
/// Returns the answer's words and, for one patient, its destruction record.
pub fn run_approval(
    store: &Store,
    rules: &Arc<RuleSet>,
    today: Date,
    approval: Approval,
) -> Result<(String, Option<i64>), LifecycleError> {
    let rules = rules.clone();
    let done = crate::run(store, move |c, now| {
        approve(c, now, today, &rules, &approval)
    })?;
    finish_unlinks(store);
    let id = match done.records.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    Ok((done.words(), id))
}

/// Delete the files of a committed removal now; a failure is logged (the next start deletes
/// them, `Store::open` finishes pending unlinks).
pub(crate) fn finish_unlinks(store: &Store) {
    match store.finish_unlinks() {
        Ok(n) => tracing::info!(files = n, "removed object files deleted"),
        Err(e) => tracing::error!(error = %e, "removed object files not deleted yet"),
    }
}

/// The daily destruction pass of `auto_destroy = true`: once per lifecycle date, every patient
/// due is destroyed as approved by `system`.
#[derive(Debug, Default)]
pub struct AutoDestroy {
    on: bool,
    last: Option<Date>,
}

impl AutoDestroy {
    /// The pass, on or off (`[lifecycle] auto_destroy`).
    pub fn new(on: bool) -> AutoDestroy {
        AutoDestroy { on, last: None }
    }

    /// Run the pass if it is on and has not run on `today` yet.
    pub fn tick(
        &mut self,
        store: &Store,
        rules: &Arc<RuleSet>,
        today: Date,
    ) -> Result<(), LifecycleError> {
        if !self.on || self.last == Some(today) {
            return Ok(());
        }
        let approval = Approval {
            target: DestroyTarget::All,
            reason: "auto_destroy: past the end of retention".into(),
            by: "system".into(),
        };
        match run_approval(store, rules, today, approval) {
            Ok((words, _)) => tracing::info!(outcome = %words, "daily destruction pass"),
            // refused (a patient changed meanwhile): tried again tomorrow, never in a loop
            Err(e) if e.is_bad_input() => {
                tracing::warn!(error = %e, "daily destruction pass refused")
            }
            Err(e) => return Err(e),
        }
        self.last = Some(today);
        Ok(())
    }
}

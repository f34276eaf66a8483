//! The recompute pass: every patient marked dirty gets its expiry computed again from its
//! current facts and written back, in batches, each batch one transaction of the store's writer.

use crate::facts::{read_facts, PatientFacts};
use crate::LifecycleError;
use cairn_audit::AuditEvent;
use cairn_retention::RuleSet;
use cairn_store::Store;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::sync::Arc;

/// How many patients one transaction recomputes at most (the writer serves stores between).
pub const BATCH: usize = 200;

/// A patient's expiry as the rules give it, ready to store or show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// The last day of retention (`YYYY-MM-DD`); `None`: no automatic expiry.
    pub expires_on: Option<String>,
    /// Why, as a sentence (the clause that set the date, or why there is none).
    pub reason: String,
    /// Whether a person must look (data missing, unreadable or impossible).
    pub review: bool,
    /// The last visit (`YYYY-MM-DD`), when known.
    pub last_visit: Option<String>,
}

/// Apply `rules` to a patient's facts. Facts that cannot all be true give no expiry and a review
/// with the problem as the reason, never a shortened retention.
pub fn compute(facts: &PatientFacts, rules: &RuleSet) -> Computed {
    let last_visit = facts.last_visit().map(|d| d.to_string());
    match rules.expiry(&facts.facts(), &facts.study_dates()) {
        Ok(expiry) => Computed {
            expires_on: expiry.date().map(|d| d.to_string()),
            reason: expiry.sentence(),
            review: expiry.needs_review(),
            last_visit,
        },
        Err(impossible) => Computed {
            expires_on: None,
            reason: format!("no automatic expiry: {impossible}"),
            review: true,
            last_visit,
        },
    }
}

/// What a pass (or one batch of it) did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PassCounts {
    /// Patients recomputed.
    pub recomputed: u64,
    /// Of those, patients whose expiry, reason or review flag changed.
    pub changed: u64,
    /// Of those, patients left for a person to review.
    pub review: u64,
}

impl PassCounts {
    fn add(self, other: PassCounts) -> PassCounts {
        PassCounts {
            recomputed: self.recomputed + other.recomputed,
            changed: self.changed + other.changed,
            review: self.review + other.review,
        }
    }
}

/// Recompute at most `limit` dirty patients with `rules` and store the results (computed at
/// `now`). Returns what it did and whether dirty patients remain beyond the limit.
pub fn recompute_batch(
    conn: &Connection,
    now: &str,
    rules: &RuleSet,
    limit: usize,
) -> Result<(PassCounts, bool), LifecycleError> {
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT patient_ref FROM patient_retention WHERE dirty = 1 LIMIT ?1")?
        .query_map(params![limit as i64 + 1], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let more = ids.len() > limit;
    let mut counts = PassCounts::default();
    for id in ids.into_iter().take(limit) {
        if !patient_exists(conn, id)? {
            // a patient removed while foreign keys were off (its row would cascade otherwise)
            conn.execute(
                "DELETE FROM patient_retention WHERE patient_ref = ?1",
                params![id],
            )?;
            continue;
        }
        let old: (Option<String>, String, bool) = conn.query_row(
            "SELECT expires_on, reason, review FROM patient_retention WHERE patient_ref = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let new = compute(&read_facts(conn, id)?, rules);
        conn.execute(
            "UPDATE patient_retention SET dirty = 0, expires_on = ?2, reason = ?3, review = ?4,
               last_visit = ?5, rule_set = ?6, computed_at = ?7 WHERE patient_ref = ?1",
            params![
                id,
                new.expires_on,
                new.reason,
                new.review,
                new.last_visit.as_deref().unwrap_or(""),
                rules.name(),
                now
            ],
        )?;
        counts.recomputed += 1;
        counts.review += u64::from(new.review);
        counts.changed += u64::from(old != (new.expires_on, new.reason, new.review));
    }
    Ok((counts, more))
}

/// Whether patient `id` is (still) in the index.
fn patient_exists(conn: &Connection, id: i64) -> Result<bool, LifecycleError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM patients WHERE id = ?1)",
        params![id],
        |r| r.get(0),
    )?)
}

/// Whether any patient waits for its expiry to be recomputed (read from any connection, so
/// that an idle tick costs the writer nothing).
pub fn any_dirty(conn: &Connection) -> Result<bool, LifecycleError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM patient_retention WHERE dirty = 1)",
        [],
        |r| r.get(0),
    )?)
}

/// Recompute every dirty patient with `rules`, [`BATCH`] patients per transaction. The batch
/// that ends a pass which changed any expiry also writes one `lifecycle-pass` audit row (actor
/// `system`) with the counts; no patient is named.
pub fn recompute_all(store: &Store, rules: &Arc<RuleSet>) -> Result<PassCounts, LifecycleError> {
    let mut total = PassCounts::default();
    loop {
        let rules = rules.clone();
        let (total_now, more) = crate::run(store, move |conn, now| {
            let (batch, more) = recompute_batch(conn, now, &rules, BATCH)?;
            let total = total.add(batch);
            let mut events = Vec::new();
            if !more && total.changed > 0 {
                events.push(pass_event(rules.name(), total));
            }
            Ok(((total, more), events))
        })?;
        total = total_now;
        if !more {
            if total.recomputed > 0 {
                tracing::info!(
                    recomputed = total.recomputed,
                    changed = total.changed,
                    review = total.review,
                    "retention recomputed"
                );
            }
            return Ok(total);
        }
    }
}

/// The audit row of a pass.
fn pass_event(rule_set: &str, counts: PassCounts) -> AuditEvent {
    AuditEvent {
        actor: "system".into(),
        action: "lifecycle-pass".into(),
        object: "retention".into(),
        detail: serde_json::json!({
            "rule_set": rule_set,
            "recomputed": counts.recomputed,
            "changed": counts.changed,
            "review": counts.review,
        })
        .to_string(),
    }
}

/// Mark dirty every patient whose expiry was computed with another rule set than `rule_set`,
/// and give a retention row to any patient without one. Returns how many were marked.
pub fn mark_other_rule_sets(conn: &Connection, rule_set: &str) -> Result<usize, LifecycleError> {
    let missing = conn.execute(
        "INSERT INTO patient_retention (patient_ref)
         SELECT id FROM patients
         WHERE id NOT IN (SELECT patient_ref FROM patient_retention)
           AND EXISTS (SELECT 1 FROM studies WHERE studies.patient_ref = patients.id)",
        [],
    )?;
    let marked = conn.execute(
        "UPDATE patient_retention SET dirty = 1 WHERE dirty = 0 AND rule_set <> ?1",
        params![rule_set],
    )?;
    Ok(missing + marked)
}

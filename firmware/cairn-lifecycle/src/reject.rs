//! Rejecting a study or one series while it is in storage (wrong patient, test images): it
//! leaves query and retrieve, its hot files go, a tombstone keeps what, when, who and why, and
//! the catalog marks its cold copies `rejected`. Refused, with nothing changed, for a study in
//! the archive tier or under a legal hold (on the study or its patient).

use crate::input::{actor, event, reason};
use crate::tombstone::{
    active_hold, remove_study, study_by_uid, study_of_series, RemovalKind, Tombstone,
};
use crate::LifecycleError;
use cairn_audit::AuditEvent;
use rusqlite::Connection;

/// What to reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectTarget {
    /// A whole study, by Study Instance UID.
    Study(String),
    /// One series, by Series Instance UID.
    Series(String),
}

impl RejectTarget {
    /// The target from a request's parts: exactly one of a study and a series UID.
    pub fn from_parts(
        study_uid: Option<String>,
        series_uid: Option<String>,
    ) -> Result<RejectTarget, LifecycleError> {
        let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        match (given(study_uid), given(series_uid)) {
            (Some(study), None) => Ok(RejectTarget::Study(study.trim().to_owned())),
            (None, Some(series)) => Ok(RejectTarget::Series(series.trim().to_owned())),
            _ => Err(LifecycleError::BadRequest(
                "name exactly one study (--study UID) or one series (--series UID)".into(),
            )),
        }
    }
}

/// A rejection: what, why, by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The study or series.
    pub target: RejectTarget,
    /// Why (kept on the tombstone and in the audit log).
    pub reason: String,
    /// Who (`user:alice`).
    pub by: String,
}

/// Reject, inside the writer's transaction (`now`: the commit time): the index rows go, their
/// files are left to [`cairn_store::Store::finish_unlinks`], the tombstone and catalog marks
/// are written, audited as `study-reject` on the study UID. Returns what was done, in words.
pub fn reject(
    conn: &Connection,
    now: &str,
    r: &Rejection,
) -> Result<(String, Vec<AuditEvent>), LifecycleError> {
    let why = reason(&r.reason)?;
    let by = actor(&r.by)?;
    let (study, series) = match &r.target {
        RejectTarget::Study(uid) => (
            study_by_uid(conn, uid)?.ok_or_else(|| LifecycleError::UnknownStudy {
                study_uid: uid.clone(),
            })?,
            None,
        ),
        RejectTarget::Series(uid) => (
            study_of_series(conn, uid)?
                .ok_or_else(|| LifecycleError::BadRequest(format!("no series with UID {uid:?}")))?,
            Some(uid.as_str()),
        ),
    };
    let what = match series {
        Some(s) => format!("series {s} of study {}", study.study_uid),
        None => format!("study {}", study.study_uid),
    };
    if study.tier == "archive" {
        return Err(LifecycleError::BadRequest(format!(
            "study {} is in the archive tier (fixed): {what} cannot be rejected",
            study.study_uid
        )));
    }
    if let Some(hold) = active_hold(conn, &study)? {
        return Err(LifecycleError::BadRequest(format!(
            "study {} is under a legal hold (hold {hold}): nothing was rejected",
            study.study_uid
        )));
    }
    let stone = Tombstone {
        kind: RemovalKind::Rejected,
        reason: &why,
        by: &by,
        at: now,
        destruction: None,
    };
    let (tombstone, removal) = remove_study(conn, &study, series, stone)?;
    let ev = event(
        &by,
        "study-reject",
        &study.study_uid,
        serde_json::json!({
            "series": series,
            "tombstone": tombstone,
            "instances": removal.instances.len(),
            "bytes": removal.bytes(),
            "reason": why,
        }),
    );
    Ok((
        format!(
            "{what} rejected: {} instance(s) removed (tombstone {tombstone})",
            removal.instances.len()
        ),
        vec![ev],
    ))
}

/// Carry out a rejection through the store's writer, then delete the files it removed.
pub fn run_reject(store: &cairn_store::Store, r: Rejection) -> Result<String, LifecycleError> {
    let words = crate::run(store, move |c, now| reject(c, now, &r))?;
    crate::destroy::finish_unlinks(store);
    Ok(words)
}

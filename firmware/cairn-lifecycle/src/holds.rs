//! Legal holds: placed on a patient or on one study, released with a reason, never deleted.
//! While a hold is active the patient's record has no expiry.

use crate::facts::{find_patient, patient_by_id};
use crate::input::{actor, event, mark_dirty, reason, when};
use crate::LifecycleError;
use cairn_audit::AuditEvent;
use rusqlite::{params, Connection, OptionalExtension};

/// What a hold is placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldTarget {
    /// A patient (all its studies).
    Patient {
        /// Patient ID.
        patient_id: String,
        /// Issuer of the Patient ID, when the ID alone is ambiguous.
        issuer: Option<String>,
    },
    /// One study (its patient's files are kept with it).
    Study {
        /// Study Instance UID.
        study_uid: String,
    },
}

impl HoldTarget {
    /// The target a request names: a patient ID (with its issuer) or a study UID, exactly one.
    pub fn from_parts(
        patient_id: Option<String>,
        issuer: Option<String>,
        study_uid: Option<String>,
    ) -> Result<HoldTarget, LifecycleError> {
        let given = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.trim().is_empty());
        match (given(&patient_id), given(&study_uid)) {
            (true, false) => Ok(HoldTarget::Patient {
                patient_id: patient_id.unwrap_or_default(),
                issuer,
            }),
            (false, true) if issuer.is_none() => Ok(HoldTarget::Study {
                study_uid: study_uid.unwrap_or_default(),
            }),
            (false, true) => Err(LifecycleError::BadRequest(
                "an issuer goes with a patient ID, not with a study".into(),
            )),
            _ => Err(LifecycleError::BadRequest(
                "a hold is placed on a patient or on a study: name exactly one".into(),
            )),
        }
    }
}

impl std::fmt::Display for HoldTarget {
    /// `patient P1`, `patient P1 (issuer HOSP)` or `study 1.2.3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldTarget::Patient {
                patient_id,
                issuer: Some(issuer),
            } => write!(f, "patient {patient_id} (issuer {issuer})"),
            HoldTarget::Patient { patient_id, .. } => write!(f, "patient {patient_id}"),
            HoldTarget::Study { study_uid } => write!(f, "study {study_uid}"),
        }
    }
}

/// Place a hold on `target` for `why`, audited as `hold-add` by `by` on the patient key or the
/// study UID. Returns the hold's number. Several holds may cover the same patient or study.
pub fn add_hold(
    conn: &Connection,
    now: &str,
    target: &HoldTarget,
    why: &str,
    by: &str,
) -> Result<(i64, Vec<AuditEvent>), LifecycleError> {
    let why = reason(why)?;
    let by = actor(by)?;
    let (patient_ref, study_ref, patient, object) = match target {
        HoldTarget::Patient { patient_id, issuer } => {
            let p = find_patient(conn, patient_id, issuer.as_deref())?;
            (Some(p.id), None, p.id, p.key())
        }
        HoldTarget::Study { study_uid } => {
            let (study, patient) = find_study(conn, study_uid)?;
            (None, Some(study), patient, study_uid.clone())
        }
    };
    conn.execute(
        "INSERT INTO holds (patient_ref, study_ref, reason, placed_by, placed_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![patient_ref, study_ref, why, by, now],
    )?;
    let id = conn.last_insert_rowid();
    mark_dirty(conn, patient)?;
    let on = if study_ref.is_some() {
        "study"
    } else {
        "patient"
    };
    let ev = event(
        &by,
        "hold-add",
        &object,
        serde_json::json!({ "hold": id, "on": on, "reason": why }),
    );
    Ok((id, vec![ev]))
}

/// Release hold `id` for `why`, audited as `hold-release` by `by`. Refused when there is no such
/// hold or it was released before.
pub fn release_hold(
    conn: &Connection,
    now: &str,
    id: i64,
    why: &str,
    by: &str,
) -> Result<((), Vec<AuditEvent>), LifecycleError> {
    let why = reason(why)?;
    let by = actor(by)?;
    let row: Option<(Option<i64>, Option<i64>, Option<String>)> = conn
        .query_row(
            "SELECT patient_ref, study_ref, released_at FROM holds WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((patient_ref, study_ref, released_at)) = row else {
        return Err(LifecycleError::UnknownHold { id });
    };
    if let Some(at) = released_at {
        return Err(LifecycleError::AlreadyReleased { id, at: when(&at) });
    }
    conn.execute(
        "UPDATE holds SET released_by = ?2, released_at = ?3, release_reason = ?4 WHERE id = ?1",
        params![id, by, now, why],
    )?;
    let (patient, object) = match (patient_ref, study_ref) {
        (Some(p), _) => (
            p,
            patient_by_id(conn, p)?.map_or(String::new(), |p| p.key()),
        ),
        (None, Some(s)) => conn.query_row(
            "SELECT patient_ref, study_uid FROM studies WHERE id = ?1",
            params![s],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
        (None, None) => return Err(LifecycleError::UnknownHold { id }),
    };
    mark_dirty(conn, patient)?;
    let ev = event(
        &by,
        "hold-release",
        &object,
        serde_json::json!({ "hold": id, "reason": why }),
    );
    Ok(((), vec![ev]))
}

/// The row id of study `study_uid` and of its patient.
fn find_study(conn: &Connection, study_uid: &str) -> Result<(i64, i64), LifecycleError> {
    conn.query_row(
        "SELECT id, patient_ref FROM studies WHERE study_uid = ?1",
        params![study_uid.trim()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .ok_or_else(|| LifecycleError::UnknownStudy {
        study_uid: study_uid.to_owned(),
    })
}

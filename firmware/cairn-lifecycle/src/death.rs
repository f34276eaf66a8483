//! Recording (or clearing) a patient's date of death: refused, with nothing changed, when the
//! date is not a real day, is in the future, or comes before the birth or a study.

use crate::facts::{find_patient, parse_da, read_facts};
use crate::input::{actor, event, mark_dirty, reason};
use crate::LifecycleError;
use cairn_audit::AuditEvent;
use cairn_retention::{Facts, FactsError};
use jiff::civil::Date;
use rusqlite::{params, Connection};

/// A change of a patient's date of death.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeathChange {
    /// Patient ID.
    pub patient_id: String,
    /// Issuer of the Patient ID, when the ID alone is ambiguous.
    pub issuer: Option<String>,
    /// The date (`YYYYMMDD`); `None` clears a recorded date.
    pub date: Option<String>,
    /// Why (kept in the audit log).
    pub reason: String,
    /// Who asks (`user:alice`).
    pub by: String,
}

/// Record or clear a date of death (`today` is the date now, the latest a death can be), audited
/// as `patient-death` on the patient key. Returns what was done, in words. The patient is marked
/// for recomputing, so its expiry follows.
pub fn set_death(
    conn: &Connection,
    _now: &str,
    today: Date,
    change: &DeathChange,
) -> Result<(String, Vec<AuditEvent>), LifecycleError> {
    let why = reason(&change.reason)?;
    let by = actor(&change.by)?;
    let patient = find_patient(conn, &change.patient_id, change.issuer.as_deref())?;
    let facts = read_facts(conn, patient.id)?;
    let previous = parse_da(&facts.death_date).map(|d| d.to_string());
    let date = match &change.date {
        Some(text) => Some(check_date(text, today, facts.facts())?),
        None if facts.death_date.is_empty() => {
            return Err(LifecycleError::BadRequest(format!(
                "no date of death is recorded for patient {}: nothing to clear",
                patient.key()
            )))
        }
        None => None,
    };
    let stored = date.map_or(String::new(), |d| d.strftime("%Y%m%d").to_string());
    conn.execute(
        "UPDATE patients SET death_date = ?2 WHERE id = ?1",
        params![patient.id, stored],
    )?;
    mark_dirty(conn, patient.id)?;
    let iso = date.map(|d| d.to_string());
    let ev = event(
        &by,
        "patient-death",
        &patient.key(),
        serde_json::json!({
            "patient_id": patient.patient_id,
            "issuer": patient.issuer,
            "date": iso,
            "previous": previous,
            "reason": why,
        }),
    );
    let done = match iso {
        Some(d) => format!("date of death of patient {} recorded: {d}", patient.key()),
        None => format!("date of death of patient {} cleared", patient.key()),
    };
    Ok((done, vec![ev]))
}

/// The date of death `text` (`YYYYMMDD`) when it can be true of a patient with these facts.
fn check_date(text: &str, today: Date, facts: Facts) -> Result<Date, LifecycleError> {
    let bad = |why: String| Err(LifecycleError::BadDate(why));
    let Some(date) = parse_da(text.trim()) else {
        return bad(format!(
            "{text:?} is not a date: write the day of death as YYYYMMDD, a real calendar day"
        ));
    };
    if date > today {
        return bad(format!("the date of death {date} is in the future"));
    }
    match (Facts {
        death: Some(date),
        ..facts
    })
    .check()
    {
        Err(FactsError::DeathBeforeBirth) => bad(format!(
            "the date of death {date} is before the birth date {}",
            facts.birth.date().map_or(String::new(), |d| d.to_string())
        )),
        Err(FactsError::DeathBeforeLastVisit) => bad(format!(
            "the date of death {date} is before a study of the patient (the last on {})",
            facts.last_visit.map_or(String::new(), |d| d.to_string())
        )),
        // an inconsistency that is not about the death is for the recompute to report
        Ok(()) | Err(FactsError::LastVisitBeforeBirth) => Ok(date),
    }
}

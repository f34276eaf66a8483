//! Read-only views for `cairnctl` and the panel: a patient's retention computed now from its
//! current facts (never a stored row that may be stale), and the legal holds.

use crate::facts::{find_patient, parse_da, read_facts};
use crate::recompute::compute;
use crate::LifecycleError;
use cairn_retention::RuleSet;
use cairn_store::DataDir;
use jiff::civil::Date;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::time::Duration;

/// Open the index read-only; refused when it has no lifecycle tables yet.
pub fn open_read(data: &DataDir) -> Result<Connection, LifecycleError> {
    let conn = Connection::open_with_flags(
        data.db(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let ready: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'holds')",
        [],
        |r| r.get(0),
    )?;
    if !ready {
        return Err(LifecycleError::NotReady(data.root().display().to_string()));
    }
    Ok(conn)
}

/// How long a patient's images are kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionView {
    /// Patient ID.
    pub patient_id: String,
    /// Issuer of the Patient ID (`""` for none).
    pub issuer: String,
    /// The last day of retention (`YYYY-MM-DD`); `None`: no automatic expiry.
    pub expires_on: Option<String>,
    /// Why, as a sentence.
    pub reason: String,
    /// Whether an active legal hold covers the patient or one of its studies.
    pub held: bool,
    /// Whether a person must look (a date is missing, unreadable or impossible).
    pub review: bool,
    /// The name of the rule set applied.
    pub rule_set: String,
    /// The last visit (`YYYY-MM-DD`), when known.
    pub last_visit: Option<String>,
    /// The patient's studies.
    pub studies: Vec<StudyTier>,
}

/// One study of a patient and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StudyTier {
    /// Study Instance UID.
    pub study_uid: String,
    /// Study Date (`YYYY-MM-DD`; as stored when it is not a real date, `""` when none).
    pub study_date: String,
    /// The storage tier: `storage` or `archive`.
    pub tier: String,
}

/// The retention of the patient `patient_id` (under `issuer` when given), computed now with
/// `rules` from the patient's current facts. `today` is accepted for the clauses of later
/// waves that depend on it; the expiry itself does not.
pub fn retention_view(
    conn: &Connection,
    patient_id: &str,
    issuer: Option<&str>,
    rules: &RuleSet,
    today: Date,
) -> Result<RetentionView, LifecycleError> {
    let _ = today;
    let patient = find_patient(conn, patient_id, issuer)?;
    let facts = read_facts(conn, patient.id)?;
    let computed = compute(&facts, rules);
    let studies = facts
        .studies
        .iter()
        .map(|s| StudyTier {
            study_uid: s.study_uid.clone(),
            study_date: parse_da(&s.study_date)
                .map_or_else(|| s.study_date.clone(), |d| d.to_string()),
            tier: s.tier.clone(),
        })
        .collect();
    Ok(RetentionView {
        patient_id: patient.patient_id,
        issuer: patient.issuer,
        expires_on: computed.expires_on,
        reason: computed.reason,
        held: facts.held,
        review: computed.review,
        rule_set: rules.name().to_owned(),
        last_visit: computed.last_visit,
        studies,
    })
}

/// A legal hold, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldRow {
    /// The hold's number.
    pub id: i64,
    /// The patient held (for a hold on a patient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    /// That patient's issuer (`""` for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The study held (for a hold on a study).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study_uid: Option<String>,
    /// Why it was placed.
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// When (RFC 3339, UTC).
    pub placed_at: String,
    /// Who released it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    /// When it was released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    /// Why it was released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_reason: Option<String>,
}

/// The active holds, oldest first; with `include_released`, the released ones too.
pub fn list_holds(
    conn: &Connection,
    include_released: bool,
) -> Result<Vec<HoldRow>, LifecycleError> {
    Ok(cairn_store::all_holds(conn)?
        .into_iter()
        .filter(|h| include_released || h.released_at.is_none())
        .map(|h| HoldRow {
            id: h.id,
            patient_id: h.patient_id,
            issuer: h.issuer,
            study_uid: h.study_uid,
            reason: h.reason,
            placed_by: h.placed_by,
            placed_at: h.placed_at,
            released_by: h.released_by,
            released_at: h.released_at,
            release_reason: h.release_reason,
        })
        .collect())
}

//! The lifecycle as the pages and the API show it, read through `cairn-lifecycle`'s read-only
//! functions: a patient's retention computed now from its current facts with the rules in
//! force (never a stored row that may be stale), its date of death and the legal holds that
//! cover it, and the Lifecycle page's lists (tiers, moving to the archive tier, due for
//! destruction, to review, holds, recyclable volumes, the clock).

use crate::{LifecycleSettings, WebError};
use cairn_lifecycle::clock::ClockCheck;
use cairn_lifecycle::destroy::DueRow;
use cairn_lifecycle::facts::{find_patient, parse_da, read_facts};
use cairn_lifecycle::recompute::compute;
use cairn_lifecycle::status::{MovingStudy, ReviewPatient, TierCounts};
use cairn_lifecycle::{list_holds, open_read, HoldRow, LifecycleError, RetentionView, StudyTier};
use cairn_store::DataDir;
use jiff::civil::Date;
use rusqlite::Connection;
use serde::Serialize;

/// A lifecycle refusal or failure as the panel answers it: an unknown patient, study or hold
/// is 404, a hold released before 409, other bad input 400 (with the lifecycle's sentence).
pub fn lifecycle_error(e: LifecycleError) -> WebError {
    match e {
        LifecycleError::Store(e) => e.into(),
        LifecycleError::Db(e) => e.into(),
        e @ (LifecycleError::UnknownPatient { .. }
        | LifecycleError::UnknownStudy { .. }
        | LifecycleError::UnknownHold { .. }) => WebError::NotFound(e.to_string()),
        e @ LifecycleError::AlreadyReleased { .. } => WebError::Conflict(e.to_string()),
        e @ LifecycleError::NotReady(_) => WebError::Unavailable(e.to_string()),
        e => WebError::BadRequest(e.to_string()),
    }
}

/// The lifecycle date of the box: today (UTC), moved by a demo box's clock offset.
pub fn lifecycle_today(data: &DataDir) -> Date {
    cairn_lifecycle::clock::today(data.root()).unwrap_or_else(|_| cairn_lifecycle::today())
}

/// The lifecycle date for a decision asked for now (an approved destruction), on the clock
/// checked afresh, as the daemon's lifecycle thread decides: refused (409), naming why, while
/// the clock is not trusted (behind the newest audit row, or not synchronised where it must be).
pub fn trusted_today(data: &DataDir, require_sync: bool) -> Result<Date, WebError> {
    cairn_lifecycle::clock_watch::trusted_today(data, require_sync).map_err(|e| match e {
        cairn_lifecycle::LifecycleError::BadRequest(why) => WebError::Conflict(why),
        e => lifecycle_error(e),
    })
}

/// How long one patient's images are kept, why, and what stops them from going: the
/// retention view (as `cairnctl retention show`), the date of death and the holds.
#[derive(Debug, Clone, Serialize)]
pub struct PatientLifecycle {
    /// The retention computed now, with the patient's studies and their tiers.
    #[serde(flatten)]
    pub retention: RetentionView,
    /// The recorded date of death (`YYYY-MM-DD`), if any.
    pub death_date: Option<String>,
    /// The active legal holds on the patient or on one of its studies.
    pub holds: Vec<HoldRow>,
}

/// Patient row `patient_ref`, as [`PatientLifecycle`] (`patient_id`/`issuer` name it).
fn patient_lifecycle(
    conn: &Connection,
    patient_ref: i64,
    patient_id: String,
    issuer: String,
    lc: &LifecycleSettings,
) -> Result<PatientLifecycle, LifecycleError> {
    let facts = read_facts(conn, patient_ref)?;
    let computed = compute(&facts, &lc.rules);
    let studies: Vec<StudyTier> = facts
        .studies
        .iter()
        .map(|s| StudyTier {
            study_uid: s.study_uid.clone(),
            study_date: parse_da(&s.study_date)
                .map_or_else(|| s.study_date.clone(), |d| d.to_string()),
            tier: s.tier.clone(),
        })
        .collect();
    let holds = list_holds(conn, false)?
        .into_iter()
        .filter(|h| match (&h.patient_id, &h.study_uid) {
            (Some(p), _) => *p == patient_id && h.issuer.as_deref().unwrap_or("") == issuer,
            (None, Some(s)) => studies.iter().any(|st| st.study_uid == *s),
            (None, None) => false,
        })
        .collect();
    Ok(PatientLifecycle {
        retention: RetentionView {
            patient_id,
            issuer,
            expires_on: computed.expires_on,
            reason: computed.reason,
            held: facts.held,
            review: computed.review,
            rule_set: lc.rules.name().to_owned(),
            last_visit: computed.last_visit,
            studies,
        },
        death_date: parse_da(&facts.death_date).map(|d| d.to_string()),
        holds,
    })
}

/// The patient `patient_id` (under `issuer` when given).
pub fn patient_retention(
    data: &DataDir,
    patient_id: &str,
    issuer: Option<&str>,
    lc: &LifecycleSettings,
) -> Result<PatientLifecycle, WebError> {
    let read = || {
        let conn = open_read(data)?;
        let p = find_patient(&conn, patient_id, issuer)?;
        patient_lifecycle(&conn, p.id, p.patient_id, p.issuer, lc)
    };
    read().map_err(lifecycle_error)
}

/// The lifecycle of study `uid`'s patient, and the study's own tier.
pub fn study_lifecycle(
    data: &DataDir,
    uid: &str,
    lc: &LifecycleSettings,
) -> Result<(String, PatientLifecycle), WebError> {
    let read = || {
        let conn = open_read(data)?;
        let study = cairn_lifecycle::tombstone::study_by_uid(&conn, uid)?.ok_or_else(|| {
            LifecycleError::UnknownStudy {
                study_uid: uid.to_owned(),
            }
        })?;
        let p = patient_lifecycle(&conn, study.patient_ref, study.patient_id, study.issuer, lc)?;
        Ok((study.tier, p))
    };
    read().map_err(lifecycle_error)
}

/// The Lifecycle page and `GET /api/v1/lifecycle`: the fields of `cairnctl lifecycle status
/// --json`, with the patients due described fully (with their sizes, computed now where an
/// expiry waits) and the active holds listed.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleOverview {
    /// Studies per tier.
    pub tiers: TierCounts,
    /// Storage studies whose time for the archive tier comes within 90 days, soonest first.
    pub moving_to_archive: Vec<MovingStudy>,
    /// The patients due for destruction now (past their last day kept, not held).
    pub due_for_destruction: Vec<DueRow>,
    /// Patients whose expiry is unknown, and why.
    pub review: Vec<ReviewPatient>,
    /// How many legal holds are active.
    pub holds: i64,
    /// The active legal holds.
    pub active_holds: Vec<HoldRow>,
    /// Names of the volumes whose every copy was removed.
    pub recyclable_volumes: Vec<String>,
    /// Whether the tier and expiry passes may run.
    pub clock_ok: bool,
    /// The lifecycle clock: its date, its demo offset, and why it is not trusted.
    pub clock: ClockCheck,
    /// The rule set in force.
    pub rule_set: String,
    /// When studies move to the archive tier, in words (`3 years`, or `at once`).
    pub archive_after: String,
}

/// Everything the Lifecycle page shows.
pub fn lifecycle_overview(
    data: &DataDir,
    lc: &LifecycleSettings,
) -> Result<LifecycleOverview, WebError> {
    let read = || {
        let conn = open_read(data)?;
        let status = cairn_lifecycle::status::lifecycle_status(
            &conn,
            data.root(),
            lc.archive_after,
            lc.require_sync,
        )?;
        let due = cairn_lifecycle::destroy::due(&conn, lifecycle_today(data), Some(&lc.rules))?;
        let holds = list_holds(&conn, false)?;
        Ok(LifecycleOverview {
            tiers: status.tiers,
            moving_to_archive: status.moving_to_archive,
            due_for_destruction: due,
            review: status.review,
            holds: status.holds,
            active_holds: holds,
            recyclable_volumes: status.recyclable_volumes,
            clock_ok: status.clock_ok,
            clock: status.clock,
            rule_set: lc.rules.name().to_owned(),
            archive_after: lc
                .archive_after
                .map_or_else(|| "at once".to_owned(), |p| p.words()),
        })
    };
    read().map_err(lifecycle_error)
}

/// Whether the clock is behind the audit trail (rather than unsynchronised), for the banner.
pub fn clock_behind_audit(data: &DataDir) -> bool {
    let behind = || -> Option<bool> {
        let conn = open_read(data).ok()?;
        let now = cairn_lifecycle::clock::Clock::read(data.root())
            .ok()?
            .now()
            .ok()?;
        cairn_lifecycle::clock::behind_audit(&conn, now)
            .ok()
            .map(|b| b.is_some())
    };
    behind().unwrap_or(false)
}

/// The active legal holds, oldest first; with `all`, the released ones too.
pub fn holds(data: &DataDir, all: bool) -> Result<Vec<HoldRow>, WebError> {
    open_read(data)
        .and_then(|conn| list_holds(&conn, all))
        .map_err(lifecycle_error)
}

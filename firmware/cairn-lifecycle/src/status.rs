//! The lifecycle at a glance, for `cairnctl lifecycle status` and the panel: how many studies
//! are in each tier, which move to the archive tier in the next 90 days, which patients are
//! past their expiry and not held, whose expiry is unknown, the active holds, the volumes that
//! may be recycled, and whether the lifecycle clock is trusted. Read-only; the expiries are the
//! stored ones the daemon's pass keeps current.

use crate::clock::{check, Clock, ClockCheck};
use crate::facts::parse_da;
use crate::LifecycleError;
use cairn_retention::Period;
use jiff::civil::Date;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::Path;

/// How far ahead `moving_to_archive` looks, in days.
pub const MOVING_WITHIN_DAYS: i64 = 90;

/// The lifecycle at a glance (the JSON of `cairnctl lifecycle status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleStatus {
    /// Studies per tier.
    pub tiers: TierCounts,
    /// Storage studies whose time for the archive tier comes within 90 days (or has come and
    /// they wait for their cold copy), soonest first.
    pub moving_to_archive: Vec<MovingStudy>,
    /// Patients past their expiry and not held, oldest expiry first.
    pub due_for_destruction: Vec<DuePatient>,
    /// Patients whose expiry is unknown (a person must look).
    pub review: Vec<ReviewPatient>,
    /// Active legal holds.
    pub holds: i64,
    /// Names of the volumes whose every copy was removed.
    pub recyclable_volumes: Vec<String>,
    /// Whether the tier and expiry passes may run.
    pub clock_ok: bool,
    /// The lifecycle clock: its date, its demo offset, and why it is not trusted.
    pub clock: ClockCheck,
}

/// Studies per tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TierCounts {
    /// In the storage tier.
    pub storage: i64,
    /// In the archive tier.
    pub archive: i64,
}

/// A study about to move to the archive tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovingStudy {
    /// Study Instance UID.
    pub study_uid: String,
    /// Its patient's ID.
    pub patient_id: String,
    /// The day it is old enough (`YYYY-MM-DD`).
    pub on: String,
}

/// A patient past its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuePatient {
    /// Patient ID.
    pub patient_id: String,
    /// Issuer of the Patient ID (`""` for none).
    pub issuer: String,
    /// The last day of retention (`YYYY-MM-DD`).
    pub expires_on: String,
}

/// A patient whose expiry is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewPatient {
    /// Patient ID.
    pub patient_id: String,
    /// Issuer of the Patient ID (`""` for none).
    pub issuer: String,
    /// Why, as a sentence.
    pub reason: String,
}

/// The lifecycle status read on `conn` (the index, read-only) for the data directory
/// `data_root`, with `archive_after` (`None`: the setting `"0"`); `require_sync` on the
/// appliance (see [`crate::clock::check`]).
pub fn lifecycle_status(
    conn: &Connection,
    data_root: &Path,
    archive_after: Option<Period>,
    require_sync: bool,
) -> Result<LifecycleStatus, LifecycleError> {
    let clock = check(conn, data_root, require_sync)?;
    // the lists are worked out on the lifecycle date even when it is not trusted: they say
    // what the passes would do, and clock_ok says they wait
    let today = match clock.today.as_deref().and_then(|d| d.parse::<Date>().ok()) {
        Some(d) => d,
        None => Clock::system()
            .today()
            .unwrap_or_else(|_| crate::service::today()),
    };
    let (storage, archive) = conn.query_row(
        "SELECT coalesce(sum(tier = 'storage'), 0), coalesce(sum(tier = 'archive'), 0)
         FROM studies",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let holds = conn.query_row(
        "SELECT count(*) FROM holds WHERE released_at IS NULL",
        [],
        |r| r.get(0),
    )?;
    let recyclable_volumes =
        cairn_archive::catalog::recyclable_volumes(conn).map_err(|e| match e {
            cairn_archive::ArchiveError::Db(e) => LifecycleError::Db(e),
            cairn_archive::ArchiveError::Store(e) => LifecycleError::Store(e),
            other => LifecycleError::NotReady(other.to_string()),
        })?;
    Ok(LifecycleStatus {
        tiers: TierCounts { storage, archive },
        moving_to_archive: moving(conn, archive_after, today)?,
        due_for_destruction: due(conn, today)?,
        review: review(conn)?,
        holds,
        recyclable_volumes,
        clock_ok: clock.ok,
        clock,
    })
}

/// Storage studies old enough for the archive tier by `today` + 90 days.
fn moving(
    conn: &Connection,
    archive_after: Option<Period>,
    today: Date,
) -> Result<Vec<MovingStudy>, LifecycleError> {
    let horizon = today
        .checked_add(jiff::Span::new().days(MOVING_WITHIN_DAYS))
        .unwrap_or(Date::MAX);
    let mut stmt = conn.prepare(
        "SELECT s.study_uid, p.patient_id, s.study_date,
            (SELECT min(i.received_at) FROM series se JOIN instances i ON i.series_ref = se.id
             WHERE se.study_ref = s.id)
         FROM studies s JOIN patients p ON p.id = s.patient_ref WHERE s.tier = 'storage'",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (study_uid, patient_id, study_date, received) = row?;
        // the day it counts from: its study date, else the day it was first received
        let from = parse_da(&study_date).or_else(|| {
            received
                .as_deref()
                .and_then(|at| at.get(..10))
                .and_then(|d| d.parse::<Date>().ok())
        });
        let Some(from) = from else { continue };
        let Some(on) = archive_after.map_or(Some(from), |p| p.after(from)) else {
            continue;
        };
        if on <= horizon {
            out.push(MovingStudy {
                study_uid,
                patient_id,
                on: on.to_string(),
            });
        }
    }
    out.sort_by(|a, b| (&a.on, &a.study_uid).cmp(&(&b.on, &b.study_uid)));
    Ok(out)
}

/// Patients whose last day of retention is before `today`, held by no active hold.
fn due(conn: &Connection, today: Date) -> Result<Vec<DuePatient>, LifecycleError> {
    let mut stmt = conn.prepare(
        "SELECT p.patient_id, p.issuer, r.expires_on
         FROM patient_retention r JOIN patients p ON p.id = r.patient_ref
         WHERE r.expires_on IS NOT NULL AND r.expires_on < ?1
           AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.released_at IS NULL
             AND (h.patient_ref = p.id
               OR h.study_ref IN (SELECT id FROM studies WHERE patient_ref = p.id)))
         ORDER BY r.expires_on, p.patient_id, p.issuer",
    )?;
    let rows = stmt.query_map(params![today.to_string()], |r| {
        Ok(DuePatient {
            patient_id: r.get(0)?,
            issuer: r.get(1)?,
            expires_on: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Patients whose expiry is unknown.
fn review(conn: &Connection) -> Result<Vec<ReviewPatient>, LifecycleError> {
    let mut stmt = conn.prepare(
        "SELECT p.patient_id, p.issuer, r.reason
         FROM patient_retention r JOIN patients p ON p.id = r.patient_ref
         WHERE r.review = 1 ORDER BY p.patient_id, p.issuer",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ReviewPatient {
            patient_id: r.get(0)?,
            issuer: r.get(1)?,
            reason: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

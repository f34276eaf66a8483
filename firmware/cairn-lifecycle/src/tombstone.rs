//! What a rejection and a destruction share: the instance rows of a study (or one series) taken
//! out through the store's removal, a tombstone that keeps what, when, who and why, the removed
//! instances by UID and bytes, and the catalog's mark on their cold copies so that neither a
//! restore nor a scan brings them back.

use crate::LifecycleError;
use cairn_store::remove::{remove_instances, Removal};
use rusqlite::{params, Connection, OptionalExtension};

/// Why instances leave the box: the tombstone's kind and the catalog's mark on their copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalKind {
    /// Rejected by an administrator (wrong patient, test images): copies marked `rejected`.
    Rejected,
    /// Destroyed at the end of retention: copies marked `expired`.
    Destroyed,
}

impl RemovalKind {
    /// The tombstone's `kind`.
    fn kind(self) -> &'static str {
        match self {
            RemovalKind::Rejected => "rejected",
            RemovalKind::Destroyed => "destroyed",
        }
    }

    /// The mark on the catalog's copies (`copies.removed`).
    fn mark(self) -> &'static str {
        match self {
            RemovalKind::Rejected => "rejected",
            RemovalKind::Destroyed => "expired",
        }
    }
}

/// One study of the index, as a tombstone names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyRef {
    /// The `studies` row id.
    pub id: i64,
    /// Study Instance UID.
    pub study_uid: String,
    /// Study Date as stored (`YYYYMMDD` or `""`).
    pub study_date: String,
    /// Storage tier (`storage` or `archive`).
    pub tier: String,
    /// The patient's row id, ID and issuer.
    pub patient_ref: i64,
    /// Patient ID.
    pub patient_id: String,
    /// Issuer of Patient ID.
    pub issuer: String,
}

/// The study with UID `study_uid`, if the index has it.
pub fn study_by_uid(
    conn: &Connection,
    study_uid: &str,
) -> Result<Option<StudyRef>, LifecycleError> {
    study_where(conn, "st.study_uid = ?1", study_uid.trim())
}

/// The study holding series `series_uid`, if the index has it.
pub fn study_of_series(
    conn: &Connection,
    series_uid: &str,
) -> Result<Option<StudyRef>, LifecycleError> {
    study_where(
        conn,
        "st.id = (SELECT study_ref FROM series WHERE series_uid = ?1)",
        series_uid.trim(),
    )
}

/// The studies of patient row `patient_ref`, by date then UID.
pub fn studies_of_patient(
    conn: &Connection,
    patient_ref: i64,
) -> Result<Vec<StudyRef>, LifecycleError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{STUDY_SELECT} WHERE st.patient_ref = ?1 ORDER BY st.study_date, st.study_uid"
    ))?;
    let rows = stmt
        .query_map(params![patient_ref], study_ref)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

const STUDY_SELECT: &str = "SELECT st.id, st.study_uid, st.study_date, st.tier, p.id,
    p.patient_id, p.issuer FROM studies st JOIN patients p ON p.id = st.patient_ref";

fn study_ref(r: &rusqlite::Row<'_>) -> rusqlite::Result<StudyRef> {
    Ok(StudyRef {
        id: r.get(0)?,
        study_uid: r.get(1)?,
        study_date: r.get(2)?,
        tier: r.get(3)?,
        patient_ref: r.get(4)?,
        patient_id: r.get(5)?,
        issuer: r.get(6)?,
    })
}

fn study_where(
    conn: &Connection,
    clause: &str,
    value: &str,
) -> Result<Option<StudyRef>, LifecycleError> {
    Ok(conn
        .query_row(
            &format!("{STUDY_SELECT} WHERE {clause}"),
            params![value],
            study_ref,
        )
        .optional()?)
}

/// The number of an active legal hold on the study `study` or on its patient, if any.
pub fn active_hold(conn: &Connection, study: &StudyRef) -> Result<Option<i64>, LifecycleError> {
    Ok(conn
        .query_row(
            "SELECT min(id) FROM holds WHERE released_at IS NULL
               AND (study_ref = ?1 OR patient_ref = ?2)",
            params![study.id, study.patient_ref],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// Who removes, why, when, and under which destruction record.
#[derive(Debug, Clone, Copy)]
pub struct Tombstone<'a> {
    /// Rejected or destroyed.
    pub kind: RemovalKind,
    /// Why (kept on the tombstone).
    pub reason: &'a str,
    /// Who (`user:alice`, `system`).
    pub by: &'a str,
    /// When (the commit time, RFC 3339).
    pub at: &'a str,
    /// The destruction record, for a destruction.
    pub destruction: Option<i64>,
}

/// Remove the instances of `study` (only those of series `series_uid` when given), inside the
/// writer's transaction: index rows out, tombstone and removed instances in, their cold copies
/// marked. Returns the tombstone's id and what was removed.
pub fn remove_study(
    conn: &Connection,
    study: &StudyRef,
    series_uid: Option<&str>,
    stone: Tombstone<'_>,
) -> Result<(i64, Removal), LifecycleError> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT i.id FROM instances i JOIN series se ON se.id = i.series_ref
             WHERE se.study_ref = ?1 AND (?2 IS NULL OR se.series_uid = ?2) ORDER BY i.id",
        )?
        .query_map(params![study.id, series_uid], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let removal = remove_instances(conn, &ids)?;
    conn.execute(
        "INSERT INTO removed_studies (kind, study_uid, series_uid, patient_id, issuer, study_date,
           instances, bytes, reason, removed_by, removed_at, destruction_ref)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            stone.kind.kind(),
            study.study_uid,
            series_uid,
            study.patient_id,
            study.issuer,
            study.study_date,
            removal.instances.len() as i64,
            removal.bytes() as i64,
            stone.reason,
            stone.by,
            stone.at,
            stone.destruction,
        ],
    )?;
    let id = conn.last_insert_rowid();
    for inst in &removal.instances {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO removed_instances (sop_instance_uid, sha256, removed_ref)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![inst.sop_instance_uid, inst.sha256, id])?;
        conn.prepare_cached(
            "UPDATE copies SET removed = ?3
             WHERE sop_instance_uid = ?1 AND sha256 = ?2 AND removed IS NULL",
        )?
        .execute(params![
            inst.sop_instance_uid,
            inst.sha256,
            stone.kind.mark()
        ])?;
    }
    Ok((id, removal))
}

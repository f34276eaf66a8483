//! Indexing one received instance: its patient, study, series and instance rows, and its
//! archive queue rows, in the caller's transaction.

use super::record::{InstanceRecord, PatientInfo, SeriesInfo, StudyInfo};
use crate::merge::{self, Conflict, Field, Kind, Level};
use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

/// Outcome of indexing one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Indexed {
    New,
    Duplicate,
    NewVersion,
    /// Refused, nothing written: the instance would change a study fixed in the archive tier
    /// or under a legal hold.
    Refused(ArchivedChange),
}

/// A change refused because its study is fixed: in the archive tier (no changed and no new
/// instance), or under a legal hold on it or its patient (no changed instance; new instances
/// of ongoing care are kept). The store's answer is [`StoreError::Archived`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedChange {
    /// The fixed study.
    pub study_uid: String,
    /// True: different bytes for an instance the study holds; false: a new instance.
    pub changed_instance: bool,
    /// True: fixed by a legal hold (the study is still in storage); false: the archive tier.
    pub under_hold: bool,
}

/// Index one instance: its patient, study and series rows by the rules of [`merge`], then the
/// instance row. Returns the outcome and the conflicts recorded for the first time (the
/// writer audits them).
pub(crate) fn index_instance(
    conn: &Connection,
    rec: &InstanceRecord,
    sha256: &str,
    size: u64,
    source_ae: &str,
    now: &str,
) -> Result<(Indexed, Vec<Conflict>), StoreError> {
    let same: Option<i64> = conn
        .prepare_cached("SELECT id FROM instances WHERE sop_instance_uid = ?1 AND sha256 = ?2")?
        .query_row(params![rec.sop_instance_uid, sha256], |r| r.get(0))
        .optional()?;
    if same.is_some() {
        return Ok((Indexed::Duplicate, Vec::new()));
    }
    if let Some(refused) = archived_change(conn, rec)? {
        return Ok((Indexed::Refused(refused), Vec::new()));
    }
    let mut conflicts = Vec::new();
    let s = &rec.study;
    let study: Option<(i64, i64)> = conn
        .prepare_cached("SELECT id, patient_ref FROM studies WHERE study_uid = ?1")?
        .query_row(params![s.uid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // A study keeps the patient it was first stored under; a new study finds its patient.
    let patient_ref = match study {
        Some((_, patient_ref)) => patient_ref,
        None => patient_row(conn, &rec.patient, now)?,
    };
    merge::merge(
        conn,
        patient_ref,
        Level::Patient,
        &patient_fields(&rec.patient),
        now,
        &mut conflicts,
    )?;
    let study_ref = match study {
        Some((id, _)) => id,
        None => {
            conn.prepare_cached(
                "INSERT INTO studies (study_uid, patient_ref, updated_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![s.uid, patient_ref, now])?;
            conn.last_insert_rowid()
        }
    };
    merge::merge(
        conn,
        study_ref,
        Level::Study,
        &study_fields(s),
        now,
        &mut conflicts,
    )?;
    let se = &rec.series;
    conn.prepare_cached(
        "INSERT INTO series (series_uid, study_ref, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(series_uid) DO UPDATE SET study_ref = excluded.study_ref,
           updated_at = excluded.updated_at
         WHERE study_ref IS NOT excluded.study_ref",
    )?
    .execute(params![se.uid, study_ref, now])?;
    let series_ref: i64 = conn
        .prepare_cached("SELECT id FROM series WHERE series_uid = ?1")?
        .query_row(params![se.uid], |r| r.get(0))?;
    merge::merge(
        conn,
        series_ref,
        Level::Series,
        &series_fields(se),
        now,
        &mut conflicts,
    )?;
    let conflicts = merge::record(
        conn,
        &merge::Origin {
            study_ref,
            sop_instance_uid: &rec.sop_instance_uid,
            source_ae,
            now,
        },
        conflicts,
    )?;
    let superseded = conn
        .prepare_cached(
            "UPDATE instances SET current = 0 WHERE sop_instance_uid = ?1 AND current = 1",
        )?
        .execute(params![rec.sop_instance_uid])?;
    conn.prepare_cached(
        "INSERT INTO instances (sop_instance_uid, series_ref, sop_class_uid, instance_number,
           transfer_syntax, size, sha256, received_at, source_ae, current)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
    )?
    .execute(params![
        rec.sop_instance_uid,
        series_ref,
        rec.sop_class_uid,
        rec.instance_number,
        rec.transfer_syntax,
        size as i64,
        sha256,
        now,
        source_ae
    ])?;
    let instance_ref = conn.last_insert_rowid();
    // The archive queue row per enabled cold target commits with the instance row.
    conn.prepare_cached(
        "INSERT INTO archive_queue (target_ref, instance_ref, queued_at)
         SELECT id, ?1, ?2 FROM cold_targets WHERE enabled = 1",
    )?
    .execute(params![instance_ref, now])?;
    let indexed = if superseded > 0 {
        Indexed::NewVersion
    } else {
        Indexed::New
    };
    Ok((indexed, conflicts))
}

impl std::fmt::Display for ArchivedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.changed_instance {
            "a changed instance"
        } else {
            "a new instance"
        };
        let fixed = if self.under_hold {
            "is under a legal hold"
        } else {
            "is in the archive tier (fixed)"
        };
        write!(f, "study {} {fixed}: {what} is refused", self.study_uid)
    }
}

/// A study in the archive tier is fixed: an instance it holds may be sent again with the same
/// bytes (a duplicate, answered before this is asked) but never with different ones, and no
/// new instance joins it. Under a legal hold, only different bytes are refused. Asked in the transaction that indexes the instance, so a study moved
/// to the archive tier by a concurrent commit is seen.
fn archived_change(
    conn: &Connection,
    rec: &InstanceRecord,
) -> Result<Option<ArchivedChange>, StoreError> {
    let holder: Option<String> = conn
        .prepare_cached(
            "SELECT st.study_uid FROM instances i JOIN series se ON se.id = i.series_ref
               JOIN studies st ON st.id = se.study_ref
             WHERE i.sop_instance_uid = ?1 AND st.tier = 'archive' LIMIT 1",
        )?
        .query_row(params![rec.sop_instance_uid], |r| r.get(0))
        .optional()?;
    if let Some(study_uid) = holder {
        return Ok(Some(ArchivedChange {
            study_uid,
            changed_instance: true,
            under_hold: false,
        }));
    }
    let target: Option<String> = conn
        .prepare_cached("SELECT study_uid FROM studies WHERE study_uid = ?1 AND tier = 'archive'")?
        .query_row(params![rec.study.uid], |r| r.get(0))
        .optional()?;
    if let Some(study_uid) = target {
        return Ok(Some(ArchivedChange {
            study_uid,
            changed_instance: false,
            under_hold: false,
        }));
    }
    // a legal hold fixes what a study holds: different bytes for one of its instances
    let held: Option<String> = conn
        .prepare_cached(
            "SELECT st.study_uid FROM instances i JOIN series se ON se.id = i.series_ref
               JOIN studies st ON st.id = se.study_ref
             WHERE i.sop_instance_uid = ?1
               AND EXISTS (SELECT 1 FROM holds h WHERE h.released_at IS NULL
                             AND (h.study_ref = st.id OR h.patient_ref = st.patient_ref))
             LIMIT 1",
        )?
        .query_row(params![rec.sop_instance_uid], |r| r.get(0))
        .optional()?;
    Ok(held.map(|study_uid| ArchivedChange {
        study_uid,
        changed_instance: true,
        under_hold: true,
    }))
}

/// The patient columns and the values an instance carries for them.
fn patient_fields(p: &PatientInfo) -> [Field<'_>; 5] {
    [
        field("patient_id", "PatientID", &p.id, Kind::Identity),
        field("issuer", "IssuerOfPatientID", &p.issuer, Kind::Identity),
        field(
            "name",
            "PatientName",
            &p.name,
            Kind::PersonName {
                norm_column: "name_norm",
            },
        ),
        field("birth_date", "PatientBirthDate", &p.birth_date, Kind::Date),
        field("sex", "PatientSex", &p.sex, Kind::Text),
    ]
}

/// The study columns and the values an instance carries for them.
fn study_fields(s: &StudyInfo) -> [Field<'_>; 6] {
    let referring = Kind::PersonName {
        norm_column: "referring_norm",
    };
    [
        field("study_date", "StudyDate", &s.date, Kind::Date),
        field("study_time", "StudyTime", &s.time, Kind::Time),
        field(
            "description",
            "StudyDescription",
            &s.description,
            Kind::Text,
        ),
        field("accession", "AccessionNumber", &s.accession, Kind::Text),
        field(
            "referring_physician",
            "ReferringPhysicianName",
            &s.referring_physician,
            referring,
        ),
        field("study_id", "StudyID", &s.study_id, Kind::Text),
    ]
}

/// The series columns and the values an instance carries for them.
fn series_fields(se: &SeriesInfo) -> [Field<'_>; 4] {
    [
        field("modality", "Modality", &se.modality, Kind::Text),
        field("series_number", "SeriesNumber", &se.number, Kind::Text),
        field(
            "description",
            "SeriesDescription",
            &se.description,
            Kind::Text,
        ),
        field("body_part", "BodyPartExamined", &se.body_part, Kind::Text),
    ]
}

fn field<'a>(column: &'static str, keyword: &'static str, value: &'a str, kind: Kind) -> Field<'a> {
    Field {
        column,
        keyword,
        value,
        kind,
    }
}

/// The patient row a new study belongs to, made when there is none. A non-empty Patient ID
/// (with its issuer) names the patient; an empty one (legal: type 2) joins only a patient with
/// an empty ID, the same issuer, the same name (compared normalised) and birth date.
fn patient_row(conn: &Connection, p: &PatientInfo, now: &str) -> Result<i64, StoreError> {
    let found: Option<i64> = if p.id.is_empty() {
        let birth_date = p.birth_date.trim_matches(' ');
        let birth_date = if merge::is_valid_date(birth_date) {
            birth_date
        } else {
            ""
        };
        conn.prepare_cached(
            "SELECT id FROM patients WHERE patient_id = '' AND issuer = ?1 AND name_norm = ?2
               AND birth_date = ?3 ORDER BY id LIMIT 1",
        )?
        .query_row(
            params![p.issuer, merge::normalize_name(&p.name), birth_date],
            |r| r.get(0),
        )
        .optional()?
    } else {
        conn.prepare_cached("SELECT id FROM patients WHERE patient_id = ?1 AND issuer = ?2")?
            .query_row(params![p.id, p.issuer], |r| r.get(0))
            .optional()?
    };
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached(
        "INSERT INTO patients (patient_id, issuer, updated_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![p.id, p.issuer, now])?;
    Ok(conn.last_insert_rowid())
}

//! The Studies page: searches and one study's detail, from the store's read-only queries
//! and `cairn-archive`'s catalog of copies.

use crate::WebError;
use cairn_store::{find, DataDir, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A study search, as typed into the Studies page or the API query string.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudySearch {
    /// Patient name; without `*` or `?` it matches anywhere in the name.
    #[serde(default)]
    pub name: String,
    /// Patient ID (exact, or with wildcards).
    #[serde(default)]
    pub id: String,
    /// Study date `YYYYMMDD`, or a range `YYYYMMDD-YYYYMMDD`.
    #[serde(default)]
    pub date: String,
    /// Modality (CT, MR...).
    #[serde(default)]
    pub modality: String,
    /// Accession number.
    #[serde(default)]
    pub accession: String,
    /// At most this many (default 200).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A study in a result list.
#[derive(Debug, Clone, Serialize)]
pub struct StudyHit {
    /// Study Instance UID.
    pub study_uid: String,
    /// Study date.
    pub date: String,
    /// Patient name (DICOM PN, `^`-separated).
    pub patient_name: String,
    /// Patient ID.
    pub patient_id: String,
    /// Accession number.
    pub accession: String,
    /// Modalities.
    pub modalities: String,
    /// Description.
    pub description: String,
    /// Series.
    pub series: i64,
    /// Instances.
    pub instances: i64,
}

impl StudySearch {
    /// The search as the store's typed keys.
    fn keys(&self) -> cairn_store::StudyKeys {
        cairn_store::StudyKeys {
            name: self.name.clone(),
            patient_id: self.id.clone(),
            date: self.date.clone(),
            modality: self.modality.clone(),
            accession: self.accession.clone(),
        }
    }

    /// True when no field is filled in.
    pub fn is_empty(&self) -> bool {
        [
            &self.name,
            &self.id,
            &self.date,
            &self.modality,
            &self.accession,
        ]
        .iter()
        .all(|s| s.trim().is_empty())
    }
}

impl From<cairn_store::StudySummary> for StudyHit {
    fn from(s: cairn_store::StudySummary) -> Self {
        StudyHit {
            study_uid: s.study_uid,
            date: s.date,
            patient_name: s.patient_name,
            patient_id: s.patient_id,
            accession: s.accession,
            modalities: s.modalities,
            description: s.description,
            series: s.series,
            instances: s.instances,
        }
    }
}

/// A failed study query: a value it cannot search for is the request's fault.
fn search_error(e: StoreError) -> WebError {
    match e {
        StoreError::BadSearch(m) => WebError::BadRequest(m),
        e => e.into(),
    }
}

/// Search studies with the C-FIND matcher (the same SQL a PACS query runs); newest first.
/// Returns the hits and whether more matched than the limit.
pub fn search_studies(data: &DataDir, s: &StudySearch) -> Result<(Vec<StudyHit>, bool), WebError> {
    let limit = s.limit.unwrap_or(200).clamp(1, 1000);
    let conn = find::query_connection(data)?;
    let (hits, more) =
        cairn_store::search_studies(&conn, &s.keys(), limit).map_err(search_error)?;
    Ok((hits.into_iter().map(StudyHit::from).collect(), more))
}

/// One series of a study.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    /// Series Instance UID.
    pub series_uid: String,
    /// Modality.
    pub modality: String,
    /// Series number.
    pub number: String,
    /// Description.
    pub description: String,
    /// Instances.
    pub instances: i64,
    /// Bytes of its current instances.
    pub bytes: i64,
}

/// Where a study's images are kept.
#[derive(Debug, Clone, Serialize)]
pub struct CopyRow {
    /// `raid` or a volume id.
    pub place: String,
    /// Instances of the study held there.
    pub instances: i64,
    /// Whether those copies were read back and checked.
    pub verified: bool,
}

/// A study with its series and copies.
#[derive(Debug, Clone, Serialize)]
pub struct StudyDetail {
    /// The study.
    pub study: StudyHit,
    /// Its series.
    pub series: Vec<SeriesRow>,
    /// Bytes of its current instances.
    pub bytes: i64,
    /// Its copies: the hot copy on the RAID and any archive volumes.
    pub copies: Vec<CopyRow>,
    /// The last day the patient's images are kept (`YYYY-MM-DD`); none: no automatic end.
    pub retention_until: Option<String>,
    /// The study's storage tier: `storage`, or `archive` (fixed).
    pub tier: String,
    /// Its patient's retention, date of death and legal holds.
    pub lifecycle: super::PatientLifecycle,
    /// Received values the index did not take: a different value than the one kept, or an
    /// invalid date or time.
    pub conflicts: Vec<ConflictRow>,
}

/// A received value the index did not take as received (`cairn_store::FieldConflict`).
#[derive(Debug, Clone, Serialize)]
pub struct ConflictRow {
    /// `patient`, `study` or `series`.
    pub level: String,
    /// DICOM keyword, e.g. `StudyDescription`.
    pub field: String,
    /// The value kept (the first received).
    pub kept: String,
    /// The value an image carried.
    pub received: String,
    /// `differs` or `invalid`.
    pub reason: String,
    /// The field in words, e.g. "Study date".
    pub label: String,
    /// The image that carried it.
    pub sop_instance_uid: String,
    /// When it was received.
    pub received_at: String,
}

/// Check a UID from a URL: digits and dots, at most 64.
pub fn valid_uid(uid: &str) -> Result<(), WebError> {
    if cairn_core::uid::check_uid(uid).is_ok() && uid.len() == uid.trim().len() {
        Ok(())
    } else {
        Err(WebError::BadRequest(
            "not a DICOM UID (digits and dots, at most 64)".into(),
        ))
    }
}

/// One study with its patient's lifecycle (decided with `lc`), or `NotFound`.
pub fn study(
    data: &DataDir,
    uid: &str,
    lc: &crate::LifecycleSettings,
) -> Result<StudyDetail, WebError> {
    valid_uid(uid)?;
    let conn = find::query_connection(data)?;
    let study = cairn_store::study_summary(&conn, uid)
        .map_err(search_error)?
        .map(StudyHit::from)
        .ok_or_else(|| WebError::NotFound("no such study".into()))?;
    let mut series = Vec::new();
    for s in cairn_store::study_series(&conn, uid).map_err(search_error)? {
        series.push(SeriesRow {
            bytes: cairn_store::series_bytes(&conn, &s.series_uid)
                .map_err(super::statement_error)?,
            series_uid: s.series_uid,
            modality: s.modality,
            number: s.number,
            description: s.description,
            instances: s.instances,
        });
    }
    let bytes = series.iter().map(|s| s.bytes).sum();
    series.sort_by(|a, b| {
        a.number
            .parse::<i64>()
            .unwrap_or(i64::MAX)
            .cmp(&b.number.parse::<i64>().unwrap_or(i64::MAX))
    });
    let mut copies = vec![CopyRow {
        place: "RAID (hot copy)".into(),
        instances: study.instances,
        verified: true,
    }];
    copies.extend(archive_copies(cairn_archive::catalog::study_copies(
        &conn, uid,
    )));
    let conflicts = cairn_store::study_conflicts(&conn, uid)?
        .into_iter()
        .map(|c| ConflictRow {
            label: field_label(&c.field).to_string(),
            level: c.level,
            field: c.field,
            kept: c.kept,
            received: c.received,
            reason: c.reason,
            sop_instance_uid: c.sop_instance_uid,
            received_at: c.received_at,
        })
        .collect();
    let (tier, lifecycle) = super::study_lifecycle(data, uid, lc)?;
    Ok(StudyDetail {
        study,
        series,
        bytes,
        copies,
        retention_until: lifecycle.retention.expires_on.clone(),
        tier,
        lifecycle,
        conflicts,
    })
}

/// A DICOM keyword the index keeps, in the words the study page uses.
fn field_label(keyword: &str) -> &str {
    match keyword {
        "PatientName" => "Patient name",
        "PatientID" => "Patient ID",
        "IssuerOfPatientID" => "Issuer of patient ID",
        "PatientBirthDate" => "Birth date",
        "PatientSex" => "Sex",
        "StudyDate" => "Study date",
        "StudyTime" => "Study time",
        "StudyDescription" => "Description",
        "AccessionNumber" => "Accession",
        "ReferringPhysicianName" => "Referring physician",
        "StudyID" => "Study ID",
        "Modality" => "Series modality",
        "SeriesNumber" => "Series number",
        "SeriesDescription" => "Series description",
        "BodyPartExamined" => "Body part",
        other => other,
    }
}

/// Verified copies of a study's instances on archive volumes, one row per volume, from
/// `cairn-archive`'s catalog query (which failed: none, with a warning).
fn archive_copies(
    found: Result<Vec<cairn_archive::catalog::CopyRow>, impl std::fmt::Display>,
) -> Vec<CopyRow> {
    let rows = match found {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "archive copies of a study");
            return Vec::new();
        }
    };
    let mut per_volume: BTreeMap<String, (String, String, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    for c in rows {
        per_volume
            .entry(c.volume_name)
            .or_insert_with(|| (c.kind, c.location, Default::default()))
            .2
            .insert(c.sha256);
    }
    per_volume
        .into_iter()
        .map(|(v, (kind, location, shas))| CopyRow {
            place: format!("{kind} {v} ({})", location.replace('_', " ")),
            instances: shas.len() as i64,
            verified: true,
        })
        .collect()
}

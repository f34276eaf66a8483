//! Destruction records as people read them: a plain-text certificate for one, and every record
//! as CSV. Read-only.

use crate::LifecycleError;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// One destruction record with the studies it removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestructionRecord {
    /// Its number.
    pub id: i64,
    /// Patient ID.
    pub patient_id: String,
    /// Issuer of Patient ID.
    pub issuer: String,
    /// The last day the patient was kept (`YYYY-MM-DD`).
    pub expires_on: String,
    /// The clause that set that day, with the rule set's name.
    pub expiry_reason: String,
    /// Who approved.
    pub approved_by: String,
    /// Why.
    pub approval_reason: String,
    /// When (RFC 3339).
    pub approved_at: String,
    /// Studies, instances and bytes removed.
    pub studies: u64,
    /// Instances.
    pub instances: u64,
    /// Bytes.
    pub bytes: u64,
    /// The studies removed.
    pub study_list: Vec<DestroyedStudy>,
}

/// One study a destruction removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestroyedStudy {
    /// Study Instance UID.
    pub study_uid: String,
    /// Study Date as it was stored (`YYYYMMDD` or `""`).
    pub study_date: String,
    /// Instances removed.
    pub instances: u64,
    /// Bytes removed.
    pub bytes: u64,
}

const RECORD_SELECT: &str = "SELECT id, patient_id, issuer, expires_on, expiry_reason, approved_by,
    approval_reason, approved_at, studies, instances, bytes FROM destruction_records";

/// Destruction record `id`; `UnknownRecord` as a bad request when there is none.
pub fn destruction_record(conn: &Connection, id: i64) -> Result<DestructionRecord, LifecycleError> {
    let rec = conn
        .query_row(
            &format!("{RECORD_SELECT} WHERE id = ?1"),
            params![id],
            record,
        )
        .optional()?
        .ok_or_else(|| LifecycleError::BadRequest(format!("no destruction record {id}")))?;
    with_studies(conn, rec)
}

/// Every destruction record, oldest first.
pub fn destruction_records(conn: &Connection) -> Result<Vec<DestructionRecord>, LifecycleError> {
    let rows: Vec<DestructionRecord> = conn
        .prepare(&format!("{RECORD_SELECT} ORDER BY id"))?
        .query_map([], record)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(|r| with_studies(conn, r)).collect()
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DestructionRecord> {
    let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(DestructionRecord {
        id: r.get(0)?,
        patient_id: r.get(1)?,
        issuer: r.get(2)?,
        expires_on: r.get(3)?,
        expiry_reason: r.get(4)?,
        approved_by: r.get(5)?,
        approval_reason: r.get(6)?,
        approved_at: r.get(7)?,
        studies: n(8)?,
        instances: n(9)?,
        bytes: n(10)?,
        study_list: Vec::new(),
    })
}

fn with_studies(
    conn: &Connection,
    mut rec: DestructionRecord,
) -> Result<DestructionRecord, LifecycleError> {
    rec.study_list = conn
        .prepare_cached(
            "SELECT study_uid, study_date, instances, bytes FROM removed_studies
             WHERE destruction_ref = ?1 ORDER BY study_date, study_uid",
        )?
        .query_map(params![rec.id], |r| {
            Ok(DestroyedStudy {
                study_uid: r.get(0)?,
                study_date: r.get(1)?,
                instances: r.get::<_, i64>(2)?.max(0) as u64,
                bytes: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rec)
}

/// The plain-text certificate of destruction of `rec`, issued by the box `box_id`.
pub fn certificate(rec: &DestructionRecord, box_id: &str) -> String {
    let issuer = if rec.issuer.is_empty() {
        "(none)"
    } else {
        rec.issuer.as_str()
    };
    let mut out = format!(
        "CERTIFICATE OF DESTRUCTION\n\
         \n\
         Record:            {}\n\
         Archive box:       {box_id}\n\
         Patient ID:        {}\n\
         Issuer:            {issuer}\n\
         Kept until:        {}\n\
         Rule:              {}\n\
         Approved by:       {}\n\
         Approved at:       {}\n\
         Reason:            {}\n\
         Studies:           {}\n\
         Instances:         {}\n\
         Bytes:             {}\n\
         \n\
         Studies destroyed (Study Instance UID, study date, instances, bytes):\n",
        rec.id,
        rec.patient_id,
        rec.expires_on,
        rec.expiry_reason,
        rec.approved_by,
        rec.approved_at,
        rec.approval_reason,
        rec.studies,
        rec.instances,
        rec.bytes,
    );
    for s in &rec.study_list {
        let date = crate::facts::parse_da(&s.study_date)
            .map_or_else(|| "(no date)".to_owned(), |d| d.to_string());
        out.push_str(&format!(
            "  {}  {date}  {}  {}\n",
            s.study_uid, s.instances, s.bytes
        ));
    }
    out.push_str(
        "\nThe images, their index rows and their hot copies were deleted from this box; their \
         cold copies are marked expired in the catalog.\n",
    );
    out
}

/// Every record as CSV (RFC 4180, a header line; studies as `UID:YYYYMMDD` joined by spaces).
pub fn records_csv(records: &[DestructionRecord]) -> String {
    let mut out = String::from(
        "id,patient_id,issuer,expires_on,expiry_reason,approved_by,approval_reason,approved_at,studies,instances,bytes,study_uids\n",
    );
    for r in records {
        let studies = r
            .study_list
            .iter()
            .map(|s| format!("{}:{}", s.study_uid, s.study_date))
            .collect::<Vec<_>>()
            .join(" ");
        let fields = [
            r.id.to_string(),
            r.patient_id.clone(),
            r.issuer.clone(),
            r.expires_on.clone(),
            r.expiry_reason.clone(),
            r.approved_by.clone(),
            r.approval_reason.clone(),
            r.approved_at.clone(),
            r.studies.to_string(),
            r.instances.to_string(),
            r.bytes.to_string(),
            studies,
        ];
        let line = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"no\""), "\"say \"\"no\"\"\"");
    }
}

//! Read-only questions the CLI and panel ask of the index.

mod browse;
mod counts;
#[cfg(test)]
mod fixture;
mod holds;

pub use browse::{
    search_studies, study_series, study_summary, SeriesSummary, StudyKeys, StudySummary,
};
pub use counts::{images_received_since, series_bytes};
pub use holds::{all_holds, HoldRecord};

use crate::find::{Matcher, QueryError};
use crate::index::open_ro;
use crate::layout::DataDir;
use crate::StoreError;
use rusqlite::types::Value;

/// A study date range, inclusive, as `YYYYMMDD` strings; either end may be open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateRange {
    /// First day, inclusive.
    pub from: Option<String>,
    /// Last day, inclusive.
    pub to: Option<String>,
}

impl std::str::FromStr for DateRange {
    type Err = String;

    /// `YYYYMMDD`, `YYYYMMDD-YYYYMMDD`, `-YYYYMMDD` or `YYYYMMDD-`.
    fn from_str(s: &str) -> Result<Self, String> {
        fn day(d: &str) -> Result<Option<String>, String> {
            if d.is_empty() {
                return Ok(None);
            }
            let part = |r: std::ops::Range<usize>| -> u32 {
                d.get(r).and_then(|x| x.parse().ok()).unwrap_or(0)
            };
            let ok = d.len() == 8
                && d.bytes().all(|b| b.is_ascii_digit())
                && (1..=12).contains(&part(4..6))
                && (1..=31).contains(&part(6..8));
            if ok {
                Ok(Some(d.to_string()))
            } else {
                Err(format!("'{d}' is not a date like 20240131"))
            }
        }
        let s = s.trim();
        let (from, to) = match s.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => {
                let d = day(s)?;
                (d.clone(), d)
            }
        };
        if from.is_none() && to.is_none() {
            return Err("empty date range".into());
        }
        if let (Some(a), Some(b)) = (&from, &to) {
            if a > b {
                return Err(format!("range starts after it ends ({a} > {b})"));
            }
        }
        Ok(DateRange { from, to })
    }
}

/// Filters for listing studies. Typed values match as in the panel's search
/// ([`typed_person_name`], [`typed_text`]).
#[derive(Debug, Clone, Default)]
pub struct StudyFilter {
    /// Patient name, as typed.
    pub patient: Option<String>,
    /// Patient ID, as typed.
    pub patient_id: Option<String>,
    /// Accession number, as typed.
    pub accession: Option<String>,
    /// Modality (a study matches if any series has it).
    pub modality: Option<String>,
    /// Study date range.
    pub date: Option<DateRange>,
    /// At most this many rows.
    pub limit: Option<usize>,
}

/// One line of a study listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyRow {
    /// Study Instance UID.
    pub study_uid: String,
    /// Study Date: `YYYYMMDD` or empty.
    pub study_date: String,
    /// True when the study's date was received but is not a date (it is indexed as empty).
    pub date_invalid: bool,
    /// Patient's name.
    pub patient_name: String,
    /// Patient ID.
    pub patient_id: String,
    /// Modalities of its series, `\`-separated.
    pub modalities: String,
    /// Study description.
    pub description: String,
    /// Accession number.
    pub accession: String,
    /// Number of series.
    pub series: i64,
    /// Number of current instances.
    pub instances: i64,
    /// Bytes of current instances.
    pub bytes: i64,
}

/// Longest value, in characters, a search field takes.
const MAX_SEARCH_CHARS: usize = 64;

/// How a value typed into a search (the panel's form, `cairnctl studies`) matches a text
/// attribute such as a Patient ID or accession number: empty matches everything, `*` and `?`
/// are wildcards, anything else matches exactly. Control characters, backslashes (the DICOM
/// value separator) and values longer than 64 characters are refused.
pub fn typed_text(v: &str) -> Result<Matcher, StoreError> {
    let v = v.trim();
    if v.chars().any(|c| c.is_control() || c == '\\') || v.chars().count() > MAX_SEARCH_CHARS {
        return Err(StoreError::BadSearch(
            "search values are at most 64 characters, without backslashes".into(),
        ));
    }
    Ok(if v.is_empty() {
        Matcher::Universal
    } else if v.contains(['*', '?']) {
        Matcher::Wildcard(v.to_string())
    } else {
        Matcher::Single(v.to_string())
    })
}

/// How a typed patient name matches: case-insensitively, against the name with its components
/// joined by `^` (the C-FIND person-name matcher). Without wildcards it finds every name that
/// contains it, spaces standing for anything between components (`dupont`, `Dupont^Jean` and
/// `dupont jean` all find `DUPONT^JEAN`); with `*` or `?` the whole name must match (`DOE^*`).
pub fn typed_person_name(v: &str) -> Result<Matcher, StoreError> {
    Ok(match typed_text(v)? {
        Matcher::Single(n) => Matcher::Wildcard(format!(
            "*{}*",
            n.split_whitespace().collect::<Vec<_>>().join("*")
        )),
        m => m,
    })
}

const T_NAME: u32 = 0x0010_0010;
const T_PATIENT_ID: u32 = 0x0010_0020;
const T_ACCESSION: u32 = 0x0008_0050;
const T_STUDY_DATE: u32 = 0x0008_0020;

/// List studies matching the filter, newest study date first.
pub fn list_studies(data: &DataDir, f: &StudyFilter) -> Result<Vec<StudyRow>, StoreError> {
    let typed = |v: &Option<String>, how: fn(&str) -> Result<Matcher, StoreError>| {
        v.as_deref().map(how).transpose()
    };
    let mut keys = Vec::new();
    for (tag, m) in [
        (T_NAME, typed(&f.patient, typed_person_name)?),
        (T_PATIENT_ID, typed(&f.patient_id, typed_text)?),
        (T_ACCESSION, typed(&f.accession, typed_text)?),
    ] {
        keys.extend(m.map(|m| (tag, m)));
    }
    if let Some(d) = &f.date {
        keys.push((T_STUDY_DATE, Matcher::Range(d.from.clone(), d.to.clone())));
    }
    let (where_sql, mut args) = crate::find::study_where(&keys).map_err(|e| match e {
        QueryError::BadKey(m) | QueryError::BadLevel(m) => StoreError::BadSearch(m),
    })?;
    let conn = open_ro(&data.db())?;
    let mut sql = format!(
        "SELECT st.study_uid, st.study_date, p.name, p.patient_id,
           (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series
              WHERE study_ref = st.id AND modality != '' ORDER BY modality)),
           st.description, st.accession,
           (SELECT count(*) FROM series WHERE study_ref = st.id),
           (SELECT count(*) FROM instances i JOIN series s ON i.series_ref = s.id
              WHERE s.study_ref = st.id AND i.current = 1),
           (SELECT coalesce(sum(i.size), 0) FROM instances i JOIN series s ON i.series_ref = s.id
              WHERE s.study_ref = st.id AND i.current = 1),
           st.study_date = '' AND EXISTS (SELECT 1 FROM field_conflicts c
              WHERE c.study_ref = st.id AND c.field = 'StudyDate' AND c.reason = 'invalid')
         FROM studies st JOIN patients p ON st.patient_ref = p.id{where_sql}"
    );
    if let Some(m) = &f.modality {
        sql.push_str(" AND EXISTS (SELECT 1 FROM series s WHERE s.study_ref = st.id AND upper(s.modality) = upper(?))");
        args.push(Value::Text(m.clone()));
    }
    sql.push_str(" ORDER BY st.study_date DESC, st.id DESC");
    if let Some(l) = f.limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(StudyRow {
            study_uid: r.get(0)?,
            study_date: r.get(1)?,
            patient_name: r.get(2)?,
            patient_id: r.get(3)?,
            modalities: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            description: r.get(5)?,
            accession: r.get(6)?,
            series: r.get(7)?,
            instances: r.get(8)?,
            bytes: r.get(9)?,
            date_invalid: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A received value the index did not take as received (table `field_conflicts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// `patient`, `study` or `series`.
    pub level: String,
    /// DICOM keyword of the attribute, e.g. `StudyDate`.
    pub field: String,
    /// The value the index holds (the first one received).
    pub kept: String,
    /// The value an instance carried.
    pub received: String,
    /// `differs` (another value is kept) or `invalid` (not a valid value: indexed as empty).
    pub reason: String,
    /// The instance that carried it.
    pub sop_instance_uid: String,
    /// Calling AE title of its sender.
    pub source_ae: String,
    /// When it was received (RFC 3339, UTC).
    pub received_at: String,
}

/// The conflicts recorded for a study, in the order they were met.
pub fn study_conflicts(
    conn: &rusqlite::Connection,
    study_uid: &str,
) -> Result<Vec<FieldConflict>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT c.level, c.field, c.kept, c.received, c.reason, c.sop_instance_uid,
           c.source_ae, c.received_at
         FROM field_conflicts c JOIN studies st ON c.study_ref = st.id
         WHERE st.study_uid = ?1 ORDER BY c.id",
    )?;
    let rows = stmt.query_map([study_uid], |r| {
        Ok(FieldConflict {
            level: r.get(0)?,
            field: r.get(1)?,
            kept: r.get(2)?,
            received: r.get(3)?,
            reason: r.get(4)?,
            sop_instance_uid: r.get(5)?,
            source_ae: r.get(6)?,
            received_at: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Store-wide counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Patients.
    pub patients: i64,
    /// Studies.
    pub studies: i64,
    /// Series.
    pub series: i64,
    /// Current instances.
    pub instances: i64,
    /// Superseded versions kept beside the current ones.
    pub older_versions: i64,
    /// Bytes in object files referenced by the index.
    pub bytes: i64,
    /// Audit rows.
    pub audit_rows: i64,
    /// Files in quarantine/.
    pub quarantined: i64,
}

/// Count what the store holds.
pub fn stats(data: &DataDir) -> Result<Stats, StoreError> {
    let conn = open_ro(&data.db())?;
    let one = |sql: &str| -> Result<i64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    let quarantined = std::fs::read_dir(data.quarantine())
        .map(|rd| rd.count() as i64)
        .unwrap_or(0);
    Ok(Stats {
        patients: one("SELECT count(*) FROM patients")?,
        studies: one("SELECT count(*) FROM studies")?,
        series: one("SELECT count(*) FROM series")?,
        instances: one("SELECT count(*) FROM instances WHERE current = 1")?,
        older_versions: one("SELECT count(*) FROM instances WHERE current = 0")?,
        bytes: one(
            "SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT sha256, size FROM instances)",
        )?,
        audit_rows: one("SELECT count(*) FROM audit")?,
        quarantined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_ranges() {
        let r: DateRange = "20240101-20240131".parse().unwrap();
        assert_eq!(r.from.as_deref(), Some("20240101"));
        assert_eq!(r.to.as_deref(), Some("20240131"));
        let r: DateRange = "-20240131".parse().unwrap();
        assert_eq!(r.from, None);
        let r: DateRange = "20240131".parse().unwrap();
        assert_eq!(r.from, r.to);
        assert!("2024".parse::<DateRange>().is_err());
        assert!("20241301".parse::<DateRange>().is_err());
        assert!("20240201-20240101".parse::<DateRange>().is_err());
        assert!("-".parse::<DateRange>().is_err());
        assert!("123é567".parse::<DateRange>().is_err());
        assert!("2024é131".parse::<DateRange>().is_err());
    }

    #[test]
    fn typed_values() {
        assert_eq!(typed_text(" ").unwrap(), Matcher::Universal);
        assert_eq!(typed_text("A1").unwrap(), Matcher::Single("A1".into()));
        assert_eq!(typed_text("A?").unwrap(), Matcher::Wildcard("A?".into()));
        assert!(typed_text("a\\b").is_err());
        assert!(typed_text("a\u{7}").is_err());
        assert!(typed_text(&"é".repeat(65)).is_err());
        assert!(typed_text(&"é".repeat(64)).is_ok());
        assert_eq!(
            typed_person_name("dupont  jean").unwrap(),
            Matcher::Wildcard("*dupont*jean*".into())
        );
        assert_eq!(
            typed_person_name("DOE^*").unwrap(),
            Matcher::Wildcard("DOE^*".into())
        );
    }
}

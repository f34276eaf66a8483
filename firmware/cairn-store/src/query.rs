//! Read-only questions the CLI and panel ask of the index.

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
            let ok = d.len() == 8
                && d.bytes().all(|b| b.is_ascii_digit())
                && (1..=12).contains(&d[4..6].parse::<u32>().unwrap_or(0))
                && (1..=31).contains(&d[6..8].parse::<u32>().unwrap_or(0));
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

/// Filters for listing studies. Patient name patterns use DICOM wildcards `*` and `?`,
/// matched case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct StudyFilter {
    /// Patient name pattern.
    pub patient: Option<String>,
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
    /// Study Date.
    pub study_date: String,
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

/// Escape SQL LIKE metacharacters and turn DICOM wildcards into LIKE ones.
fn like_pattern(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.extend(c.to_uppercase()),
        }
    }
    out
}

/// List studies matching the filter, newest study date first.
pub fn list_studies(data: &DataDir, f: &StudyFilter) -> Result<Vec<StudyRow>, StoreError> {
    let conn = open_ro(&data.db())?;
    let mut sql = String::from(
        "SELECT st.study_uid, st.study_date, p.name, p.patient_id,
           (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series
              WHERE study_ref = st.id AND modality != '' ORDER BY modality)),
           st.description, st.accession,
           (SELECT count(*) FROM series WHERE study_ref = st.id),
           (SELECT count(*) FROM instances i JOIN series s ON i.series_ref = s.id
              WHERE s.study_ref = st.id AND i.current = 1),
           (SELECT coalesce(sum(i.size), 0) FROM instances i JOIN series s ON i.series_ref = s.id
              WHERE s.study_ref = st.id AND i.current = 1)
         FROM studies st JOIN patients p ON st.patient_ref = p.id WHERE 1 = 1",
    );
    let mut args: Vec<Value> = Vec::new();
    if let Some(p) = &f.patient {
        sql.push_str(" AND upper(p.name) LIKE ? ESCAPE '\\'");
        args.push(Value::Text(like_pattern(p)));
    }
    if let Some(m) = &f.modality {
        sql.push_str(" AND EXISTS (SELECT 1 FROM series s WHERE s.study_ref = st.id AND upper(s.modality) = upper(?))");
        args.push(Value::Text(m.clone()));
    }
    if let Some(d) = &f.date {
        if let Some(from) = &d.from {
            sql.push_str(" AND st.study_date >= ?");
            args.push(Value::Text(from.clone()));
        }
        if let Some(to) = &d.to {
            sql.push_str(" AND st.study_date <= ? AND st.study_date != ''");
            args.push(Value::Text(to.clone()));
        }
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
    }

    #[test]
    fn like_escapes() {
        assert_eq!(like_pattern("doe*"), "DOE%");
        assert_eq!(like_pattern("a_b%?"), "A\\_B\\%_");
    }
}

//! The panel's study browsing: studies found with the C-FIND matcher (the same SQL a PACS
//! query runs), one study's summary and its series.

use super::{typed_person_name, typed_text, DateRange};
use crate::find::{self, FindEnd, Level, Matcher, Query};
use crate::StoreError;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// Values typed into the panel's study search; an empty field matches every study.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyKeys {
    /// Patient name; without `*` or `?` it matches anywhere in the name.
    pub name: String,
    /// Patient ID (exact, or with wildcards).
    pub patient_id: String,
    /// Study date `YYYYMMDD`, or a range `YYYYMMDD-YYYYMMDD`.
    pub date: String,
    /// Modality (CT, MR...): a study matches if one of its series has it.
    pub modality: String,
    /// Accession number.
    pub accession: String,
}

/// A study as a search lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudySummary {
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
    /// Modalities of its series, `\`-separated.
    pub modalities: String,
    /// Study description.
    pub description: String,
    /// Number of series.
    pub series: i64,
    /// Number of instances.
    pub instances: i64,
}

/// One series of a study.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesSummary {
    /// Series Instance UID.
    pub series_uid: String,
    /// Modality.
    pub modality: String,
    /// Series number, as received.
    pub number: String,
    /// Series description.
    pub description: String,
    /// Number of instances.
    pub instances: i64,
}

const T_NAME: u32 = 0x0010_0010;
const T_PID: u32 = 0x0010_0020;
const T_STUDY_UID: u32 = 0x0020_000D;
const T_DATE: u32 = 0x0008_0020;
const T_ACCESSION: u32 = 0x0008_0050;
const T_DESCRIPTION: u32 = 0x0008_1030;
const T_MODALITIES: u32 = 0x0008_0061;
const T_N_SERIES: u32 = 0x0020_1206;
const T_N_INST: u32 = 0x0020_1208;
const T_SERIES_UID: u32 = 0x0020_000E;
const T_MODALITY: u32 = 0x0008_0060;
const T_SERIES_NO: u32 = 0x0020_0011;
const T_SERIES_DESC: u32 = 0x0008_103E;
const T_N_SERIES_INST: u32 = 0x0020_1209;

/// The C-FIND keys of a study search, returning every column a [`StudySummary`] holds.
fn study_keys(k: &StudyKeys) -> Result<Vec<(u32, Matcher)>, StoreError> {
    let date = k.date.trim();
    Ok(vec![
        (T_STUDY_UID, Matcher::Universal),
        (T_N_SERIES, Matcher::Universal),
        (T_N_INST, Matcher::Universal),
        (T_DESCRIPTION, Matcher::Universal),
        (T_NAME, typed_person_name(&k.name)?),
        (T_PID, typed_text(&k.patient_id)?),
        (T_ACCESSION, typed_text(&k.accession)?),
        (
            T_MODALITIES,
            match typed_text(&k.modality)? {
                Matcher::Single(m) => Matcher::Single(m.to_uppercase()),
                m => m,
            },
        ),
        (
            T_DATE,
            if date.is_empty() {
                Matcher::Universal
            } else {
                let r: DateRange = date.parse().map_err(StoreError::BadSearch)?;
                if r.from == r.to {
                    Matcher::Single(r.from.unwrap_or_default())
                } else {
                    Matcher::Range(r.from, r.to)
                }
            },
        ),
    ])
}

fn take(m: &mut BTreeMap<u32, String>, t: u32) -> String {
    m.remove(&t).unwrap_or_default()
}

fn summary(mut row: BTreeMap<u32, String>) -> StudySummary {
    StudySummary {
        study_uid: take(&mut row, T_STUDY_UID),
        date: take(&mut row, T_DATE),
        patient_name: take(&mut row, T_NAME),
        patient_id: take(&mut row, T_PID),
        accession: take(&mut row, T_ACCESSION),
        modalities: take(&mut row, T_MODALITIES),
        description: take(&mut row, T_DESCRIPTION),
        series: take(&mut row, T_N_SERIES).parse().unwrap_or(0),
        instances: take(&mut row, T_N_INST).parse().unwrap_or(0),
    }
}

/// Run a study-root C-FIND; a query the matcher refuses is a [`StoreError::BadSearch`].
fn run(
    conn: &Connection,
    q: &Query,
    on_row: impl FnMut(BTreeMap<u32, String>) -> ControlFlow<()>,
) -> Result<FindEnd, StoreError> {
    let (end, _) =
        find::find(conn, q, on_row)?.map_err(|e| StoreError::BadSearch(format!("{e:?}")))?;
    Ok(end)
}

/// Studies matching the typed keys: the first `limit` matches the index yields (it picks
/// them before sorting), listed newest study date first; and whether more matched. A value that cannot be searched for is a
/// [`StoreError::BadSearch`] saying why.
pub fn search_studies(
    conn: &Connection,
    keys: &StudyKeys,
    limit: usize,
) -> Result<(Vec<StudySummary>, bool), StoreError> {
    let q = Query {
        level: Level::Study,
        study_root: true,
        keys: study_keys(keys)?,
        limit,
    };
    let mut hits = Vec::new();
    let end = run(conn, &q, |row| {
        hits.push(summary(row));
        ControlFlow::Continue(())
    })?;
    hits.sort_by(|a, b| b.date.cmp(&a.date));
    Ok((hits, end == FindEnd::LimitReached))
}

/// One study by its UID, as a search lists it (none: no such study).
pub fn study_summary(conn: &Connection, uid: &str) -> Result<Option<StudySummary>, StoreError> {
    let mut keys = study_keys(&StudyKeys::default())?;
    keys.retain(|(t, _)| *t != T_STUDY_UID);
    keys.push((T_STUDY_UID, Matcher::Single(uid.to_string())));
    let q = Query {
        level: Level::Study,
        study_root: true,
        keys,
        limit: 1,
    };
    let mut hit = None;
    run(conn, &q, |row| {
        hit = Some(summary(row));
        ControlFlow::Break(())
    })?;
    Ok(hit)
}

/// The series of a study, in the index's order (at most 10,000).
pub fn study_series(conn: &Connection, uid: &str) -> Result<Vec<SeriesSummary>, StoreError> {
    let q = Query {
        level: Level::Series,
        study_root: true,
        keys: vec![
            (T_STUDY_UID, Matcher::Single(uid.to_string())),
            (T_SERIES_UID, Matcher::Universal),
            (T_MODALITY, Matcher::Universal),
            (T_SERIES_NO, Matcher::Universal),
            (T_SERIES_DESC, Matcher::Universal),
            (T_N_SERIES_INST, Matcher::Universal),
        ],
        limit: 10_000,
    };
    let mut series = Vec::new();
    run(conn, &q, |mut row| {
        series.push(SeriesSummary {
            series_uid: take(&mut row, T_SERIES_UID),
            modality: take(&mut row, T_MODALITY),
            number: take(&mut row, T_SERIES_NO),
            description: take(&mut row, T_SERIES_DESC),
            instances: take(&mut row, T_N_SERIES_INST).parse().unwrap_or(0),
        });
        ControlFlow::Continue(())
    })?;
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::fixture::two_studies;

    fn search(conn: &Connection, keys: StudyKeys, limit: usize) -> (Vec<String>, bool) {
        let (hits, more) = search_studies(conn, &keys, limit).unwrap_or_else(|e| panic!("{e}"));
        (hits.into_iter().map(|h| h.study_uid).collect(), more)
    }

    fn refused(conn: &Connection, keys: StudyKeys) -> String {
        match search_studies(conn, &keys, 10) {
            Err(StoreError::BadSearch(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn searches_newest_first_and_narrows() {
        let (_dir, conn) = two_studies();
        assert_eq!(
            search(&conn, StudyKeys::default(), 10),
            (vec!["1.2".into(), "1.1".into()], false)
        );
        assert_eq!(
            search(&conn, StudyKeys::default(), 1),
            (vec!["1.1".into()], true)
        );
        let by = |f: fn(&mut StudyKeys)| {
            let mut k = StudyKeys::default();
            f(&mut k);
            search(&conn, k, 10).0
        };
        assert_eq!(by(|k| k.name = "dupont jean".into()), ["1.1"]);
        assert_eq!(by(|k| k.patient_id = "P2".into()), ["1.2"]);
        assert_eq!(by(|k| k.modality = "ct".into()), ["1.1"]);
        assert_eq!(by(|k| k.accession = "A1.2".into()), ["1.2"]);
        assert_eq!(by(|k| k.date = "20240101-20240131".into()), ["1.1"]);
        assert_eq!(by(|k| k.date = "20240304".into()), ["1.2"]);
        assert!(by(|k| k.date = "20240305-".into()).is_empty());
    }

    #[test]
    fn refuses_values_it_cannot_search_for() {
        let (_dir, conn) = two_studies();
        let m = refused(
            &conn,
            StudyKeys {
                patient_id: "a\\b".into(),
                ..StudyKeys::default()
            },
        );
        assert!(m.contains("without backslashes"), "{m}");
        let m = refused(
            &conn,
            StudyKeys {
                date: "2024".into(),
                ..StudyKeys::default()
            },
        );
        assert_eq!(m, "'2024' is not a date like 20240131");
    }

    #[test]
    fn one_study_and_its_series() {
        let (_dir, conn) = two_studies();
        let s = study_summary(&conn, "1.1")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("study 1.1 not found"));
        assert_eq!(
            s,
            StudySummary {
                study_uid: "1.1".into(),
                date: "20240102".into(),
                patient_name: "DUPONT^JEAN".into(),
                patient_id: "P1".into(),
                accession: "A1.1".into(),
                modalities: "CT".into(),
                description: String::new(),
                series: 2,
                instances: 3,
            }
        );
        assert_eq!(
            study_summary(&conn, "9.9").unwrap_or_else(|e| panic!("{e}")),
            None
        );
        let mut series = study_series(&conn, "1.1").unwrap_or_else(|e| panic!("{e}"));
        series.sort_by(|a, b| a.series_uid.cmp(&b.series_uid));
        let got: Vec<_> = series
            .iter()
            .map(|s| {
                (
                    s.series_uid.as_str(),
                    s.modality.as_str(),
                    s.number.as_str(),
                    s.instances,
                )
            })
            .collect();
        assert_eq!(got, [("1.1.1", "CT", "1", 2), ("1.1.2", "CT", "2", 1)]);
        assert!(study_series(&conn, "9.9")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty());
    }
}

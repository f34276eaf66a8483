//! A patient's facts as the index tells them: which patient an ID names, its last visit, birth
//! and death dates, whether a legal hold covers it, and its study dates.

use crate::LifecycleError;
use cairn_retention::{Birth, Facts};
use jiff::civil::Date;
use rusqlite::{params, Connection, OptionalExtension};

/// One patient of the index: its row number and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    /// The `patients` row id.
    pub id: i64,
    /// Patient ID (0010,0020).
    pub patient_id: String,
    /// Issuer of Patient ID (0010,0021), `""` for none.
    pub issuer: String,
}

impl Patient {
    /// The patient key the audit log names the patient by: the ID, and `^^^` and the issuer
    /// when there is one (the HL7 CX form), e.g. `P123` or `P123^^^HOSP`.
    pub fn key(&self) -> String {
        if self.issuer.is_empty() {
            self.patient_id.clone()
        } else {
            format!("{}^^^{}", self.patient_id, self.issuer)
        }
    }
}

/// Find the patient with `patient_id` (under `issuer` when given). Without an issuer, an ID that
/// exists under several issuers is [`LifecycleError::AmbiguousPatient`].
pub fn find_patient(
    conn: &Connection,
    patient_id: &str,
    issuer: Option<&str>,
) -> Result<Patient, LifecycleError> {
    let unknown = || LifecycleError::UnknownPatient {
        patient_id: patient_id.to_owned(),
        issuer: issuer.map(str::to_owned),
    };
    if patient_id.trim().is_empty() {
        return Err(LifecycleError::BadRequest(
            "a patient ID is required (patients without an ID cannot be named)".into(),
        ));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, issuer FROM patients WHERE patient_id = ?1 AND (?2 IS NULL OR issuer = ?2)
         ORDER BY issuer",
    )?;
    let rows: Vec<(i64, String)> = stmt
        .query_map(params![patient_id, issuer], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    match rows.as_slice() {
        [] => Err(unknown()),
        [(id, issuer)] => Ok(Patient {
            id: *id,
            patient_id: patient_id.to_owned(),
            issuer: issuer.clone(),
        }),
        several => Err(LifecycleError::AmbiguousPatient {
            patient_id: patient_id.to_owned(),
            issuers: several.iter().map(|(_, i)| i.clone()).collect(),
        }),
    }
}

/// The patient with row id `id`.
pub fn patient_by_id(conn: &Connection, id: i64) -> Result<Option<Patient>, LifecycleError> {
    Ok(conn
        .query_row(
            "SELECT patient_id, issuer FROM patients WHERE id = ?1",
            params![id],
            |r| {
                Ok(Patient {
                    id,
                    patient_id: r.get(0)?,
                    issuer: r.get(1)?,
                })
            },
        )
        .optional()?)
}

/// One study of a patient, with the date the rules count from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyFact {
    /// The `studies` row id.
    pub id: i64,
    /// Study Instance UID.
    pub study_uid: String,
    /// The Study Date as stored (`YYYYMMDD`, or `""`, or anything received).
    pub study_date: String,
    /// Its storage tier (`storage` or `archive`).
    pub tier: String,
    /// The date the rules count from: the study date when it is a real date, else the date its
    /// first instance was received; `None` when neither is known.
    pub date: Option<Date>,
}

/// What the index tells about one patient, before the rules are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientFacts {
    /// The birth date as stored.
    pub birth_date: String,
    /// The death date as stored (`YYYYMMDD` or `""`).
    pub death_date: String,
    /// Whether an active legal hold names the patient or one of its studies.
    pub held: bool,
    /// The patient's studies, by study date then UID.
    pub studies: Vec<StudyFact>,
}

impl PatientFacts {
    /// The last visit: the latest of the studies' dates.
    pub fn last_visit(&self) -> Option<Date> {
        self.studies.iter().filter_map(|s| s.date).max()
    }

    /// The dates of the studies that have one.
    pub fn study_dates(&self) -> Vec<Date> {
        self.studies.iter().filter_map(|s| s.date).collect()
    }

    /// The facts the retention rules read. A stored death date that is not a real date counts
    /// as none (only this crate writes it, always a real date).
    pub fn facts(&self) -> Facts {
        Facts {
            last_visit: self.last_visit(),
            birth: Birth::from_dicom_da(&self.birth_date),
            death: parse_da(&self.death_date),
            held: self.held,
        }
    }
}

/// Read patient `id`'s facts from the index.
pub fn read_facts(conn: &Connection, id: i64) -> Result<PatientFacts, LifecycleError> {
    let (birth_date, death_date): (String, String) = conn.query_row(
        "SELECT birth_date, death_date FROM patients WHERE id = ?1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let held: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM holds WHERE released_at IS NULL AND (patient_ref = ?1
           OR study_ref IN (SELECT id FROM studies WHERE patient_ref = ?1)))",
        params![id],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, study_uid, study_date, tier FROM studies WHERE patient_ref = ?1
         ORDER BY study_date, study_uid",
    )?;
    let rows: Vec<(i64, String, String, String)> = stmt
        .query_map(params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut studies = Vec::with_capacity(rows.len());
    for (study, study_uid, study_date, tier) in rows {
        let date = match parse_da(&study_date) {
            Some(date) => Some(date),
            None => first_received(conn, study)?,
        };
        studies.push(StudyFact {
            id: study,
            study_uid,
            study_date,
            tier,
            date,
        });
    }
    Ok(PatientFacts {
        birth_date,
        death_date,
        held,
        studies,
    })
}

/// The date study `study`'s first instance was received (UTC), if it has one.
fn first_received(conn: &Connection, study: i64) -> Result<Option<Date>, LifecycleError> {
    let at: Option<String> = conn.query_row(
        "SELECT min(i.received_at) FROM instances i JOIN series se ON se.id = i.series_ref
         WHERE se.study_ref = ?1",
        params![study],
        |r| r.get(0),
    )?;
    Ok(at.and_then(|at| at.get(..10).and_then(|d| d.parse::<Date>().ok())))
}

/// A DICOM date (DA): exactly eight ASCII digits that form a real calendar date.
pub fn parse_da(text: &str) -> Option<Date> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i16 = text[0..4].parse().ok()?;
    let month: i8 = text[4..6].parse().ok()?;
    let day: i8 = text[6..8].parse().ok()?;
    Date::new(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn dicom_dates_are_eight_digits_of_a_real_day() {
        assert_eq!(parse_da("20240229"), Some(date(2024, 2, 29)));
        for bad in [
            "",
            "20230229",
            "2024-01-01",
            "2024010",
            "202401011",
            "20241301",
            "2024 101",
        ] {
            assert_eq!(parse_da(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_key_names_the_issuer_when_there_is_one() {
        let mut p = Patient {
            id: 1,
            patient_id: "P1".into(),
            issuer: String::new(),
        };
        assert_eq!(p.key(), "P1");
        p.issuer = "HOSP".into();
        assert_eq!(p.key(), "P1^^^HOSP");
    }
}

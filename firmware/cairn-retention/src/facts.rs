//! What the caller knows about a patient: dates passed in, never looked up here.

use jiff::civil::Date;

/// The patient's birth date as far as the records tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Birth {
    /// A valid date.
    Known(Date),
    /// No birth date was recorded (empty or absent).
    Missing,
    /// A birth date was recorded but is not a valid date.
    Unparseable,
}

impl Birth {
    /// Reads a DICOM DA value (`YYYYMMDD`, trailing spaces or NULs allowed): empty is
    /// [`Birth::Missing`], a valid date is [`Birth::Known`], anything else [`Birth::Unparseable`].
    pub fn from_dicom_da(text: &str) -> Birth {
        let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
        if text.is_empty() {
            return Birth::Missing;
        }
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Birth::Unparseable;
        }
        let part = |range: std::ops::Range<usize>| text[range].parse::<i16>().ok();
        let parsed = match (part(0..4), part(4..6), part(6..8)) {
            (Some(y), Some(m), Some(d)) => i8::try_from(m)
                .ok()
                .zip(i8::try_from(d).ok())
                .and_then(|(m, d)| Date::new(y, m, d).ok()),
            _ => None,
        };
        parsed.map_or(Birth::Unparseable, Birth::Known)
    }

    /// The date, when known.
    pub fn date(self) -> Option<Date> {
        match self {
            Birth::Known(date) => Some(date),
            Birth::Missing | Birth::Unparseable => None,
        }
    }
}

/// The facts about one patient that the retention rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The last visit: the latest study date among the patient's studies (for a study without a
    /// date, its received date). `None` when the patient has no study.
    pub last_visit: Option<Date>,
    /// The birth date.
    pub birth: Birth,
    /// The date of death, when recorded.
    pub death: Option<Date>,
    /// Whether a legal hold covers the patient or study (a pending legal case suspends all time
    /// limits): a held record never expires.
    pub held: bool,
}

/// Facts that cannot all be true: the caller's records are wrong and a person must look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    /// The death date is earlier than the birth date.
    #[error(
        "impossible facts: the death date is before the birth date (review the patient's record)"
    )]
    DeathBeforeBirth,
    /// The death date is earlier than the last visit.
    #[error(
        "impossible facts: the death date is before the last visit (review the patient's record)"
    )]
    DeathBeforeLastVisit,
    /// The last visit is earlier than the birth date.
    #[error(
        "impossible facts: the last visit is before the birth date (review the patient's record)"
    )]
    LastVisitBeforeBirth,
}

impl Facts {
    /// Checks that the facts can all be true.
    pub fn check(&self) -> Result<(), FactsError> {
        let birth = self.birth.date();
        if let (Some(death), Some(birth)) = (self.death, birth) {
            if death < birth {
                return Err(FactsError::DeathBeforeBirth);
            }
        }
        if let (Some(death), Some(last)) = (self.death, self.last_visit) {
            if death < last {
                return Err(FactsError::DeathBeforeLastVisit);
            }
        }
        if let (Some(last), Some(birth)) = (self.last_visit, birth) {
            if last < birth {
                return Err(FactsError::LastVisitBeforeBirth);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn dicom_birth_dates() {
        assert_eq!(
            Birth::from_dicom_da("20040229"),
            Birth::Known(date(2004, 2, 29))
        );
        assert_eq!(
            Birth::from_dicom_da("19800101 "),
            Birth::Known(date(1980, 1, 1))
        );
        assert_eq!(
            Birth::from_dicom_da("19800101\0"),
            Birth::Known(date(1980, 1, 1))
        );
        assert_eq!(Birth::from_dicom_da(""), Birth::Missing);
        assert_eq!(Birth::from_dicom_da("  "), Birth::Missing);
        for bad in [
            "20030229",
            "19801301",
            "19800100",
            "1980-01-01",
            "1980",
            "UNKNOWN",
            "198001011",
        ] {
            assert_eq!(Birth::from_dicom_da(bad), Birth::Unparseable, "{bad}");
        }
    }

    #[test]
    fn impossible_facts_are_errors() {
        let facts = Facts {
            last_visit: Some(date(2010, 1, 1)),
            birth: Birth::Known(date(1980, 1, 1)),
            death: Some(date(2012, 1, 1)),
            held: false,
        };
        assert_eq!(facts.check(), Ok(()));
        let dead_early = Facts {
            death: Some(date(2009, 12, 31)),
            ..facts
        };
        assert_eq!(dead_early.check(), Err(FactsError::DeathBeforeLastVisit));
        let dead_unborn = Facts {
            death: Some(date(1979, 1, 1)),
            last_visit: None,
            ..facts
        };
        assert_eq!(dead_unborn.check(), Err(FactsError::DeathBeforeBirth));
        let seen_unborn = Facts {
            birth: Birth::Known(date(2011, 1, 1)),
            death: None,
            ..facts
        };
        assert_eq!(seen_unborn.check(), Err(FactsError::LastVisitBeforeBirth));
        let same_day = Facts {
            last_visit: Some(date(1980, 1, 1)),
            death: Some(date(1980, 1, 1)),
            ..facts
        };
        assert_eq!(same_day.check(), Ok(()));
    }
}

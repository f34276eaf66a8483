//! The answer: when a record may go, which clause decided, and the reason in words.

use std::fmt;

use jiff::civil::Date;

use crate::period::Period;

/// The clause that set an expiry date, with the date it counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clause {
    /// `after_last_visit`: `period` after the last visit.
    AfterLastVisit {
        /// The period.
        period: Period,
        /// The last visit it counts from.
        last_visit: Date,
    },
    /// `until_birthday`: until the patient's birthday at `age`.
    UntilBirthday {
        /// The age in years.
        age: u8,
        /// The date of that birthday (a 29 February birth counts from 1 March in common years).
        birthday: Date,
    },
    /// The death clause: `period` after the death.
    AfterDeath {
        /// The period.
        period: Period,
        /// The date of death.
        death: Date,
    },
    /// `after_study`: `period` after the latest of the study dates given.
    AfterStudy {
        /// The period.
        period: Period,
        /// The study date it counts from.
        study: Date,
    },
}

/// Why a record has no automatic expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeverReason {
    /// A legal hold is in place.
    Held,
    /// The rule set keeps records forever.
    Forever,
    /// The rules need the birth date and none is recorded.
    BirthDateMissing,
    /// The rules need the birth date and the recorded one is not a date.
    BirthDateUnparseable,
    /// The rules need the last visit and it is unknown.
    LastVisitUnknown,
    /// The rules count from the study date and no study date was given.
    StudyDateUnknown,
    /// The end date would fall after 9999-12-31, the end of the calendar.
    BeyondCalendar,
}

impl NeverReason {
    /// Whether a person must look at the record: data is missing or unreadable.
    pub fn needs_review(self) -> bool {
        match self {
            NeverReason::Held | NeverReason::Forever | NeverReason::BeyondCalendar => false,
            NeverReason::BirthDateMissing
            | NeverReason::BirthDateUnparseable
            | NeverReason::LastVisitUnknown
            | NeverReason::StudyDateUnknown => true,
        }
    }
}

/// When a record's retention ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Retention ends on `date`: the record is kept through that day and may be destroyed from the
    /// day after.
    On {
        /// The last day of retention.
        date: Date,
        /// The clause that set it (the latest of those that apply).
        clause: Clause,
    },
    /// No automatic expiry.
    Never {
        /// Why.
        why: NeverReason,
    },
}

impl Expiry {
    /// The last day of retention, or `None` when there is no automatic expiry.
    pub fn date(&self) -> Option<Date> {
        match self {
            Expiry::On { date, .. } => Some(*date),
            Expiry::Never { .. } => None,
        }
    }

    /// Whether a person must review the record (missing or unreadable data kept it forever).
    pub fn needs_review(&self) -> bool {
        match self {
            Expiry::On { .. } => false,
            Expiry::Never { why } => why.needs_review(),
        }
    }

    /// The reason in words, e.g. "20 years after the last visit on 2010-01-01" or "no automatic
    /// expiry: the birth date is unknown (review)". The same text as [`fmt::Display`].
    pub fn sentence(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clause::AfterLastVisit { period, last_visit } => {
                write!(f, "{} after the last visit on {last_visit}", period.words())
            }
            Clause::UntilBirthday { age, birthday } => {
                write!(f, "until the {} birthday on {birthday}", ordinal(*age))
            }
            Clause::AfterDeath { period, death } => {
                write!(f, "{} after the death on {death}", period.words())
            }
            Clause::AfterStudy { period, study } => {
                write!(f, "{} after the study on {study}", period.words())
            }
        }
    }
}

impl fmt::Display for NeverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NeverReason::Held => "kept while a legal hold is in place",
            NeverReason::Forever => "kept forever: the retention rules set no end",
            NeverReason::BirthDateMissing => {
                "no automatic expiry: the birth date is unknown (review)"
            }
            NeverReason::BirthDateUnparseable => {
                "no automatic expiry: the birth date cannot be read (review)"
            }
            NeverReason::LastVisitUnknown => {
                "no automatic expiry: the last visit is unknown (review)"
            }
            NeverReason::StudyDateUnknown => {
                "no automatic expiry: the study date is unknown (review)"
            }
            NeverReason::BeyondCalendar => "kept forever: the end falls after the year 9999",
        })
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::On { clause, .. } => clause.fmt(f),
            Expiry::Never { why } => why.fmt(f),
        }
    }
}

/// 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 28th...
fn ordinal(n: u8) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 18, 21, 22, 23, 28, 101, 111, 112]
            .into_iter()
            .map(ordinal)
            .collect();
        let want = [
            "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "18th", "21st", "22nd", "23rd",
            "28th", "101st", "111th", "112th",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn only_missing_data_needs_review() {
        use NeverReason::*;
        let cases = [
            (Held, false),
            (Forever, false),
            (BeyondCalendar, false),
            (BirthDateMissing, true),
            (BirthDateUnparseable, true),
            (LastVisitUnknown, true),
            (StudyDateUnknown, true),
        ];
        for (why, review) in cases {
            assert_eq!(Expiry::Never { why }.needs_review(), review, "{why:?}");
        }
        let on = Expiry::On {
            date: jiff::civil::date(2030, 1, 1),
            clause: Clause::UntilBirthday {
                age: 28,
                birthday: jiff::civil::date(2030, 1, 1),
            },
        };
        assert!(!on.needs_review());
    }
}

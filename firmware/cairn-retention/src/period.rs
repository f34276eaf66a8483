//! Periods such as `20y`, `6m` or `30d`, and adding them to dates without ever coming out short.

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;

/// The unit of a [`Period`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Calendar years (`y`).
    Years,
    /// Calendar months (`m`).
    Months,
    /// Days (`d`).
    Days,
}

/// A length of time written as a whole number and one unit: `20y`, `6m`, `30d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    amount: u32,
    unit: Unit,
}

/// The largest amount a period may have, in any unit (beyond it the calendar ends anyway).
pub const MAX_AMOUNT: u32 = 9_999;

/// Why a text is not a period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a period: write a whole number from 1 to {MAX_AMOUNT} and one unit, y (years), m (months) or d (days), like \"20y\", \"6m\" or \"30d\"")]
pub struct PeriodError {
    /// The text that was given.
    pub text: String,
}

impl Period {
    /// A period of `amount` units; `None` when `amount` is 0 or above [`MAX_AMOUNT`].
    pub fn new(amount: u32, unit: Unit) -> Option<Period> {
        (1..=MAX_AMOUNT)
            .contains(&amount)
            .then_some(Period { amount, unit })
    }

    /// A period of `n` years (shorthand for [`Period::new`] with [`Unit::Years`]).
    pub fn years(n: u32) -> Option<Period> {
        Period::new(n, Unit::Years)
    }

    /// The number of units.
    pub fn amount(self) -> u32 {
        self.amount
    }

    /// The unit.
    pub fn unit(self) -> Unit {
        self.unit
    }

    /// The period in words: "20 years", "1 month", "30 days".
    pub fn words(self) -> String {
        let unit = match self.unit {
            Unit::Years => "year",
            Unit::Months => "month",
            Unit::Days => "day",
        };
        let plural = if self.amount == 1 { "" } else { "s" };
        format!("{} {unit}{plural}", self.amount)
    }

    /// `date` plus this period, never earlier than any reading of the law.
    ///
    /// Where the same day does not exist in the target month (29 February plus one year,
    /// 31 August plus six months), the result is the first day of the following month, the later
    /// of the two possible readings. `None` when the result falls after 9999-12-31.
    pub fn after(self, date: Date) -> Option<Date> {
        self.shift(date, Overflow::NextMonth)
    }

    /// `date` plus this period, taking the earlier reading where the day does not exist (the last
    /// day of the target month). Used only to decide whether an event falls surely within a period.
    pub(crate) fn after_earliest(self, date: Date) -> Option<Date> {
        self.shift(date, Overflow::LastOfMonth)
    }

    fn shift(self, date: Date, overflow: Overflow) -> Option<Date> {
        let months = match self.unit {
            Unit::Days => {
                let span = jiff::Span::new().try_days(i64::from(self.amount)).ok()?;
                return date.checked_add(span).ok();
            }
            Unit::Years => i64::from(self.amount) * 12,
            Unit::Months => i64::from(self.amount),
        };
        let index = i64::from(date.year()) * 12 + i64::from(date.month() - 1) + months;
        let year = i16::try_from(index.div_euclid(12)).ok()?;
        let month = i8::try_from(index.rem_euclid(12) + 1).ok()?;
        let first = Date::new(year, month, 1).ok()?;
        if date.day() <= first.days_in_month() {
            return Date::new(year, month, date.day()).ok();
        }
        match overflow {
            Overflow::LastOfMonth => Some(first.last_of_month()),
            Overflow::NextMonth => first.last_of_month().tomorrow().ok(),
        }
    }
}

/// What to do when the day of the month does not exist in the target month.
#[derive(Clone, Copy)]
enum Overflow {
    LastOfMonth,
    NextMonth,
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Period, PeriodError> {
        let err = || PeriodError {
            text: text.to_owned(),
        };
        let unit = match text.chars().last() {
            Some('y') => Unit::Years,
            Some('m') => Unit::Months,
            Some('d') => Unit::Days,
            _ => return Err(err()),
        };
        let digits = &text[..text.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let amount: u32 = digits.parse().map_err(|_| err())?;
        Period::new(amount, unit).ok_or_else(err)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Years => 'y',
            Unit::Months => 'm',
            Unit::Days => 'd',
        };
        write!(f, "{}{unit}", self.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, date as d};

    fn p(text: &str) -> Period {
        text.parse().expect("a valid period")
    }

    #[test]
    fn parses_the_three_units_and_prints_them_back() {
        for text in ["20y", "6m", "30d", "1y", "9999d"] {
            assert_eq!(p(text).to_string(), text);
        }
        assert_eq!(p("20y"), Period::years(20).expect("20 years"));
        assert_eq!(p("6m").unit(), Unit::Months);
        assert_eq!(p("30d").amount(), 30);
    }

    #[test]
    fn rejects_what_is_not_a_period() {
        for text in [
            "",
            "y",
            "20",
            "20 y",
            " 20y",
            "20Y",
            "-1y",
            "+1y",
            "0y",
            "10000y",
            "1.5y",
            "20w",
            "20years",
            "99999999999999999999y",
            "2é",
        ] {
            let err = text.parse::<Period>().expect_err(text);
            assert_eq!(err.text, text);
            assert!(err.to_string().contains("like \"20y\""), "{err}");
        }
    }

    #[test]
    fn words_are_singular_or_plural() {
        assert_eq!(p("1y").words(), "1 year");
        assert_eq!(p("20y").words(), "20 years");
        assert_eq!(p("1m").words(), "1 month");
        assert_eq!(p("30d").words(), "30 days");
    }

    /// (period, from, the later reading, the earlier reading).
    const SHIFTS: [(&str, Date, Date, Date); 11] = [
        ("20y", d(2010, 1, 1), d(2030, 1, 1), d(2030, 1, 1)),
        ("20y", d(2012, 2, 29), d(2032, 2, 29), d(2032, 2, 29)),
        ("1y", d(2016, 2, 29), d(2017, 3, 1), d(2017, 2, 28)),
        ("10y", d(2016, 2, 29), d(2026, 3, 1), d(2026, 2, 28)),
        ("28y", d(2072, 2, 29), d(2100, 3, 1), d(2100, 2, 28)),
        ("6m", d(2023, 8, 31), d(2024, 3, 1), d(2024, 2, 29)),
        ("1m", d(2023, 1, 31), d(2023, 3, 1), d(2023, 2, 28)),
        ("1m", d(2024, 1, 29), d(2024, 2, 29), d(2024, 2, 29)),
        ("13m", d(2023, 12, 15), d(2025, 1, 15), d(2025, 1, 15)),
        ("30d", d(2024, 2, 15), d(2024, 3, 16), d(2024, 3, 16)),
        ("366d", d(2024, 1, 1), d(2025, 1, 1), d(2025, 1, 1)),
    ];

    #[test]
    fn a_missing_day_rounds_up_to_the_1st_of_the_next_month() {
        for (period, from, later, earlier) in SHIFTS {
            assert_eq!(p(period).after(from), Some(later), "{period} after {from}");
            let got = p(period).after_earliest(from);
            assert_eq!(got, Some(earlier), "{period} after {from}, earlier reading");
        }
    }

    #[test]
    fn past_the_end_of_the_calendar_is_none() {
        assert_eq!(p("20y").after(date(9990, 1, 1)), None);
        assert_eq!(p("9999d").after(date(9990, 1, 1)), None);
        assert_eq!(p("1d").after(date(9999, 12, 30)), Some(date(9999, 12, 31)));
    }
}

//! The computation: facts and rules in, one expiry out. Pure: no clock, no files.

use jiff::civil::Date;

use crate::expiry::{Clause, Expiry, NeverReason};
use crate::facts::{Birth, Facts, FactsError};
use crate::period::Period;
use crate::rules::{DeathClause, RuleSet};

/// Whether the death clause applies. `Unclear` when the death falls on the day or two that the
/// two readings of "less than N years after 29 February" (or 31 August plus months) disagree on.
enum DeathApplies {
    Yes,
    No,
    Unclear,
}

impl RuleSet {
    /// When the record described by `facts` and `study_dates` may go under these rules.
    ///
    /// `study_dates` are the dates of the studies the answer covers (for a study without a date,
    /// its received date): pass one study's date for that study's expiry, or all of the patient's
    /// to learn when the whole file may go. Only `after_study` reads them. The rules are applied
    /// as the crate documentation describes; missing data never shortens retention, and facts that
    /// cannot all be true are an error.
    pub fn expiry(&self, facts: &Facts, study_dates: &[Date]) -> Result<Expiry, FactsError> {
        facts.check()?;
        Ok(self
            .decide(facts, study_dates)
            .unwrap_or_else(|why| Expiry::Never { why }))
    }

    fn decide(&self, facts: &Facts, study_dates: &[Date]) -> Result<Expiry, NeverReason> {
        let clauses = self.clauses();
        if facts.held {
            return Err(NeverReason::Held);
        }
        if clauses.forever {
            return Err(NeverReason::Forever);
        }
        let mut candidates: Vec<(Date, Clause)> = Vec::new();
        let death = match (clauses.death, facts.death) {
            (Some(clause), Some(death)) => {
                let last = facts.last_visit.ok_or(NeverReason::LastVisitUnknown)?;
                Some((clause, death, death_applies(clause, death, last)))
            }
            _ => None,
        };
        if let Some((clause, death, DeathApplies::Yes | DeathApplies::Unclear)) = death {
            candidates.push(after(clause.keep, death, |period| Clause::AfterDeath {
                period,
                death,
            })?);
        }
        if !matches!(death, Some((_, _, DeathApplies::Yes))) {
            if let Some(period) = clauses.after_last_visit {
                let last_visit = facts.last_visit.ok_or(NeverReason::LastVisitUnknown)?;
                candidates.push(after(period, last_visit, |period| {
                    Clause::AfterLastVisit { period, last_visit }
                })?);
            }
            if let Some(age) = clauses.until_birthday {
                let birth = match facts.birth {
                    Birth::Known(date) => date,
                    Birth::Missing => return Err(NeverReason::BirthDateMissing),
                    Birth::Unparseable => return Err(NeverReason::BirthDateUnparseable),
                };
                let years = Period::years(u32::from(age)).ok_or(NeverReason::BeyondCalendar)?;
                let birthday = years.after(birth).ok_or(NeverReason::BeyondCalendar)?;
                candidates.push((birthday, Clause::UntilBirthday { age, birthday }));
            }
        }
        if let Some(period) = clauses.after_study {
            let study = study_dates
                .iter()
                .copied()
                .max()
                .ok_or(NeverReason::StudyDateUnknown)?;
            candidates.push(after(period, study, |period| Clause::AfterStudy {
                period,
                study,
            })?);
        }
        // The latest clause wins; among equal dates the first listed names the reason.
        let chosen = candidates
            .into_iter()
            .reduce(|best, next| if next.0 > best.0 { next } else { best });
        // A validated rule set always yields a clause here; if none did, keeping is the safe side.
        let (date, clause) = chosen.ok_or(NeverReason::Forever)?;
        Ok(Expiry::On { date, clause })
    }
}

/// `period` after `from`, with the clause that says so.
fn after(
    period: Period,
    from: Date,
    clause: impl FnOnce(Period) -> Clause,
) -> Result<(Date, Clause), NeverReason> {
    let date = period.after(from).ok_or(NeverReason::BeyondCalendar)?;
    Ok((date, clause(period)))
}

/// "Dies less than `within` after the last visit", under both readings of a missing day.
fn death_applies(clause: DeathClause, death: Date, last_visit: Date) -> DeathApplies {
    // A bound past the end of the calendar is infinitely far: every death comes before it.
    let surely_before = clause
        .within
        .after_earliest(last_visit)
        .is_none_or(|bound| death < bound);
    let maybe_before = clause
        .within
        .after(last_visit)
        .is_none_or(|bound| death < bound);
    match (surely_before, maybe_before) {
        (true, _) => DeathApplies::Yes,
        (false, true) => DeathApplies::Unclear,
        (false, false) => DeathApplies::No,
    }
}

//! `cairnctl retention show`, `patient death`, `hold add|release|list`: how long a patient's
//! images are kept, dates of death and legal holds. Reads come straight from the index
//! (read-only) and `retention show` computes from the current facts with the configured rule
//! set; every change goes to the daemon's lifecycle thread as a request file, which carries it
//! out and audits it. Exit 0 done, 2 refused or bad input (the message says why), 1 a failure.

use crate::config;
use crate::outcome::{ask, failed, print_json, refused};
use crate::user::who;
use cairn_lifecycle::requests::Request;
use cairn_lifecycle::{HoldRow, RetentionView, StudyTier};
use cairn_store::DataDir;
use clap::{ArgGroup, Subcommand};
use jiff::civil::Date;
use std::path::Path;

/// `cairnctl retention ...`.
#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Until when a patient's images are kept, and why (computed now from the patient's
    /// studies, dates and holds with the configured rules).
    Show {
        /// Patient ID, as on the images.
        #[arg(long)]
        patient: String,
        /// Issuer of Patient ID, when the same ID is used by several issuers.
        #[arg(long)]
        issuer: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `cairnctl patient ...`.
#[derive(Subcommand)]
pub enum PatientCommand {
    /// Record a patient's date of death, or clear a wrong one (audited).
    #[command(group(ArgGroup::new("what").required(true).args(["date", "clear"])))]
    Death {
        /// Patient ID, as on the images.
        #[arg(long)]
        patient: String,
        /// Issuer of Patient ID, when the same ID is used by several issuers.
        #[arg(long)]
        issuer: Option<String>,
        /// The date of death, YYYYMMDD.
        #[arg(long)]
        date: Option<String>,
        /// Remove the recorded date of death instead.
        #[arg(long)]
        clear: bool,
        /// Why, e.g. the document the date comes from (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// Give up waiting for cairnd after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// `cairnctl hold ...`.
#[derive(Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold on a patient or on one study: nothing of it expires until the hold
    /// is released (audited).
    #[command(group(ArgGroup::new("on").required(true).args(["patient", "study"])))]
    Add {
        /// The patient, by Patient ID.
        #[arg(long)]
        patient: Option<String>,
        /// Issuer of Patient ID, when the same ID is used by several issuers.
        #[arg(long, requires = "patient")]
        issuer: Option<String>,
        /// The study, by Study Instance UID.
        #[arg(long)]
        study: Option<String>,
        /// Why, e.g. the legal case (kept with the hold and in the audit trail).
        #[arg(long)]
        reason: String,
        /// Give up waiting for cairnd after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Release a hold by its number (audited).
    Release {
        /// The hold's number, as `hold list` shows it.
        #[arg(long)]
        id: i64,
        /// Why, e.g. the case was closed (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// Give up waiting for cairnd after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// The holds in place.
    List {
        /// Also the released ones.
        #[arg(long)]
        all: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `cairnctl retention ...`.
pub fn retention(data: &DataDir, explicit: Option<&Path>, cmd: RetentionCommand) -> i32 {
    let RetentionCommand::Show {
        patient,
        issuer,
        json,
    } = cmd;
    let rules = match config::rule_set(data.root(), explicit) {
        Ok(r) => r,
        Err(message) => return refused(&message),
    };
    let view = cairn_lifecycle::open_read(data).and_then(|conn| {
        cairn_lifecycle::retention_view(
            &conn,
            &patient,
            issuer.as_deref(),
            &rules,
            lifecycle_today(data),
        )
    });
    match view {
        Ok(v) if json => print_json(&v),
        Ok(v) => {
            print_view(&v);
            0
        }
        Err(e) => failed(&e),
    }
}

/// `cairnctl patient ...`.
pub fn patient(data: &DataDir, cmd: PatientCommand) -> i32 {
    let PatientCommand::Death {
        patient,
        issuer,
        date,
        clear: _,
        reason,
        timeout,
    } = cmd;
    let checked = nonempty("patient", &patient)
        .and_then(|()| given_reason(&reason))
        .and_then(|()| match &date {
            Some(d) => death_date(d, lifecycle_today(data)),
            None => Ok(()),
        });
    if let Err(message) = checked {
        return refused(&message);
    }
    ask(
        data,
        &Request::SetDeath {
            patient_id: patient,
            issuer,
            date,
            reason,
            by: who(),
        },
        timeout,
    )
}

/// `cairnctl hold ...`.
pub fn hold(data: &DataDir, cmd: HoldCommand) -> i32 {
    match cmd {
        HoldCommand::Add {
            patient,
            issuer,
            study,
            reason,
            timeout,
        } => {
            let checked = match (&patient, &study) {
                (Some(p), None) => nonempty("patient", p),
                (None, Some(s)) => nonempty("study", s),
                _ => Err("give --patient or --study, not both".to_owned()),
            };
            if let Err(message) = checked.and_then(|()| given_reason(&reason)) {
                return refused(&message);
            }
            ask(
                data,
                &Request::AddHold {
                    patient_id: patient,
                    issuer,
                    study_uid: study,
                    reason,
                    by: who(),
                },
                timeout,
            )
        }
        HoldCommand::Release {
            id,
            reason,
            timeout,
        } => {
            if let Err(message) = given_reason(&reason) {
                return refused(&message);
            }
            ask(
                data,
                &Request::ReleaseHold {
                    id,
                    reason,
                    by: who(),
                },
                timeout,
            )
        }
        HoldCommand::List { all, json } => {
            let rows = cairn_lifecycle::open_read(data)
                .and_then(|conn| cairn_lifecycle::list_holds(&conn, all));
            match rows {
                Ok(rows) if json => print_json(&rows),
                Ok(rows) => {
                    print_holds(&rows, all);
                    0
                }
                Err(e) => failed(&e),
            }
        }
    }
}

/// The date the daemon decides on: today in UTC, moved by a demo box's clock offset.
fn lifecycle_today(data: &DataDir) -> Date {
    cairn_lifecycle::clock::today(data.root()).unwrap_or_else(|_| cairn_lifecycle::today())
}

/// An option's value must not be blank.
fn nonempty(option: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("--{option} is empty"))
    } else {
        Ok(())
    }
}

/// Every change is audited with its reason, so one must be given.
fn given_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() {
        Err("--reason is empty: say why (it is kept in the audit trail)".into())
    } else {
        Ok(())
    }
}

/// A date of death as typed: YYYYMMDD, a real calendar day, not after `today`. (Whether it
/// comes after the birth and the studies is for the daemon, which knows them.)
fn death_date(text: &str, today: Date) -> Result<(), String> {
    let digits = text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit());
    let parsed = digits
        .then(|| {
            let n = |r: std::ops::Range<usize>| text[r].parse::<i16>().ok();
            let month = n(4..6).and_then(|m| i8::try_from(m).ok());
            let day = n(6..8).and_then(|d| i8::try_from(d).ok());
            match (n(0..4), month, day) {
                (Some(y), Some(m), Some(d)) => Date::new(y, m, d).ok(),
                _ => None,
            }
        })
        .flatten();
    match parsed {
        None if !digits => Err(format!(
            "--date {text:?} is not a date: write it as YYYYMMDD, like 20240131"
        )),
        None => Err(format!("--date {text} is not a day of the calendar")),
        Some(d) if d > today => Err(format!("--date {text} is in the future (today is {today})")),
        Some(_) => Ok(()),
    }
}

/// "12345", with the issuer when there is one: "12345 (issuer HOSP)".
fn patient_words(patient_id: &str, issuer: &str) -> String {
    if issuer.is_empty() {
        patient_id.to_owned()
    } else {
        format!("{patient_id} (issuer {issuer})")
    }
}

/// A study's date as the view gives it (`YYYY-MM-DD` when it is a real date, else as
/// received, without control characters); `no date` when there is none.
fn study_day(date: &str) -> String {
    if date.is_empty() {
        "no date".into()
    } else {
        date.chars().filter(|c| !c.is_control()).collect()
    }
}

/// A stored UTC time (`2026-12-02T09:52:50.064956Z`) to the minute, for people
/// (`2026-12-02 09:52 UTC`); anything else as it is.
fn moment(at: &str) -> String {
    match (at.get(..10), at.get(10..11), at.get(11..16)) {
        (Some(day), Some("T"), Some(time)) if at.ends_with('Z') => format!("{day} {time} UTC"),
        _ => at.to_owned(),
    }
}

/// The storage tier of a study, in the words every listing uses.
fn tier_words(study: &StudyTier) -> &str {
    &study.tier
}

fn print_view(v: &RetentionView) {
    let who = format!("Patient {}", patient_words(&v.patient_id, &v.issuer));
    let kept = match &v.expires_on {
        Some(day) => format!("{who}: kept until {day} ({})", v.reason),
        None => format!("{who}: {}", v.reason),
    };
    let hold = if v.held {
        "Under legal hold: nothing of it expires until the hold is released (cairnctl hold list)."
    } else {
        "No legal hold."
    };
    println!("{kept}. {hold}");
    if v.review {
        println!(
            "Needs review: a date the rules need is missing or unreadable, so nothing expires \
             until a person has checked this patient's records."
        );
    }
    let last = v.last_visit.as_deref().unwrap_or("unknown");
    println!("Rules: {}. Last visit: {last}.", v.rule_set);
    match v.studies.len() {
        0 => println!("No studies."),
        1 => println!("1 study:"),
        n => println!("{n} studies:"),
    }
    for s in &v.studies {
        println!(
            "  {:<10}  {:<8}  {}",
            study_day(&s.study_date),
            tier_words(s),
            s.study_uid
        );
    }
}

fn print_holds(rows: &[HoldRow], all: bool) {
    if rows.is_empty() {
        println!(
            "{}",
            if all {
                "No legal hold was ever placed."
            } else {
                "No legal hold in place."
            }
        );
        return;
    }
    for h in rows {
        let on = match (&h.patient_id, &h.study_uid) {
            (Some(p), _) => format!(
                "patient {}",
                patient_words(p, h.issuer.as_deref().unwrap_or(""))
            ),
            (None, Some(s)) => format!("study {s}"),
            (None, None) => "nothing".into(),
        };
        println!(
            "Hold {} on {on}: placed {} by {}: {}",
            h.id,
            moment(&h.placed_at),
            h.placed_by,
            h.reason
        );
        if let Some(at) = &h.released_at {
            println!(
                "  released {} by {}: {}",
                moment(at),
                h.released_by.as_deref().unwrap_or("?"),
                h.release_reason.as_deref().unwrap_or("")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn dates_of_death_are_calendar_days_not_in_the_future() {
        let today = date(2026, 12, 2);
        assert_eq!(death_date("20240229", today), Ok(()));
        assert_eq!(death_date("20261202", today), Ok(()));
        for (text, why) in [
            ("20230231", "not a day of the calendar"),
            ("20231301", "not a day of the calendar"),
            ("20230000", "not a day of the calendar"),
            ("20261203", "in the future (today is 2026-12-02)"),
            ("2023-02-01", "write it as YYYYMMDD"),
            ("", "write it as YYYYMMDD"),
            ("2023021", "write it as YYYYMMDD"),
            ("2023é101", "write it as YYYYMMDD"),
        ] {
            let e = death_date(text, today).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn blank_reasons_and_values_are_refused() {
        assert!(given_reason("death certificate").is_ok());
        for blank in ["", "  ", "\t\n"] {
            assert!(given_reason(blank)
                .unwrap_err()
                .contains("--reason is empty"));
            assert_eq!(
                nonempty("patient", blank).unwrap_err(),
                "--patient is empty"
            );
        }
    }

    #[test]
    fn study_dates_read_as_days() {
        assert_eq!(study_day("2026-03-02"), "2026-03-02");
        assert_eq!(study_day(""), "no date");
        assert_eq!(study_day("2026é3"), "2026é3");
        assert_eq!(study_day("2026\n0302"), "20260302");
    }

    #[test]
    fn times_read_to_the_minute() {
        assert_eq!(
            moment("2026-12-02T09:52:50.064956Z"),
            "2026-12-02 09:52 UTC"
        );
        assert_eq!(moment("yesterday"), "yesterday");
        assert_eq!(moment("2026-12-02é09:52:50Z"), "2026-12-02é09:52:50Z");
    }

    #[test]
    fn patients_are_named_with_their_issuer() {
        assert_eq!(patient_words("12345", ""), "12345");
        assert_eq!(patient_words("12345", "HOSP"), "12345 (issuer HOSP)");
    }
}

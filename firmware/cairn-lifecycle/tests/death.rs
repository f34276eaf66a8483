//! Dates of death: recorded and cleared through the store's writer, audited, followed by the
//! expiry; impossible dates refused with nothing changed.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::death::{set_death, DeathChange};
use cairn_lifecycle::recompute::recompute_all;
use cairn_lifecycle::LifecycleError;
use cairn_retention::RuleSet;
use common::{open, pat, Box_};
use jiff::civil::{date, Date};
use std::sync::Arc;

const TODAY: Date = date(2026, 12, 2);

fn change(date: Option<&str>, reason: &str) -> DeathChange {
    DeathChange {
        patient_id: "P1".into(),
        issuer: None,
        date: date.map(str::to_owned),
        reason: reason.into(),
        by: "user:alice".into(),
    }
}

fn death(b: &Box_, c: DeathChange) -> Result<String, LifecycleError> {
    b.run(move |conn, now| set_death(conn, now, TODAY, &c))
}

/// Patient P1, born 1950-01-01, seen on 2010-01-01, its expiry computed.
fn seen() -> (Box_, Arc<RuleSet>) {
    let b = open();
    let rules = Arc::new(RuleSet::builtin("fr").unwrap());
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    recompute_all(&b.store, &rules).unwrap();
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));
    (b, rules)
}

#[test]
fn a_death_date_changes_the_expiry_and_clearing_it_changes_it_back() {
    let (b, rules) = seen();
    let done = death(&b, change(Some("20120302"), "death certificate")).unwrap();
    assert_eq!(done, "date of death of patient P1 recorded: 2012-03-02");
    assert!(b.row("P1").0, "the patient is marked for recomputing");
    recompute_all(&b.store, &rules).unwrap();
    let (_, expires, reason, ..) = b.row("P1");
    assert_eq!(expires.as_deref(), Some("2022-03-02"));
    assert_eq!(reason, "10 years after the death on 2012-03-02");

    let rows = b.audit("patient-death");
    assert_eq!(rows.len(), 1);
    let (actor, object, detail) = &rows[0];
    assert_eq!((actor.as_str(), object.as_str()), ("user:alice", "P1"));
    assert_eq!(detail["date"], "2012-03-02");
    assert_eq!(detail["previous"], serde_json::Value::Null);
    assert_eq!(detail["reason"], "death certificate");

    death(&b, change(None, "wrong patient")).unwrap();
    recompute_all(&b.store, &rules).unwrap();
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));
    let rows = b.audit("patient-death");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].2["date"], serde_json::Value::Null);
    assert_eq!(rows[1].2["previous"], "2012-03-02");
    assert_eq!(rows[1].2["reason"], "wrong patient");
}

#[test]
fn a_death_long_after_the_last_visit_leaves_the_expiry() {
    let (b, rules) = seen();
    death(&b, change(Some("20250101"), "registry")).unwrap();
    recompute_all(&b.store, &rules).unwrap();
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));
}

#[test]
fn impossible_or_incomplete_changes_are_refused_and_change_nothing() {
    let (b, _) = seen();
    let before = b.snapshot();
    let cases: Vec<(DeathChange, &str)> = vec![
        (change(Some("20230231"), "x"), "not a date"),
        (change(Some("2012-03-02"), "x"), "not a date"),
        (change(Some(""), "x"), "not a date"),
        (change(Some("20261203"), "x"), "is in the future"),
        (
            change(Some("19491231"), "x"),
            "is before the birth date 1950-01-01",
        ),
        (
            change(Some("20091231"), "x"),
            "is before a study of the patient (the last on 2010-01-01)",
        ),
        (change(Some("20120302"), "  "), "a reason is required"),
        (change(None, "x"), "nothing to clear"),
        (
            DeathChange {
                patient_id: "P9".into(),
                ..change(Some("20120302"), "x")
            },
            "no patient with ID \"P9\"",
        ),
        (
            DeathChange {
                by: " ".into(),
                ..change(Some("20120302"), "x")
            },
            "who asks",
        ),
    ];
    for (c, why) in cases {
        let what = format!("{c:?}");
        let e = death(&b, c).unwrap_err();
        assert!(e.is_bad_input(), "{what}: {e}");
        assert!(e.to_string().contains(why), "{what}: {e}");
        assert_eq!(b.snapshot(), before, "{what} changed something");
    }
    assert!(b.audit("patient-death").is_empty());
}

#[test]
fn a_death_on_the_day_of_the_last_visit_or_today_is_possible() {
    let (b, _) = seen();
    death(&b, change(Some("20100101"), "died that day")).unwrap();
    death(&b, change(Some("20261202"), "died today")).unwrap();
    assert_eq!(b.audit("patient-death").len(), 2);
}

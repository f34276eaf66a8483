//! The recompute pass on a real store: expiries follow the studies that arrive, and a pass that
//! changed anything leaves one audit row.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::recompute::{mark_other_rule_sets, recompute_all, recompute_batch};
use cairn_retention::RuleSet;
use common::{open, pat};
use std::sync::Arc;

fn fr() -> Arc<RuleSet> {
    Arc::new(RuleSet::builtin("fr").unwrap())
}

#[test]
fn a_study_sets_the_expiry_and_a_later_one_extends_it() {
    let b = open();
    let rules = fr();
    b.store(pat("P1", "19700615"), "1.2.1", "20100101", 1);
    assert!(b.row("P1").0, "a new study marks the patient dirty");
    let counts = recompute_all(&b.store, &rules).unwrap();
    assert_eq!(
        (counts.recomputed, counts.changed, counts.review),
        (1, 1, 0)
    );
    let (dirty, expires, reason, review, last, rule_set) = b.row("P1");
    assert!(!dirty);
    assert_eq!(expires.as_deref(), Some("2030-01-01"));
    assert_eq!(reason, "20 years after the last visit on 2010-01-01");
    assert!(!review);
    assert_eq!((last.as_str(), rule_set.as_str()), ("2010-01-01", "fr"));

    b.store(pat("P1", "19700615"), "1.2.2", "20150301", 1);
    assert!(b.row("P1").0);
    recompute_all(&b.store, &rules).unwrap();
    let (dirty, expires, reason, ..) = b.row("P1");
    assert!(!dirty);
    assert_eq!(expires.as_deref(), Some("2035-03-01"));
    assert_eq!(reason, "20 years after the last visit on 2015-03-01");

    let passes = b.audit("lifecycle-pass");
    assert_eq!(passes.len(), 2, "one row per pass that changed an expiry");
    let (actor, _, detail) = &passes[0];
    assert_eq!(actor, "system");
    assert_eq!(detail["recomputed"], 1);
    assert_eq!(detail["changed"], 1);
    assert_eq!(detail["rule_set"], "fr");
    assert!(!detail.to_string().contains("Doe"), "no patient name");

    // nothing dirty: nothing done, no audit row
    let counts = recompute_all(&b.store, &rules).unwrap();
    assert_eq!(counts.recomputed, 0);
    assert_eq!(b.audit("lifecycle-pass").len(), 2);
}

#[test]
fn a_minor_is_kept_until_the_28th_birthday() {
    let b = open();
    b.store(pat("P1", "20100504"), "1.2.1", "20120101", 1);
    recompute_all(&b.store, &fr()).unwrap();
    let (_, expires, reason, review, ..) = b.row("P1");
    assert_eq!(expires.as_deref(), Some("2038-05-04"));
    assert_eq!(reason, "until the 28th birthday on 2038-05-04");
    assert!(!review);
}

#[test]
fn a_missing_birth_date_means_review_and_no_expiry() {
    let b = open();
    b.store(pat("P1", ""), "1.2.1", "20120101", 1);
    let counts = recompute_all(&b.store, &fr()).unwrap();
    assert_eq!(counts.review, 1);
    let (dirty, expires, reason, review, last, _) = b.row("P1");
    assert!(!dirty);
    assert_eq!(expires, None);
    assert!(review);
    assert_eq!(
        reason,
        "no automatic expiry: the birth date is unknown (review)"
    );
    assert_eq!(last, "2012-01-01");
}

#[test]
fn impossible_facts_mean_review_and_no_expiry_never_a_shorter_one() {
    let b = open();
    // a study before the birth
    b.store(pat("P1", "20200101"), "1.2.1", "20100101", 1);
    recompute_all(&b.store, &fr()).unwrap();
    let (_, expires, reason, review, ..) = b.row("P1");
    assert_eq!(expires, None);
    assert!(review);
    assert!(
        reason.contains("the last visit is before the birth date"),
        "{reason}"
    );
}

#[test]
fn the_rule_set_changing_marks_every_patient_for_recomputing() {
    let b = open();
    b.store(pat("P1", "19700615"), "1.2.1", "20100101", 1);
    b.store(pat("P2", "19700615"), "1.2.2", "20120101", 1);
    recompute_all(&b.store, &fr()).unwrap();
    let c = b.conn();
    assert_eq!(mark_other_rule_sets(&c, "fr").unwrap(), 0);
    assert_eq!(mark_other_rule_sets(&c, "fixed-10y").unwrap(), 2);
    drop(c);
    let fixed = Arc::new(RuleSet::builtin("fixed-10y").unwrap());
    recompute_all(&b.store, &fixed).unwrap();
    let (dirty, expires, reason, _, _, rule_set) = b.row("P2");
    assert!(!dirty);
    assert_eq!(expires.as_deref(), Some("2022-01-01"));
    assert_eq!(reason, "10 years after the study on 2012-01-01");
    assert_eq!(rule_set, "fixed-10y");
}

#[test]
fn a_batch_says_whether_dirty_patients_remain() {
    let b = open();
    for i in 0..5 {
        b.store(
            pat(&format!("P{i}"), "19700615"),
            &format!("1.2.{i}"),
            "20100101",
            1,
        );
    }
    // a batch of two leaves the rest dirty and says so
    let c = b.conn();
    let (counts, more) = recompute_batch(&c, "2026-01-01T00:00:00Z", &fr(), 2).unwrap();
    assert_eq!((counts.recomputed, more), (2, true));
    let (counts, more) = recompute_batch(&c, "2026-01-01T00:00:00Z", &fr(), 3).unwrap();
    assert_eq!((counts.recomputed, more), (3, false));
    drop(c);
    for i in 0..5 {
        assert!(!b.row(&format!("P{i}")).0);
    }
}

#[test]
fn a_row_left_by_a_removed_patient_does_not_stop_the_pass() {
    let b = open();
    b.store(pat("P1", "19700615"), "1.2.1", "20100101", 1);
    let c = b.conn();
    c.execute_batch(
        "PRAGMA foreign_keys = OFF;
         INSERT INTO patient_retention (patient_ref) VALUES (999);",
    )
    .unwrap();
    drop(c);
    let counts = recompute_all(&b.store, &fr()).unwrap();
    assert_eq!(counts.recomputed, 1);
    let left: i64 = b
        .conn()
        .query_row("SELECT count(*) FROM patient_retention", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1, "the orphan row is gone");
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));
}

#[test]
fn a_birth_date_received_later_clears_the_review() {
    let b = open();
    b.store(pat("P1", ""), "1.2.1", "20100101", 1);
    recompute_all(&b.store, &fr()).unwrap();
    assert!(b.row("P1").3, "review without a birth date");
    // a later instance carries the birth date; the store fills the empty field
    b.store(pat("P1", "20050101"), "1.2.1", "20100101", 2);
    assert!(
        b.row("P1").0,
        "the filled birth date marks the patient dirty"
    );
    recompute_all(&b.store, &fr()).unwrap();
    let (_, expires, reason, review, ..) = b.row("P1");
    assert!(!review);
    assert_eq!(expires.as_deref(), Some("2033-01-01"));
    assert_eq!(reason, "until the 28th birthday on 2033-01-01");
}

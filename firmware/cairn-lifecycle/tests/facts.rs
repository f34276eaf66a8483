//! A patient's facts read from a real index: studies stored through a real store.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::facts::{find_patient, read_facts};
use cairn_lifecycle::LifecycleError;
use cairn_retention::Birth;
use common::{open, pat, Pat};
use jiff::civil::date;

#[test]
fn the_last_visit_is_the_latest_study_date() {
    let b = open();
    b.store(pat("P1", "19800101"), "1.2.1", "20100101", 1);
    b.store(pat("P1", "19800101"), "1.2.2", "20150607", 1);
    b.store(pat("P1", "19800101"), "1.2.3", "20120101", 1);
    let c = b.conn();
    let p = find_patient(&c, "P1", None).unwrap();
    assert_eq!((p.patient_id.as_str(), p.issuer.as_str()), ("P1", ""));
    let f = read_facts(&c, p.id).unwrap();
    assert_eq!(f.last_visit(), Some(date(2015, 6, 7)));
    assert_eq!(f.studies.len(), 3);
    assert_eq!(f.study_dates().len(), 3);
    let facts = f.facts();
    assert_eq!(facts.birth, Birth::Known(date(1980, 1, 1)));
    assert_eq!((facts.death, facts.held), (None, false));
    assert_eq!(f.studies[0].tier, "storage");
}

#[test]
fn a_study_without_a_valid_date_counts_from_its_first_instance() {
    let b = open();
    // an invalid date is indexed as empty; the study then counts from its receipt (today)
    b.store(pat("P1", ""), "1.2.1", "2010-01-01", 1);
    b.store(pat("P1", ""), "1.2.1", "", 2);
    let c = b.conn();
    let f = read_facts(&c, find_patient(&c, "P1", None).unwrap().id).unwrap();
    let today = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    assert_eq!(f.last_visit(), Some(today));
    assert_eq!(f.facts().birth, Birth::Missing);
}

#[test]
fn an_unreadable_birth_date_is_told_apart_from_a_missing_one() {
    let b = open();
    b.store(pat("P1", "19801301"), "1.2.1", "20100101", 1);
    let c = b.conn();
    let f = read_facts(&c, find_patient(&c, "P1", None).unwrap().id).unwrap();
    // the store indexes only eight digits; an impossible day is kept and is unreadable here
    assert_eq!(f.facts().birth, Birth::Unparseable);
}

#[test]
fn a_patient_is_named_by_id_and_issuer() {
    let b = open();
    let a = Pat {
        id: "P1",
        issuer: "HOSP-A",
        birth: "",
    };
    let z = Pat {
        issuer: "HOSP-Z",
        ..a
    };
    b.store(a, "1.2.1", "20100101", 1);
    b.store(z, "1.2.2", "20100101", 1);
    b.store(pat("P2", ""), "1.2.3", "20100101", 1);
    let c = b.conn();
    match find_patient(&c, "P1", None).unwrap_err() {
        LifecycleError::AmbiguousPatient { issuers, .. } => {
            assert_eq!(issuers, ["HOSP-A", "HOSP-Z"])
        }
        e => panic!("{e}"),
    }
    let p = find_patient(&c, "P1", Some("HOSP-Z")).unwrap();
    assert_eq!(p.key(), "P1^^^HOSP-Z");
    assert_eq!(find_patient(&c, "P2", None).unwrap().key(), "P2");
    let e = find_patient(&c, "P3", None).unwrap_err();
    assert_eq!(e.to_string(), "no patient with ID \"P3\"");
    assert!(e.is_bad_input());
    let e = find_patient(&c, "P2", Some("HOSP-A")).unwrap_err();
    assert!(matches!(e, LifecycleError::UnknownPatient { .. }), "{e}");
}

//! The read-only retention view: computed from the current facts (never a stale stored row),
//! with the JSON field names `cairnctl retention show --json` prints.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::recompute::recompute_all;
use cairn_lifecycle::{open_read, retention_view, today, LifecycleError};
use cairn_retention::RuleSet;
use common::{open, pat, Pat};
use std::sync::Arc;

#[test]
fn the_view_is_computed_now_not_read_from_a_stale_row() {
    let b = open();
    let fr = RuleSet::builtin("fr").unwrap();
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    recompute_all(&b.store, &Arc::new(fr.clone())).unwrap();
    // a later study arrives; no pass has run yet, the stored row is stale
    b.store(pat("P1", "19500101"), "1.2.2", "20150607", 1);
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));
    let c = open_read(&b.data).unwrap();
    let v = retention_view(&c, "P1", None, &fr, today()).unwrap();
    assert_eq!(v.expires_on.as_deref(), Some("2035-06-07"));
    assert_eq!(v.reason, "20 years after the last visit on 2015-06-07");
    assert_eq!(v.last_visit.as_deref(), Some("2015-06-07"));
    assert_eq!((v.held, v.review), (false, false));
    assert_eq!(v.rule_set, "fr");
    let dates: Vec<(&str, &str, &str)> = v
        .studies
        .iter()
        .map(|s| (s.study_uid.as_str(), s.study_date.as_str(), s.tier.as_str()))
        .collect();
    assert_eq!(
        dates,
        [
            ("1.2.1", "2010-01-01", "storage"),
            ("1.2.2", "2015-06-07", "storage")
        ]
    );
    // another rule set, given by the caller, is applied as given
    let fixed = RuleSet::builtin("fixed-10y").unwrap();
    let v = retention_view(&c, "P1", None, &fixed, today()).unwrap();
    assert_eq!(v.expires_on.as_deref(), Some("2025-06-07"));
    assert_eq!(v.rule_set, "fixed-10y");
}

#[test]
fn the_json_has_the_documented_fields() {
    let b = open();
    b.store(pat("P1", ""), "1.2.1", "20100101", 1);
    b.conn()
        .execute(
            "UPDATE studies SET tier = 'archive' WHERE study_uid = '1.2.1'",
            [],
        )
        .unwrap();
    let c = open_read(&b.data).unwrap();
    let v = retention_view(&c, "P1", None, &RuleSet::builtin("fr").unwrap(), today()).unwrap();
    let json = serde_json::to_value(&v).unwrap();
    let mut fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "expires_on",
            "held",
            "issuer",
            "last_visit",
            "patient_id",
            "reason",
            "review",
            "rule_set",
            "studies"
        ]
    );
    assert_eq!(json["expires_on"], serde_json::Value::Null);
    assert_eq!(json["review"], true);
    assert_eq!(json["studies"][0]["tier"], "archive");
    assert_eq!(
        json["studies"][0],
        serde_json::json!({"study_uid": "1.2.1", "study_date": "2010-01-01", "tier": "archive"})
    );
}

#[test]
fn unknown_and_ambiguous_patients_are_bad_input() {
    let b = open();
    let a = Pat {
        id: "P1",
        issuer: "A",
        birth: "",
    };
    b.store(a, "1.2.1", "20100101", 1);
    b.store(Pat { issuer: "B", ..a }, "1.2.2", "20100101", 1);
    let c = open_read(&b.data).unwrap();
    let fr = RuleSet::builtin("fr").unwrap();
    let e = retention_view(&c, "P2", None, &fr, today()).unwrap_err();
    assert!(matches!(e, LifecycleError::UnknownPatient { .. }), "{e}");
    let e = retention_view(&c, "P1", None, &fr, today()).unwrap_err();
    assert!(e.is_bad_input());
    assert!(e.to_string().contains("\"A\", \"B\""), "{e}");
    let v = retention_view(&c, "P1", Some("B"), &fr, today()).unwrap();
    assert_eq!((v.issuer.as_str(), v.studies.len()), ("B", 1));
}

#[test]
fn an_index_without_lifecycle_tables_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = cairn_store::DataDir::new(d.path());
    std::fs::create_dir_all(d.path()).unwrap();
    rusqlite::Connection::open(data.db())
        .unwrap()
        .execute_batch("CREATE TABLE patients (id INTEGER PRIMARY KEY);")
        .unwrap();
    let e = open_read(&data).unwrap_err();
    assert!(matches!(e, LifecycleError::NotReady(_)), "{e}");
    assert!(
        e.to_string().contains("start this version of cairnd"),
        "{e}"
    );
}

//! Legal holds: placed on a patient or a study, the expiry suspended while any is active,
//! released once, audited; bad requests refused with nothing changed.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::holds::{add_hold, release_hold, HoldTarget};
use cairn_lifecycle::recompute::recompute_all;
use cairn_lifecycle::{list_holds, open_read, LifecycleError};
use cairn_retention::RuleSet;
use common::{open, pat, Box_};
use std::sync::Arc;

fn on_patient(id: &str) -> HoldTarget {
    HoldTarget::Patient {
        patient_id: id.into(),
        issuer: None,
    }
}

fn on_study(uid: &str) -> HoldTarget {
    HoldTarget::Study {
        study_uid: uid.into(),
    }
}

fn hold(b: &Box_, target: HoldTarget, why: &str) -> Result<i64, LifecycleError> {
    let why = why.to_owned();
    b.run(move |c, now| add_hold(c, now, &target, &why, "user:bob"))
}

fn release(b: &Box_, id: i64, why: &str) -> Result<(), LifecycleError> {
    let why = why.to_owned();
    b.run(move |c, now| release_hold(c, now, id, &why, "user:carol"))
}

/// Patient P1 born 1950, seen on 2010-01-01 (study 1.2.1), its expiry computed.
fn seen() -> (Box_, Arc<RuleSet>) {
    let b = open();
    let rules = Arc::new(RuleSet::builtin("fr").unwrap());
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    recompute_all(&b.store, &rules).unwrap();
    (b, rules)
}

#[test]
fn a_hold_suspends_the_expiry_until_released() {
    let (b, rules) = seen();
    let id = hold(&b, on_patient("P1"), "case 2026/17").unwrap();
    assert_eq!(id, 1);
    assert!(b.row("P1").0, "the patient is marked for recomputing");
    recompute_all(&b.store, &rules).unwrap();
    let (_, expires, reason, review, ..) = b.row("P1");
    assert_eq!(expires, None);
    assert_eq!(reason, "kept while a legal hold is in place");
    assert!(!review);

    release(&b, id, "case closed").unwrap();
    recompute_all(&b.store, &rules).unwrap();
    let (_, expires, reason, ..) = b.row("P1");
    assert_eq!(expires.as_deref(), Some("2030-01-01"));
    assert_eq!(reason, "20 years after the last visit on 2010-01-01");

    let added = b.audit("hold-add");
    assert_eq!(added.len(), 1);
    assert_eq!(
        (added[0].0.as_str(), added[0].1.as_str()),
        ("user:bob", "P1")
    );
    assert_eq!(added[0].2["hold"], 1);
    assert_eq!(added[0].2["reason"], "case 2026/17");
    let released = b.audit("hold-release");
    assert_eq!(released.len(), 1);
    assert_eq!(
        (released[0].0.as_str(), released[0].1.as_str()),
        ("user:carol", "P1")
    );
    assert_eq!(released[0].2["reason"], "case closed");
}

#[test]
fn a_hold_on_a_study_holds_the_patient_and_holds_add_up() {
    let (b, rules) = seen();
    b.store(pat("P1", "19500101"), "1.2.2", "20110101", 1);
    let on_s = hold(&b, on_study("1.2.2"), "case A").unwrap();
    let on_p = hold(&b, on_patient("P1"), "case B").unwrap();
    recompute_all(&b.store, &rules).unwrap();
    assert_eq!(b.row("P1").1, None);
    release(&b, on_p, "B closed").unwrap();
    recompute_all(&b.store, &rules).unwrap();
    assert_eq!(b.row("P1").1, None, "the study's hold still holds");
    release(&b, on_s, "A closed").unwrap();
    recompute_all(&b.store, &rules).unwrap();
    assert_eq!(b.row("P1").1.as_deref(), Some("2031-01-01"));
    assert_eq!(
        b.audit("hold-add")[0].1,
        "1.2.2",
        "a study's hold names the study"
    );
    assert_eq!(b.audit("hold-release")[1].1, "1.2.2");
}

#[test]
fn releasing_twice_is_refused_and_changes_nothing() {
    let (b, _) = seen();
    let id = hold(&b, on_patient("P1"), "case").unwrap();
    release(&b, id, "closed").unwrap();
    let before = b.snapshot();
    let e = release(&b, id, "closed again").unwrap_err();
    assert!(matches!(e, LifecycleError::AlreadyReleased { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("hold 1 was already released on 20"),
        "{text}"
    );
    assert!(text.ends_with(" UTC"), "{text}");
    assert!(e.is_bad_input());
    assert_eq!(b.snapshot(), before);
}

#[test]
fn bad_hold_requests_are_refused_and_change_nothing() {
    let (b, _) = seen();
    let id = hold(&b, on_patient("P1"), "case").unwrap();
    let before = b.snapshot();
    let refusals: Vec<(Result<i64, LifecycleError>, &str)> = vec![
        (
            hold(&b, on_patient("P9"), "case"),
            "no patient with ID \"P9\"",
        ),
        (
            hold(&b, on_study("9.9.9"), "case"),
            "no study with UID \"9.9.9\"",
        ),
        (hold(&b, on_patient("P1"), " \t"), "a reason is required"),
        (release(&b, 99, "x").map(|()| 0), "no hold 99"),
        (release(&b, id, "").map(|()| 0), "a reason is required"),
    ];
    for (r, why) in refusals {
        let e = r.unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().starts_with(why), "{e}");
        assert_eq!(b.snapshot(), before, "{why}: something changed");
    }
}

#[test]
fn a_request_names_a_patient_or_a_study() {
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        HoldTarget::from_parts(s("P1"), s("HOSP"), None).unwrap(),
        HoldTarget::Patient {
            patient_id: "P1".into(),
            issuer: s("HOSP")
        }
    );
    assert_eq!(
        HoldTarget::from_parts(None, None, s("1.2")).unwrap(),
        on_study("1.2")
    );
    for (p, i, st) in [
        (s("P1"), None, s("1.2")),
        (None, None, None),
        (s(" "), None, None),
        (None, s("HOSP"), s("1.2")),
    ] {
        let e = HoldTarget::from_parts(p, i, st).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }
}

#[test]
fn holds_are_listed_active_or_all() {
    let (b, _) = seen();
    let first = hold(&b, on_patient("P1"), "case A").unwrap();
    hold(&b, on_study("1.2.1"), "case B").unwrap();
    release(&b, first, "A closed").unwrap();
    let c = open_read(&b.data).unwrap();
    let active = list_holds(&c, false).unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].study_uid.as_deref(), Some("1.2.1"));
    assert_eq!(active[0].patient_id, None);
    assert_eq!(active[0].placed_by, "user:bob");
    let all = list_holds(&c, true).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].patient_id.as_deref(), Some("P1"));
    assert_eq!(all[0].released_by.as_deref(), Some("user:carol"));
    assert_eq!(all[0].release_reason.as_deref(), Some("A closed"));
    let json = serde_json::to_value(&all[0]).unwrap();
    for field in [
        "id",
        "patient_id",
        "reason",
        "placed_by",
        "placed_at",
        "released_by",
        "released_at",
        "release_reason",
    ] {
        assert!(json.get(field).is_some(), "{field} in {json}");
    }
    let json = serde_json::to_value(&active[0]).unwrap();
    assert_eq!(json["study_uid"], "1.2.1");
    assert!(json.get("released_at").is_none(), "{json}");
}

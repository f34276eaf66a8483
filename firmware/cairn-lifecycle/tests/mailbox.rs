//! The mailbox round trip: a request sent from one thread is carried out by `Service::tick` on
//! another, through the store's writer, and the expiry follows at the same tick.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::requests::{send, Request};
use cairn_lifecycle::Service;
use cairn_retention::RuleSet;
use common::{open, pat};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn requests_are_answered_by_the_service() {
    let b = open();
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    let mut service = Service::new(b.store.clone(), RuleSet::builtin("fr").unwrap());
    service.tick().unwrap();
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));

    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let daemon = std::thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            service.tick().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let root = b.data.root().to_path_buf();
    let wait = Duration::from_secs(20);
    let placed = send(
        &root,
        &Request::AddHold {
            patient_id: Some("P1".into()),
            issuer: None,
            study_uid: None,
            reason: "case 17".into(),
            by: "user:alice".into(),
        },
        wait,
    )
    .unwrap();
    assert!(placed.ok, "{}", placed.message);
    assert_eq!(placed.id, Some(1));
    assert_eq!(placed.message, "hold 1 placed on patient P1");

    let refused = send(
        &root,
        &Request::SetDeath {
            patient_id: "P1".into(),
            issuer: None,
            date: Some("20090101".into()),
            reason: "certificate".into(),
            by: "user:alice".into(),
        },
        wait,
    )
    .unwrap();
    assert!(!refused.ok);
    assert!(!refused.failed, "a refusal is not a failure of the box");
    assert!(
        refused.message.contains("before a study of the patient"),
        "{}",
        refused.message
    );

    let released = send(
        &root,
        &Request::ReleaseHold {
            id: 1,
            reason: "closed".into(),
            by: "user:alice".into(),
        },
        wait,
    )
    .unwrap();
    assert!(released.ok, "{}", released.message);
    let again = send(
        &root,
        &Request::ReleaseHold {
            id: 1,
            reason: "closed".into(),
            by: "user:alice".into(),
        },
        wait,
    )
    .unwrap();
    assert!(!again.ok);
    assert!(again.message.starts_with("hold 1 was already released on "));

    // the tick after an answer recomputes: the expiry is back once the hold is released
    let deadline = std::time::Instant::now() + wait;
    while b.row("P1").0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    daemon.join().unwrap();
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));
    assert_eq!(b.audit("hold-add").len(), 1);
    assert_eq!(b.audit("hold-release").len(), 1);
    assert!(b.audit("patient-death").is_empty());
}

#[test]
fn without_a_daemon_the_sender_is_told() {
    let b = open();
    let e = send(
        b.data.root(),
        &Request::ReleaseHold {
            id: 1,
            reason: "x".into(),
            by: "user:a".into(),
        },
        Duration::from_millis(200),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cairnd did not answer"), "{e}");
}

#[test]
fn a_new_rule_set_recomputes_every_patient_at_start() {
    let b = open();
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    Service::new(b.store.clone(), RuleSet::builtin("fr").unwrap())
        .tick()
        .unwrap();
    assert_eq!(b.row("P1").1.as_deref(), Some("2030-01-01"));
    let mut service = Service::new(b.store.clone(), RuleSet::builtin("fixed-10y").unwrap());
    assert!(b.row("P1").0, "marked at Service::new");
    service.tick().unwrap();
    let (dirty, expires, _, _, _, rule_set) = b.row("P1");
    assert!(!dirty);
    assert_eq!(expires.as_deref(), Some("2020-01-01"));
    assert_eq!(rule_set, "fixed-10y");
}

#[test]
fn a_failure_of_the_box_is_told_apart_from_a_refusal() {
    let b = open();
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    let service = Service::new(b.store.clone(), RuleSet::builtin("fr").unwrap());
    b.store.clone().close().unwrap();
    let a = service.answer(Request::AddHold {
        patient_id: Some("P1".into()),
        issuer: None,
        study_uid: None,
        reason: "case 17".into(),
        by: "user:alice".into(),
    });
    assert!(!a.ok);
    assert!(a.failed, "{}", a.message);
}

//! The lifecycle clock in the daemon's service: a demo offset is put in the audit trail once
//! per change, and a clock behind the newest audit row stops the date-dependent passes.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::clock::{advance, Clock};
use cairn_lifecycle::requests::Request;
use cairn_lifecycle::Service;
use cairn_retention::RuleSet;
use common::{open, pat};

#[test]
fn a_demo_offset_is_audited_once_per_change_and_moves_the_date() {
    let b = open();
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    let mut service = Service::new(b.store.clone(), RuleSet::builtin("fr").unwrap());
    service.tick().unwrap();
    let check = service.clock_check().unwrap().clone();
    assert!(check.ok, "{check:?}");
    assert_eq!(check.offset_days, None);
    assert!(b.audit("demo-clock").is_empty());

    let root = b.data.root().to_path_buf();
    let set = advance(&root, "25y", "user:demo").unwrap();
    service.tick().unwrap();
    service.tick().unwrap();
    let rows = b.audit("demo-clock");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "user:demo");
    assert_eq!(rows[0].2["offset_days"], set.offset_days);
    assert_eq!(rows[0].2["from_days"], 0);
    let check = service.clock_check().unwrap();
    assert!(check.ok);
    assert_eq!(check.offset_days, Some(set.offset_days));
    let today = Clock::read(&root).unwrap().today().unwrap();
    assert_eq!(check.today.as_deref(), Some(today.to_string().as_str()));
    assert!(today.year() >= 2050);

    // a new service (a restart) does not audit the same offset again
    let mut again = Service::new(b.store.clone(), RuleSet::builtin("fr").unwrap());
    again.tick().unwrap();
    assert_eq!(b.audit("demo-clock").len(), 1);
}

#[test]
fn a_clock_behind_the_audit_trail_stops_the_passes_and_says_why() {
    let b = open();
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    let mut service = Service::new(b.store.clone(), RuleSet::builtin("fr").unwrap());
    service.tick().unwrap();
    assert!(service.clock_check().unwrap().ok);
    // a row written while the clock was far ahead (then set back)
    let c = b.conn();
    c.execute(
        "INSERT INTO audit (seq, at, actor, action, object, detail, prev_hash, hash)
         SELECT max(seq) + 1, '2999-01-01T00:00:00.000000Z', 'system', 'test', '', '{}', '', ''
         FROM audit",
        [],
    )
    .unwrap();
    let before = b.snapshot();
    service.tick().unwrap();
    let check = service.clock_check().unwrap();
    assert!(!check.ok);
    assert!(
        check
            .problem
            .as_deref()
            .unwrap()
            .contains("earlier than the newest audit row (2999-01-01"),
        "{check:?}"
    );
    assert_eq!(b.snapshot(), before, "nothing changed");
    // an approval asked for now is refused with the reason
    let answer = service.answer(Request::ApproveDestruction {
        patient_id: None,
        issuer: None,
        all: true,
        reason: "end of retention".into(),
        by: "user:alice".into(),
    });
    assert!(!answer.ok);
    assert!(
        answer
            .message
            .starts_with("the lifecycle clock cannot be trusted, nothing was done: the clock"),
        "{}",
        answer.message
    );
    assert_eq!(b.snapshot(), before, "nothing changed");
}

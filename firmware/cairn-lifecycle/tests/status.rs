//! The lifecycle status on a real store: tiers, studies moving to the archive tier within 90
//! days, patients due for destruction (held ones not), patients to review, holds, the clock,
//! and the demo clock moving what is due.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::clock::advance;
use cairn_lifecycle::holds::{add_hold, HoldTarget};
use cairn_lifecycle::status::lifecycle_status;
use cairn_lifecycle::Service;
use cairn_retention::{Period, RuleSet};
use common::{open, pat};

#[test]
fn the_status_lists_what_is_due_and_the_demo_clock_moves_it() {
    let b = open();
    let recent = cairn_lifecycle::today()
        .checked_sub(jiff::Span::new().days(30))
        .unwrap()
        .strftime("%Y%m%d")
        .to_string();
    b.store(pat("OLD", "19400101"), "1.2.1", "20000101", 1);
    b.store(pat("HELD", "19400101"), "1.2.2", "20000101", 1);
    b.store(pat("NOBIRTH", ""), "1.2.3", &recent, 1);
    b.store(pat("NEW", "19800101"), "1.2.4", &recent, 1);
    let held = HoldTarget::Patient {
        patient_id: "HELD".into(),
        issuer: None,
    };
    b.run(move |c, now| add_hold(c, now, &held, "case 9", "user:bob"))
        .unwrap();
    let mut service = Service::new(b.store.clone(), RuleSet::builtin("fr").unwrap());
    service.tick().unwrap();

    let root = b.data.root().to_path_buf();
    let conn = cairn_lifecycle::open_read(&b.data).unwrap();
    let three_months: Option<Period> = Some("3m".parse().unwrap());
    let s = lifecycle_status(&conn, &root, three_months, false).unwrap();
    assert_eq!((s.tiers.storage, s.tiers.archive), (4, 0));
    let due: Vec<_> = s
        .due_for_destruction
        .iter()
        .map(|d| (d.patient_id.as_str(), d.expires_on.as_str()))
        .collect();
    assert_eq!(due, [("OLD", "2020-01-01")], "the held patient is not due");
    assert_eq!(s.review.len(), 1);
    assert_eq!(s.review[0].patient_id, "NOBIRTH");
    assert!(!s.review[0].reason.is_empty());
    assert_eq!(s.holds, 1);
    assert!(s.recyclable_volumes.is_empty());
    assert!(s.clock_ok);
    assert_eq!(s.clock.offset_days, None);
    // the two old studies waiting for a copy, then the two of a month ago (in two months)
    let moving: Vec<_> = s
        .moving_to_archive
        .iter()
        .map(|m| m.study_uid.as_str())
        .collect();
    assert_eq!(moving, ["1.2.1", "1.2.2", "1.2.3", "1.2.4"]);
    assert_eq!(s.moving_to_archive[0].on, "2000-04-01");
    // with 3 years, only the old ones are within 90 days
    let s = lifecycle_status(&conn, &root, Some(Period::years(3).unwrap()), false).unwrap();
    assert_eq!(s.moving_to_archive.len(), 2);

    let json = serde_json::to_value(&s).unwrap();
    for field in [
        "tiers",
        "moving_to_archive",
        "due_for_destruction",
        "review",
        "holds",
        "recyclable_volumes",
        "clock_ok",
        "clock",
    ] {
        assert!(json.get(field).is_some(), "{field}");
    }
    assert_eq!(json["due_for_destruction"][0]["patient_id"], "OLD");
    assert_eq!(json["due_for_destruction"][0]["expires_on"], "2020-01-01");

    // 25 years on, the patient seen a month ago is due too
    advance(&root, "25y", "user:demo").unwrap();
    let s = lifecycle_status(&conn, &root, None, false).unwrap();
    let due: Vec<_> = s
        .due_for_destruction
        .iter()
        .map(|d| d.patient_id.as_str())
        .collect();
    assert_eq!(due, ["OLD", "NEW"]);
    assert!(s.clock.offset_days.unwrap() >= 9131);
    assert!(s.clock_ok);
}

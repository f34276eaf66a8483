//! Rejection and destruction on a real store: due patients listed, approvals re-checked (a hold
//! or an expiry not reached refuses with nothing changed), removal with tombstones, destruction
//! records, catalog marks and audit rows, and the files gone.
#![allow(clippy::unwrap_used)]

mod common;

use cairn_lifecycle::certificate::{
    certificate, destruction_record, destruction_records, records_csv,
};
use cairn_lifecycle::destroy::{approve, due, Approval, DestroyTarget};
use cairn_lifecycle::holds::{add_hold, release_hold, HoldTarget};
use cairn_lifecycle::recompute::{mark_other_rule_sets, recompute_all};
use cairn_lifecycle::reject::{reject, RejectTarget, Rejection};
use cairn_lifecycle::requests::Request;
use cairn_lifecycle::{open_read, LifecycleError, Service};
use cairn_retention::RuleSet;
use common::{open, pat, Box_};
use jiff::civil::date;
use std::sync::Arc;

fn files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn count(b: &Box_, sql: &str) -> i64 {
    b.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// P1 seen in 2010 (studies 1.2.1 with two instances, 1.2.2), P2 seen in 2025 (1.3.1), with
/// "fixed-10y": P1 is due in 2026, P2 is not.
fn seen() -> (Box_, Arc<RuleSet>) {
    let b = open();
    let rules = Arc::new(RuleSet::builtin("fixed-10y").unwrap());
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 1);
    b.store(pat("P1", "19500101"), "1.2.1", "20100101", 2);
    b.store(pat("P1", "19500101"), "1.2.2", "20090101", 1);
    b.store(pat("P2", "19600101"), "1.3.1", "20250101", 1);
    recompute_all(&b.store, &rules).unwrap();
    (b, rules)
}

fn approve_one(
    b: &Box_,
    rules: &Arc<RuleSet>,
    pid: &str,
    why: &str,
) -> Result<Vec<i64>, LifecycleError> {
    let rules = rules.clone();
    let a = Approval {
        target: DestroyTarget::Patient {
            patient_id: pid.into(),
            issuer: None,
        },
        reason: why.into(),
        by: "user:alice".into(),
    };
    let done = b.run(move |c, now| approve(c, now, date(2026, 12, 2), &rules, &a))?;
    b.store.finish_unlinks().unwrap();
    Ok(done.records)
}

fn hold(b: &Box_, target: HoldTarget) -> i64 {
    b.run(move |c, now| add_hold(c, now, &target, "case 17", "user:bob"))
        .unwrap()
}

#[test]
fn due_lists_patients_past_expiry_and_not_held() {
    let (b, rules) = seen();
    let conn = open_read(&b.data).unwrap();
    let list = due(&conn, date(2026, 12, 2), None).unwrap();
    assert_eq!(list.len(), 1);
    let p1 = &list[0];
    assert_eq!(
        (p1.patient_id.as_str(), p1.studies, p1.instances),
        ("P1", 2, 3)
    );
    assert!(p1.expires_on.as_str() < "2026-12-02", "{}", p1.expires_on);
    let json = serde_json::to_value(p1).unwrap();
    for key in [
        "patient_id",
        "issuer",
        "expires_on",
        "reason",
        "studies",
        "instances",
        "bytes",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    // not yet due on its last day
    let last = jiff::civil::Date::strptime("%Y-%m-%d", &p1.expires_on).unwrap();
    assert!(due(&conn, last, None).unwrap().is_empty());
    hold(
        &b,
        HoldTarget::Study {
            study_uid: "1.2.2".into(),
        },
    );
    assert!(due(&conn, date(2026, 12, 2), Some(&rules))
        .unwrap()
        .is_empty());
}

#[test]
fn a_hold_refuses_approval_and_changes_nothing() {
    let (b, rules) = seen();
    let id = hold(
        &b,
        HoldTarget::Patient {
            patient_id: "P1".into(),
            issuer: None,
        },
    );
    let before = (b.snapshot(), files(&b.data.objects()));
    let e = approve_one(&b, &rules, "P1", "past retention").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("patient P1 is under a legal hold (hold {id}): nothing was destroyed")
    );
    assert!(e.is_bad_input());
    assert_eq!((b.snapshot(), files(&b.data.objects())), before);
    assert_eq!(count(&b, "SELECT count(*) FROM destruction_records"), 0);

    b.run(move |c, now| release_hold(c, now, id, "case closed", "user:bob"))
        .unwrap();
    assert_eq!(
        approve_one(&b, &rules, "P1", "past retention").unwrap(),
        vec![1]
    );
    // the patient keeps its hold history, without studies and without an expiry
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM studies WHERE study_uid LIKE '1.2.%'"
        ),
        0
    );
    assert_eq!(
        count(&b, "SELECT count(*) FROM patients WHERE patient_id = 'P1'"),
        1
    );
    assert_eq!(
        count(&b, "SELECT count(*) FROM patient_retention r JOIN patients p ON p.id = r.patient_ref WHERE p.patient_id = 'P1'"),
        0
    );
    recompute_all(&b.store, &rules).unwrap();
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM patient_retention WHERE review = 1"
        ),
        0
    );
}

#[test]
fn bad_approvals_are_refused_with_nothing_changed() {
    let (b, rules) = seen();
    let before = (b.snapshot(), files(&b.data.objects()));
    let e = approve_one(&b, &rules, "P2", "past retention").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("patient P2 is not due for destruction: kept until 20"),
        "{e}"
    );
    assert!(matches!(
        approve_one(&b, &rules, "P9", "x").unwrap_err(),
        LifecycleError::UnknownPatient { .. }
    ));
    assert!(matches!(
        approve_one(&b, &rules, "P1", "  ").unwrap_err(),
        LifecycleError::EmptyReason
    ));
    assert!(DestroyTarget::from_parts(None, None, false).is_err());
    assert!(DestroyTarget::from_parts(Some("P1".into()), None, true).is_err());
    assert_eq!((b.snapshot(), files(&b.data.objects())), before);
}

#[test]
fn approval_destroys_with_a_record_tombstones_and_catalog_marks() {
    let (b, rules) = seen();
    // a verified cold copy of one of P1's instances, and one with other bytes under its UID
    let sha: String = b
        .conn()
        .query_row(
            "SELECT sha256 FROM instances WHERE sop_instance_uid = '1.2.1.1.1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    b.run(move |c, _| {
        c.execute_batch(&format!(
            "INSERT INTO cold_targets (id, name, kind, added_at) VALUES (1, 't', 'tape', 'x');
             INSERT INTO volumes (id, volume_id, kind, box_id, target_ref, state, location,
               format_version, block_size, labelled_at, updated_at)
               VALUES (1, 'V1', 'tape', 'box', 1, 'append', 'in_drive', 1, 262144, 'x', 'x');
             INSERT INTO bundles (id, bundle_id, volume_ref, file_number, state, started_at)
               VALUES (1, 'B1', 1, 1, 'verified', 'x');
             INSERT INTO copies (bundle_ref, sop_instance_uid, sha256, size, verified)
               VALUES (1, '1.2.1.1.1', '{sha}', 10, 1), (1, '1.2.1.1.1', 'other', 10, 1);"
        ))?;
        Ok(((), vec![]))
    })
    .unwrap();
    assert_eq!(files(&b.data.objects()), 4);
    assert_eq!(
        approve_one(&b, &rules, "P1", "past retention").unwrap(),
        vec![1]
    );
    assert_eq!(files(&b.data.objects()), 1);
    assert_eq!(count(&b, "SELECT count(*) FROM patients"), 1);
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM removed_studies WHERE kind = 'destroyed' AND destruction_ref = 1"
        ),
        2
    );
    assert_eq!(count(&b, "SELECT count(*) FROM removed_instances"), 3);
    assert_eq!(
        count(&b, "SELECT count(*) FROM copies WHERE removed = 'expired'"),
        1
    );
    assert_eq!(
        count(&b, "SELECT count(*) FROM copies WHERE removed IS NULL"),
        1
    );
    assert_eq!(count(&b, "SELECT count(*) FROM pending_unlinks"), 0);
    let audit = b.audit("destroy");
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str()),
        ("user:alice", "P1")
    );
    assert_eq!(audit[0].2["studies"], 2);
    assert_eq!(audit[0].2["instances"], 3);

    let conn = open_read(&b.data).unwrap();
    let rec = destruction_record(&conn, 1).unwrap();
    assert_eq!((rec.studies, rec.instances), (2, 3));
    assert_eq!(rec.study_list.len(), 2);
    assert!(
        rec.expiry_reason.contains("rule set fixed-10y"),
        "{}",
        rec.expiry_reason
    );
    let text = certificate(&rec, "BOX-1");
    for part in [
        "BOX-1",
        "P1",
        "1.2.1  2010-01-01  2",
        "1.2.2  2009-01-01  1",
        "user:alice",
        "past retention",
    ] {
        assert!(text.contains(part), "{part} in\n{text}");
    }
    let csv = records_csv(&destruction_records(&conn).unwrap());
    assert_eq!(csv.lines().count(), 2);
    assert!(csv.lines().nth(1).unwrap().starts_with("1,P1,,"), "{csv}");
    assert!(destruction_record(&conn, 9).unwrap_err().is_bad_input());
    // nothing more is due; approving all again destroys nothing
    let rules2 = rules.clone();
    let all = Approval {
        target: DestroyTarget::All,
        reason: "due".into(),
        by: "system".into(),
    };
    let done = b
        .run(move |c, now| approve(c, now, date(2026, 12, 2), &rules2, &all))
        .unwrap();
    assert!(done.records.is_empty());
}

#[test]
fn approving_all_destroys_every_patient_due() {
    let (b, rules) = seen();
    let all = Approval {
        target: DestroyTarget::All,
        reason: "due".into(),
        by: "system".into(),
    };
    let done = b
        .run(move |c, now| approve(c, now, date(2040, 1, 1), &rules, &all))
        .unwrap();
    assert_eq!(done.records.len(), 2);
    assert_eq!((done.studies, done.instances), (3, 4));
    b.store.finish_unlinks().unwrap();
    assert_eq!(files(&b.data.objects()), 0);
    assert_eq!(count(&b, "SELECT count(*) FROM patients"), 0);
}

fn rejecting(target: RejectTarget, why: &str) -> Rejection {
    Rejection {
        target,
        reason: why.into(),
        by: "user:alice".into(),
    }
}

#[test]
fn rejecting_a_series_or_a_study() {
    let (b, _) = seen();
    b.store(pat("P1", "19500101"), "1.2.2", "20090101", 7); // series 1.2.2.1 gets a 2nd instance
    let r = rejecting(RejectTarget::Series("1.2.1.1".into()), "test images");
    let words = b.run(move |c, now| reject(c, now, &r)).unwrap();
    assert!(
        words.starts_with("series 1.2.1.1 of study 1.2.1 rejected: 2 instance(s)"),
        "{words}"
    );
    assert_eq!(
        count(&b, "SELECT count(*) FROM studies WHERE study_uid = '1.2.1'"),
        0
    );
    assert_eq!(count(&b, "SELECT count(*) FROM pending_unlinks"), 2);
    b.store.finish_unlinks().unwrap();
    assert_eq!(files(&b.data.objects()), 3);

    let r = rejecting(RejectTarget::Study("1.2.2".into()), "wrong patient");
    b.run(move |c, now| reject(c, now, &r)).unwrap();
    let (kind, series, n, why, by): (String, Option<String>, i64, String, String) = b
        .conn()
        .query_row(
            "SELECT kind, series_uid, instances, reason, removed_by FROM removed_studies WHERE study_uid = '1.2.2'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), series, n, why.as_str(), by.as_str()),
        ("rejected", None, 2, "wrong patient", "user:alice")
    );
    let audit = b.audit("study-reject");
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].1, "1.2.2");
    assert_eq!(audit[1].2["reason"], "wrong patient");
}

#[test]
fn bad_rejections_are_refused_with_nothing_changed() {
    let (b, _) = seen();
    let id = hold(
        &b,
        HoldTarget::Patient {
            patient_id: "P2".into(),
            issuer: None,
        },
    );
    b.run(|c, _| {
        c.execute(
            "UPDATE studies SET tier = 'archive' WHERE study_uid = '1.2.2'",
            [],
        )?;
        Ok(((), vec![]))
    })
    .unwrap();
    let before = (b.snapshot(), files(&b.data.objects()));
    let try_ = |t: RejectTarget, why: &str| {
        let r = rejecting(t, why);
        b.run(move |c, now| reject(c, now, &r)).unwrap_err()
    };
    let e = try_(RejectTarget::Study("1.3.1".into()), "x");
    assert_eq!(
        e.to_string(),
        format!("study 1.3.1 is under a legal hold (hold {id}): nothing was rejected")
    );
    let e = try_(RejectTarget::Study("1.2.2".into()), "x");
    assert!(e.to_string().contains("archive tier"), "{e}");
    assert!(matches!(
        try_(RejectTarget::Study("9.9".into()), "x"),
        LifecycleError::UnknownStudy { .. }
    ));
    assert_eq!(
        try_(RejectTarget::Series("9.9".into()), "x").to_string(),
        "no series with UID \"9.9\""
    );
    assert!(matches!(
        try_(RejectTarget::Study("1.2.1".into()), ""),
        LifecycleError::EmptyReason
    ));
    assert!(RejectTarget::from_parts(Some("1".into()), Some("2".into())).is_err());
    assert!(RejectTarget::from_parts(None, None).is_err());
    assert_eq!((b.snapshot(), files(&b.data.objects())), before);
    assert_eq!(count(&b, "SELECT count(*) FROM removed_studies"), 0);
}

#[test]
fn the_mailbox_requests_reject_and_approve() {
    let (b, rules) = seen();
    let service = Service::new(b.store.clone(), (*rules).clone());
    let a = service.answer(Request::Reject {
        study_uid: Some("1.3.1".into()),
        series_uid: None,
        reason: "test images".into(),
        by: "user:alice".into(),
    });
    assert!(a.ok, "{}", a.message);
    assert_eq!(
        files(&b.data.objects()),
        3,
        "files deleted after the commit"
    );
    let a = service.answer(Request::ApproveDestruction {
        patient_id: Some("P1".into()),
        issuer: None,
        all: false,
        reason: "".into(),
        by: "user:alice".into(),
    });
    assert!(!a.ok);
    let a = service.answer(Request::ApproveDestruction {
        patient_id: Some("P1".into()),
        issuer: None,
        all: false,
        reason: "past retention".into(),
        by: "user:alice".into(),
    });
    assert!(a.ok, "{}", a.message);
    assert_eq!(a.id, Some(1));
    assert_eq!(files(&b.data.objects()), 0);
}

#[test]
fn auto_destroy_runs_once_a_day_as_system_and_only_when_on() {
    use cairn_lifecycle::destroy::AutoDestroy;
    let (b, rules) = seen();
    AutoDestroy::new(false)
        .tick(&b.store, &rules, date(2026, 12, 2))
        .unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM destruction_records"), 0);
    let mut pass = AutoDestroy::new(true);
    pass.tick(&b.store, &rules, date(2026, 12, 2)).unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM destruction_records"), 1);
    assert_eq!(b.audit("destroy")[0].0, "system");
    assert_eq!(files(&b.data.objects()), 1);
    // P2 falls due in 2036: not again on the same day, destroyed on a later one
    pass.tick(&b.store, &rules, date(2026, 12, 2)).unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM destruction_records"), 1);
    pass.tick(&b.store, &rules, date(2040, 1, 1)).unwrap();
    assert_eq!(count(&b, "SELECT count(*) FROM destruction_records"), 2);
    assert_eq!(files(&b.data.objects()), 0);
}

#[test]
fn a_patient_kept_only_for_its_hold_history_gets_no_retention_row_back_at_a_restart() {
    let (b, _) = seen();
    let id = hold(
        &b,
        HoldTarget::Patient {
            patient_id: "P2".into(),
            issuer: None,
        },
    );
    b.run(move |c, now| release_hold(c, now, id, "case closed", "user:bob"))
        .unwrap();
    let r = rejecting(RejectTarget::Study("1.3.1".into()), "test images");
    b.run(move |c, now| reject(c, now, &r)).unwrap();
    let kept = "SELECT count(*) FROM patients WHERE patient_id = 'P2'";
    assert_eq!(count(&b, kept), 1, "kept for its hold history");
    let rows = "SELECT count(*) FROM patient_retention r JOIN patients p ON p.id = r.patient_ref \
                WHERE p.patient_id = 'P2'";
    assert_eq!(count(&b, rows), 0);
    // a start with another rule set gives every patient with studies a row back, not P2
    b.run(|c, _| Ok((mark_other_rule_sets(c, "fr")?, vec![])))
        .unwrap();
    assert_eq!(count(&b, rows), 0);
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM patient_retention r JOIN patients p ON p.id = r.patient_ref \
             WHERE p.patient_id = 'P1' AND r.dirty = 1"
        ),
        1
    );
}

//! The panel's lifecycle: a study's tier, last day kept and why; legal holds placed and
//! released through the forms and the API, listed and audited; dates of death; destruction
//! approved only by an admin and never for a held patient; the Lifecycle page and its clock
//! banner; rejection. Calls the router with `oneshot` (no socket), on a real store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use cairn_web::LifecycleSettings;
use common::{ct_image, form_post, get, start, Box_, ORIGIN, R};
use serde_json::{json, Value};
use std::sync::Arc;

const STUDY: &str = "1.2.826.0.1.3680043.10.1";

/// A box with an admin, a staff member and a reader, and one CT study of patient `P1`
/// (born 1980-01-01) dated `date`.
async fn box_with_study(date: &str) -> (Box_, [(String, String); 3]) {
    let b = start();
    let admin = b.setup().await;
    b.make_user(&admin, "staff1", "staff").await;
    b.make_user(&admin, "reader1", "reader").await;
    let mut rec = ct_image("P1", STUDY);
    rec.patient.name = "DOE^JANE".into();
    rec.patient.birth_date = "19800101".into();
    rec.study.date = date.into();
    b.store_image(rec, b"one image");
    let staff = b.session("staff1").await;
    let reader = b.session("reader1").await;
    (b, [admin, staff, reader])
}

/// A JSON change as the API takes it.
fn api<'a>(method: &'a str, path: &'a str, s: &'a (String, String), body: Value) -> R<'a> {
    R {
        method,
        path,
        session: Some(s),
        json: Some(body),
        origin: Some(ORIGIN),
        ..Default::default()
    }
}

/// A form field list, URL-encoded, with the session's CSRF token.
fn form(s: &(String, String), fields: &[(&str, &str)]) -> String {
    let mut all = vec![("csrf", s.1.as_str())];
    all.extend_from_slice(fields);
    serde_urlencoded::to_string(all).unwrap()
}

fn count(b: &Box_, action: &str) -> usize {
    b.audit_actions()
        .iter()
        .filter(|(_, a)| a == action)
        .count()
}

#[tokio::test]
async fn the_study_page_shows_tier_last_day_kept_and_why() {
    let (b, [admin, _, reader]) = box_with_study("20240102").await;
    let page = b.send(get(&format!("/studies/{STUDY}"), &reader)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("storage: may still change"),
        "{}",
        page.body
    );
    assert!(page.body.contains("2044-01-02"), "{}", page.body);
    assert!(page
        .body
        .contains("20 years after the last visit on 2024-01-02"));
    assert!(page.body.contains("No legal hold."));
    // A reader sees, but is offered no form that changes anything.
    assert!(!page.body.contains("id=\"hold-form\""));
    assert!(!page.body.contains("id=\"death-form\""));
    let page = b.send(get(&format!("/studies/{STUDY}"), &admin)).await;
    for form in ["hold-form", "death-form", "reject-form"] {
        assert!(page.body.contains(&format!("id=\"{form}\"")), "{form}");
    }
    // The API says the same.
    let s = b
        .send(get(&format!("/api/v1/studies/{STUDY}"), &reader))
        .await
        .json();
    assert_eq!(s["tier"], "storage");
    assert_eq!(s["retention_until"], "2044-01-02");
    assert_eq!(s["lifecycle"]["rule_set"], "fr");
    let r = b
        .send(get("/api/v1/patients/P1/retention?issuer=", &reader))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["expires_on"], "2044-01-02");
    assert_eq!(r.json()["studies"][0]["study_uid"], STUDY);
    let r = b
        .send(get("/api/v1/patients/NOPE/retention", &reader))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error(), "no patient with ID \"NOPE\"");
}

#[tokio::test]
async fn holds_from_the_form_and_the_api_are_listed_audited_and_released_once() {
    let (b, [admin, staff, reader]) = box_with_study("20240102").await;
    // A hold on the study, from its page's form, by a staff member.
    let f = form(
        &staff,
        &[
            ("back", &format!("/studies/{STUDY}")),
            ("on", "study"),
            ("study_uid", STUDY),
            ("patient_id", "P1"),
            ("issuer", ""),
            ("reason", "court case 12/2026"),
        ],
    );
    let r = b.send(form_post("/lifecycle/hold", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains(&format!("hold 1 placed on study {STUDY}")),
        "{}",
        r.body
    );
    assert!(r.body.contains("court case 12/2026"));
    assert!(r.body.contains("kept while a legal hold is in place"));
    // A hold on the patient, through the API.
    let body = json!({"patient_id": "P1", "reason": "insurer's request"});
    let r = b
        .send(api("POST", "/api/v1/holds", &admin, body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["id"], 2);
    // A reader may not; an empty reason and an unknown study are refused, nothing placed.
    let r = b.send(api("POST", "/api/v1/holds", &reader, body)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .send(api(
            "POST",
            "/api/v1/holds",
            &admin,
            json!({"patient_id": "P1", "reason": " "}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.error(),
        "a reason is required (it is kept in the audit log)"
    );
    let r = b
        .send(api(
            "POST",
            "/api/v1/holds",
            &admin,
            json!({"study_uid": "1.2.3", "reason": "x"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Both are listed, on the API, the study page and the Lifecycle page.
    let holds = b.send(get("/api/v1/holds", &reader)).await.json();
    let holds = holds["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 2);
    assert_eq!(holds[0]["study_uid"], STUDY);
    assert_eq!(holds[0]["placed_by"], "user:staff1");
    assert_eq!(holds[1]["patient_id"], "P1");
    let page = b.send(get(&format!("/studies/{STUDY}"), &reader)).await;
    assert!(page.body.contains("data-hold=\"1\"") && page.body.contains("data-hold=\"2\""));
    let page = b.send(get("/lifecycle", &reader)).await;
    assert!(page.body.contains("insurer&#39;s request") || page.body.contains("insurer's request"));
    assert_eq!(count(&b, "hold-add"), 2);
    // Released through the API, then again: refused with the lifecycle's sentence.
    let release = json!({"reason": "case closed"});
    let r = b
        .send(api(
            "POST",
            "/api/v1/holds/2/release",
            &staff,
            release.clone(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["message"], "hold 2 released");
    let r = b
        .send(api(
            "POST",
            "/api/v1/holds/2/release",
            &staff,
            release.clone(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.error().starts_with("hold 2 was already released on "),
        "{}",
        r.error()
    );
    let r = b
        .send(api("POST", "/api/v1/holds/99/release", &staff, release))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error(), "no hold 99");
    // Released through the Lifecycle page's form; without a reason first: nothing changes.
    let f = form(
        &staff,
        &[("back", "/lifecycle"), ("id", "1"), ("reason", "")],
    );
    let r = b.send(form_post("/lifecycle/release", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("a reason is required"));
    assert_eq!(
        b.send(get("/api/v1/holds", &reader)).await.json()["holds"][0]["id"],
        1
    );
    let f = form(
        &staff,
        &[
            ("back", "/lifecycle"),
            ("id", "1"),
            ("reason", "case closed"),
        ],
    );
    let r = b.send(form_post("/lifecycle/release", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("hold 1 released"));
    let holds = b.send(get("/api/v1/holds", &reader)).await.json();
    assert_eq!(holds["holds"], json!([]));
    let all = b.send(get("/api/v1/holds?all=true", &reader)).await.json();
    assert_eq!(all["holds"][1]["release_reason"], "case closed");
    assert_eq!(count(&b, "hold-release"), 2);
    let actors: Vec<_> = b
        .audit_actions()
        .into_iter()
        .filter(|(_, a)| a.starts_with("hold-"))
        .collect();
    assert!(actors.iter().any(|(who, _)| who == "user:staff1"));
    assert!(actors.iter().any(|(who, _)| who == "user:admin"));
}

#[tokio::test]
async fn a_date_of_death_is_recorded_checked_and_audited() {
    let (b, [_, staff, reader]) = box_with_study("20240102").await;
    let death = |date: &str| json!({"date": date, "reason": "told by the family"});
    for (date, status, words) in [
        ("20230231", StatusCode::BAD_REQUEST, "is not a date"),
        ("20990101", StatusCode::BAD_REQUEST, "is in the future"),
        (
            "20230101",
            StatusCode::BAD_REQUEST,
            "before a study of the patient",
        ),
    ] {
        let r = b
            .send(api(
                "POST",
                "/api/v1/patients/P1/death",
                &staff,
                death(date),
            ))
            .await;
        assert_eq!(r.status, status, "{date}: {}", r.body);
        assert!(r.error().contains(words), "{date}: {}", r.error());
    }
    let r = b
        .send(api(
            "POST",
            "/api/v1/patients/NOPE/death",
            &staff,
            death("20250115"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b
        .send(api(
            "POST",
            "/api/v1/patients/P1/death",
            &reader,
            death("20250115"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(count(&b, "patient-death"), 0, "a refusal changes nothing");
    // The form takes the browser's YYYY-MM-DD.
    let f = form(
        &staff,
        &[
            ("back", &format!("/studies/{STUDY}")),
            ("patient_id", "P1"),
            ("issuer", ""),
            ("date", "2025-01-15"),
            ("reason", "told by the family"),
        ],
    );
    let r = b.send(form_post("/lifecycle/death", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r
        .body
        .contains("date of death of patient P1 recorded: 2025-01-15"));
    assert!(
        r.body.contains("10 years after the death on 2025-01-15"),
        "{}",
        r.body
    );
    let v = b
        .send(get("/api/v1/patients/P1/retention", &reader))
        .await
        .json();
    assert_eq!(v["death_date"], "2025-01-15");
    assert_eq!(v["expires_on"], "2035-01-15");
    assert_eq!(count(&b, "patient-death"), 1);
    // Cleared through the API; both a date and clear is refused.
    let both = json!({"date": "20250115", "clear": true, "reason": "x"});
    let r = b
        .send(api("POST", "/api/v1/patients/P1/death", &staff, both))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let clear = json!({"clear": true, "reason": "wrong patient"});
    let r = b
        .send(api("POST", "/api/v1/patients/P1/death", &staff, clear))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["message"], "date of death of patient P1 cleared");
    let v = b
        .send(get("/api/v1/patients/P1/retention", &reader))
        .await
        .json();
    assert_eq!(v["death_date"], Value::Null);
}

/// A clinic's own rules: each study kept one day after its date.
fn one_day_rules(b: &Box_) {
    let rules = cairn_retention::RuleSet::from_toml(
        "name = \"clinic-test\"\ndescription = \"one day\"\n[keep]\nafter_study = \"1d\"\n",
    )
    .unwrap();
    b.panel.set_lifecycle(LifecycleSettings {
        rules: Arc::new(rules),
        archive_after: cairn_retention::Period::years(3),
        require_sync: false,
    });
}

#[tokio::test]
async fn destruction_is_approved_by_an_admin_only_and_never_for_a_held_patient() {
    let (b, [admin, staff, reader]) = box_with_study("20200101").await;
    one_day_rules(&b);
    // The Lifecycle page lists the patient due, with its size and why.
    let page = b.send(get("/lifecycle", &reader)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"due-table\""), "{}", page.body);
    assert!(page.body.contains("data-patient=\"P1\""));
    assert!(page.body.contains("1 day after the study on 2020-01-01"));
    assert!(
        !page.body.contains("id=\"approve-all\""),
        "a reader is offered no approval"
    );
    let page = b.send(get("/lifecycle", &admin)).await;
    assert!(page.body.contains("id=\"approve-0\"") && page.body.contains("id=\"approve-all\""));
    let l = b.send(get("/api/v1/lifecycle", &reader)).await.json();
    assert_eq!(l["due_for_destruction"][0]["patient_id"], "P1");
    assert_eq!(l["due_for_destruction"][0]["expires_on"], "2020-01-02");
    assert_eq!(l["tiers"]["storage"], 1);
    assert_eq!(l["rule_set"], "clinic-test");
    // Staff may not approve.
    let approve = json!({"patient_id": "P1", "reason": "end of retention"});
    let r = b
        .send(api(
            "POST",
            "/api/v1/destruction/approve",
            &staff,
            approve.clone(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let f = form(&staff, &[("patient_id", "P1"), ("reason", "x")]);
    let r = b.send(form_post("/lifecycle/approve", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A held patient is refused, nothing destroyed.
    let hold = json!({"study_uid": STUDY, "reason": "pending case"});
    let r = b.send(api("POST", "/api/v1/holds", &staff, hold)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = b
        .send(api(
            "POST",
            "/api/v1/destruction/approve",
            &admin,
            approve.clone(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.error(),
        "patient P1 is under a legal hold (hold 1): nothing was destroyed"
    );
    let hits = b.send(get("/api/v1/studies?id=P1", &reader)).await.json();
    assert_eq!(hits["studies"].as_array().unwrap().len(), 1);
    assert_eq!(count(&b, "destroy"), 0);
    let page = b.send(get("/lifecycle", &reader)).await;
    assert!(
        page.body.contains("id=\"none-due\""),
        "a held patient is not due"
    );
    // Released, it is approved from the page's form: the study leaves the search.
    let r = b
        .send(api(
            "POST",
            "/api/v1/holds/1/release",
            &staff,
            json!({"reason": "closed"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let f = form(
        &admin,
        &[
            ("patient_id", "P1"),
            ("issuer", ""),
            ("reason", "end of retention"),
        ],
    );
    let r = b.send(form_post("/lifecycle/approve", &admin.0, f)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("destroyed 1 studies"), "{}", r.body);
    let hits = b.send(get("/api/v1/studies?id=P1", &reader)).await.json();
    assert_eq!(hits["studies"], json!([]));
    assert_eq!(count(&b, "destroy"), 1);
    assert!(b
        .audit_actions()
        .contains(&("user:admin".to_string(), "destroy".to_string())));
    // Nothing left is due: approving all says so.
    let r = b
        .send(api(
            "POST",
            "/api/v1/destruction/approve",
            &admin,
            json!({"all": true, "reason": "r"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["record"], Value::Null);
}

#[tokio::test]
async fn a_study_is_rejected_by_an_admin_with_a_reason() {
    let (b, [admin, staff, _]) = box_with_study("20240102").await;
    let path = format!("/api/v1/studies/{STUDY}/reject");
    let r = b
        .send(api(
            "POST",
            &path,
            &staff,
            json!({"reason": "wrong patient"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .send(api("POST", &path, &admin, json!({"reason": ""})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let other = json!({"series_uid": "9.9.9", "reason": "test images"});
    let r = b.send(api("POST", &path, &admin, other)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("has no series"), "{}", r.error());
    let r = b
        .send(api(
            "POST",
            &path,
            &admin,
            json!({"reason": "wrong patient"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("rejected"));
    let r = b
        .send(get(&format!("/api/v1/studies/{STUDY}"), &admin))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&b, "study-reject"), 1);
}

#[tokio::test]
async fn the_study_page_forms_hold_the_patient_and_reject_the_study() {
    let (b, [admin, staff, _]) = box_with_study("20240102").await;
    let back = format!("/studies/{STUDY}");
    let f = form(
        &staff,
        &[
            ("back", &back),
            ("on", "patient"),
            ("study_uid", STUDY),
            ("patient_id", "P1"),
            ("issuer", ""),
            ("reason", "complaint"),
        ],
    );
    let r = b.send(form_post("/lifecycle/hold", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("hold 1 placed on patient P1"), "{}", r.body);
    // Staff may not reject; an admin may not reject a held study: the page says why.
    let f = form(&staff, &[("study_uid", STUDY), ("reason", "test images")]);
    let r = b.send(form_post("/lifecycle/reject", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let f = form(&admin, &[("study_uid", STUDY), ("reason", "test images")]);
    let r = b.send(form_post("/lifecycle/reject", &admin.0, f)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"lifecycle-error\""), "{}", r.body);
    assert!(r
        .body
        .contains("is under a legal hold (hold 1): nothing was rejected"));
    assert_eq!(count(&b, "study-reject"), 0);
    let f = form(
        &staff,
        &[("back", &back), ("id", "1"), ("reason", "withdrawn")],
    );
    let r = b.send(form_post("/lifecycle/release", &staff.0, f)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let f = form(&admin, &[("study_uid", STUDY), ("reason", "test images")]);
    let r = b.send(form_post("/lifecycle/reject", &admin.0, f)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("<h1>Lifecycle</h1>"),
        "back to the Lifecycle page"
    );
    assert!(
        r.body.contains(&format!("study {STUDY} rejected")),
        "{}",
        r.body
    );
    assert_eq!(count(&b, "study-reject"), 1);
}

#[tokio::test]
async fn the_lifecycle_page_says_when_the_clock_is_behind_the_audit_trail() {
    let (b, [admin, _, reader]) = box_with_study("20200101").await;
    one_day_rules(&b);
    let page = b.send(get("/lifecycle", &reader)).await;
    assert!(!page.body.contains("clock-banner"));
    assert!(
        page.body.contains(">Lifecycle</a>"),
        "the navigation offers the page"
    );
    // The newest audit row is from the future: the clock was set back.
    let db = rusqlite::Connection::open(b.data.db()).unwrap();
    db.execute(
        "UPDATE audit SET at = '2999-01-01T00:00:00.000000Z' WHERE seq = (SELECT max(seq) FROM audit)",
        [],
    )
    .unwrap();
    let page = b.send(get("/lifecycle", &reader)).await;
    assert!(page.body.contains("id=\"clock-banner\""), "{}", page.body);
    assert!(page.body.contains(
        "The box&#39;s clock is behind its audit trail: lifecycle passes are paused until the time is corrected."
    ) || page.body.contains(
        "The box's clock is behind its audit trail: lifecycle passes are paused until the time is corrected."
    ));
    let l = b.send(get("/api/v1/lifecycle", &reader)).await.json();
    assert_eq!(l["clock_ok"], false);
    // No approval is offered meanwhile; one asked for is refused, nothing destroyed.
    let page = b.send(get("/lifecycle", &admin)).await;
    assert!(page.body.contains("id=\"approval-waits\""), "{}", page.body);
    assert!(!page.body.contains("id=\"approve-all\""));
    let approve = json!({"patient_id": "P1", "reason": "end of retention"});
    let r = b
        .send(api("POST", "/api/v1/destruction/approve", &admin, approve))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r
        .error()
        .starts_with("the lifecycle clock cannot be trusted, nothing was done: "));
    assert_eq!(count(&b, "destroy"), 0);
}

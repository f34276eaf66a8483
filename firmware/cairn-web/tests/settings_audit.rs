//! Settings and the audit log on the panel, checked by calling the router with `oneshot` (no
//! socket): settings validated, saved and audited, restarts offered when a setting needs one,
//! and the audit log's filters, CSV export, local times, words and paging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{header, StatusCode};
use common::{form_post, start, ORIGIN, R};
use serde_json::{json, Value};

/// A settings change through the API by `admin` (cookie, CSRF token), from the panel's origin.
fn put_settings(admin: &(String, String), j: Value) -> R<'_> {
    R {
        method: "PUT",
        path: "/api/v1/settings",
        cookie: Some(&admin.0),
        csrf: Some(&admin.1),
        origin: Some(ORIGIN),
        json: Some(j),
        ..Default::default()
    }
}

#[tokio::test]
async fn settings_changes_are_validated_saved_and_audited() {
    let b = start();
    let admin = b.setup().await;
    let put = |j: Value| put_settings(&admin, j);
    let r = b
        .send(put(json!({"ae_title": "WAY TOO LONG FOR AN AE TITLE"})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = b.send(put(json!({"unknown": 1}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = b
        .send(put(json!({"ae_title": "CLINIC1", "peers": [{"ae": "CT1", "host": "10.1.2.3", "port": 104, "store": true}]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["restart_needed"], true);
    let text = std::fs::read_to_string(b.data.root().join("cairn.toml")).unwrap();
    let c = cairn_config::Config::parse(&text, std::path::Path::new("x")).unwrap();
    assert_eq!(c.dicom.ae_title.as_str(), "CLINIC1");
    assert_eq!(c.dicom.peers[0].host, "10.1.2.3");
    let acts = b.audit_actions();
    assert_eq!(
        acts.iter().filter(|a| a.1 == "setting-change").count(),
        2,
        "{acts:?}"
    );
}

#[tokio::test]
async fn audit_filters_and_exports_csv() {
    let b = start();
    let admin = b.setup().await;
    let _ = b.login("admin", "wrong password!", "192.0.2.77").await;
    let get = |p: &'static str| R {
        method: "GET",
        path: p,
        cookie: Some(&admin.0),
        ..Default::default()
    };
    let rows = b.send(get("/api/v1/audit?action=login")).await.json();
    let rows = rows["rows"].as_array().unwrap();
    assert!(rows.len() >= 2);
    assert!(rows.iter().all(|r| r["action"] == "login"));
    let csv = b.send(get("/audit.csv?action=login")).await;
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "seq,at,actor,action,object,detail");
    assert_eq!(lines.len(), rows.len() + 1);
    let none = b
        .send(get("/api/v1/audit?actor=nobody-at-all"))
        .await
        .json();
    assert_eq!(none["rows"].as_array().unwrap().len(), 0);
    let bad = b.send(get("/api/v1/audit?from=yesterday")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// The Audit page: times in the box's time zone (a setting that applies at once), details in
/// words, pages of 50 rows, and the filters kept in the page links.
#[tokio::test]
async fn audit_page_local_time_words_paging_and_filters_in_the_url() {
    let b = start();
    let admin = b.setup().await;
    let put = |j: Value| put_settings(&admin, j);
    let r = b.send(put(json!({"time_zone": "Mars/Olympus_Mons"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = b.send(put(json!({"time_zone": "Asia/Kolkata"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["restart_needed"], false, "{}", r.body);
    assert_eq!(r.json()["settings"]["time_zone"], "Asia/Kolkata");
    for i in 0..120 {
        b.store
            .audit(cairn_audit::AuditEvent {
                actor: "system".into(),
                action: "volume-location".into(),
                object: format!("TAPE{i:03}"),
                detail: json!({"from": "onsite_shelf", "to": "offsite_vault"}).to_string(),
            })
            .unwrap();
    }
    let get = |p: String| R {
        method: "GET",
        path: Box::leak(p.into_boxed_str()),
        cookie: Some(&admin.0),
        ..Default::default()
    };
    // Local time: UTC+05:30 all year round.
    let rows = b
        .send(get("/api/v1/audit?action=setting-change".into()))
        .await
        .json();
    let utc = rows["rows"][0]["at"].as_str().unwrap().to_string();
    let ts: jiff::Timestamp = utc.parse().unwrap();
    let local = ts
        .to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let page = b.send(get("/audit?action=setting-change".into())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&local), "{local} not in {}", page.body);
    assert!(page.body.contains("Asia/Kolkata"), "{}", page.body);
    // Details in words, not JSON.
    let main = page.body.split("<main>").nth(1).unwrap().to_string();
    assert!(
        main.contains("http.time_zone changed from UTC to Asia/Kolkata"),
        "{main}"
    );
    let page = b.send(get("/audit?action=volume-location".into())).await;
    let main = page.body.split("<main>").nth(1).unwrap().to_string();
    assert!(
        !main.contains("{&quot;"),
        "raw JSON on the audit page: {main}"
    );
    assert!(
        main.contains("moved from onsite shelf to offsite vault"),
        "{main}"
    );
    // Paging: 50 rows a page, newest first; the links keep the filters.
    assert_eq!(main.matches("<tr data-seq=").count(), 50, "{main}");
    assert!(main.contains("TAPE119"), "{main}");
    assert!(
        main.contains(
            "href=\"/audit?actor=&amp;action=volume-location&amp;from=&amp;to=&amp;page=2\""
        ),
        "{main}"
    );
    assert!(!main.contains("id=\"newer\""), "{main}");
    let p3 = b
        .send(get("/audit?action=volume-location&page=3".into()))
        .await;
    let main = p3.body.split("<main>").nth(1).unwrap().to_string();
    assert_eq!(main.matches("<tr data-seq=").count(), 20, "{main}");
    assert!(main.contains("TAPE000"), "{main}");
    assert!(!main.contains("id=\"older\""), "{main}");
    assert!(
        main.contains(
            "href=\"/audit?actor=&amp;action=volume-location&amp;from=&amp;to=&amp;page=2\""
        ),
        "{main}"
    );
    assert!(main.contains("page 3 of 3"), "{main}");
    // The CSV link carries the same filters.
    assert!(
        main.contains("/audit.csv?actor=&amp;action=volume-location"),
        "{main}"
    );
    let bad = b.send(get("/audit?page=0".into())).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // From and To are days in the box's time zone, as the times shown.
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .strftime("%Y-%m-%d")
        .to_string();
    let day = b
        .send(get(format!(
            "/audit?action=volume-location&from={today}&to={today}"
        )))
        .await;
    assert!(day.body.contains("120 entries"), "{}", day.body);
}

/// Settings that need a restart offer a restart button to the admin; it restarts the box
/// through the hook cairnd installs (audited). Without a hook there is no button.
#[tokio::test]
async fn settings_that_need_a_restart_offer_one() {
    let b = start();
    let admin = b.setup().await;
    let post = |form: String| R {
        method: "POST",
        path: "/settings",
        cookie: Some(&admin.0),
        form: Some(form),
        origin: Some(ORIGIN),
        ..Default::default()
    };
    let dicom = |ae: &str, tz: &str| {
        format!(
            "csrf={}&op=dicom&ae_title={ae}&scrub_interval_days=30&archive_max_age_secs=10\
             &session_idle_secs=900&time_zone={tz}",
            admin.1
        )
    };
    // No restart hook (not run by cairnd): saved, no button, and a restart is refused.
    let r = b.send(post(dicom("CLINIC1", "UTC"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("next start"), "{}", r.body);
    assert!(!r.body.contains("id=\"restart\""), "{}", r.body);
    let r = b.send(post(format!("csrf={}&op=restart", admin.1))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = asked.clone();
    b.panel
        .set_restart_hook(move || a.store(true, std::sync::atomic::Ordering::SeqCst));
    // A time zone applies at once; the AE title saved before still waits for a restart, so
    // the button is there now, and stays until the box restarted.
    let r = b.send(post(dicom("CLINIC1", "Europe/Paris"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("in use now"), "{}", r.body);
    assert!(r.body.contains("id=\"restart\""), "{}", r.body);
    // On a box where only the time zone changed, no restart is offered.
    let b2 = start();
    let admin2 = b2.setup().await;
    b2.panel.set_restart_hook(|| {});
    let r = b2
        .send(form_post(
            "/settings",
            &admin2.0,
            format!(
                "csrf={}&op=dicom&ae_title=CAIRN&accept_unknown_peers=true&scrub_interval_days=30&archive_max_age_secs=10\
                 &session_idle_secs=900&time_zone=Europe/Paris",
                admin2.1
            ),
        ))
        .await;
    assert!(r.body.contains("in use now"), "{}", r.body);
    assert!(!r.body.contains("id=\"restart\""), "{}", r.body);
    let again = b
        .send(R {
            method: "GET",
            path: "/settings",
            cookie: Some(&admin.0),
            ..Default::default()
        })
        .await;
    assert!(again.body.contains("id=\"restart\""), "{}", again.body);
    let r = b.send(post(format!("csrf={}&op=restart", admin.1))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Restarting"), "{}", r.body);
    for _ in 0..50 {
        if asked.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst));
    let acts = b.audit_actions();
    assert!(
        acts.contains(&("user:admin".into(), "restart".into())),
        "{acts:?}"
    );
}

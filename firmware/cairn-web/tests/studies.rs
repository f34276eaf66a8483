//! Studies on the panel, checked by calling the router with `oneshot` (no socket): patient
//! data shown inert, the study search, and values that differ between a study's images.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{header, StatusCode};
use cairn_store::InstanceRecord;
use common::{start, R};
use serde_json::Value;

#[tokio::test]
async fn patient_markup_is_shown_inert() {
    let b = start();
    let admin = b.setup().await;
    let evil = "<script>alert(1)</script>^<b>Bold</b>";
    b.store_study(
        evil,
        "ID<i>1</i>",
        "1.2.826.0.1.3680043.2.1125.77",
        "ACC\"><svg onload=x>",
    );
    b.store_study("Plain^Jane", "P2", "1.2.826.0.1.3680043.2.1125.78", "A2");
    let get = |path: &'static str| R {
        method: "GET",
        path,
        cookie: Some(&admin.0),
        ..Default::default()
    };
    let list = b.send(get("/studies?name=script")).await;
    assert_eq!(list.status, StatusCode::OK);
    let detail = b.send(get("/studies/1.2.826.0.1.3680043.2.1125.77")).await;
    assert_eq!(detail.status, StatusCode::OK);
    for page in [&list.body, &detail.body] {
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;Bold&lt;/b&gt;"));
        assert!(!page.contains("<script>"), "raw markup in the page");
        assert!(!page.contains("<b>Bold"), "raw markup in the page");
        assert!(!page.contains("<svg"), "raw markup in the page");
        assert!(!page.contains("<img src=x"), "raw markup in the page");
        assert!(!page.contains("<i>1</i>"), "raw markup in the page");
    }
    assert!(!list.body.contains("Plain"), "the name search must filter");
    // The JSON API returns the value as data, and the CSP forbids inline scripts anyway.
    let api = b.send(get("/api/v1/studies?name=script")).await;
    assert_eq!(api.json()["studies"][0]["patient_name"], evil);
    let csp = list.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
}

#[tokio::test]
async fn studies_are_found_by_id_accession_date_and_modality() {
    let b = start();
    let admin = b.setup().await;
    b.store_study("Doe^John", "PID42", "1.2.3.4.100", "ACC9");
    b.store_study("Roe^Richard", "PID43", "1.2.3.4.101", "ACC10");
    let find = |q: &'static str| R {
        method: "GET",
        path: q,
        cookie: Some(&admin.0),
        ..Default::default()
    };
    let uids = |v: Value| -> Vec<String> {
        v["studies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["study_uid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        uids(b.send(find("/api/v1/studies?id=PID43")).await.json()),
        ["1.2.3.4.101"]
    );
    assert_eq!(
        uids(b.send(find("/api/v1/studies?accession=ACC9")).await.json()),
        ["1.2.3.4.100"]
    );
    assert_eq!(
        uids(b.send(find("/api/v1/studies?name=doe")).await.json()),
        ["1.2.3.4.100"]
    );
    assert_eq!(
        b.send(find("/api/v1/studies?modality=CT&date=20240101-20240131"))
            .await
            .json()["studies"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        b.send(find("/api/v1/studies?modality=MR")).await.json()["studies"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let bad = b.send(find("/api/v1/studies?date=2024")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let d = b.send(find("/api/v1/studies/1.2.3.4.100")).await.json();
    assert_eq!(d["series"].as_array().unwrap().len(), 1);
    assert!(d["bytes"].as_i64().unwrap() > 0);
    assert_eq!(d["copies"][0]["place"], "RAID (hot copy)");
    assert_eq!(
        b.send(find("/api/v1/studies/1.2.999")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.send(find("/api/v1/studies/not-a-uid")).await.status,
        StatusCode::BAD_REQUEST
    );
}

/// A later image with another description (and an invalid date) changes nothing in the index;
/// the study page and the API list what it carried, escaped.
#[tokio::test]
async fn study_page_shows_values_that_differ_between_images() {
    let b = start();
    let admin = b.setup().await;
    let uid = "1.2.826.0.1.3680043.2.1125.90";
    b.store_study("Doe^John", "PID90", uid, "ACC90");
    let mut rec = InstanceRecord {
        sop_instance_uid: format!("{uid}.2.1"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.104.1".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    rec.patient.id = "PID90".into();
    rec.patient.name = "Doe^John".into();
    rec.study.uid = uid.into();
    rec.study.date = "123é567".into();
    rec.study.description = "<b>Other</b>".into();
    rec.series.uid = format!("{uid}.2");
    b.store_image(rec, b"a later image");
    let get = |path: &'static str| R {
        method: "GET",
        path,
        cookie: Some(&admin.0),
        ..Default::default()
    };
    let page = b.send(get("/studies/1.2.826.0.1.3680043.2.1125.90")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Values that differ between images"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("&lt;b&gt;Other&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("123é567"), "{}", page.body);
    assert!(!page.body.contains("<b>Other"), "raw markup in the page");
    let api = b
        .send(get("/api/v1/studies/1.2.826.0.1.3680043.2.1125.90"))
        .await
        .json();
    let conflicts = api["conflicts"].as_array().unwrap();
    let fields: Vec<(&str, &str)> = conflicts
        .iter()
        .map(|c| (c["field"].as_str().unwrap(), c["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [("StudyDate", "invalid"), ("StudyDescription", "differs")]
    );
    assert_eq!(api["study"]["date"], "20240102");
    assert_eq!(api["study"]["description"], "<img src=x onerror=alert(2)>");
}

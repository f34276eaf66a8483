//! The OpenAPI document describes every `/api/v1` operation fully: its
//! parameters, request body and answer schemas, and the refusals it may give; every `$ref`
//! resolves; and what the router answers is what the document says it may answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use cairn_web::routes::{Perm, ROUTES};
use cairn_web::CSRF_HEADER;
use common::{open_panel, PW};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tower::ServiceExt;

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    session: Option<&(String, String)>,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "cairn.test")
        .header(header::ORIGIN, "https://cairn.test");
    if let Some((cookie, csrf)) = session {
        b = b
            .header(header::COOKIE, format!("cairn_session={cookie}"))
            .header(CSRF_HEADER, csrf);
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
    let r = router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
    (status, headers, bytes.to_vec())
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "unresolved $ref {r}");
            target
        }
        None => v,
    }
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_has_its_parameters_bodies_answers_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (_, panel) = open_panel(dir.path(), None, true);
    let router = panel.router();
    let (status, _, body) = call(&router, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    for r in &all_refs {
        resolve(&doc, &json!({ "$ref": r }));
    }
    let mut op_ids = std::collections::HashSet::new();
    for route in ROUTES.iter().filter(|r| r.path.starts_with("/api/v1/")) {
        let path = route.path.trim_start_matches("/api/v1");
        let op = &doc["paths"][path][route.method.to_lowercase()];
        let what = format!("{} {path}", route.method);
        assert!(op.is_object(), "{what} missing");
        assert!(
            op_ids.insert(op["operationId"].as_str().unwrap().to_string()),
            "{what}: duplicate operationId"
        );
        let responses = op["responses"].as_object().unwrap();
        let ok = responses
            .iter()
            .find(|(k, _)| k.starts_with('2'))
            .unwrap_or_else(|| panic!("{what}: no success answer"));
        if ok.0 != "204" {
            let schema = resolve(&doc, &ok.1["content"]["application/json"]["schema"]);
            assert!(schema["type"].is_string(), "{what}: no answer schema");
        }
        let mut want = vec!["400", "403", "414"];
        if route.perm != Perm::Public {
            want.push("401");
        }
        if matches!(route.method, "POST" | "PUT") {
            want.push("413");
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            let schema = resolve(&doc, body);
            assert_eq!(schema["type"], "object", "{what}: no request schema");
            assert!(
                schema["properties"].is_object(),
                "{what}: request schema without properties"
            );
        }
        if path.contains('{') {
            want.push("404");
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params.iter().any(|p| p["in"] == "path"),
                "{what}: no path parameter"
            );
        }
        for status in want {
            let refusal = &responses
                .get(status)
                .unwrap_or_else(|| panic!("{what}: {status} undocumented"));
            let schema = resolve(&doc, &refusal["content"]["application/json"]["schema"]);
            assert_eq!(schema["required"], json!(["error"]), "{what}: {status}");
        }
    }
    let has = |method: &str, path: &str, status: &str| {
        doc["paths"][path][method]["responses"][status].is_object()
    };
    for (m, p, s) in [
        ("post", "/setup", "409"),
        ("post", "/setup", "429"),
        ("post", "/session", "429"),
        ("post", "/users", "409"),
        ("put", "/users/{name}", "409"),
        ("post", "/alarm/silence", "503"),
        ("post", "/disks/action", "503"),
        ("post", "/archive/eject", "503"),
        ("get", "/settings", "503"),
        ("get", "/studies/{uid}", "404"),
    ] {
        assert!(has(m, p, s), "{m} {p} lacks {s}");
    }
    let query = |p: &str| -> Vec<String> {
        doc["paths"][p]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["in"] == "query")
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        query("/studies"),
        ["name", "id", "date", "modality", "accession", "limit"]
    );
    assert_eq!(
        query("/audit"),
        ["actor", "action", "from", "to", "limit", "format"]
    );

    // What the router answers is documented: every operation, anonymous and as admin, with
    // an empty body and a wrong one.
    let code = panel.setup_code().unwrap();
    let (status, headers, body) = call(
        &router,
        "POST",
        "/api/v1/setup",
        None,
        Some(json!({"code": code, "username": "admin", "password": PW})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    let csrf = serde_json::from_slice::<Value>(&body).unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = (cookie.to_string(), csrf);
    for route in ROUTES.iter().filter(|r| r.path.starts_with("/api/v1/")) {
        if route.method == "DELETE" {
            continue;
        }
        let path = route.path.trim_start_matches("/api/v1");
        let concrete = route
            .path
            .replace("{uid}", "1.2.3")
            .replace("{name}", "nobody")
            .replace("{patient}", "P1")
            .replace("{hold}", "1");
        for session in [None, Some(&admin)] {
            for body in [None, Some(json!({"not": "valid"}))] {
                let (status, headers, _) =
                    call(&router, route.method, &concrete, session, body).await;
                let op = &doc["paths"][path][route.method.to_lowercase()];
                assert!(
                    op["responses"][status.as_str()].is_object(),
                    "{} {path} answered {status}, not in the document",
                    route.method
                );
                if status.as_u16() >= 400 {
                    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
                }
            }
        }
    }
}

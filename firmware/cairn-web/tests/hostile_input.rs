//! The panel's answers to hostile input, checked through the router with `oneshot` (no socket):
//! stored values that are not what their field promises, return paths that leave the panel,
//! methods no route serves, oversized bodies and query strings, numbers and dates out of range.
//! Every refusal is a JSON `{"error": ...}` (API) with the status that names the problem.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use cairn_web::CSRF_HEADER;
use common::{ct_image, get, start, Box_, HOST, ORIGIN, R};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tower::ServiceExt;

impl Box_ {
    /// Stores one CT image of `study` for patient `Doe^Jane` (id `pid`).
    fn store_plain_study(&self, pid: &str, study: &str) {
        let mut rec = ct_image(pid, study);
        rec.patient.name = "Doe^Jane".into();
        self.store_image(rec, study.as_bytes());
    }

    /// Set a study's date in the index directly, whatever the store does on intake.
    fn set_study_date(&self, study: &str, date: &str) {
        let c = rusqlite::Connection::open(self.data.db()).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        let n = c
            .execute(
                "UPDATE studies SET study_date = ?1 WHERE study_uid = ?2",
                [date, study],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}

/// A study date of eight bytes that are not eight digits (`123é567`, as a
/// C-STORE may bring it) is shown as received, escaped, on the list and the study page: no
/// panic, no dropped connection.
#[tokio::test]
async fn a_non_ascii_study_date_is_shown_as_received() {
    let b = start();
    let admin = b.setup().await;
    b.store_plain_study("PIDX", "1.2.3.4.200");
    let odd = "123é567";
    assert_eq!(odd.len(), 8);
    b.set_study_date("1.2.3.4.200", odd);
    for path in ["/studies?id=PIDX", "/studies/1.2.3.4.200"] {
        let r = b.send_same_origin(get(path, &admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(
            r.body.contains(odd),
            "{path} does not show the date: {}",
            r.body
        );
    }
    // Markup in a date is shown inert; the API gives the value as received.
    b.set_study_date("1.2.3.4.200", "<b>é</b>");
    let r = b
        .send_same_origin(get("/studies/1.2.3.4.200", &admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("&lt;b&gt;é&lt;/b&gt;"), "{}", r.body);
    let api = b
        .send_same_origin(get("/api/v1/studies?id=PIDX", &admin))
        .await;
    assert_eq!(api.json()["studies"][0]["date"], "<b>é</b>");
}

/// A method no route serves at an existing path is 405 with `Allow` (the
/// table's methods), never 403; HEAD answers wherever GET does, with GET's status and no body.
#[tokio::test]
async fn other_methods_are_405_with_allow_and_head_works_like_get() {
    let b = start();
    let admin = b.setup().await;
    let concrete = |p: &str| p.replace("{uid}", "1.2.3").replace("{name}", "admin");
    let mut paths: Vec<&str> = cairn_web::routes::ROUTES.iter().map(|r| r.path).collect();
    paths.dedup();
    let mut checked = 0;
    for path in paths {
        let p = concrete(path);
        let mut allow: Vec<&str> = cairn_web::routes::ROUTES
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.method)
            .collect();
        if allow.contains(&"GET") {
            allow.push("HEAD");
            let g = b.send_same_origin(get(&p, &admin)).await;
            let h = b
                .send_same_origin(R {
                    method: "HEAD",
                    ..get(&p, &admin)
                })
                .await;
            assert_eq!(h.status, g.status, "HEAD {path}: {}", h.body);
            assert!(h.body.is_empty(), "HEAD {path} has a body");
        }
        for m in ["OPTIONS", "TRACE", "PATCH", "HEAD", "PUT", "DELETE"] {
            if allow.contains(&m) {
                continue;
            }
            for session in [Some(&admin), None] {
                let r = b
                    .send_same_origin(R {
                        method: m,
                        path: &p,
                        session,
                        ..Default::default()
                    })
                    .await;
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path}: {}",
                    r.body
                );
                let got = r.headers[header::ALLOW].to_str().unwrap().to_string();
                let mut got: Vec<&str> = got.split(", ").collect();
                got.sort_unstable();
                let mut want = allow.clone();
                want.sort_unstable();
                assert_eq!(got, want, "{m} {path}");
                if path.starts_with("/api/") && m != "HEAD" {
                    assert!(!r.error().is_empty(), "{m} {path}: {}", r.body);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked}");
}

/// A body over 64 KiB is 413, a request target over 8 KiB is 414, and every
/// refusal, whichever extractor or check makes it, is JSON `{"error": ...}`.
#[tokio::test]
async fn oversized_requests_are_413_and_414_as_json() {
    let b = start();
    let admin = b.setup().await;
    let big_json = format!(
        "{{\"username\": \"x\", \"role\": \"reader\", \"password\": \"{}\"}}",
        "a".repeat(10 << 20)
    );
    // Declared with Content-Length, and streamed without one.
    for declared in [true, false] {
        let mut req = Request::builder()
            .method("POST")
            .uri("/api/v1/users")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .header(header::COOKIE, format!("cairn_session={}", admin.0))
            .header(CSRF_HEADER, &admin.1)
            .header(header::CONTENT_TYPE, "application/json");
        if declared {
            req = req.header(header::CONTENT_LENGTH, big_json.len());
        }
        let body = chunked(big_json.clone().into_bytes());
        let mut req = req.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
        let r = b.router.clone().oneshot(req).await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "declared={declared}"
        );
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["error"].as_str().unwrap().contains("too large"), "{v}");
    }
    // The routes that read raw bytes or forms answer the same way.
    for (path, ct) in [
        ("/api/v1/alarm/silence", "application/json"),
        ("/api/v1/archive/eject", "application/json"),
        ("/login", "application/x-www-form-urlencoded"),
    ] {
        let r = b
            .send_same_origin(R {
                method: "POST",
                path,
                session: Some(&admin),
                content_type: Some(ct),
                body: Some(vec![b'a'; 100 << 10]),
                ..Default::default()
            })
            .await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            r.body
        );
        assert!(r.error().contains("too large"), "{path}: {}", r.body);
    }
    // (Over 64 KiB, hyper refuses the head itself: tests/connections.rs.)
    let long = format!("/api/v1/studies?name={}", "a".repeat(20 << 10));
    let r = b.send_same_origin(get(&long, &admin)).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert!(r.error().contains("too long"), "{}", r.body);
    // A JSON body of the wrong type, as a plain-text rejection would have it.
    let r = b
        .send_same_origin(R {
            method: "POST",
            path: "/api/v1/users",
            session: Some(&admin),
            content_type: Some("text/plain"),
            body: Some(b"{}".to_vec()),
            ..Default::default()
        })
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(!r.error().is_empty(), "{}", r.body);
}

/// A body in 64 KiB chunks with no length told in advance, as a client streams it.
struct Chunks(std::collections::VecDeque<hyper::body::Bytes>);

impl hyper::body::Body for Chunks {
    type Data = hyper::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn chunked(bytes: Vec<u8>) -> Body {
    Body::new(Chunks(
        bytes
            .chunks(64 << 10)
            .map(hyper::body::Bytes::copy_from_slice)
            .collect(),
    ))
}

/// Numbers are checked before anything is written, and a refusal never shows
/// the configuration file's path.
#[tokio::test]
async fn settings_numbers_are_checked_and_errors_show_no_path() {
    let b = start();
    let admin = b.setup().await;
    let cfg = b.dir.path().join("cairn.toml");
    let before = std::fs::read(&cfg).unwrap();
    let dir = b.dir.path().to_string_lossy().to_string();
    for body in [
        r#"{"session_idle_secs": 9223372036854775808}"#,
        r#"{"session_idle_secs": 18446744073709551615}"#,
        r#"{"session_idle_secs": 10}"#,
        r#"{"archive_max_age_secs": 9223372036854775808}"#,
        r#"{"archive_max_age_secs": 0}"#,
        r#"{"scrub_interval_days": 4294967295}"#,
        r#"{"session_idle_secs": -1}"#,
        r#"{"session_idle_secs": 1e300}"#,
    ] {
        let r = b
            .send_same_origin(R {
                method: "PUT",
                path: "/api/v1/settings",
                session: Some(&admin),
                content_type: Some("application/json"),
                body: Some(body.as_bytes().to_vec()),
                ..Default::default()
            })
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert!(!r.error().is_empty(), "{body}: {}", r.body);
        assert!(
            !r.body.contains(&dir) && !r.body.contains("cairn.toml") && !r.body.contains('/'),
            "{body}: the refusal shows a path: {}",
            r.body
        );
        assert_eq!(
            std::fs::read(&cfg).unwrap(),
            before,
            "{body} changed the file"
        );
    }
    // The page's form says the same, without the path.
    let r = b
        .send_same_origin(R {
            method: "POST",
            path: "/settings",
            session: Some(&admin),
            content_type: Some("application/x-www-form-urlencoded"),
            body: Some(
                format!(
                    "csrf={}&op=dicom&ae_title=CAIRN&scrub_interval_days=30\
                     &session_idle_secs=9223372036854775808&archive_max_age_secs=10",
                    admin.1
                )
                .into_bytes(),
            ),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(!r.body.contains(&dir), "{}", r.body);
    assert_eq!(std::fs::read(&cfg).unwrap(), before);
}

/// A day that is not on the calendar is a 400 with a sentence, on the API and
/// on the page.
#[tokio::test]
async fn audit_days_must_be_real_days() {
    let b = start();
    let admin = b.setup().await;
    for bad in [
        "2024-13-45",
        "2024-02-30",
        "2023-02-29",
        "2024-00-10",
        "2024-04-31",
    ] {
        for path in [
            format!("/api/v1/audit?from={bad}"),
            format!("/api/v1/audit?to={bad}"),
            format!("/audit?from={bad}"),
            format!("/audit.csv?to={bad}"),
        ] {
            let r = b.send_same_origin(get(&path, &admin)).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
            assert!(r.body.contains(bad), "{path}: {}", r.body);
        }
    }
    for good in ["2024-02-29", "2023-12-31", "2024-01-01"] {
        let r = b
            .send_same_origin(get(&format!("/api/v1/audit?from={good}&to={good}"), &admin))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{good}: {}", r.body);
    }
}

/// Answers every monitor request `ok` (as cairnd's RAID monitor would) until dropped.
struct FakeMonitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeMonitor {
    fn start(data_dir: &std::path::Path) -> FakeMonitor {
        let dir = data_dir.join(cairn_raid::requests::REQUEST_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for p in std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
                    if p.extension().is_some_and(|x| x == "json") {
                        let _ = std::fs::remove_file(&p);
                        let a = json!({"ok": true, "message": "silenced"});
                        std::fs::write(p.with_extension("done"), a.to_string()).unwrap();
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        FakeMonitor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeMonitor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The Silence form returns only to one of the panel's own pages; anything
/// else (a tab or backslash browsers drop, another host, a query) returns to the overview.
#[tokio::test]
async fn silence_returns_only_to_the_panels_own_pages() {
    let b = start();
    let admin = b.setup().await;
    let _monitor = FakeMonitor::start(b.dir.path());
    let cases = [
        ("/disks", "/disks"),
        ("/audit", "/audit"),
        ("/", "/"),
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("/\r/evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/%2F/evil.example", "/"),
        ("/disks/../../evil", "/"),
        ("/studies?name=x", "/"),
        ("", "/"),
    ];
    for (back, want) in cases {
        let form =
            serde_urlencoded::to_string([("csrf", admin.1.as_str()), ("back", back)]).unwrap();
        let r = b
            .send_same_origin(R {
                method: "POST",
                path: "/alarm/silence",
                session: Some(&admin),
                content_type: Some("application/x-www-form-urlencoded"),
                body: Some(form.into_bytes()),
                ..Default::default()
            })
            .await;
        assert!(
            r.status.is_redirection(),
            "{back:?}: {} {}",
            r.status,
            r.body
        );
        assert_eq!(r.headers[header::LOCATION], want, "back={back:?}");
    }
}

//! The panel's answers to hostile input, checked through the router with `oneshot` (no socket):
//! stored values that are not what their field promises, return paths that leave the panel,
//! methods no route serves, oversized bodies and query strings, numbers and dates out of range.
//! Every refusal is a JSON `{"error": ...}` (API) with the status that names the problem.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use cairn_web::auth::HashCost;
use cairn_web::{Panel, PanelOptions, CSRF_HEADER};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tower::ServiceExt;

const HOST: &str = "cairn.test";
const ORIGIN: &str = "https://cairn.test";
const PW: &str = "a long enough password";

struct Box_ {
    dir: tempfile::TempDir,
    data: DataDir,
    store: Store,
    panel: Panel,
    router: Router,
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }
}

/// One request: `body` is sent as is with `content_type`.
#[derive(Default, Clone)]
struct R<'a> {
    method: &'a str,
    path: &'a str,
    session: Option<&'a (String, String)>,
    content_type: Option<&'a str>,
    body: Option<Vec<u8>>,
}

fn start() -> Box_ {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cairn_config::default_toml(&cairn_config::Defaults {
        bind: [127, 0, 0, 1].into(),
        dicom_port: 11112,
        http_port: 8080,
        data_dir: dir.path().to_path_buf(),
        accept_unknown_peers: true,
    });
    let cfg_path = dir.path().join("cairn.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let data = DataDir::new(dir.path());
    let store = Store::open(data.clone()).unwrap();
    let panel = Panel::open(
        PanelOptions {
            data_dir: dir.path().to_path_buf(),
            config_path: Some(cfg_path),
            https: true,
            session_idle_secs: 900,
            hash_cost: HashCost::Test,
        },
        store.clone(),
    )
    .unwrap();
    let router = panel.router();
    Box_ {
        dir,
        data,
        store,
        panel,
        router,
    }
}

impl Box_ {
    async fn send(&self, r: R<'_>) -> Resp {
        let mut b = Request::builder()
            .method(r.method)
            .uri(r.path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN);
        if let Some((cookie, csrf)) = r.session {
            b = b
                .header(header::COOKIE, format!("cairn_session={cookie}"))
                .header(CSRF_HEADER, csrf);
        }
        if let Some(ct) = r.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let body = r.body.map_or_else(Body::empty, Body::from);
        let mut req = b.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// First-boot setup of `admin`; returns (cookie, csrf).
    async fn setup(&self) -> (String, String) {
        let code = self.panel.setup_code().unwrap();
        let r = self
            .send(R {
                method: "POST",
                path: "/api/v1/setup",
                content_type: Some("application/json"),
                body: Some(
                    json!({"code": code, "username": "admin", "password": PW})
                        .to_string()
                        .into_bytes(),
                ),
                ..Default::default()
            })
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let cookie = r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string();
        (cookie, r.json()["csrf_token"].as_str().unwrap().to_string())
    }

    fn store_study(&self, pid: &str, study: &str) {
        let mut rec = InstanceRecord {
            sop_instance_uid: format!("{study}.1.1"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        rec.patient.id = pid.into();
        rec.patient.name = "Doe^Jane".into();
        rec.study.uid = study.into();
        rec.study.date = "20240102".into();
        rec.series.uid = format!("{study}.1");
        rec.series.modality = "CT".into();
        let mut w = self.store.spool().unwrap();
        w.write(study.as_bytes()).unwrap();
        self.store
            .commit(StoreJob {
                spool: w.finish().unwrap(),
                record: rec,
                source_ae: "TEST".into(),
            })
            .unwrap();
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

fn get<'a>(path: &'a str, s: &'a (String, String)) -> R<'a> {
    R {
        method: "GET",
        path,
        session: Some(s),
        ..Default::default()
    }
}

/// Issue 13 item 1: a study date of eight bytes that are not eight digits (`123é567`, as a
/// C-STORE may bring it) is shown as received, escaped, on the list and the study page: no
/// panic, no dropped connection.
#[tokio::test]
async fn a_non_ascii_study_date_is_shown_as_received() {
    let b = start();
    let admin = b.setup().await;
    b.store_study("PIDX", "1.2.3.4.200");
    let odd = "123é567";
    assert_eq!(odd.len(), 8);
    b.set_study_date("1.2.3.4.200", odd);
    for path in ["/studies?id=PIDX", "/studies/1.2.3.4.200"] {
        let r = b.send(get(path, &admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(r.body.contains(odd), "{path} does not show the date: {}", r.body);
    }
    // Markup in a date is shown inert; the API gives the value as received.
    b.set_study_date("1.2.3.4.200", "<b>é</b>");
    let r = b.send(get("/studies/1.2.3.4.200", &admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("&lt;b&gt;é&lt;/b&gt;"), "{}", r.body);
    let api = b.send(get("/api/v1/studies?id=PIDX", &admin)).await;
    assert_eq!(api.json()["studies"][0]["date"], "<b>é</b>");
}

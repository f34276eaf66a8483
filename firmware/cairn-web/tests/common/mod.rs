//! Shared setup for the panel's tests: a box with a fresh data directory and the shipped
//! default configuration, requests sent through the router with `oneshot` (no socket), and the
//! answers read back.
// Each test file uses its own part of this module.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use cairn_web::auth::HashCost;
use cairn_web::{Panel, PanelOptions, CSRF_HEADER};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tower::ServiceExt;

/// The panel's host name in every request.
pub const HOST: &str = "cairn.test";
/// The panel's own origin.
pub const ORIGIN: &str = "https://cairn.test";
/// Every account's password.
pub const PW: &str = "a long enough password";

/// Opens the store in `dir` and the panel on it (test hash cost, 900 s idle sessions).
pub fn open_panel(dir: &Path, config_path: Option<PathBuf>, https: bool) -> (Store, Panel) {
    let store = Store::open(DataDir::new(dir)).unwrap();
    let panel = Panel::open(
        PanelOptions {
            data_dir: dir.to_path_buf(),
            config_path,
            https,
            session_idle_secs: 900,
            hash_cost: HashCost::Test,
        },
        store.clone(),
    )
    .unwrap();
    (store, panel)
}

/// A box: its data directory (with `cairn.toml`), store, panel and router.
pub struct Box_ {
    pub dir: tempfile::TempDir,
    pub data: DataDir,
    pub store: Store,
    pub panel: Panel,
    pub router: Router,
}

/// An answer: status, headers and body as text.
pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Resp {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The session cookie the answer sets, if any.
    pub fn cookie(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
    }

    /// The `error` of a JSON refusal (empty when there is none).
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One request. `json` is sent as JSON, `form` as a urlencoded form, otherwise `body` as is
/// (with `content_type` if given). `session` is (cookie, csrf) and sends both; `cookie` and
/// `csrf` send one each. From 192.0.2.1 unless `addr` says otherwise.
#[derive(Default, Clone)]
pub struct R<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub cookie: Option<&'a str>,
    pub csrf: Option<&'a str>,
    pub session: Option<&'a (String, String)>,
    pub json: Option<Value>,
    pub form: Option<String>,
    pub content_type: Option<&'a str>,
    pub body: Option<Vec<u8>>,
    pub origin: Option<&'a str>,
    pub addr: Option<&'a str>,
}

/// A GET with the session's cookie and token.
pub fn get<'a>(path: &'a str, s: &'a (String, String)) -> R<'a> {
    R {
        method: "GET",
        path,
        session: Some(s),
        ..Default::default()
    }
}

/// A form POST from the panel's own page with the session `cookie` (the token is in `form`).
pub fn form_post<'a>(path: &'a str, cookie: &'a str, form: String) -> R<'a> {
    R {
        method: "POST",
        path,
        cookie: Some(cookie),
        form: Some(form),
        origin: Some(ORIGIN),
        ..Default::default()
    }
}

/// A CT image record of study `study` (series `{study}.1`, instance `{study}.1.1`, dated
/// 2024-01-02) for patient id `pid`.
pub fn ct_image(pid: &str, study: &str) -> InstanceRecord {
    let mut rec = InstanceRecord {
        sop_instance_uid: format!("{study}.1.1"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        ..Default::default()
    };
    rec.patient.id = pid.into();
    rec.study.uid = study.into();
    rec.study.date = "20240102".into();
    rec.series.uid = format!("{study}.1");
    rec.series.modality = "CT".into();
    rec
}

/// A box with the shipped default configuration (HTTPS, unknown peers accepted).
pub fn start() -> Box_ {
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
    let (store, panel) = open_panel(dir.path(), Some(cfg_path), true);
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
    /// Sends `r` through the router and reads the whole answer.
    pub async fn send(&self, r: R<'_>) -> Resp {
        let mut b = Request::builder()
            .method(r.method)
            .uri(r.path)
            .header(header::HOST, HOST);
        let (cookie, csrf) = match r.session {
            Some((cookie, csrf)) => (Some(cookie.as_str()), Some(csrf.as_str())),
            None => (r.cookie, r.csrf),
        };
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("cairn_session={c}"));
        }
        if let Some(t) = csrf {
            b = b.header(CSRF_HEADER, t);
        }
        if let Some(o) = r.origin {
            b = b.header(header::ORIGIN, o);
        }
        if let Some(ct) = r.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let body = if let Some(j) = r.json {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(j.to_string())
        } else if let Some(f) = r.form {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(f)
        } else {
            r.body.map_or_else(Body::empty, Body::from)
        };
        let mut req = b.body(body).unwrap();
        let ip = r.addr.unwrap_or("192.0.2.1");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 5000)));
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

    /// Sends `r` as the panel's own pages do: with the panel's origin unless `r` names one.
    pub async fn send_same_origin(&self, r: R<'_>) -> Resp {
        let origin = Some(r.origin.unwrap_or(ORIGIN));
        self.send(R { origin, ..r }).await
    }

    /// First-boot setup of `admin`; returns (cookie, csrf).
    pub async fn setup(&self) -> (String, String) {
        let code = self
            .panel
            .setup_code()
            .expect("a fresh box has a setup code");
        let r = self
            .send(R {
                method: "POST",
                path: "/api/v1/setup",
                json: Some(json!({"code": code, "username": "admin", "password": PW})),
                origin: Some(ORIGIN),
                ..Default::default()
            })
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.cookie().unwrap(),
            r.json()["csrf_token"].as_str().unwrap().to_string(),
        )
    }

    /// Logs `user` in from `addr`.
    pub async fn login(&self, user: &str, pw: &str, addr: &str) -> Resp {
        self.send(R {
            method: "POST",
            path: "/api/v1/session",
            json: Some(json!({"username": user, "password": pw})),
            addr: Some(addr),
            ..Default::default()
        })
        .await
    }

    /// A session of `user` (password [`PW`]); returns (cookie, csrf).
    pub async fn session(&self, user: &str) -> (String, String) {
        let r = self.login(user, PW, "192.0.2.50").await;
        assert_eq!(r.status, StatusCode::OK, "login {user}: {}", r.body);
        (
            r.cookie().unwrap(),
            r.json()["csrf_token"].as_str().unwrap().to_string(),
        )
    }

    /// Creates account `name` with `role` (password [`PW`]) as `admin`.
    pub async fn make_user(&self, admin: &(String, String), name: &str, role: &str) {
        let r = self
            .send(R {
                method: "POST",
                path: "/api/v1/users",
                cookie: Some(&admin.0),
                csrf: Some(&admin.1),
                origin: Some(ORIGIN),
                json: Some(json!({"username": name, "role": role, "password": PW})),
                ..Default::default()
            })
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    /// Stores `rec` with `bytes` as its file, as received from AE `TEST`.
    pub fn store_image(&self, rec: InstanceRecord, bytes: &[u8]) {
        let mut w = self.store.spool().unwrap();
        w.write(bytes).unwrap();
        self.store
            .commit(StoreJob {
                spool: w.finish().unwrap(),
                record: rec,
                source_ae: "TEST".into(),
            })
            .unwrap();
    }

    /// Stores one CT image of `study` for `patient` with markup in its description.
    pub fn store_study(&self, patient: &str, pid: &str, study: &str, accession: &str) {
        let mut rec = ct_image(pid, study);
        rec.patient.name = patient.into();
        rec.study.accession = accession.into();
        rec.study.description = "<img src=x onerror=alert(2)>".into();
        self.store_image(rec, study.as_bytes());
    }

    /// The audit log as (actor, action), oldest first.
    pub fn audit_actions(&self) -> Vec<(String, String)> {
        let c = cairn_store::find::query_connection(&self.data).unwrap();
        let mut st = c
            .prepare("SELECT actor, action FROM audit ORDER BY seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

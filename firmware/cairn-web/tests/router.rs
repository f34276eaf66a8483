//! The panel's guarantees, checked by calling the router with `oneshot` (no socket): the full
//! route-by-role matrix, CSRF and Origin checks, login throttling, session expiry and logout,
//! first-boot setup, and patient data shown inert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use cairn_web::auth::{HashCost, Role};
use cairn_web::routes::{Perm, ROUTES};
use cairn_web::{Panel, PanelOptions, CSRF_HEADER};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tower::ServiceExt;

const HOST: &str = "cairn.test";
const ORIGIN: &str = "https://cairn.test";
const PW: &str = "a long enough password";

struct Box_ {
    _dir: tempfile::TempDir,
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
    fn cookie(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
    }
}

/// One request. `body`: JSON for the API, a form string for pages.
#[derive(Default, Clone)]
struct R<'a> {
    method: &'a str,
    path: &'a str,
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
    json: Option<Value>,
    form: Option<String>,
    origin: Option<&'a str>,
    addr: Option<&'a str>,
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
        _dir: dir,
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
            .header(header::HOST, HOST);
        if let Some(c) = r.cookie {
            b = b.header(header::COOKIE, format!("cairn_session={c}"));
        }
        if let Some(t) = r.csrf {
            b = b.header(CSRF_HEADER, t);
        }
        if let Some(o) = r.origin {
            b = b.header(header::ORIGIN, o);
        }
        let body = if let Some(j) = r.json {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(j.to_string())
        } else if let Some(f) = r.form {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(f)
        } else {
            Body::empty()
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

    /// First-boot setup of `admin`; returns (cookie, csrf).
    async fn setup(&self) -> (String, String) {
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

    async fn login(&self, user: &str, pw: &str, addr: &str) -> Resp {
        self.send(R {
            method: "POST",
            path: "/api/v1/session",
            json: Some(json!({"username": user, "password": pw})),
            addr: Some(addr),
            ..Default::default()
        })
        .await
    }

    async fn session(&self, user: &str) -> (String, String) {
        let r = self.login(user, PW, "192.0.2.50").await;
        assert_eq!(r.status, StatusCode::OK, "login {user}: {}", r.body);
        (
            r.cookie().unwrap(),
            r.json()["csrf_token"].as_str().unwrap().to_string(),
        )
    }

    async fn make_user(&self, admin: &(String, String), name: &str, role: &str) {
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

    fn store_study(&self, patient: &str, pid: &str, study: &str, accession: &str) {
        let mut rec = InstanceRecord {
            sop_instance_uid: format!("{study}.1.1"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        rec.patient.id = pid.into();
        rec.patient.name = patient.into();
        rec.study.uid = study.into();
        rec.study.date = "20240102".into();
        rec.study.accession = accession.into();
        rec.study.description = "<img src=x onerror=alert(2)>".into();
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

    fn audit_actions(&self) -> Vec<(String, String)> {
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

fn concrete(path: &str) -> String {
    path.replace("{uid}", "1.2.3").replace("{name}", "reader1")
}

/// Every route, as anonymous and as each role: denied exactly when the matrix says so.
#[tokio::test]
async fn route_by_role_matrix() {
    let b = start();
    let admin = b.setup().await;
    b.make_user(&admin, "tech1", "technician").await;
    b.make_user(&admin, "staff1", "staff").await;
    b.make_user(&admin, "reader1", "reader").await;
    let users = [
        (Role::Admin, "admin"),
        (Role::Technician, "tech1"),
        (Role::Staff, "staff1"),
        (Role::Reader, "reader1"),
    ];
    let mut checked = 0;
    for route in ROUTES {
        let path = concrete(route.path);
        let change = route.method != "GET";
        let (json, form) = if !change {
            (None, None)
        } else if route.path.starts_with("/api/") {
            (Some(json!({"not": "valid"})), None)
        } else {
            (None, Some(String::new()))
        };
        // Anonymous.
        let r = b
            .send(R {
                method: route.method,
                path: &path,
                json: json.clone(),
                form: form.clone(),
                origin: Some(ORIGIN),
                ..Default::default()
            })
            .await;
        if route.perm == Perm::Public {
            assert!(
                r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                "{} {} is public but answered {} to anonymous",
                route.method,
                route.path,
                r.status
            );
        } else if route.path.starts_with("/api/") {
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} {}",
                route.method,
                route.path
            );
        } else {
            assert_eq!(
                r.status,
                StatusCode::SEE_OTHER,
                "{} {}",
                route.method,
                route.path
            );
            assert_eq!(r.headers[header::LOCATION], "/login");
        }
        // Each role, with a fresh session (some routes log out).
        for (role, name) in users {
            let (cookie, csrf) = b.session(name).await;
            let mut form = form.clone();
            if let Some(f) = &mut form {
                *f = format!("csrf={csrf}");
            }
            let r = b
                .send(R {
                    method: route.method,
                    path: &path,
                    cookie: Some(&cookie),
                    csrf: json.as_ref().map(|_| csrf.as_str()),
                    json: json.clone(),
                    form,
                    origin: Some(ORIGIN),
                    ..Default::default()
                })
                .await;
            let allowed = route.perm.allows(role);
            if allowed {
                assert!(
                    r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                    "{} {} must be open to {role:?}, got {}: {}",
                    route.method,
                    route.path,
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{} {} must be closed to {role:?}",
                    route.method,
                    route.path
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * 4);
    // The matrix itself, pinned independently of the table for the routes that matter most.
    let pinned: &[(&str, &str, [bool; 4])] = &[
        // (method, path, [admin, technician, staff, reader])
        ("GET", "/api/v1/status", [true, true, true, true]),
        ("GET", "/api/v1/studies", [true, false, true, true]),
        ("GET", "/api/v1/audit", [true, false, false, false]),
        ("GET", "/api/v1/users", [true, false, false, false]),
        ("POST", "/api/v1/users", [true, false, false, false]),
        ("PUT", "/api/v1/settings", [true, false, false, false]),
        ("POST", "/api/v1/alarm/silence", [true, true, true, true]),
        ("POST", "/api/v1/archive/eject", [true, true, true, false]),
        ("POST", "/api/v1/disks/action", [true, true, false, false]),
    ];
    for (m, p, want) in pinned {
        let route = ROUTES
            .iter()
            .find(|r| r.method == *m && r.path == *p)
            .unwrap_or_else(|| panic!("{m} {p} missing from the route table"));
        for (i, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(route.perm.allows(role), want[i], "{m} {p} for {role:?}");
        }
    }
    // A path that is no route answers 404 without data, logged in or not.
    let (cookie, _) = b.session("admin").await;
    let r = b
        .send(R {
            method: "GET",
            path: "/api/v1/nothing-here",
            cookie: Some(&cookie),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The OpenAPI document lists the required operations.
    let r = b
        .send(R {
            method: "GET",
            path: "/api/v1/openapi.json",
            ..Default::default()
        })
        .await;
    let doc = r.json();
    for (p, m) in [
        ("/status", "get"),
        ("/studies", "get"),
        ("/audit", "get"),
        ("/users", "get"),
        ("/users", "post"),
        ("/settings", "get"),
        ("/settings", "put"),
        ("/alarm/silence", "post"),
        ("/archive/eject", "post"),
        ("/session", "post"),
        ("/session", "delete"),
    ] {
        assert!(doc["paths"][p][m].is_object(), "openapi lacks {m} {p}");
    }
}

#[tokio::test]
async fn changes_need_the_csrf_token_and_the_same_origin() {
    let b = start();
    let admin = b.setup().await;
    let body = json!({"username": "newbie", "role": "reader", "password": PW});
    let post = |csrf: Option<&'static str>, origin: Option<&'static str>| R {
        method: "POST",
        path: "/api/v1/users",
        json: Some(body.clone()),
        csrf,
        origin,
        ..Default::default()
    };
    // No token, a wrong token: refused, nothing made.
    let mut r = post(None, Some(ORIGIN));
    r.cookie = Some(&admin.0);
    assert_eq!(b.send(r).await.status, StatusCode::FORBIDDEN);
    let mut r = post(Some("00ff"), Some(ORIGIN));
    r.cookie = Some(&admin.0);
    assert_eq!(b.send(r).await.status, StatusCode::FORBIDDEN);
    // The right token from another site: refused.
    let r = R {
        method: "POST",
        path: "/api/v1/users",
        json: Some(body.clone()),
        cookie: Some(&admin.0),
        csrf: Some(&admin.1),
        origin: Some("https://evil.example"),
        ..Default::default()
    };
    assert_eq!(b.send(r).await.status, StatusCode::FORBIDDEN);
    let list = b
        .send(R {
            method: "GET",
            path: "/api/v1/users",
            cookie: Some(&admin.0),
            ..Default::default()
        })
        .await
        .json();
    assert_eq!(list["users"].as_array().unwrap().len(), 1, "{list}");
    // A page form without the csrf field, and with a wrong one: refused.
    for form in [
        "op=add-user&username=x&role=reader&password=aaaaaaaaaaaa",
        "csrf=bad&op=add-user",
    ] {
        let r = b
            .send(R {
                method: "POST",
                path: "/settings",
                cookie: Some(&admin.0),
                form: Some(form.into()),
                origin: Some(ORIGIN),
                ..Default::default()
            })
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form}");
    }
    // The login form from another site is refused too.
    let r = b
        .send(R {
            method: "POST",
            path: "/login",
            form: Some(format!("username=admin&password={PW}")),
            origin: Some("https://evil.example"),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // With both: made, and audited.
    let r = R {
        method: "POST",
        path: "/api/v1/users",
        json: Some(body.clone()),
        cookie: Some(&admin.0),
        csrf: Some(&admin.1),
        origin: Some(ORIGIN),
        ..Default::default()
    };
    assert_eq!(b.send(r).await.status, StatusCode::CREATED);
    // The form path with the token works as well.
    let r = b
        .send(R {
            method: "POST",
            path: "/settings",
            cookie: Some(&admin.0),
            form: Some(format!(
                "csrf={}&op=add-user&username=formuser&role=staff&password=aaaaaaaaaaaa",
                admin.1
            )),
            origin: Some(ORIGIN),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("User formuser added."));
    let acts = b.audit_actions();
    assert!(
        acts.contains(&("user:admin".into(), "user-create".into())),
        "{acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| a.1 == "user-create").count(),
        3,
        "{acts:?}"
    );
}

#[tokio::test]
async fn logins_are_throttled_per_account_and_per_address() {
    let b = start();
    let admin = b.setup().await;
    b.make_user(&admin, "victim", "staff").await;
    // Five wrong passwords for one account from one address...
    for i in 0..cairn_web::auth::ACCOUNT_FAILS {
        let r = b.login("victim", "wrong password!", "198.51.100.7").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // ...lock the account, even with the right password from elsewhere.
    let r = b.login("victim", PW, "198.51.100.99").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // Other accounts still log in.
    assert_eq!(
        b.login("admin", PW, "198.51.100.99").await.status,
        StatusCode::OK
    );
    // The lock ends with time.
    b.panel.clock().advance(16 * 60);
    assert_eq!(
        b.login("victim", PW, "198.51.100.7").await.status,
        StatusCode::OK
    );

    // One address guessing many accounts is locked too.
    for i in 0..cairn_web::auth::ADDRESS_FAILS {
        let name = format!("guess{}", i % 4);
        let r = b.login(&name, "wrong password!", "203.0.113.5").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = b.login("admin", PW, "203.0.113.5").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        b.login("admin", PW, "203.0.113.6").await.status,
        StatusCode::OK
    );
    // Every checked attempt is an audit row; a locked one is refused before any check.
    let acts = b.audit_actions();
    let logins = acts.iter().filter(|a| a.1 == "login").count();
    assert_eq!(
        logins as u32,
        1 + cairn_web::auth::ACCOUNT_FAILS + 1 + 1 + cairn_web::auth::ADDRESS_FAILS + 1,
        "{acts:?}"
    );
}

#[tokio::test]
async fn sessions_end_on_idle_and_on_logout() {
    let b = start();
    let _ = b.setup().await;
    let (cookie, csrf) = b.session("admin").await;
    fn get(c: &str) -> R<'_> {
        R {
            method: "GET",
            path: "/api/v1/status",
            cookie: Some(c),
            ..Default::default()
        }
    }
    let c1 = cookie.clone();
    assert_eq!(b.send(get(&c1)).await.status, StatusCode::OK);
    // Activity keeps it alive...
    b.panel.clock().advance(800);
    assert_eq!(b.send(get(&c1)).await.status, StatusCode::OK);
    b.panel.clock().advance(800);
    assert_eq!(b.send(get(&c1)).await.status, StatusCode::OK);
    // ...idle beyond the limit ends it, for good.
    b.panel.clock().advance(901);
    assert_eq!(b.send(get(&c1)).await.status, StatusCode::UNAUTHORIZED);
    b.panel.clock().advance(0);
    assert_eq!(b.send(get(&c1)).await.status, StatusCode::UNAUTHORIZED);
    let page = b
        .send(R {
            method: "GET",
            path: "/disks",
            cookie: Some(&c1),
            ..Default::default()
        })
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    // Logout ends a session and expires the cookie.
    let (cookie, csrf2) = b.session("admin").await;
    let _ = csrf;
    let r = b
        .send(R {
            method: "DELETE",
            path: "/api/v1/session",
            cookie: Some(&cookie),
            csrf: Some(&csrf2),
            origin: Some(ORIGIN),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.contains("Max-Age=0"), "{set}");
    assert_eq!(b.send(get(&cookie)).await.status, StatusCode::UNAUTHORIZED);
    let acts = b.audit_actions();
    assert!(
        acts.contains(&("user:admin".into(), "logout".into())),
        "{acts:?}"
    );
}

#[tokio::test]
async fn cookies_are_httponly_secure_samesite_strict() {
    let b = start();
    let code = b.panel.setup_code().unwrap();
    let r = b
        .send(R {
            method: "POST",
            path: "/api/v1/setup",
            json: Some(json!({"code": code, "username": "admin", "password": PW})),
            ..Default::default()
        })
        .await;
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
}

#[tokio::test]
async fn first_boot_needs_the_setup_code_and_has_no_default_account() {
    let b = start();
    // No account: login fails for the usual guesses; the pages send people to setup.
    for (u, p) in [("admin", "admin"), ("admin", "password"), ("root", "cairn")] {
        assert_eq!(
            b.login(u, p, "192.0.2.9").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = b
        .send(R {
            method: "GET",
            path: "/login",
            ..Default::default()
        })
        .await;
    assert_eq!(r.headers[header::LOCATION], "/setup");
    // A wrong code makes nothing.
    let r = b
        .send(R {
            method: "POST",
            path: "/api/v1/setup",
            json: Some(json!({"code": "0000-0000-0000", "username": "admin", "password": PW})),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(b.panel.setup_code().is_some());
    // The right code with a short password: refused with a reason.
    let code = b.panel.setup_code().unwrap();
    let r = b
        .send(R {
            method: "POST",
            path: "/api/v1/setup",
            json: Some(json!({"code": code, "username": "admin", "password": "short"})),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("10 characters"));
    // The right code: the admin exists, the code is gone, a second setup is refused.
    let _ = b.setup().await;
    assert!(b.panel.setup_code().is_none());
    let r = b
        .send(R {
            method: "POST",
            path: "/api/v1/setup",
            json: Some(json!({"code": code, "username": "evil", "password": PW})),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let acts = b.audit_actions();
    assert!(
        acts.contains(&("user:admin".into(), "user-create".into())),
        "{acts:?}"
    );
    assert!(
        acts.contains(&("anonymous".into(), "setup".into())),
        "{acts:?}"
    );
}

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

#[tokio::test]
async fn settings_changes_are_validated_saved_and_audited() {
    let b = start();
    let admin = b.setup().await;
    let put = |j: Value| R {
        method: "PUT",
        path: "/api/v1/settings",
        cookie: Some(&admin.0),
        csrf: Some(&admin.1),
        origin: Some(ORIGIN),
        json: Some(j),
        ..Default::default()
    };
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

/// The overview and the Disks page from a published RAID status and alarm state: the verdict,
/// the banner with Silence, the bays, SMART warnings, the rebuild bar with its ETA.
#[tokio::test]
async fn disks_page_shows_bays_rebuild_eta_and_smart_warnings() {
    let b = start();
    let admin = b.setup().await;
    let smart = |verdict: &str, warnings: &[&str]| {
        json!({"verdict": verdict, "warnings": warnings, "available": true, "passed": true,
               "model": "X", "serial": "S", "temperature_c": 35, "reallocated_sectors": 24,
               "pending_sectors": 0, "offline_uncorrectable": 0, "media_errors": null,
               "percentage_used": null, "exit_status": 0, "message": null})
    };
    let member = |bay: u32, state: &str, dev: &str, sm: Value| {
        json!({"bay": bay, "state": state, "device": dev, "slot": bay - 1, "flags": [],
               "errors": 0, "smart": sm})
    };
    let raid = json!({
        "updated_at_ms": 1, "board": "demo",
        "arrays": [{
            "name": "md0", "level": "raid6", "health": "degraded", "running": true,
            "raid_disks": 4, "degraded": 1, "sync_action": "recover", "rebuild_percent": 25.0,
            "progress": {"action": "recover", "percent": 25.0, "speed_kib": 102400, "eta_secs": 900},
            "mismatch_cnt": 0, "component_size_kib": 1048576,
            "members": [
                member(1, "in_sync", "sda", smart("ok", &[])),
                member(2, "in_sync", "sdb", smart("warning", &["24 reallocated sectors"])),
                member(3, "rebuilding", "sdg", smart("ok", &[])),
                member(4, "in_sync", "sdd", Value::Null),
            ]
        }],
        "bays": [
            {"bay": 1, "device": "sda", "size_bytes": 1_000_000_000u64, "fault": false},
            {"bay": 2, "device": "sdb", "size_bytes": 1_000_000_000u64, "fault": false},
            {"bay": 3, "device": "sdg", "size_bytes": 1_000_000_000u64, "fault": false},
            {"bay": 4, "device": "sdd", "size_bytes": 1_000_000_000u64, "fault": false}
        ],
        "blocked": []
    });
    std::fs::write(b.data.root().join("raid.json"), raid.to_string()).unwrap();
    let alarm = json!({"next_id": 1, "events": [{"id": 1, "kind": "disk-failed", "bay": 3,
        "array": "md0", "message": "The disk in bay 3 failed (md0)", "raised_at_ms": 1,
        "silenced": false, "silenced_by": null}]});
    std::fs::write(b.data.root().join("alarm.json"), alarm.to_string()).unwrap();
    let get = |p: &'static str| R {
        method: "GET",
        path: p,
        cookie: Some(&admin.0),
        ..Default::default()
    };
    let overview = b.send(get("/")).await;
    assert_eq!(overview.status, StatusCode::OK);
    // The overview speaks of "the disks", never of md0 (nor does the alarm banner above it),
    // and shows the rebuild as a bar with the time left.
    assert!(!overview.body.contains("md0"), "{}", overview.body);
    assert!(
        overview.body.contains("The disk in bay 3 failed"),
        "{}",
        overview.body
    );
    let main = overview.body.split("<main>").nth(1).unwrap();
    assert!(
        main.contains("Rebuilding the disks: 25 % done"),
        "{}",
        overview.body
    );
    assert!(!main.contains("md0"), "{main}");
    assert!(main.contains("aria-label=\"rebuild\""), "{main}");
    assert!(main.contains("value=\"25.0\""), "{main}");
    assert!(main.contains("about 15 min left"), "{main}");
    assert!(overview.body.contains("id=\"alarm-banner\""));
    assert!(overview.body.contains("id=\"silence\""));
    let disks = b.send(get("/disks")).await;
    assert_eq!(disks.status, StatusCode::OK);
    let body = &disks.body;
    assert_eq!(body.matches("data-bay=").count(), 4, "{body}");
    assert!(
        body.contains("class=\"bay rebuilding\" data-bay=\"3\""),
        "{body}"
    );
    assert!(body.contains("Bay 2: 24 reallocated sectors"), "{body}");
    assert!(body.contains("about 15 min left"), "{body}");
    assert!(body.contains("value=\"25.0\""), "{body}");
    // Silence is offered on every page, Audit included.
    let audit = b.send(get("/audit")).await;
    assert!(audit.body.contains("id=\"silence\""));
    let status = b.send(get("/api/v1/status")).await.json();
    assert_eq!(status["state"], "alarm");
    assert_eq!(status["sounding"], true);
    assert_eq!(status["raid"]["arrays"][0]["progress"]["eta_secs"], 900);
}

/// The overview says what its numbers are: storage "used", images "received today" and
/// "stored in all".
#[tokio::test]
async fn overview_numbers_say_what_they_count() {
    let b = start();
    let admin = b.setup().await;
    b.store_study("DOE^JOHN", "P1", "1.2.3.4", "A1");
    let r = b
        .send(R {
            method: "GET",
            path: "/",
            cookie: Some(&admin.0),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let main = r.body.split("<main>").nth(1).unwrap();
    assert!(main.contains(" % used</span>"), "{main}");
    assert!(main.contains("Images received today"), "{main}");
    assert!(main.contains("1 image stored in all, in 1 study"), "{main}");
    assert!(!main.contains("images kept"), "{main}");
    assert!(!main.contains(">Images today<"), "{main}");
}

/// A tape target with a volume in its drive, as the archive thread would have recorded it,
/// and the thread's live status doing `activity`.
fn archive_fixture(b: &Box_, activity: &str, message: &str) {
    let c = rusqlite::Connection::open(b.data.root().join("cairn.db")).unwrap();
    c.execute_batch(
        "INSERT OR IGNORE INTO cold_targets (id, name, kind, enabled, added_at)
           VALUES (1, 'tape', 'tape', 1, '2026-01-01T00:00:00Z');
         INSERT OR IGNORE INTO volumes (volume_id, kind, box_id, target_ref, state, location,
           format_version, block_size, capacity_bytes, bytes_written, labelled_at, updated_at)
           VALUES ('DEMO01', 'tape', 'DEMO', 1, 'append', 'in_drive', 1, 262144, 1000000,
             250000, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');",
    )
    .unwrap();
    let live = json!({"targets": [{"name": "tape", "drive": "ready", "activity": activity,
        "medium_needed": false, "message": message, "last_error": null,
        "updated_at": "2026-01-01T00:00:00Z"}]});
    std::fs::write(b.data.root().join("archive.json"), live.to_string()).unwrap();
}

/// The Archive page in staff words (no "append", no "bundle"), a progress bar while the
/// drive writes or checks, and a page that refreshes itself meanwhile.
#[tokio::test]
async fn archive_page_speaks_plainly_and_shows_work_in_progress() {
    let b = start();
    let admin = b.setup().await;
    let get = || R {
        method: "GET",
        path: "/archive",
        cookie: Some(&admin.0),
        ..Default::default()
    };
    archive_fixture(
        &b,
        "writing bundle DEMO01.3 (3 objects)",
        "bundle DEMO01.2 verified (2 objects)",
    );
    let r = b.send(get()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let main = r.body.split("<main>").nth(1).unwrap().to_lowercase();
    for jargon in ["append", "bundle", "cold cop", "objects"] {
        assert!(
            !main.contains(jargon),
            "'{jargon}' on the Archive page: {main}"
        );
    }
    assert!(main.contains("writing 3 images to the tape"), "{main}");
    assert!(main.contains("id=\"archive-work-tape\""), "{main}");
    assert!(main.contains("<progress"), "{main}");
    assert!(
        r.body.contains("http-equiv=\"refresh\" content=\"3\""),
        "{}",
        r.body
    );
    // Checking what was written: still a bar, still refreshing.
    archive_fixture(&b, "verifying bundle DEMO01.3", "");
    let r = b.send(get()).await;
    let main = r.body.split("<main>").nth(1).unwrap().to_lowercase();
    assert!(main.contains("reading back"), "{main}");
    assert!(main.contains("id=\"archive-work-tape\""), "{main}");
    assert!(r.body.contains("http-equiv=\"refresh\" content=\"3\""));
    // Idle: no bar, no fast refresh.
    archive_fixture(&b, "idle", "");
    let r = b.send(get()).await;
    assert!(!r.body.contains("archive-work-tape"), "{}", r.body);
    assert!(!r.body.contains("content=\"3\""), "{}", r.body);

    // An eject that takes longer than the page waits: the page answers at once with a bar
    // and follows it; once the archive thread answers, the next view says how it ended.
    let started = std::time::Instant::now();
    let r = b
        .send(R {
            method: "POST",
            path: "/archive",
            cookie: Some(&admin.0),
            form: Some(format!(
                "csrf={}&action=eject&target=tape&location=onsite_shelf",
                admin.1
            )),
            origin: Some(ORIGIN),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(r.body.contains("id=\"archive-job\""), "{}", r.body);
    assert!(r.body.contains("<progress"), "{}", r.body);
    assert!(
        r.body.contains("http-equiv=\"refresh\" content=\"3\""),
        "{}",
        r.body
    );
    assert!(b.send(get()).await.body.contains("id=\"archive-job\""));
    // The archive thread's answer (as cairnd would write it).
    let dir = b.data.root().join("requests/archive");
    let req = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a pending eject request");
    std::fs::write(
        req.with_extension("done"),
        json!({"ok": true, "message": "DEMO01 ejected; recorded as on the on-site shelf"})
            .to_string(),
    )
    .unwrap();
    let mut shown = String::new();
    for _ in 0..100 {
        shown = b.send(get()).await.body;
        if shown.contains("id=\"archive-message\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        shown.contains("DEMO01 ejected; recorded as on the on-site shelf"),
        "{shown}"
    );
    assert!(!shown.contains("id=\"archive-job\""), "{shown}");
    // Said once.
    assert!(!b.send(get()).await.body.contains("archive-message"));
}

/// The Audit page: times in the box's time zone (a setting that applies at once), details in
/// words, pages of 50 rows, and the filters kept in the page links.
#[tokio::test]
async fn audit_page_local_time_words_paging_and_filters_in_the_url() {
    let b = start();
    let admin = b.setup().await;
    let put = |j: Value| R {
        method: "PUT",
        path: "/api/v1/settings",
        cookie: Some(&admin.0),
        csrf: Some(&admin.1),
        origin: Some(ORIGIN),
        json: Some(j),
        ..Default::default()
    };
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
        .send(R {
            method: "POST",
            path: "/settings",
            cookie: Some(&admin2.0),
            form: Some(format!(
                "csrf={}&op=dicom&ae_title=CAIRN&accept_unknown_peers=true&scrub_interval_days=30&archive_max_age_secs=10\
                 &session_idle_secs=900&time_zone=Europe/Paris",
                admin2.1
            )),
            origin: Some(ORIGIN),
            ..Default::default()
        })
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

/// Issue 20 item 2: a later image with another description (and an invalid date) changes
/// nothing in the index; the study page and the API list what it carried, escaped.
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
    let mut w = b.store.spool().unwrap();
    w.write(b"a later image").unwrap();
    b.store
        .commit(StoreJob {
            spool: w.finish().unwrap(),
            record: rec,
            source_ae: "TEST".into(),
        })
        .unwrap();
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

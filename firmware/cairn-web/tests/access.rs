//! Who may do what on the panel, checked by calling the router with `oneshot` (no socket): the
//! full route-by-role matrix, CSRF and Origin checks, login throttling, session expiry and
//! logout, cookie attributes, and first-boot setup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{header, StatusCode};
use cairn_web::auth::Role;
use cairn_web::routes::{Perm, ROUTES};
use common::{form_post, start, ORIGIN, PW, R};
use serde_json::json;

fn concrete(path: &str) -> String {
    path.replace("{uid}", "1.2.3")
        .replace("{name}", "reader1")
        .replace("{patient}", "P1")
        .replace("{hold}", "1")
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
        ("GET", "/api/v1/lifecycle", [true, false, true, true]),
        ("POST", "/api/v1/holds", [true, false, true, false]),
        (
            "POST",
            "/api/v1/patients/{patient}/death",
            [true, false, true, false],
        ),
        (
            "POST",
            "/api/v1/destruction/approve",
            [true, false, false, false],
        ),
        (
            "POST",
            "/api/v1/studies/{uid}/reject",
            [true, false, false, false],
        ),
        ("POST", "/lifecycle/approve", [true, false, false, false]),
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
        .send(form_post(
            "/settings",
            &admin.0,
            format!(
                "csrf={}&op=add-user&username=formuser&role=staff&password=aaaaaaaaaaaa",
                admin.1
            ),
        ))
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

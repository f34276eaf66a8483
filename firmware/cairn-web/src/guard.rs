//! The layers every request passes: the authorisation layer (the route table, the session,
//! the role, the Origin and CSRF checks) and the security headers on every answer.

use crate::{
    auth, blocking, pages, routes, Caller, Panel, WebError, COOKIE, CSRF_HEADER, MAX_BODY,
};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;

/// The session token in the request's cookie, when it has the token's form.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The Origin (or Referer) of a change must be this panel itself.
fn origin_ok(panel: &Panel, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let scheme = if panel.0.opts.https { "https" } else { "http" };
    let expected = format!("{scheme}://{host}");
    if let Some(o) = headers.get(header::ORIGIN) {
        return o.to_str().is_ok_and(|o| o == expected);
    }
    if let Some(r) = headers.get(header::REFERER) {
        return r
            .to_str()
            .is_ok_and(|r| r == expected || r.starts_with(&format!("{expected}/")));
    }
    // Neither header: not a browser (browsers send Origin on every POST/PUT/DELETE).
    true
}

fn is_change(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The form field carrying the CSRF token.
#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// The authorisation layer: route table lookup, session, role, Origin and CSRF checks.
pub(crate) async fn authorize(State(panel): State<Panel>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let is_api = path.starts_with("/api/");
    let deny = |e: WebError| -> Response {
        if is_api {
            e.into_response()
        } else {
            let mut headers = Response::default();
            e.status_headers(&mut headers);
            let mut r = pages::error_page(None, e);
            r.headers_mut().extend(headers.headers().clone());
            r
        }
    };
    // HEAD is GET without the body, wherever GET is served.
    let method = match *req.method() {
        Method::HEAD => "GET",
        ref m => m.as_str(),
    };
    let Some(route) = routes::lookup(method, &path) else {
        return deny(match routes::allow(&path) {
            Some(allow) => WebError::MethodNotAllowed(allow),
            None => WebError::Forbidden("this route is not open to anyone".into()),
        });
    };
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("local".to_string(), |c| c.0.ip().to_string());
    let token = cookie_token(req.headers());
    let session = match &token {
        Some(t) => {
            let p = panel.clone();
            let t = t.clone();
            match blocking(move || {
                p.0.auth
                    .session(&t, p.0.clock.now(), p.0.opts.session_idle_secs)
            })
            .await
            {
                Ok(s) => s,
                Err(e) => return deny(e),
            }
        }
        None => None,
    };
    if route.perm != routes::Perm::Public {
        match &session {
            None if is_api => return WebError::Unauthorized.into_response(),
            None => return Redirect::to("/login").into_response(),
            Some(s) if !route.perm.allows(s.role) => {
                return deny(WebError::Forbidden(format!(
                    "a {} may not do this",
                    s.role.as_str()
                )))
            }
            Some(_) => {}
        }
    }
    let mut req = req;
    if is_change(req.method()) {
        if !origin_ok(&panel, req.headers()) {
            return deny(WebError::Forbidden(
                "this change did not come from the panel's own pages (Origin check)".into(),
            ));
        }
        if let Some(s) = &session {
            // A logged-in change carries the CSRF token: header (API) or form field (pages).
            let header_token = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let is_form = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            let presented = match header_token {
                Some(t) => Some(t),
                None if is_form => {
                    let (parts, body) = req.into_parts();
                    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
                        Ok(b) => b,
                        Err(_) => return deny(WebError::PayloadTooLarge),
                    };
                    let field = serde_urlencoded_csrf(&bytes);
                    req = Request::from_parts(parts, axum::body::Body::from(bytes));
                    field
                }
                None => None,
            };
            if !presented.is_some_and(|t| auth::same_secret(&t, &s.csrf)) {
                return deny(WebError::Forbidden(
                    "missing or wrong CSRF token: reload the page and try again".into(),
                ));
            }
        }
    }
    tracing::debug!(method = %req.method(), route = %path, "panel request");
    req.extensions_mut().insert(Caller {
        session,
        token,
        address,
    });
    next.run(req).await
}

fn serde_urlencoded_csrf(bytes: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<CsrfField>(bytes)
        .ok()
        .map(|f| f.csrf)
        .filter(|t| !t.is_empty())
}

/// Headers on every answer: no caching of patient data, no framing, a strict CSP.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

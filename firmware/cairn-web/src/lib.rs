//! The web panel and its JSON API (`/api/v1`), served by axum.
//!
//! Owns: the pages (server-rendered with maud, which escapes every value), the JSON API and its
//! OpenAPI document, accounts, roles, sessions and login throttling (`web.db`, see [`auth`]),
//! the device certificate and the HTTPS listener ([`tls`]).
//! Reads the store through `cairn-store`'s queries, the RAID and alarm state through the files
//! `cairnd`'s monitor publishes, and asks the monitor to act through its request files: the same
//! calls `cairnctl` makes. Changes are audited through the store's writer.
//! Must never: write `cairn.db` or the data directory's objects, log a patient name or ID, or
//! serve a route that is not in [`routes::ROUTES`] with its permission.

mod actions;
mod api;
pub mod auth;
mod data;
mod extract;
pub mod listen;
mod openapi;
mod pages;
mod read;
mod reply;
pub mod routes;
mod settings;
pub mod tls;
mod words;

use auth::{AuthDb, Clock, HashCost, Session, Throttle};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use cairn_audit::AuditEvent;
use cairn_store::{DataDir, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The session cookie's name.
pub const COOKIE: &str = "cairn_session";
/// The header API clients send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest request body accepted (forms and JSON).
const MAX_BODY: usize = 64 * 1024;

/// What went wrong, as the API and the pages tell it. Internal details are logged, never sent.
#[derive(Debug, Error)]
pub enum WebError {
    /// The request is malformed or a value is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// Not logged in, or the session ended.
    #[error("log in first")]
    Unauthorized,
    /// The name or password is wrong (which one is not told).
    #[error("wrong user name or password")]
    BadLogin,
    /// Logged in, but the role may not do this (or a CSRF/Origin check failed).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// It exists already or conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Too many failed logins.
    #[error("too many failed logins: try again in {retry_after} s")]
    TooManyRequests {
        /// Seconds.
        retry_after: u64,
    },
    /// A part the request needs is not running (no RAID monitor, no archive drive).
    #[error("{0}")]
    Unavailable(String),
    /// The path exists, but not with this method; holds the `Allow` header's value.
    #[error("this address answers {0} only")]
    MethodNotAllowed(String),
    /// The request body is larger than the panel reads.
    #[error("the request body is too large (at most 64 KiB)")]
    PayloadTooLarge,
    /// A failure inside the box.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for WebError {
    fn from(e: rusqlite::Error) -> Self {
        WebError::Internal(format!("database: {e}"))
    }
}

impl From<cairn_store::StoreError> for WebError {
    fn from(e: cairn_store::StoreError) -> Self {
        match e.kind() {
            cairn_store::ErrorKind::OutOfResources | cairn_store::ErrorKind::ShuttingDown => {
                WebError::Unavailable(format!("the store cannot answer now: {e}"))
            }
            cairn_store::ErrorKind::Other => WebError::Internal(e.to_string()),
        }
    }
}

impl WebError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized | WebError::BadLogin => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            WebError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The sentence shown to a person.
    pub fn public_message(&self) -> String {
        match self {
            WebError::Internal(detail) => {
                tracing::error!(error = %detail, "panel request failed");
                "something went wrong inside the box; the event was logged".to_string()
            }
            e => e.to_string(),
        }
    }

    /// The headers that go with the status: `Retry-After` for 429, `Allow` for 405.
    pub(crate) fn status_headers(&self, r: &mut Response) {
        match self {
            WebError::TooManyRequests { retry_after } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            WebError::MethodNotAllowed(allow) => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
            }
            _ => {}
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.public_message() });
        let mut r = (self.status(), axum::Json(body)).into_response();
        self.status_headers(&mut r);
        r
    }
}

/// How the panel is run.
#[derive(Debug, Clone)]
pub struct PanelOptions {
    /// The data directory (`cairn.db`, `raid.json`, `alarm.json`, `requests/`; `web.db` goes here).
    pub data_dir: PathBuf,
    /// The configuration file the Settings page edits (none: settings are read-only).
    pub config_path: Option<PathBuf>,
    /// Served over HTTPS: cookies are `Secure` and the expected Origin is `https://`.
    pub https: bool,
    /// A session unused this long ends.
    pub session_idle_secs: u64,
    /// Password hashing cost.
    pub hash_cost: HashCost,
}

pub(crate) struct Inner {
    pub(crate) opts: PanelOptions,
    pub(crate) data: DataDir,
    pub(crate) store: Store,
    pub(crate) auth: AuthDb,
    pub(crate) throttle: Throttle,
    pub(crate) clock: Clock,
    pub(crate) setup_code: Mutex<Option<String>>,
    /// How the box restarts itself (installed by `cairnd`; none: the panel cannot).
    pub(crate) restart_hook: Mutex<Option<RestartHook>>,
    /// A saved setting waits for a restart.
    pub(crate) restart_pending: std::sync::atomic::AtomicBool,
    /// The Archive page's eject or load that outlasted its answer (see `pages`).
    pub(crate) archive_job: Mutex<pages::ArchiveJob>,
}

/// What restarts the box (see [`Panel::set_restart_hook`]).
pub(crate) type RestartHook = Arc<dyn Fn() + Send + Sync>;

/// The panel: shared state of every request. Cheap to clone.
#[derive(Clone)]
pub struct Panel(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Panel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Panel")
            .field("data_dir", &self.0.opts.data_dir)
            .finish_non_exhaustive()
    }
}

impl Panel {
    /// Open `web.db`; when no account exists, make the one-time setup code.
    pub fn open(opts: PanelOptions, store: Store) -> Result<Panel, WebError> {
        let auth = AuthDb::open(&opts.data_dir.join("web.db"), opts.hash_cost)?;
        let code = if auth.user_count()? == 0 {
            Some(auth::new_setup_code()?)
        } else {
            None
        };
        Ok(Panel(Arc::new(Inner {
            data: DataDir::new(&opts.data_dir),
            opts,
            store,
            auth,
            throttle: Throttle::default(),
            clock: Clock::default(),
            setup_code: Mutex::new(code),
            restart_hook: Mutex::new(None),
            restart_pending: std::sync::atomic::AtomicBool::new(false),
            archive_job: Mutex::new(pages::ArchiveJob::None),
        })))
    }

    /// Let the Settings page restart the box: `hook` is called (once, from a panel thread,
    /// after the page answered) when an admin asks for a restart. `cairnd` stops cleanly and
    /// starts again; without a hook the panel offers no restart.
    pub fn set_restart_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut g) = self.0.restart_hook.lock() {
            *g = Some(Arc::new(hook));
        }
    }

    /// The one-time setup code, while no account exists (print it on the console).
    pub fn setup_code(&self) -> Option<String> {
        self.0.setup_code.lock().ok().and_then(|g| g.clone())
    }

    /// The clock sessions and throttling use (tests advance it).
    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    /// Every route, behind the authorisation layer.
    pub fn router(&self) -> Router {
        pages::router()
            .merge(api::router())
            .route_layer(middleware::from_fn_with_state(self.clone(), authorize))
            .fallback(|| async { WebError::NotFound("no such page".into()) })
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .layer(middleware::from_fn(reply::refusals_as_json))
            .layer(middleware::from_fn(security_headers))
            .with_state(self.clone())
    }

    /// Record an audit row through the store's writer (durable before this returns).
    pub(crate) async fn audit(
        &self,
        actor: &str,
        action: &str,
        object: &str,
        detail: serde_json::Value,
    ) -> Result<(), WebError> {
        let store = self.0.store.clone();
        let ev = AuditEvent {
            actor: actor.to_string(),
            action: action.to_string(),
            object: object.to_string(),
            detail: detail.to_string(),
        };
        blocking(move || store.audit(ev).map_err(WebError::from)).await
    }
}

/// Run blocking work (SQLite, argon2, file waits) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WebError::Internal(format!("worker: {e}")))?
}

/// Who is asking: their session (when logged in) and address.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) session: Option<Session>,
    pub(crate) token: Option<String>,
    pub(crate) address: String,
}

impl Caller {
    /// The session of a route that needs one (the layer guarantees it).
    pub(crate) fn user(&self) -> Result<&Session, WebError> {
        self.session.as_ref().ok_or(WebError::Unauthorized)
    }

    /// The audit actor.
    pub(crate) fn actor(&self) -> String {
        self.session
            .as_ref()
            .map_or("anonymous".to_string(), |s| format!("user:{}", s.username))
    }
}

pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
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

/// The `Set-Cookie` value for a new session (or an expired one when `token` is empty).
pub(crate) fn session_cookie(panel: &Panel, token: &str) -> HeaderValue {
    let secure = if panel.0.opts.https { "; Secure" } else { "" };
    let max_age = if token.is_empty() { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}{max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("cairn_session=; Max-Age=0"))
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
async fn authorize(State(panel): State<Panel>, req: Request, next: Next) -> Response {
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
async fn security_headers(req: Request, next: Next) -> Response {
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

/// Serve `router` on `listener` until `shutdown` resolves, under `limits`: plain HTTP, or
/// HTTPS when `tls` is given. Each connection knows its peer address (for login throttling);
/// see [`listen`] for the limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    limits: listen::ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, router, tls, limits, shutdown).await
}

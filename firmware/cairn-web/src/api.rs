//! The JSON API under `/api/v1`, and the actions the pages share with it (login, setup,
//! silence, user and settings changes), so a form and an API call do the same thing.

use crate::auth::{self, Role, ACCOUNT_FAILS, ADDRESS_FAILS};
use crate::data::{self, AuditFilter, StudySearch};
use crate::settings::{self, SettingsChange};
use crate::{blocking, session_cookie, Caller, Panel, WebError};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use cairn_raid::requests::Request as MonitorRequest;
use serde::Deserialize;
use serde_json::{json, Value};

pub(crate) fn router() -> Router<Panel> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/setup", post(api_setup))
        .route(
            "/api/v1/session",
            post(api_login).get(api_session).delete(api_logout),
        )
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/alarm/silence", post(api_silence))
        .route("/api/v1/disks/action", post(api_disk_action))
        .route("/api/v1/archive", get(api_archive))
        .route("/api/v1/archive/eject", post(api_archive_eject))
        .route("/api/v1/archive/load", post(api_archive_load))
        .route("/api/v1/archive/location", post(api_archive_location))
        .route("/api/v1/studies", get(api_studies))
        .route("/api/v1/studies/{uid}", get(api_study))
        .route("/api/v1/audit", get(api_audit))
        .route("/api/v1/users", get(api_users).post(api_create_user))
        .route("/api/v1/users/{name}", put(api_update_user))
        .route("/api/v1/settings", get(api_settings).put(api_put_settings))
}

/// A JSON body that answers 400 with a sentence when it does not parse.
pub(crate) struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = WebError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, WebError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(WebError::PayloadTooLarge),
            Err(e) => Err(WebError::BadRequest(format!(
                "bad JSON body: {}",
                e.body_text()
            ))),
        }
    }
}

/// Query strings likewise.
pub(crate) struct Q<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, WebError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(WebError::BadRequest(format!(
                "bad query: {}",
                e.body_text()
            ))),
        }
    }
}

/// A JSON body that may be empty (then the defaults apply).
fn optional_json<T: serde::de::DeserializeOwned + Default>(b: &[u8]) -> Result<T, WebError> {
    if b.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| WebError::BadRequest(format!("bad JSON body: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Shared actions

/// A successful login.
pub(crate) struct LoggedIn {
    pub(crate) token: String,
    pub(crate) csrf: String,
    pub(crate) role: Role,
}

/// Check a login, throttled per address and per account; audited either way.
pub(crate) async fn login(
    panel: &Panel,
    address: &str,
    username: &str,
    password: &str,
) -> Result<LoggedIn, WebError> {
    let now = panel.0.clock.now();
    let (akey, ukey) = (format!("a:{address}"), format!("u:{username}"));
    let wait = [&akey, &ukey]
        .iter()
        .filter_map(|k| panel.0.throttle.locked(k, now))
        .max();
    if let Some(retry_after) = wait {
        return Err(WebError::TooManyRequests { retry_after });
    }
    let valid_name = auth::valid_username(username).is_ok();
    let ok = if valid_name && password.len() <= 1024 {
        let (p, u, pw) = (panel.clone(), username.to_string(), password.to_string());
        blocking(move || p.0.auth.check_password(&u, &pw)).await?
    } else {
        false
    };
    // A mistyped name is not recorded: it could be a password or a patient's name.
    let actor = if valid_name {
        format!("user:{username}")
    } else {
        "anonymous".to_string()
    };
    if !ok {
        panel.0.throttle.fail(&akey, ADDRESS_FAILS, now);
        panel.0.throttle.fail(&ukey, ACCOUNT_FAILS, now);
        panel
            .audit(
                &actor,
                "login",
                "panel",
                json!({"ok": false, "address": address}),
            )
            .await?;
        return Err(WebError::BadLogin);
    }
    panel.0.throttle.clear(&ukey);
    panel.0.throttle.clear(&akey);
    let (p, u) = (panel.clone(), username.to_string());
    let (token, csrf, role) = blocking(move || {
        let (t, c) = p.0.auth.create_session(&u, p.0.clock.now())?;
        let role =
            p.0.auth
                .users()?
                .into_iter()
                .find(|x| x.username == u)
                .map_or(Role::Reader, |x| x.role);
        Ok((t, c, role))
    })
    .await?;
    panel
        .audit(
            &actor,
            "login",
            "panel",
            json!({"ok": true, "address": address}),
        )
        .await?;
    tracing::info!(user = %username, "panel login");
    Ok(LoggedIn { token, csrf, role })
}

/// First boot: the setup code, then the first admin. Throttled per address like a login.
pub(crate) async fn setup(
    panel: &Panel,
    address: &str,
    code: &str,
    username: &str,
    password: &str,
) -> Result<LoggedIn, WebError> {
    let now = panel.0.clock.now();
    let akey = format!("setup:{address}");
    if let Some(retry_after) = panel.0.throttle.locked(&akey, now) {
        return Err(WebError::TooManyRequests { retry_after });
    }
    let expected = panel
        .setup_code()
        .ok_or_else(|| WebError::Conflict("the box is set up already: log in".into()))?;
    let typed: String = code.chars().filter(|c| c.is_ascii_digit()).collect();
    let want: String = expected.chars().filter(|c| c.is_ascii_digit()).collect();
    if !auth::same_secret(&typed, &want) {
        panel.0.throttle.fail(&akey, ACCOUNT_FAILS, now);
        panel
            .audit(
                "anonymous",
                "setup",
                "panel",
                json!({"ok": false, "address": address}),
            )
            .await?;
        return Err(WebError::Forbidden(
            "that is not the setup code cairnd printed on its console".into(),
        ));
    }
    auth::valid_username(username)?;
    auth::valid_password(password)?;
    let (p, u, pw) = (panel.clone(), username.to_string(), password.to_string());
    blocking(move || {
        // Only while no account exists: a second setup is refused.
        if p.0.auth.user_count()? > 0 {
            return Err(WebError::Conflict(
                "the box is set up already: log in".into(),
            ));
        }
        p.0.auth.create_user(&u, Role::Admin, &pw, p.0.clock.now())
    })
    .await?;
    if let Ok(mut g) = panel.0.setup_code.lock() {
        *g = None;
    }
    panel
        .audit(
            &format!("user:{username}"),
            "user-create",
            &format!("user:{username}"),
            json!({"role": "admin", "first_boot": true, "address": address}),
        )
        .await?;
    login(panel, address, username, password).await
}

/// Silence the alarm through the monitor (which records the audit row).
pub(crate) async fn silence(
    panel: &Panel,
    caller: &Caller,
    id: Option<u64>,
) -> Result<String, WebError> {
    let root = panel.0.opts.data_dir.clone();
    let req = MonitorRequest::AlarmSilence {
        id,
        by: caller.actor(),
    };
    let a = blocking(move || data::monitor_request(&root, &req)).await?;
    if a.ok {
        Ok(a.message)
    } else {
        Err(WebError::Conflict(a.message))
    }
}

/// A disk swap step through the monitor (it audits what it does).
pub(crate) async fn disk_action(
    panel: &Panel,
    caller: &Caller,
    action: &str,
    bay: u32,
) -> Result<String, WebError> {
    let by = caller.actor();
    let req = match action {
        "locate" => MonitorRequest::DiskLocate { bay, on: true },
        "unlocate" => MonitorRequest::DiskLocate { bay, on: false },
        "remove" => MonitorRequest::DiskRemove { bay, by },
        "confirm" => MonitorRequest::DiskConfirm { bay, by },
        _ => {
            return Err(WebError::BadRequest(
                "action must be locate, unlocate, remove or confirm".into(),
            ))
        }
    };
    let root = panel.0.opts.data_dir.clone();
    let a = blocking(move || data::monitor_request(&root, &req)).await?;
    if a.ok {
        Ok(a.message)
    } else {
        Err(WebError::Conflict(a.message))
    }
}

/// Make an account; audited.
pub(crate) async fn create_user(
    panel: &Panel,
    caller: &Caller,
    username: &str,
    role: &str,
    password: &str,
) -> Result<(), WebError> {
    let role = Role::parse(role).ok_or_else(|| {
        WebError::BadRequest("role must be admin, technician, staff or reader".into())
    })?;
    let (p, u, pw) = (panel.clone(), username.to_string(), password.to_string());
    blocking(move || p.0.auth.create_user(&u, role, &pw, p.0.clock.now())).await?;
    panel
        .audit(
            &caller.actor(),
            "user-create",
            &format!("user:{username}"),
            json!({"role": role.as_str()}),
        )
        .await
}

/// A change to an account.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    #[serde(default)]
    pub(crate) role: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) disabled: Option<bool>,
}

/// Change an account; audited (never the password itself).
pub(crate) async fn update_user(
    panel: &Panel,
    caller: &Caller,
    username: &str,
    ch: UserChange,
) -> Result<(), WebError> {
    let role = match &ch.role {
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            WebError::BadRequest("role must be admin, technician, staff or reader".into())
        })?),
        None => None,
    };
    let detail = json!({
        "role": role.map(|r| r.as_str()),
        "password_changed": ch.password.is_some(),
        "disabled": ch.disabled,
    });
    let (p, u) = (panel.clone(), username.to_string());
    blocking(move || {
        p.0.auth
            .update_user(&u, role, ch.password.as_deref(), ch.disabled)
    })
    .await?;
    panel
        .audit(
            &caller.actor(),
            "user-change",
            &format!("user:{username}"),
            detail,
        )
        .await
}

/// Change settings in the config file; one audit row per changed key.
pub(crate) async fn change_settings(
    panel: &Panel,
    caller: &Caller,
    ch: SettingsChange,
) -> Result<settings::Changes, WebError> {
    let Some(path) = panel.0.opts.config_path.clone() else {
        return Err(WebError::Unavailable(
            "this box was started without a configuration file the panel may edit".into(),
        ));
    };
    let changed = blocking(move || settings::change(&path, &ch)).await?;
    for (key, old, new) in &changed {
        let now = settings::applies_at_once(key);
        if !now {
            panel
                .0
                .restart_pending
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        panel
            .audit(
                &caller.actor(),
                "setting-change",
                key,
                json!({"old": old, "new": new, "applies": if now { "now" } else { "next start" }}),
            )
            .await?;
    }
    Ok(changed)
}

/// Whether the panel can restart the box (`cairnd` installed its hook).
pub(crate) fn can_restart(panel: &Panel) -> bool {
    panel.0.restart_hook.lock().is_ok_and(|g| g.is_some())
}

/// A saved setting waits for a restart, and the panel can do it.
pub(crate) fn restart_offered(panel: &Panel) -> bool {
    can_restart(panel)
        && panel
            .0
            .restart_pending
            .load(std::sync::atomic::Ordering::SeqCst)
}

/// Restart the box (audited first); the hook runs shortly after, once the page answered.
pub(crate) async fn restart(panel: &Panel, caller: &Caller) -> Result<(), WebError> {
    let hook = panel
        .0
        .restart_hook
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .ok_or_else(|| {
            WebError::Unavailable(
                "this box cannot restart itself from the panel: restart cairnd".into(),
            )
        })?;
    panel
        .audit(&caller.actor(), "restart", "cairnd", json!({}))
        .await?;
    tracing::info!(by = %caller.actor(), "restart asked from the panel");
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        hook();
    });
    Ok(())
}

/// The settings now (from the file when known).
pub(crate) async fn current_settings(panel: &Panel) -> Result<settings::Settings, WebError> {
    let Some(path) = panel.0.opts.config_path.clone() else {
        return Err(WebError::Unavailable(
            "this box was started without a configuration file".into(),
        ));
    };
    blocking(move || settings::load(&path)).await
}

// ---------------------------------------------------------------------------------------------
// Handlers

fn with_cookie(mut r: Response, panel: &Panel, token: &str) -> Response {
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(panel, token));
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn api_login(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<LoginBody>,
) -> Result<Response, WebError> {
    let l = login(&panel, &caller.address, &b.username, &b.password).await?;
    let body = Json(json!({"username": b.username, "role": l.role.as_str(), "csrf_token": l.csrf}));
    Ok(with_cookie(body.into_response(), &panel, &l.token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    code: String,
    username: String,
    password: String,
}

async fn api_setup(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<SetupBody>,
) -> Result<Response, WebError> {
    let l = setup(&panel, &caller.address, &b.code, &b.username, &b.password).await?;
    let body = Json(json!({"username": b.username, "role": "admin", "csrf_token": l.csrf}));
    Ok(with_cookie(
        (StatusCode::CREATED, body).into_response(),
        &panel,
        &l.token,
    ))
}

async fn api_session(Extension(caller): Extension<Caller>) -> Result<Json<Value>, WebError> {
    let s = caller.user()?;
    Ok(Json(
        json!({"username": s.username, "role": s.role.as_str(), "csrf_token": s.csrf}),
    ))
}

/// End the caller's session (pages and API).
pub(crate) async fn logout(panel: &Panel, caller: &Caller) -> Result<(), WebError> {
    if let Some(t) = caller.token.clone() {
        let p = panel.clone();
        blocking(move || p.0.auth.delete_session(&t)).await?;
    }
    panel
        .audit(
            &caller.actor(),
            "logout",
            "panel",
            json!({"address": caller.address}),
        )
        .await
}

async fn api_logout(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, WebError> {
    logout(&panel, &caller).await?;
    Ok(with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        &panel,
        "",
    ))
}

async fn api_status(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    let o = blocking(move || data::overview(&p.0.data)).await?;
    let mut v = serde_json::to_value(&o).map_err(|e| WebError::Internal(e.to_string()))?;
    v["state"] = json!(o.health.state);
    v["headline"] = json!(o.health.headline);
    let p = panel.clone();
    // The archive's part is left empty rather than failing the whole status.
    v["archive"] = match blocking(move || crate::pages::archive_json(&p)).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "archive status for the panel");
            Value::Null
        }
    };
    Ok(Json(v))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    #[serde(default)]
    id: Option<u64>,
}

async fn api_silence(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let id = optional_json::<SilenceBody>(&body)?.id;
    let msg = silence(&panel, &caller, id).await?;
    Ok(Json(json!({"ok": true, "message": msg})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskBody {
    action: String,
    bay: u32,
}

async fn api_disk_action(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<DiskBody>,
) -> Result<Json<Value>, WebError> {
    let msg = disk_action(&panel, &caller, &b.action, b.bay).await?;
    Ok(Json(json!({"ok": true, "message": msg})))
}

async fn api_archive(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    Ok(Json(
        blocking(move || crate::pages::archive_json(&p)).await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct EjectBody {
    /// The cold target (the only one, or the first tape target, when absent).
    #[serde(default)]
    pub(crate) target: Option<String>,
    /// Where the volume goes (`onsite_shelf` when absent).
    #[serde(default)]
    pub(crate) location: Option<String>,
}

async fn api_archive_eject(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let b = optional_json::<EjectBody>(&body)?;
    let msg = crate::pages::archive_eject(&panel, &caller, b.target, b.location).await?;
    Ok(Json(json!({"ok": true, "message": msg})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadBody {
    #[serde(default)]
    target: Option<String>,
}

async fn api_archive_load(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let b = optional_json::<LoadBody>(&body)?;
    let msg = crate::pages::archive_load(&panel, &caller, b.target).await?;
    Ok(Json(json!({"ok": true, "message": msg})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationBody {
    pub(crate) volume: String,
    pub(crate) location: String,
}

async fn api_archive_location(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<LocationBody>,
) -> Result<Json<Value>, WebError> {
    let msg = crate::pages::archive_location(&panel, &caller, &b.volume, &b.location).await?;
    Ok(Json(json!({"ok": true, "message": msg})))
}

async fn api_studies(
    State(panel): State<Panel>,
    Q(s): Q<StudySearch>,
) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    let (hits, more) = blocking(move || data::search_studies(&p.0.data, &s)).await?;
    Ok(Json(json!({"studies": hits, "more": more})))
}

async fn api_study(
    State(panel): State<Panel>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    let d = blocking(move || data::study(&p.0.data, &uid)).await?;
    Ok(Json(
        serde_json::to_value(d).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

/// The audit rows as JSON, or CSV with `format=csv`.
pub(crate) async fn audit_response(panel: &Panel, f: AuditFilter) -> Result<Response, WebError> {
    let p = panel.clone();
    let csv = f.format == "csv";
    if !matches!(f.format.as_str(), "" | "csv" | "json") {
        return Err(WebError::BadRequest("format is json or csv".into()));
    }
    let rows = blocking(move || data::audit_rows(&p.0.data, &f)).await?;
    if csv {
        let mut r = data::audit_csv(&rows).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        r.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"cairn-audit.csv\""),
        );
        return Ok(r);
    }
    Ok(Json(json!({ "rows": rows })).into_response())
}

async fn api_audit(State(panel): State<Panel>, Q(f): Q<AuditFilter>) -> Result<Response, WebError> {
    audit_response(&panel, f).await
}

async fn api_users(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    let users = blocking(move || p.0.auth.users()).await?;
    Ok(Json(json!({ "users": users })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: String,
    password: String,
}

async fn api_create_user(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<NewUser>,
) -> Result<Response, WebError> {
    create_user(&panel, &caller, &b.username, &b.role, &b.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"username": b.username, "role": b.role})),
    )
        .into_response())
}

async fn api_update_user(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<UserChange>,
) -> Result<Json<Value>, WebError> {
    update_user(&panel, &caller, &name, b).await?;
    Ok(Json(json!({"ok": true})))
}

async fn api_settings(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    let s = current_settings(&panel).await?;
    Ok(Json(
        serde_json::to_value(s).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

async fn api_put_settings(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(ch): JsonBody<SettingsChange>,
) -> Result<Json<Value>, WebError> {
    let changed = change_settings(&panel, &caller, ch).await?;
    let s = current_settings(&panel).await?;
    Ok(Json(json!({
        "changed": changed.iter().map(|(k, _, _)| k).collect::<Vec<_>>(),
        "restart_needed": changed.iter().any(|(k, _, _)| !settings::applies_at_once(k)),
        "settings": s,
    })))
}

/// The OpenAPI 3.1 document (see [`crate::openapi`]).
async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

//! The JSON API under `/api/v1`: thin adapters that read a request, call the shared action
//! ([`crate::actions`]) or read model ([`crate::read`], [`crate::data`]) and answer in JSON.

mod lifecycle;

use crate::actions::{self, Credentials, LoggedIn, SetupInput};
use crate::auth::Role;
use crate::data::{self, AuditFilter, StudySearch};
use crate::extract::{optional_json, JsonBody, Q};
use crate::settings::{self, SettingsChange};
use crate::{blocking, read, session_cookie, Caller, Panel, WebError};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

/// Every `/api/v1` route (the authorisation layer is added by the panel).
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
        .merge(lifecycle::router())
}

fn with_cookie(mut r: Response, panel: &Panel, token: &str) -> Response {
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(panel, token));
    r
}

/// The answer to a login or the first boot's setup: who, their role and the CSRF token, with
/// the session cookie.
fn logged_in(
    panel: &Panel,
    status: StatusCode,
    username: &str,
    role: Role,
    l: LoggedIn,
) -> Response {
    let body = Json(json!({"username": username, "role": role.as_str(), "csrf_token": l.csrf}));
    with_cookie((status, body).into_response(), panel, &l.token)
}

/// An action's sentence, as every action route answers it.
pub(crate) fn done(message: String) -> Json<Value> {
    Json(json!({"ok": true, "message": message}))
}

/// A read model as JSON.
pub(crate) fn to_json(v: impl serde::Serialize) -> Result<Json<Value>, WebError> {
    Ok(Json(
        serde_json::to_value(v).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

async fn api_login(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<Credentials>,
) -> Result<Response, WebError> {
    let l = actions::login(&panel, &caller, &b).await?;
    Ok(logged_in(&panel, StatusCode::OK, &b.username, l.role, l))
}

async fn api_setup(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<SetupInput>,
) -> Result<Response, WebError> {
    let l = actions::setup(&panel, &caller, &b).await?;
    // The first account is always an administrator.
    Ok(logged_in(
        &panel,
        StatusCode::CREATED,
        &b.username,
        Role::Admin,
        l,
    ))
}

async fn api_session(Extension(caller): Extension<Caller>) -> Result<Json<Value>, WebError> {
    let s = caller.user()?;
    Ok(Json(
        json!({"username": s.username, "role": s.role.as_str(), "csrf_token": s.csrf}),
    ))
}

async fn api_logout(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, WebError> {
    actions::logout(&panel, &caller).await?;
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
    v["archive"] = match blocking(move || read::archive_json(&p)).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "archive status for the panel");
            Value::Null
        }
    };
    Ok(Json(v))
}

async fn api_silence(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let input = optional_json(&body)?;
    Ok(done(actions::silence(&panel, &caller, &input).await?))
}

async fn api_disk_action(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<actions::DiskInput>,
) -> Result<Json<Value>, WebError> {
    Ok(done(actions::disk_action(&panel, &caller, &b).await?))
}

async fn api_archive(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    Ok(Json(blocking(move || read::archive_json(&p)).await?))
}

async fn api_archive_eject(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let input = optional_json(&body)?;
    Ok(done(actions::eject(&panel, &caller, input).await?))
}

async fn api_archive_load(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let input = optional_json(&body)?;
    Ok(done(actions::load(&panel, &caller, input).await?))
}

async fn api_archive_location(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<actions::LocationInput>,
) -> Result<Json<Value>, WebError> {
    Ok(done(actions::set_location(&panel, &caller, &b).await?))
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
    let (p, lc) = (panel.clone(), panel.lifecycle());
    to_json(blocking(move || data::study(&p.0.data, &uid, &lc)).await?)
}

async fn api_audit(State(panel): State<Panel>, Q(f): Q<AuditFilter>) -> Result<Response, WebError> {
    read::audit_response(&panel, f).await
}

async fn api_users(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    let users = blocking(move || p.0.auth.users()).await?;
    Ok(Json(json!({ "users": users })))
}

async fn api_create_user(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<actions::NewUser>,
) -> Result<Response, WebError> {
    actions::create_user(&panel, &caller, &b).await?;
    let body = Json(json!({"username": b.username, "role": b.role}));
    Ok((StatusCode::CREATED, body).into_response())
}

async fn api_update_user(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<actions::UserChange>,
) -> Result<Json<Value>, WebError> {
    actions::update_user(&panel, &caller, &name, b).await?;
    Ok(Json(json!({"ok": true})))
}

async fn api_settings(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    to_json(read::current_settings(&panel).await?)
}

async fn api_put_settings(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(ch): JsonBody<SettingsChange>,
) -> Result<Json<Value>, WebError> {
    let changed = actions::change_settings(&panel, &caller, ch).await?;
    let s = read::current_settings(&panel).await?;
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

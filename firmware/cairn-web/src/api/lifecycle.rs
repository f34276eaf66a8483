//! The lifecycle's JSON API: the lifecycle status, a patient's retention, legal holds, dates
//! of death, destruction approvals and rejections, each a thin adapter over
//! [`crate::actions`] or [`crate::data`].

use super::{done, to_json};
use crate::actions;
use crate::data;
use crate::extract::{JsonBody, Q};
use crate::{blocking, Caller, Panel, WebError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

/// The lifecycle's `/api/v1` routes.
pub(super) fn router() -> Router<Panel> {
    Router::new()
        .route("/api/v1/lifecycle", get(api_lifecycle))
        .route("/api/v1/patients/{patient}/retention", get(api_retention))
        .route("/api/v1/patients/{patient}/death", post(api_death))
        .route("/api/v1/holds", get(api_holds).post(api_place_hold))
        .route("/api/v1/holds/{hold}/release", post(api_release_hold))
        .route("/api/v1/destruction/approve", post(api_approve))
        .route("/api/v1/studies/{uid}/reject", post(api_reject))
}

async fn api_lifecycle(State(panel): State<Panel>) -> Result<Json<Value>, WebError> {
    let (p, lc) = (panel.clone(), panel.lifecycle());
    to_json(blocking(move || data::lifecycle_overview(&p.0.data, &lc)).await?)
}

/// `?issuer=` of a patient's routes.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct IssuerQuery {
    issuer: Option<String>,
}

async fn api_retention(
    State(panel): State<Panel>,
    Path(patient): Path<String>,
    Q(q): Q<IssuerQuery>,
) -> Result<Json<Value>, WebError> {
    let (p, lc) = (panel.clone(), panel.lifecycle());
    to_json(
        blocking(move || data::patient_retention(&p.0.data, &patient, q.issuer.as_deref(), &lc))
            .await?,
    )
}

/// `?all=true` of the hold list.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct HoldsQuery {
    all: bool,
}

async fn api_holds(
    State(panel): State<Panel>,
    Q(q): Q<HoldsQuery>,
) -> Result<Json<Value>, WebError> {
    let p = panel.clone();
    let holds = blocking(move || data::holds(&p.0.data, q.all)).await?;
    Ok(Json(json!({ "holds": holds })))
}

async fn api_place_hold(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<actions::HoldInput>,
) -> Result<Response, WebError> {
    let (id, message) = actions::place_hold(&panel, &caller, b).await?;
    let body = Json(json!({"ok": true, "message": message, "id": id}));
    Ok((StatusCode::CREATED, body).into_response())
}

async fn api_release_hold(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Path(hold): Path<String>,
    JsonBody(b): JsonBody<actions::ReleaseInput>,
) -> Result<Json<Value>, WebError> {
    let id = hold
        .parse::<i64>()
        .map_err(|_| WebError::BadRequest(format!("{hold:?} is not a hold number")))?;
    Ok(done(actions::release(&panel, &caller, id, b).await?))
}

async fn api_death(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Path(patient): Path<String>,
    JsonBody(b): JsonBody<actions::DeathInput>,
) -> Result<Json<Value>, WebError> {
    Ok(done(
        actions::record_death(&panel, &caller, patient, b).await?,
    ))
}

async fn api_approve(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<actions::ApproveInput>,
) -> Result<Json<Value>, WebError> {
    let (message, record) = actions::approve_destruction(&panel, &caller, b).await?;
    Ok(Json(
        json!({"ok": true, "message": message, "record": record}),
    ))
}

async fn api_reject(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
    JsonBody(b): JsonBody<actions::RejectInput>,
) -> Result<Json<Value>, WebError> {
    Ok(done(actions::reject_study(&panel, &caller, uid, b).await?))
}

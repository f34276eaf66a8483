//! Read models the pages and the JSON API share: the archive's status, the settings in the
//! configuration file, and the audit trail as JSON or CSV. Nothing here changes anything.

use crate::data::{self, AuditFilter};
use crate::{blocking, settings, Panel, WebError};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The archive as the pages and the API show it: `cairn-archive`'s status (targets, drive,
/// volume in the drive, queue, last verified bundle) and its volume list.
pub(crate) fn archive_json(panel: &Panel) -> Result<Value, WebError> {
    let data = &panel.0.data;
    let status = cairn_archive::archive_status(data).map_err(archive_error)?;
    let volumes = cairn_archive::list_volumes(data).map_err(archive_error)?;
    let mut v = serde_json::to_value(&status).map_err(|e| WebError::Internal(e.to_string()))?;
    v["available"] = json!(!status.targets.is_empty() || !volumes.is_empty());
    v["volumes"] = serde_json::to_value(&volumes).map_err(|e| WebError::Internal(e.to_string()))?;
    v["last_verified_copy"] = json!(data::last_verified_copy(data));
    Ok(v)
}

/// An archive failure as the panel tells it: a refusal or a missing medium is a conflict.
pub(crate) fn archive_error(e: cairn_archive::ArchiveError) -> WebError {
    match e.kind() {
        cairn_archive::ErrorKind::Refused => WebError::Conflict(e.to_string()),
        cairn_archive::ErrorKind::MediumNeeded => WebError::Conflict(e.to_string()),
        _ => WebError::Internal(e.to_string()),
    }
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

//! The panel's one error type: what went wrong, with its HTTP status, its public sentence and
//! its JSON answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use thiserror::Error;

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
            // A study fixed in the archive tier: asking again will not help.
            cairn_store::ErrorKind::Refused => WebError::Conflict(e.to_string()),
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

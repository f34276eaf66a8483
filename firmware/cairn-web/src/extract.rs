//! Request extractors that refuse with a sentence: a JSON body or a query string that does not
//! parse answers 400 (a body too large, 413) as `{"error": "..."}`, like every other refusal.

use crate::WebError;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;

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
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    b: &[u8],
) -> Result<T, WebError> {
    if b.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| WebError::BadRequest(format!("bad JSON body: {e}")))
}

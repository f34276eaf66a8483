//! Refusals as JSON, wherever they come from: the router's own (a method a path does not
//! serve, a body too large for an extractor), the request-size checks before routing, and the
//! answers hyper writes by itself when a request head does not parse (400, 414, 431, sent
//! without a body). Every one becomes `{"error": "..."}` with its status.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request target (path and query) the panel reads, in bytes.
pub const MAX_URI: usize = 8192;

/// A refused body is read and dropped up to this many bytes...
const DRAIN_BYTES: u64 = 16 << 20;
/// ...or for this long, before the refusal is sent.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Read `body` to its end or past `limit` bytes, keeping nothing.
async fn drain(mut body: Body, limit: u64) {
    use hyper::body::Body as _;
    let mut seen = 0u64;
    while seen <= limit {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

/// The sentence for a refusal that carries none of its own.
pub(crate) fn sentence(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "the request is not valid HTTP",
        StatusCode::NOT_FOUND => "no such page",
        StatusCode::METHOD_NOT_ALLOWED => "this method is not served here",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large (at most 64 KiB)",
        StatusCode::URI_TOO_LONG => "the address is too long (at most 8192 bytes)",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "send the body as application/json",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request headers are too large",
        StatusCode::LENGTH_REQUIRED => "the request needs a Content-Length",
        s if s.is_server_error() => "something went wrong inside the box; the event was logged",
        _ => "the request was refused",
    }
}

/// A JSON refusal.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message });
    (status, axum::Json(body)).into_response()
}

/// Before routing: a request target over [`MAX_URI`] is 414 and a declared body over `max_body`
/// is 413, both as JSON. After: any refusal (4xx, 5xx) that is neither JSON nor a page becomes
/// JSON, keeping a short plain-text reason as its message and every header (`Allow`...).
pub(crate) async fn refusals_as_json(req: Request, next: Next) -> Response {
    let max_body = crate::MAX_BODY;
    let uri_len = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |p| p.as_str().len());
    if uri_len > MAX_URI {
        return json_error(StatusCode::URI_TOO_LONG, sentence(StatusCode::URI_TOO_LONG));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        // Read what the client sends (bounded) so it hears the answer instead of a reset.
        let _ = tokio::time::timeout(DRAIN_TIME, drain(req.into_body(), DRAIN_BYTES)).await;
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            sentence(StatusCode::PAYLOAD_TOO_LARGE),
        );
    }
    let r = next.run(req).await;
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let ct = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") || ct.starts_with("text/html") {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE || text.is_empty() {
        sentence(status).to_string()
    } else {
        text.chars().take(300).collect()
    };
    let fresh = json_error(status, &message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, Body::new(body))
}

/// The refusal hyper writes by itself (status line and headers only), if `buf` is one.
fn automatic_refusal(buf: &[u8]) -> Option<StatusCode> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if end != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    let status = match head.get(..13)? {
        "http/1.1 400 " | "http/1.0 400 " => StatusCode::BAD_REQUEST,
        "http/1.1 414 " | "http/1.0 414 " => StatusCode::URI_TOO_LONG,
        "http/1.1 431 " | "http/1.0 431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    (head.contains("\r\ncontent-length: 0\r\n") && !head.contains("\r\ncontent-type:"))
        .then_some(status)
}

fn refusal_bytes(status: StatusCode) -> Vec<u8> {
    let body = serde_json::json!({ "error": sentence(status) }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n{}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        body
    )
    .into_bytes()
}

/// The connection's stream as hyper sees it: hyper's bodiless automatic refusals are replaced
/// by JSON ones on their way out; everything else passes untouched.
pub(crate) struct RewriteIo<S> {
    inner: S,
    /// A replacement still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> RewriteIo<S> {
    pub(crate) fn new(inner: S) -> RewriteIo<S> {
        RewriteIo {
            inner,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> RewriteIo<S> {
    /// Write out the pending replacement, if any.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done >= bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RewriteIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RewriteIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        if let Some(status) = automatic_refusal(buf) {
            self.pending = Some((refusal_bytes(status), 0));
            // Taken in full; flush and shutdown write the replacement out.
            let _ = self.drain(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_refusals_are_rewritten() {
        let auto = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 05:00:00 GMT\r\n\r\n";
        assert_eq!(automatic_refusal(auto), Some(StatusCode::URI_TOO_LONG));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_refusal(ours), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx";
        assert_eq!(automatic_refusal(with_body), None);
        assert_eq!(
            automatic_refusal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        let r = String::from_utf8(refusal_bytes(StatusCode::URI_TOO_LONG)).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("too long"));
    }
}

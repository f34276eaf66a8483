//! What tells a connection it is in use: a request being answered, a body still arriving,
//! bytes moving on its socket.

use super::table::ConnState;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Marks a request as being answered while it lives.
pub(super) struct Busy(Arc<ConnState>);

impl Busy {
    /// Mark `conn` busy until this is dropped.
    pub(super) fn new(conn: Arc<ConnState>) -> Busy {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body that tells its connection while it is still arriving.
pub(super) struct TrackedBody {
    inner: Incoming,
    conn: Arc<ConnState>,
    open: bool,
}

impl TrackedBody {
    /// Track `inner` as a body still arriving on `conn`.
    pub(super) fn new(inner: Incoming, conn: Arc<ConnState>) -> TrackedBody {
        let open = !inner.is_end_stream();
        if open {
            conn.reading.fetch_add(1, Ordering::Relaxed);
        }
        TrackedBody { inner, conn, open }
    }

    fn close(&mut self) {
        if self.open {
            self.open = false;
            self.conn.reading.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.close();
    }
}

impl Body for TrackedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.close(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.close(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that records when it last moved a byte.
pub(super) struct Tracked<S> {
    /// The socket (or TLS stream).
    pub(super) inner: S,
    /// Its connection.
    pub(super) conn: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! The panel's accept loop, plain HTTP or HTTPS, under limits: at most `max_connections`
//! connections in all and `max_per_address` from one address; a request head must arrive
//! within `header_timeout`; a connection that moves no bytes for `idle_timeout` while the
//! panel waits on the client (for a request, its body, or to take the answer) is closed.
//!
//! When every slot is taken, a new connection closes the one that has waited longest for a
//! request (never one whose request is being answered), so a flood of idle connections cannot
//! keep a person out. Each connection's buffers are dropped with it.
//!
//! The panel shares `cairnd`'s descriptor limit with the DICOM node, the monitor and the
//! archive: [`panel_descriptor_cap`] lowers `max_connections` so that their reserve stays free.
//! Must never: hold a connection slot after its connection ended, or block on a client.

mod table;
mod tracked;

use crate::reply::RewriteIo;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use table::{ConnState, Slot, Table};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::ServiceExt;
use tracked::{Busy, Tracked, TrackedBody};

/// Limits on the panel's connections (`[http]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_per_address: usize,
    /// A request head (and a TLS handshake) must arrive whole within this long of the
    /// connection opening or of the previous answer.
    pub header_timeout: Duration,
    /// A connection that moves no bytes for this long while the panel waits on the client is
    /// closed.
    pub idle_timeout: Duration,
}

impl ConnLimits {
    /// The limits the configuration asks for.
    pub fn from_config(http: &cairn_config::HttpConfig) -> ConnLimits {
        ConnLimits {
            max_connections: http.max_connections,
            max_per_address: http.max_connections_per_address,
            header_timeout: Duration::from_secs(http.header_timeout_secs),
            idle_timeout: Duration::from_secs(http.idle_timeout_secs),
        }
    }

    /// The same, with `max_connections` lowered to what `nofile` descriptors leave the panel
    /// once the rest of `cairnd` has its reserve (see [`panel_descriptor_cap`]).
    pub fn within_descriptors(self, nofile: u64, dicom_max_associations: usize) -> ConnLimits {
        let cap = panel_descriptor_cap(nofile, dicom_max_associations);
        ConnLimits {
            max_connections: self.max_connections.min(cap),
            max_per_address: self.max_per_address.min(self.max_connections.min(cap)),
            ..self
        }
    }
}

/// Descriptors kept for everything in `cairnd` but the panel and the DICOM associations:
/// standard streams and the log, the async runtimes, the store's writer and its SQLite files,
/// the DICOM listener, the monitor's sysfs and request files, the archive's drives, bundles
/// and catalog.
pub const RESERVED_DESCRIPTORS: u64 = 256;
/// Descriptors one DICOM association may hold at once: its socket, the object being received
/// and its spool file, a query connection's three SQLite files, a retrieve's sub-association
/// socket and the object it sends.
pub const DESCRIPTORS_PER_ASSOCIATION: u64 = 8;
/// Connections the DICOM node accepts beyond `max_associations` (to refuse them properly).
pub const ASSOCIATION_SLACK: u64 = 8;
/// Descriptors one panel connection may hold: its socket and, while a request is answered,
/// a query connection's three SQLite files.
pub const DESCRIPTORS_PER_PANEL_CONNECTION: u64 = 4;
/// The panel keeps at least this many connections, however low the limit.
pub const MIN_PANEL_CONNECTIONS: usize = 8;

/// The most connections the panel may hold when `cairnd` may open `nofile` descriptors:
/// `(nofile - 256 - 8 * (max_associations + 8)) / 4`, at least 8. With the default 16
/// associations the reserve is 448: a limit of 1024 leaves the panel 144 connections, 4096
/// leaves 912, and a raised limit of 524288 leaves far more than `max_connections`.
pub fn panel_descriptor_cap(nofile: u64, dicom_max_associations: usize) -> usize {
    let reserve = RESERVED_DESCRIPTORS
        + DESCRIPTORS_PER_ASSOCIATION * (dicom_max_associations as u64 + ASSOCIATION_SLACK);
    let share = nofile.saturating_sub(reserve) / DESCRIPTORS_PER_PANEL_CONNECTION;
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .max(MIN_PANEL_CONNECTIONS)
}

/// Serve `router` on `listener` until `shutdown` resolves, under `limits`: plain HTTP, or
/// HTTPS when `tls` is given. Each request knows its peer address (for login throttling).
/// After `shutdown`, open connections finish their request and close; this returns when none
/// is left.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let table = Arc::new(Table::new(limits));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "panel accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Refused: the socket is closed at once.
        let Ok(slot) = table.admit(peer.ip()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(
            tcp,
            peer,
            slot,
            router.clone(),
            acceptor.clone(),
            limits,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    table.wait_empty().await;
    Ok(())
}

/// One connection, from its TLS handshake (if any) to its end; its slot goes with it.
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
) {
    let conn = slot.conn.clone();
    // Progress is counted on the socket itself, so a TLS handshake under way counts too.
    let tcp = Tracked {
        inner: tcp,
        conn: conn.clone(),
    };
    match acceptor {
        None => drive(tcp, peer, conn, router, limits, stop).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                r = tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)) => r,
                _ = conn.evict.notified() => return,
            };
            if let Ok(Ok(stream)) = handshake {
                drive(stream, peer, conn, router, limits, stop).await;
            }
        }
    }
    drop(slot);
}

/// HTTP/1.1 on `stream` until the client leaves, a limit ends it, or the panel stops.
async fn drive<S>(
    stream: S,
    peer: SocketAddr,
    conn: Arc<ConnState>,
    router: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(RewriteIo::new(stream));
    let svc_conn = conn.clone();
    let svc = hyper::service::service_fn(move |req: axum::http::Request<Incoming>| {
        let router = router.clone();
        let busy = Busy::new(svc_conn.clone());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        let body = TrackedBody::new(body, svc_conn.clone());
        let req = axum::http::Request::from_parts(parts, axum::body::Body::new(body));
        async move {
            let r = router.oneshot(req).await;
            drop(busy);
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let served = builder.serve_connection(io, svc);
    tokio::pin!(served);
    let mut stopping = *stop.borrow();
    if stopping {
        served.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = served.as_mut() => return,
            _ = conn.idle(limits.idle_timeout) => return,
            _ = conn.evict.notified() => return,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits of `total` connections, `per` from one address (the tests' timeouts).
    pub(super) fn limits(total: usize, per: usize) -> ConnLimits {
        ConnLimits {
            max_connections: total,
            max_per_address: per,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn descriptor_arithmetic() {
        // Reserve with 16 associations: 256 + 8 * 24 = 448.
        assert_eq!(panel_descriptor_cap(1024, 16), (1024 - 448) / 4);
        assert_eq!(panel_descriptor_cap(4096, 16), 912);
        assert_eq!(panel_descriptor_cap(100, 16), MIN_PANEL_CONNECTIONS);
        let l = limits(256, 32).within_descriptors(1024, 16);
        assert_eq!(l.max_connections, 144);
        let l = limits(256, 32).within_descriptors(1 << 20, 16);
        assert_eq!(l.max_connections, 256);
        let l = limits(256, 32).within_descriptors(0, 16);
        assert_eq!((l.max_connections, l.max_per_address), (8, 8));
    }
}

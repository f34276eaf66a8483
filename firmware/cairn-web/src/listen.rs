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

use crate::reply::RewriteIo;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

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

/// One connection's state, shared by its task, its I/O and its requests.
#[derive(Debug)]
struct ConnState {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last byte moved (or of the last request answered).
    last_io_ms: AtomicU64,
    /// Requests being answered.
    busy: AtomicUsize,
    /// Request bodies not yet read to their end.
    reading: AtomicUsize,
    /// Chosen to make room: its task ends at once.
    evicting: AtomicBool,
    evict: Notify,
}

impl ConnState {
    fn new(epoch: Instant) -> ConnState {
        let s = ConnState {
            epoch,
            last_io_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            reading: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        };
        s.touch();
        s
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Waiting on the client: for a request, for the rest of a body, or for it to take an
    /// answer. A request being worked on (an eject waits minutes for the drive) is not.
    fn waits_on_client(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 || self.reading.load(Ordering::Relaxed) > 0
    }

    /// Resolves once the connection has waited on the client, moving nothing, for `idle`.
    async fn idle(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let quiet = self
                .now_ms()
                .saturating_sub(self.last_io_ms.load(Ordering::Relaxed));
            if quiet >= idle_ms && self.waits_on_client() {
                return;
            }
            let left = idle_ms.saturating_sub(quiet).clamp(50, 1000);
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerAddress,
    Full,
}

/// Every open connection.
#[derive(Debug)]
struct Table {
    limits: ConnLimits,
    epoch: Instant,
    state: Mutex<TableState>,
    emptied: Notify,
}

#[derive(Debug, Default)]
struct TableState {
    next_id: u64,
    conns: HashMap<u64, (IpAddr, Arc<ConnState>)>,
    per_address: HashMap<IpAddr, usize>,
    refused: u64,
    last_warning: Option<Instant>,
}

/// A connection's slot, given back when dropped.
struct Slot {
    table: Arc<Table>,
    id: u64,
    conn: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut g) = self.table.state.lock() else {
            return;
        };
        if let Some((addr, _)) = g.conns.remove(&self.id) {
            if let Some(n) = g.per_address.get_mut(&addr) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    g.per_address.remove(&addr);
                }
            }
        }
        if g.conns.is_empty() {
            g.conns.shrink_to(64);
            g.per_address.shrink_to(64);
            self.table.emptied.notify_waiters();
        }
    }
}

impl Table {
    fn new(limits: ConnLimits) -> Table {
        Table {
            limits,
            epoch: Instant::now(),
            state: Mutex::new(TableState::default()),
            emptied: Notify::new(),
        }
    }

    /// A slot for a connection from `addr`, or why not.
    fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Slot, Refusal> {
        let mut g = self
            .state
            .lock()
            .map_err(|_| Refusal::Full)
            .inspect_err(|_| tracing::error!("panel connection table lock poisoned"))?;
        let r = self.admit_locked(&mut g, addr);
        if let Err(why) = r {
            g.refused += 1;
            let now = Instant::now();
            if g.last_warning
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
            {
                tracing::warn!(
                    refused = g.refused,
                    open = g.conns.len(),
                    reason = ?why,
                    "panel refused connections (limits in [http])"
                );
                g.last_warning = Some(now);
                g.refused = 0;
            }
        }
        r
    }

    fn admit_locked(self: &Arc<Self>, g: &mut TableState, addr: IpAddr) -> Result<Slot, Refusal> {
        let from_addr = g.per_address.get(&addr).copied().unwrap_or(0);
        if from_addr >= self.limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        let evicting = g
            .conns
            .values()
            .filter(|(_, c)| c.evicting.load(Ordering::Relaxed))
            .count();
        if g.conns.len() - evicting >= self.limits.max_connections {
            // Make room: the connection that has waited longest for a request goes.
            let oldest = g
                .conns
                .values()
                .filter(|(_, c)| {
                    !c.evicting.load(Ordering::Relaxed) && c.busy.load(Ordering::Relaxed) == 0
                })
                .min_by_key(|(_, c)| c.last_io_ms.load(Ordering::Relaxed))
                .map(|(_, c)| c.clone());
            let Some(victim) = oldest else {
                return Err(Refusal::Full);
            };
            victim.evicting.store(true, Ordering::Relaxed);
            victim.evict.notify_one();
        }
        let id = g.next_id;
        g.next_id += 1;
        let conn = Arc::new(ConnState::new(self.epoch));
        g.conns.insert(id, (addr, conn.clone()));
        *g.per_address.entry(addr).or_insert(0) += 1;
        Ok(Slot {
            table: self.clone(),
            id,
            conn,
        })
    }

    /// Resolves when no connection is open.
    async fn wait_empty(&self) {
        loop {
            let notified = self.emptied.notified();
            if self.state.lock().map_or(true, |g| g.conns.is_empty()) {
                return;
            }
            notified.await;
        }
    }
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

/// Marks a request as being answered while it lives.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(conn: Arc<ConnState>) -> Busy {
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
struct TrackedBody {
    inner: Incoming,
    conn: Arc<ConnState>,
    open: bool,
}

impl TrackedBody {
    fn new(inner: Incoming, conn: Arc<ConnState>) -> TrackedBody {
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
struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per: usize) -> ConnLimits {
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

    #[test]
    fn per_address_cap_and_slots_come_back() {
        let t = Arc::new(Table::new(limits(10, 2)));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let s1 = t.admit(a).unwrap();
        let _s2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).err(), Some(Refusal::PerAddress));
        let _s3 = t.admit(b).unwrap();
        drop(s1);
        let _s4 = t.admit(a).unwrap();
        assert_eq!(t.state.lock().unwrap().conns.len(), 3);
    }

    #[test]
    fn a_full_table_evicts_the_longest_waiting_idle_connection() {
        let t = Arc::new(Table::new(limits(2, 2)));
        let old = t.admit([10, 0, 0, 1].into()).unwrap();
        old.conn.last_io_ms.store(0, Ordering::Relaxed);
        let busy = t.admit([10, 0, 0, 2].into()).unwrap();
        busy.conn.busy.fetch_add(1, Ordering::Relaxed);
        let new = t.admit([10, 0, 0, 3].into()).unwrap();
        assert!(old.conn.evicting.load(Ordering::Relaxed));
        assert!(!busy.conn.evicting.load(Ordering::Relaxed));
        // Nothing idle is left to make room with: refused.
        new.conn.busy.fetch_add(1, Ordering::Relaxed);
        assert_eq!(t.admit([10, 0, 0, 4].into()).err(), Some(Refusal::Full));
        // The evicted one's slot comes back when its task ends.
        drop(old);
        assert_eq!(t.state.lock().unwrap().conns.len(), 2);
    }
}

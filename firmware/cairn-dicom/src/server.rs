//! The listener: accepts connections, negotiates associations within the configured limits,
//! runs each association on its own thread, and stops cleanly.
//!
//! No single peer can take every slot: connections still waiting to send their association
//! request are counted per address, and the whole request must arrive within ARTIM;
//! associations are counted per address and per calling AE title, and some slots are kept
//! for the AEs listed under `[[dicom.peers]]` (see `slots`). Refusals are audited through a
//! coalescer (see `crate::refusal_audit`), so a peer cannot grow the audit table without limit.

mod slots;

use crate::acceptor::{self, printable, Refusal};
use crate::association::Association;
use crate::audit_detail::json_obj;
use crate::pdu::{self, types, PduError, PduReader, MAX_ASSOCIATE_RQ};
use crate::refusal_audit::{kind_of, RefusalAudit, RefusalEvent};
use cairn_audit::AuditEvent;
use cairn_config::Config;
use cairn_store::Store;
use dicom_ul::pdu::Pdu;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use slots::{Limits, NoSlot, Slots};
use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections allowed beyond `max_associations`: those waiting to send their association
/// request (at most `max_associations_per_address` from one address) and those being told
/// "congested".
const EXTRA_CONNECTIONS: usize = 64;
/// Time given to busy associations to finish their message at shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// What the server needs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Where stored objects found missing or damaged are reported (the alarm), if anywhere.
    pub damage: Option<crate::DamageSink>,
}

struct Conn {
    sock: TcpStream,
    idle: Arc<AtomicBool>,
}

/// A connection that has not yet sent its A-ASSOCIATE-RQ.
struct WaitingConn {
    ip: IpAddr,
    since: Instant,
    sock: TcpStream,
}

struct Shared {
    config: Arc<Config>,
    damage: Option<crate::DamageSink>,
    store: Store,
    shutdown: AtomicBool,
    limits: Limits,
    slots: Mutex<Slots>,
    refusals: RefusalAudit,
    connections: AtomicUsize,
    lingering: AtomicUsize,
    next_id: AtomicU64,
    registry: Mutex<HashMap<u64, Conn>>,
    /// Connections still waiting to send their association request, by id (see `make_room`).
    waiting: Mutex<HashMap<u64, WaitingConn>>,
    commitments: Arc<crate::commitment::Hub>,
}

/// The DICOM node, bound and ready to run.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// A handle that asks a running server to stop.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Ask the server to stop: no new associations; busy ones finish their message, then abort.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
    }
}

impl Server {
    /// Bind the configured address.
    pub fn bind(opts: ServerOptions, store: Store) -> std::io::Result<Server> {
        let addr = SocketAddr::new(opts.config.dicom.bind, opts.config.dicom.port);
        let listener = TcpListener::bind(addr)?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                limits: Limits::from_config(&opts.config.dicom),
                config: opts.config,
                damage: opts.damage,
                store,
                shutdown: AtomicBool::new(false),
                slots: Mutex::new(Slots::default()),
                refusals: RefusalAudit::default(),
                connections: AtomicUsize::new(0),
                lingering: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                registry: Mutex::new(HashMap::new()),
                waiting: Mutex::new(HashMap::new()),
                commitments: Arc::new(crate::commitment::Hub::default()),
            }),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serve until `shutdown` is called; returns after every association thread has ended.
    pub fn run(self) -> std::io::Result<()> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let max = self.shared.config.dicom.max_associations;
        let worker = {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("commitment".into())
                .spawn(move || {
                    crate::commitment::worker::run_worker(
                        shared.commitments.clone(),
                        shared.store.clone(),
                        shared.config.clone(),
                        || shared.shutdown.load(Ordering::SeqCst),
                    )
                })
                .ok()
        };
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            let ready = {
                let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::from(200u16)).unwrap_or(0)
            };
            threads.retain(|t| !t.is_finished());
            self.shared.refusals.tick(&self.shared.store);
            if ready == 0 {
                continue;
            }
            let (sock, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.shared.connections.load(Ordering::SeqCst) >= max + EXTRA_CONNECTIONS
                && !make_room(&self.shared, peer)
            {
                tracing::warn!(%peer, "connection refused: far too many connections");
                drop(sock);
                audit_refusal(
                    &self.shared,
                    "?",
                    peer,
                    "connections",
                    "connection closed at once: far too many connections",
                );
                continue;
            }
            if !self
                .shared
                .slots()
                .begin_waiting(&self.shared.limits, peer.ip())
            {
                tracing::warn!(%peer, "connection refused: too many from this address waiting to associate");
                drop(sock);
                audit_refusal(
                    &self.shared,
                    "?",
                    peer,
                    "waiting connections",
                    "connection closed at once: too many from this address waiting to associate",
                );
                continue;
            }
            self.shared.connections.fetch_add(1, Ordering::SeqCst);
            let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
            if let Ok(clone) = sock.try_clone() {
                self.shared.waiting_socks().insert(
                    id,
                    WaitingConn {
                        ip: peer.ip(),
                        since: Instant::now(),
                        sock: clone,
                    },
                );
            }
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("dicom-assoc".into())
                .stack_size(1 << 20)
                .spawn(move || {
                    let linger = handle_connection(&shared, sock, peer, id);
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                    if let Some(mut sock) = linger {
                        if shared.lingering.fetch_add(1, Ordering::SeqCst) < MAX_LINGERING {
                            pdu::linger(&mut sock, pdu::LINGER);
                        }
                        shared.lingering.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    self.shared.connections.fetch_sub(1, Ordering::SeqCst);
                    self.shared.slots().end_waiting(peer.ip());
                    self.shared.waiting_socks().remove(&id);
                    tracing::error!(error = %e, "cannot start an association thread");
                }
            }
        }
        drop(self.listener);
        drain(&self.shared);
        for t in threads {
            let _ = t.join();
        }
        if let Some(w) = worker {
            let _ = w.join();
        }
        self.shared.refusals.flush(&self.shared.store);
        Ok(())
    }
}

/// Wake idle associations so they abort; give busy ones `GRACE` to finish their message.
fn drain(shared: &Shared) {
    // connections that never sent a request have nothing to finish
    for w in shared.waiting_socks().values() {
        let _ = w.sock.shutdown(Shutdown::Both);
    }
    let start = Instant::now();
    loop {
        let registry = match shared.registry.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        if registry.is_empty() {
            break;
        }
        let late = start.elapsed() > GRACE;
        for conn in registry.values() {
            if late {
                let _ = conn.sock.shutdown(Shutdown::Both);
            } else if conn.idle.load(Ordering::SeqCst) {
                let _ = conn.sock.shutdown(Shutdown::Read);
            }
        }
        drop(registry);
        if start.elapsed() > GRACE + Duration::from_secs(5) {
            tracing::error!("associations still running after the grace period");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn waiting_socks(&self) -> MutexGuard<'_, HashMap<u64, WaitingConn>> {
        match self.waiting.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Every connection is taken and one from `newcomer` arrives: close the oldest connection still
/// waiting to send its A-ASSOCIATE-RQ from the address that has the most of them (when it has
/// at least two more than the newcomer's). Many addresses each keeping silent connections
/// thus cannot keep a new peer out. True when room was made.
fn make_room(shared: &Shared, newcomer: SocketAddr) -> bool {
    let Some(crowded) = shared.slots().make_room_from(newcomer.ip()) else {
        return false;
    };
    let mut waiting = shared.waiting_socks();
    let Some(oldest) = waiting
        .iter()
        .filter(|(_, w)| w.ip == crowded)
        .min_by_key(|(id, w)| (w.since, **id))
        .map(|(id, _)| *id)
    else {
        return false;
    };
    if let Some(w) = waiting.remove(&oldest) {
        let _ = w.sock.shutdown(Shutdown::Both);
        tracing::warn!(peer = %crowded, "closed a connection waiting to associate: making room");
        drop(waiting);
        audit_refusal(
            shared,
            "?",
            SocketAddr::new(crowded, 0),
            "evicted waiting connection",
            "connection waiting to associate closed to make room for another address",
        );
    }
    true
}

/// Audit a refused association (coalesced: see `crate::refusal_audit`); `kind` must not be text the peer
/// chose.
fn audit_refusal(shared: &Shared, calling: &str, peer: SocketAddr, kind: &str, why: &str) {
    shared.refusals.record(
        &shared.store,
        RefusalEvent {
            action: "association-rejected",
            actor: format!("ae:{}", printable(calling)),
            peer,
            kind: kind.to_string(),
            reason: why.to_string(),
        },
    );
}

/// Marks a connection from `ip` as waiting for its association request until `end` or drop.
struct Waiting<'a> {
    shared: &'a Shared,
    ip: IpAddr,
    id: u64,
    done: bool,
}

impl Waiting<'_> {
    fn end(&mut self) {
        if !self.done {
            self.done = true;
            self.shared.slots().end_waiting(self.ip);
            self.shared.waiting_socks().remove(&self.id);
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// An association slot, given back on drop.
struct Slot<'a> {
    shared: &'a Shared,
    ip: IpAddr,
    ae: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.slots().release(self.ip, &self.ae);
    }
}

/// Send the A-ASSOCIATE-RJ. The caller then lingers (outside the connection count) until the
/// requestor closes, as PS3.8 Sta13 says.
fn reject(sock: &mut TcpStream, refusal: &Refusal) -> bool {
    // Some requestors (pynetdicom 3.0) check that their socket is still connected after
    // sending the request; an answer that arrives within microseconds lets their own DUL close
    // it first, and they then report an abort instead of the rejection and its reason. A short
    // pause costs nothing on a path that is rare and final, and gives the peer the right words.
    std::thread::sleep(REJECT_DELAY);
    pdu::send(sock, &Pdu::AssociationRJ(refusal.rj.clone())).is_ok()
}

/// Pause before an A-ASSOCIATE-RJ (see `reject`).
const REJECT_DELAY: Duration = Duration::from_millis(50);

/// Rejected connections waiting for the peer to close; beyond this, they are closed at once.
const MAX_LINGERING: usize = 64;

/// Serve one connection; returns the socket when it must linger after a rejection.
fn handle_connection(
    shared: &Shared,
    mut sock: TcpStream,
    peer: SocketAddr,
    id: u64,
) -> Option<TcpStream> {
    let config = &shared.config;
    let _ = sock.set_nodelay(true);
    // A peer that stops reading cannot hold a worker forever.
    let _ = sock.set_write_timeout(Some(Duration::from_secs(
        config.dicom.artim_timeout_secs.max(30),
    )));
    let artim = Duration::from_secs(config.dicom.artim_timeout_secs);
    let mut reader = PduReader::new(artim, Duration::from_secs(config.dicom.idle_timeout_secs));
    let span = tracing::info_span!("association", %peer);
    let _enter = span.enter();
    // counted since `accept`; ends once the request is in (or the connection is gone)
    let mut waiting = Waiting {
        shared,
        ip: peer.ip(),
        id,
        done: false,
    };

    let mut buf = Vec::new();
    // the whole request within ARTIM, however it is paced
    let first = reader.read_by(
        &mut sock,
        |t| {
            if t == types::ASSOCIATE_RQ {
                MAX_ASSOCIATE_RQ
            } else {
                1024
            }
        },
        Instant::now() + artim,
        &mut buf,
    );
    waiting.end();
    let rq = match first {
        Ok(types::ASSOCIATE_RQ) => match pdu::decode(types::ASSOCIATE_RQ, &buf) {
            Ok(Pdu::AssociationRQ(rq)) => rq,
            Ok(_) | Err(_) => {
                pdu::send_abort(&mut sock, 6);
                audit_refusal(
                    shared,
                    "?",
                    peer,
                    "malformed request",
                    "malformed association request",
                );
                tracing::warn!("malformed A-ASSOCIATE-RQ: aborted");
                return None;
            }
        },
        Ok(other) => {
            pdu::send_abort(&mut sock, 2);
            let why = format!("PDU type 0x{other:02x} before association");
            audit_refusal(shared, "?", peer, &why, &why);
            return None;
        }
        Err(PduError::Closed) => return None,
        Err(e) => {
            pdu::send_abort(
                &mut sock,
                if matches!(e, PduError::UnknownType(_)) {
                    1
                } else {
                    6
                },
            );
            let why = e.to_string();
            audit_refusal(shared, "?", peer, &kind_of(&why), &why);
            tracing::warn!(error = %e, "bad association request: aborted");
            return None;
        }
    };
    let calling = printable(rq.calling_ae_title.trim_matches([' ', '\0']));
    if let Err(why) = acceptor::check_structure(&rq) {
        pdu::send_abort(&mut sock, 6);
        tracing::warn!(calling = %calling, %why, "malformed association request: aborted");
        audit_refusal(
            shared,
            &calling,
            peer,
            "malformed request",
            &format!("malformed request: {why}"),
        );
        return None;
    }
    let neg = match acceptor::negotiate(&rq, config, config.dicom.max_pdu_bytes) {
        Ok(n) => n,
        Err(refusal) => {
            tracing::warn!(calling = %calling, why = %refusal.why, "association rejected");
            let sent = reject(&mut sock, &refusal);
            let kind = format!("{:?}", refusal.rj.source);
            audit_refusal(shared, &calling, peer, &kind, &refusal.why);
            return sent.then_some(sock);
        }
    };
    // Take a slot, or refuse: congested, or this address or AE holds its share already.
    let listed = config.peer(&neg.calling_ae).is_some();
    let admitted = if shared.shutdown.load(Ordering::SeqCst) {
        Err(NoSlot::Full)
    } else {
        shared
            .slots()
            .admit(&shared.limits, peer.ip(), &neg.calling_ae, listed)
    };
    if let Err(no_slot) = admitted {
        let refusal = match no_slot {
            NoSlot::Full => acceptor::congestion(),
            NoSlot::Address | NoSlot::Ae => acceptor::local_limit(no_slot.why()),
        };
        tracing::warn!(calling = %calling, why = no_slot.why(), "association rejected");
        let sent = reject(&mut sock, &refusal);
        audit_refusal(shared, &calling, peer, no_slot.why(), &refusal.why);
        return sent.then_some(sock);
    }
    let _slot = Slot {
        shared,
        ip: peer.ip(),
        ae: neg.calling_ae.clone(),
    };

    if let Err(e) = pdu::send(&mut sock, &Pdu::AssociationAC(neg.ac.clone())) {
        tracing::warn!(error = %e, "cannot send A-ASSOCIATE-AC");
        return None;
    }
    tracing::info!(calling = %calling, contexts = neg.contexts.len(), "association accepted");
    shared.store.audit_later(AuditEvent {
        actor: format!("ae:{calling}"),
        action: "association".into(),
        object: "association".into(),
        detail: json_obj(&[
            ("peer", &peer.to_string()),
            ("contexts", &neg.contexts.len().to_string()),
        ]),
    });

    let idle = Arc::new(AtomicBool::new(false));
    if let (Ok(clone), Ok(mut reg)) = (sock.try_clone(), shared.registry.lock()) {
        reg.insert(
            id,
            Conn {
                sock: clone,
                idle: idle.clone(),
            },
        );
    }
    Association {
        sock,
        peer,
        neg,
        store: &shared.store,
        config,
        reader,
        shutdown: &shared.shutdown,
        refusals: &shared.refusals,
        idle,
        commit: shared.commitments.attach(id),
        damage: shared.damage.clone(),
    }
    .run();
    if let Ok(mut reg) = shared.registry.lock() {
        reg.remove(&id);
    }
    None
}

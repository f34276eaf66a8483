//! Audit rows for refused and aborted associations, coalesced so that no peer can grow the
//! audit table without limit.
//!
//! The first refusal of each kind from an address is written at once. Repeats of that kind
//! from that address within `WINDOW` are only counted; when the window has closed (or at
//! shutdown) one summary row says how many there were. Over the whole node at most
//! `MAX_FIRST_ROWS` first rows are written per window; beyond that, refusals are counted into
//! one overflow row per window. Nothing is dropped without being counted.

use crate::audit_detail::json_obj;
use cairn_audit::AuditEvent;
use cairn_store::Store;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Repeats of one kind from one address within this long make one summary row.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// At most this many rows written at once (first of their kind) per window, node-wide.
const MAX_FIRST_ROWS: usize = 256;
/// At most this many (address, kind) pairs remembered; beyond, refusals go to the overflow.
const MAX_ENTRIES: usize = 4096;

/// One refused or aborted association, as it would be audited.
#[derive(Debug, Clone)]
pub(crate) struct RefusalEvent {
    /// The audit action (`association-rejected`, `abort`).
    pub action: &'static str,
    /// The audit actor (`ae:TITLE`).
    pub actor: String,
    /// The peer.
    pub peer: SocketAddr,
    /// What kind of refusal: a short text the peer does not choose (repeats of a kind are
    /// counted, not written).
    pub kind: String,
    /// Plain words for the row.
    pub reason: String,
}

#[derive(Debug)]
struct Entry {
    opened: Instant,
    repeats: u64,
    action: &'static str,
    actor: String,
    last_reason: String,
}

#[derive(Debug)]
struct State {
    entries: HashMap<(IpAddr, String), Entry>,
    budget_opened: Instant,
    first_rows: usize,
    overflow: u64,
    overflow_action: &'static str,
}

/// The coalescer; one per server.
#[derive(Debug)]
pub(crate) struct RefusalAudit {
    window: Duration,
    state: Mutex<State>,
}

impl Default for RefusalAudit {
    fn default() -> Self {
        Self::with_window(WINDOW)
    }
}

impl RefusalAudit {
    /// A coalescer whose windows last `window`.
    pub fn with_window(window: Duration) -> Self {
        Self {
            window,
            state: Mutex::new(State {
                entries: HashMap::new(),
                budget_opened: Instant::now(),
                first_rows: 0,
                overflow: 0,
                overflow_action: "association-rejected",
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Audit one refusal: written now when it is the first of its kind from its address in
    /// the window, else counted.
    pub fn record(&self, store: &Store, event: RefusalEvent) {
        self.record_to(&mut |e| store.audit_later(e), event, Instant::now());
    }

    fn record_to(&self, out: &mut dyn FnMut(AuditEvent), event: RefusalEvent, now: Instant) {
        let mut st = self.lock();
        self.roll_budget(&mut st, out, now);
        let key = (event.peer.ip(), event.kind.clone());
        if let Some(e) = st.entries.get_mut(&key) {
            if now.duration_since(e.opened) < self.window {
                e.repeats += 1;
                e.actor = event.actor;
                e.last_reason = event.reason;
                return;
            }
            if let Some(old) = st.entries.remove(&key) {
                summary(out, key.0, &key.1, &old, self.window);
            }
        }
        if st.first_rows >= MAX_FIRST_ROWS || st.entries.len() >= MAX_ENTRIES {
            st.overflow += 1;
            st.overflow_action = event.action;
            return;
        }
        st.first_rows += 1;
        out(AuditEvent {
            actor: event.actor.clone(),
            action: event.action.into(),
            object: "association".into(),
            detail: json_obj(&[("peer", &event.peer.to_string()), ("reason", &event.reason)]),
        });
        st.entries.insert(
            key,
            Entry {
                opened: now,
                repeats: 0,
                action: event.action,
                actor: event.actor,
                last_reason: event.reason,
            },
        );
    }

    /// Write the summaries of windows that have closed (called now and then by the listener).
    pub fn tick(&self, store: &Store) {
        self.tick_to(&mut |e| store.audit_later(e), Instant::now(), false);
    }

    /// Write every pending summary now (at shutdown).
    pub fn flush(&self, store: &Store) {
        self.tick_to(&mut |e| store.audit_later(e), Instant::now(), true);
    }

    fn tick_to(&self, out: &mut dyn FnMut(AuditEvent), now: Instant, all: bool) {
        let mut st = self.lock();
        let window = self.window;
        let closed: Vec<(IpAddr, String)> = st
            .entries
            .iter()
            .filter(|(_, e)| all || now.duration_since(e.opened) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        for key in closed {
            if let Some(e) = st.entries.remove(&key) {
                summary(out, key.0, &key.1, &e, window);
            }
        }
        if all {
            st.budget_opened = now - window;
        }
        self.roll_budget(&mut st, out, now);
    }

    /// A new node-wide window: the overflow of the last one gets its row.
    fn roll_budget(&self, st: &mut State, out: &mut dyn FnMut(AuditEvent), now: Instant) {
        if now.duration_since(st.budget_opened) < self.window {
            return;
        }
        if st.overflow > 0 {
            out(AuditEvent {
                actor: "ae:?".into(),
                action: st.overflow_action.into(),
                object: "association".into(),
                detail: json_obj(&[
                    ("peer", "many"),
                    ("reason", "more refusals than the audit rate allows"),
                    ("repeats", &st.overflow.to_string()),
                    ("window_secs", &self.window.as_secs().to_string()),
                ]),
            });
        }
        st.overflow = 0;
        st.first_rows = 0;
        st.budget_opened = now;
    }
}

/// The summary row of one (address, kind) window, when it had repeats.
fn summary(out: &mut dyn FnMut(AuditEvent), ip: IpAddr, kind: &str, e: &Entry, window: Duration) {
    if e.repeats == 0 {
        return;
    }
    out(AuditEvent {
        actor: e.actor.clone(),
        action: e.action.into(),
        object: "association".into(),
        detail: json_obj(&[
            ("peer", &ip.to_string()),
            ("kind", kind),
            ("reason", &e.last_reason),
            ("repeats", &e.repeats.to_string()),
            ("window_secs", &window.as_secs().to_string()),
        ]),
    });
}

/// A kind for a free-text reason: its first three words, letters only, so that the numbers
/// and names a peer puts in its requests do not make new kinds.
pub(crate) fn kind_of(reason: &str) -> String {
    reason
        .split(|c: char| c.is_whitespace() || c == ':')
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| {
            w.chars()
                .filter(|c| c.is_ascii_alphabetic())
                .take(16)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ip: u8, kind: &str, n: usize) -> RefusalEvent {
        RefusalEvent {
            action: "association-rejected",
            actor: "ae:X".into(),
            peer: SocketAddr::from(([10, 0, 0, ip], 1000 + n as u16)),
            kind: kind.into(),
            reason: format!("{kind} number {n}"),
        }
    }

    fn repeats(e: &AuditEvent) -> Option<u64> {
        let d = &e.detail;
        let at = d.find("\"repeats\":\"")? + 11;
        d[at..].split('"').next()?.parse().ok()
    }

    #[test]
    fn repeats_are_counted_and_the_first_of_each_kind_is_kept() {
        let audit = RefusalAudit::with_window(Duration::from_secs(60));
        let mut rows = Vec::new();
        let t0 = Instant::now();
        for n in 0..500 {
            let kind = if n % 5 == 0 { "called" } else { "calling" };
            audit.record_to(&mut |e| rows.push(e), ev(1, kind, n), t0);
        }
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows[0].detail.contains("called number 0"),
            "{}",
            rows[0].detail
        );
        assert!(
            rows[1].detail.contains("calling number 1"),
            "{}",
            rows[1].detail
        );
        audit.tick_to(&mut |e| rows.push(e), t0 + Duration::from_secs(1), false);
        assert_eq!(rows.len(), 2, "a window still open wrote its summary");
        audit.tick_to(&mut |e| rows.push(e), t0 + Duration::from_secs(61), false);
        assert_eq!(rows.len(), 4, "{rows:?}");
        let counted: u64 = rows.iter().filter_map(repeats).sum();
        assert_eq!(counted + 2, 500);
        // the next window starts with a first row again
        audit.record_to(
            &mut |e| rows.push(e),
            ev(1, "called", 1),
            t0 + Duration::from_secs(62),
        );
        assert_eq!(rows.len(), 5);
        assert_eq!(repeats(&rows[4]), None);
    }

    #[test]
    fn flush_writes_open_windows() {
        let audit = RefusalAudit::default();
        let mut rows = Vec::new();
        let t0 = Instant::now();
        for n in 0..10 {
            audit.record_to(&mut |e| rows.push(e), ev(2, "k", n), t0);
        }
        audit.tick_to(&mut |e| rows.push(e), t0, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(repeats(&rows[1]), Some(9));
        assert!(
            rows[1].detail.contains("\"peer\":\"10.0.0.2\""),
            "{}",
            rows[1].detail
        );
    }

    #[test]
    fn many_addresses_hit_the_node_wide_cap() {
        let audit = RefusalAudit::default();
        let mut rows = Vec::new();
        let t0 = Instant::now();
        for n in 0..2000usize {
            let mut e = ev(0, "k", n);
            e.peer = SocketAddr::from(([10, 1, (n / 256) as u8, (n % 256) as u8], 9));
            audit.record_to(&mut |e| rows.push(e), e, t0);
        }
        assert_eq!(rows.len(), MAX_FIRST_ROWS);
        audit.tick_to(&mut |e| rows.push(e), t0, true);
        let overflow: Vec<_> = rows.iter().filter(|r| r.detail.contains("many")).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(repeats(overflow[0]), Some(2000 - MAX_FIRST_ROWS as u64));
    }

    #[test]
    fn kinds_ignore_what_the_peer_chose() {
        assert_eq!(
            kind_of("unexpected response command 0x8001"),
            kind_of("unexpected response command 0x9021")
        );
        assert_eq!(kind_of("socket error: reset by peer"), "socket error reset");
        assert_eq!(
            kind_of("PDV on presentation context 5 that was not accepted"),
            "PDV on presentation"
        );
    }
}

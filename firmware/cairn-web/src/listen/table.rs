//! The table of open connections: admitting one under the limits (making room by closing the
//! one that has waited longest for a request), and each connection's shared state.

use super::ConnLimits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One connection's state, shared by its task, its I/O and its requests.
#[derive(Debug)]
pub(super) struct ConnState {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last byte moved (or of the last request answered).
    last_io_ms: AtomicU64,
    /// Requests being answered.
    pub(super) busy: AtomicUsize,
    /// Request bodies not yet read to their end.
    pub(super) reading: AtomicUsize,
    /// Chosen to make room: its task ends at once.
    evicting: AtomicBool,
    pub(super) evict: Notify,
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

    /// Record that bytes moved now.
    pub(super) fn touch(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Waiting on the client: for a request, for the rest of a body, or for it to take an
    /// answer. A request being worked on (an eject waits minutes for the drive) is not.
    fn waits_on_client(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 || self.reading.load(Ordering::Relaxed) > 0
    }

    /// Resolves once the connection has waited on the client, moving nothing, for `idle`.
    pub(super) async fn idle(&self, idle: Duration) {
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
pub(super) enum Refusal {
    /// This address holds its share of the slots already.
    PerAddress,
    /// Every slot is taken and none is idle enough to close.
    Full,
}

/// Every open connection.
#[derive(Debug)]
pub(super) struct Table {
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
pub(super) struct Slot {
    table: Arc<Table>,
    id: u64,
    pub(super) conn: Arc<ConnState>,
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
    /// An empty table under `limits`.
    pub(super) fn new(limits: ConnLimits) -> Table {
        Table {
            limits,
            epoch: Instant::now(),
            state: Mutex::new(TableState::default()),
            emptied: Notify::new(),
        }
    }

    /// A slot for a connection from `addr`, or why not.
    pub(super) fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Slot, Refusal> {
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
    pub(super) async fn wait_empty(&self) {
        loop {
            let notified = self.emptied.notified();
            if self.state.lock().map_or(true, |g| g.conns.is_empty()) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::limits;
    use super::*;

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

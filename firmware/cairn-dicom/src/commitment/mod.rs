//! Storage Commitment Push Model, SCP role (PS3.4 annex J, SOP class 1.2.840.10008.1.20.1).
//!
//! A requester sends N-ACTION-RQ (action type 1) with a Transaction UID and the instances it
//! wants the box to take responsibility for. The request is recorded durably (with its audit
//! row) before N-ACTION-RSP success goes out. The answer, N-EVENT-REPORT-RQ (event type 1: all
//! committed, 2: some failed), goes out once every instance is decided:
//! - committed: on the hot store, its file present, with at least one verified cold copy;
//! - failed: unknown instance (0x0112), another SOP class than stored (0x0119), file missing
//!   (0x0110), or still without a verified copy when `dicom.commitment_timeout_secs` runs out
//!   (0x0110);
//! - pending: known but not yet on a verified tape or disc; the request waits, durably, so a
//!   restart does not forget it.
//!
//! This is what a PACS expects from an archive: success means "you may delete your copy", so
//! it is never said before the second copy is verified, and the answer comes once, when the
//! box knows. The report goes on the requesting association while it is open; otherwise on a
//! new association to the requester (its AE looked up in `dicom.peers`), proposing the class
//! with SCP/SCU role selection so the box acts as SCP. Failed deliveries are retried every
//! [`RETRY`] until one day after the deadline, then the request is marked undeliverable.

//!
//! Here: the hub that routes reports and the decision (`mod.rs`), the messages (`message.rs`)
//! and the worker with its delivery on a new association (`worker.rs`); the N-ACTION and
//! N-EVENT-REPORT exchange on the requesting association is in `services/commitment.rs`.

pub(crate) mod message;
pub(crate) mod worker;

use cairn_store::commitment::{self as sc, CommitItem, ItemState, PendingRequest};
use cairn_store::{DataDir, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::syntax::{STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH};

/// N-EVENT-REPORT-RQ command field.
pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
/// N-EVENT-REPORT-RSP command field.
pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
/// N-ACTION-RQ command field.
pub const N_ACTION_RQ: u16 = 0x0130;
/// N-ACTION-RSP command field.
pub const N_ACTION_RSP: u16 = 0x8130;
/// Largest N-ACTION data set accepted (about 100 000 referenced instances).
pub const MAX_REQUEST: usize = 16 << 20;
/// Between delivery attempts on a new association.
pub const RETRY: Duration = Duration::from_secs(30);
/// How often an idle association with open commitments looks for reports to send.
pub(crate) const IDLE_POLL: Duration = Duration::from_millis(300);

/// N-ACTION statuses (PS3.7 C.4.1.1 and annex C).
pub(crate) mod nstatus {
    /// Processing failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Invalid sop instance.
    pub const INVALID_SOP_INSTANCE: u16 = 0x0117;
    /// No such sop class.
    pub const NO_SUCH_SOP_CLASS: u16 = 0x0118;
    /// Missing attribute.
    pub const MISSING_ATTRIBUTE: u16 = 0x0120;
    /// No such action.
    pub const NO_SUCH_ACTION: u16 = 0x0123;
}

/// Routes decided reports to the association that asked, while it is open.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
    outboxes: HashMap<u64, Sender<i64>>,
    owner: HashMap<i64, u64>,
    inflight: HashSet<i64>,
}

pub(crate) enum Route {
    /// To the open association that asked.
    Outbox(Sender<i64>),
    /// On a new association to the requester.
    NewAssociation,
    /// Already being delivered.
    Busy,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Request `req` belongs to association `assoc` (its reports go there while it is open).
    pub(crate) fn set_owner(&self, req: i64, assoc: u64) {
        self.lock().owner.insert(req, assoc);
    }

    /// An association's end of the hub.
    pub(crate) fn attach(self: &Arc<Self>, assoc: u64) -> AssocCommit {
        let (tx, rx) = channel();
        self.lock().outboxes.insert(assoc, tx);
        AssocCommit {
            hub: self.clone(),
            id: assoc,
            rx,
            awaiting: HashMap::new(),
            owned: HashSet::new(),
            next_msg: 0,
        }
    }

    /// Where the report of `req` goes now; marks it in flight.
    pub(crate) fn route(&self, req: i64) -> Route {
        let mut g = self.lock();
        if g.inflight.contains(&req) {
            return Route::Busy;
        }
        let outbox = g.owner.get(&req).and_then(|a| g.outboxes.get(a)).cloned();
        g.inflight.insert(req);
        match outbox {
            Some(tx) => Route::Outbox(tx),
            None => Route::NewAssociation,
        }
    }

    /// `req` is no longer in flight (not decided yet, or not sent).
    pub(crate) fn settle(&self, req: i64) {
        let mut g = self.lock();
        g.inflight.remove(&req);
    }

    /// `req` is done with here: delivered, refused or its association gone.
    pub(crate) fn forget(&self, req: i64) {
        let mut g = self.lock();
        g.inflight.remove(&req);
        g.owner.remove(&req);
    }
}

/// One association's commitments: the reports routed to it and those awaiting an answer.
#[derive(Debug)]
pub(crate) struct AssocCommit {
    /// The hub it is attached to.
    pub(crate) hub: Arc<Hub>,
    /// The association's ID.
    pub(crate) id: u64,
    /// Reports the worker routed here.
    pub(crate) rx: Receiver<i64>,
    /// Message ID of an N-EVENT-REPORT-RQ sent here -> (request, event type, committed, failed).
    pub(crate) awaiting: HashMap<u16, (i64, u16, usize, usize)>,
    /// Requests made on this association.
    pub(crate) owned: HashSet<i64>,
    /// The last N-EVENT-REPORT-RQ message ID used here.
    pub(crate) next_msg: u16,
}

impl Drop for AssocCommit {
    fn drop(&mut self) {
        let mut g = self.hub.lock();
        g.outboxes.remove(&self.id);
        for req in &self.owned {
            g.owner.remove(req);
            g.inflight.remove(req);
        }
    }
}

/// A decided answer.
pub(crate) struct Report {
    /// 1: all committed, 2: some failed.
    pub(crate) event_type: u16,
    /// The instances committed.
    pub(crate) committed: Vec<CommitItem>,
    /// The instances that failed, with their reasons.
    pub(crate) failed: Vec<(CommitItem, u16)>,
}

/// Decides a request now; `None` while some instance is pending before the deadline.
pub(crate) fn decide(
    data: &DataDir,
    req: &PendingRequest,
    now: i64,
) -> Result<Option<Report>, StoreError> {
    let items = sc::request_items(data, req.id)?;
    let states = sc::evaluate(data, &items)?;
    let expired = now >= req.deadline_unix;
    let mut report = Report {
        event_type: 1,
        committed: Vec::new(),
        failed: Vec::new(),
    };
    for (it, st) in items.into_iter().zip(states) {
        match st {
            ItemState::Committed => report.committed.push(it),
            ItemState::Pending if !expired => return Ok(None),
            ItemState::Pending => report.failed.push((it, sc::PROCESSING_FAILURE)),
            ItemState::Failed(reason) => report.failed.push((it, reason)),
        }
    }
    if !report.failed.is_empty() {
        report.event_type = 2;
    }
    Ok(Some(report))
}

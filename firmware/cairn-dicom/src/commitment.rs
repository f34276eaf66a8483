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

use crate::acceptor::printable;
use crate::association_out::{OpenError, OutAssociation, ReadError, Request};
use crate::dimse::{status, Command, CommandBuilder, Refusal, NO_DATASET};
use crate::pdu::{self, PduError};
use crate::service::{Association, Ending};
use cairn_config::Config;
use cairn_core::check_uid;
use cairn_store::commitment::{self as sc, CommitItem, ItemState, PendingRequest};
use cairn_store::{DataDir, Store, StoreError};
use dicom_core::value::Value;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Storage Commitment Push Model SOP Class.
pub const STORAGE_COMMITMENT_PUSH: &str = "1.2.840.10008.1.20.1";
/// Its well-known SOP Instance.
pub const STORAGE_COMMITMENT_INSTANCE: &str = "1.2.840.10008.1.20.1.1";
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
/// Most instances in one request.
const MAX_ITEMS: usize = 100_000;
/// Between delivery attempts on a new association.
pub const RETRY: Duration = Duration::from_secs(30);
/// How often pending requests are re-checked.
const TICK: Duration = Duration::from_secs(1);
/// How often an idle association with open commitments looks for reports to send.
const IDLE_POLL: Duration = Duration::from_millis(300);

/// N-ACTION statuses (PS3.7 C.4.1.1 and annex C).
mod nstatus {
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    pub const INVALID_SOP_INSTANCE: u16 = 0x0117;
    pub const NO_SUCH_SOP_CLASS: u16 = 0x0118;
    pub const MISSING_ATTRIBUTE: u16 = 0x0120;
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

enum Route {
    Outbox(Sender<i64>),
    NewAssociation,
    Busy,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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

    fn route(&self, req: i64) -> Route {
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

    fn settle(&self, req: i64) {
        let mut g = self.lock();
        g.inflight.remove(&req);
    }

    fn forget(&self, req: i64) {
        let mut g = self.lock();
        g.inflight.remove(&req);
        g.owner.remove(&req);
    }
}

/// One association's commitments: the reports routed to it and those awaiting an answer.
#[derive(Debug)]
pub(crate) struct AssocCommit {
    hub: Arc<Hub>,
    id: u64,
    rx: Receiver<i64>,
    /// Message ID of an N-EVENT-REPORT-RQ sent here -> (request, event type, committed, failed).
    awaiting: HashMap<u16, (i64, u16, usize, usize)>,
    owned: HashSet<i64>,
    next_msg: u16,
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
struct Report {
    event_type: u16,
    committed: Vec<CommitItem>,
    failed: Vec<(CommitItem, u16)>,
}

/// Decides a request now; `None` while some instance is pending before the deadline.
fn decide(data: &DataDir, req: &PendingRequest, now: i64) -> Result<Option<Report>, StoreError> {
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

fn ts_of(uid: &str) -> Option<&'static dicom_encoding::TransferSyntax> {
    TransferSyntaxRegistry.get(uid.trim_end_matches(['\0', ' ']))
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
}

fn uid(raw: &str, what: &str) -> Result<String, Refusal> {
    check_uid(raw).map(|(u, _)| u.to_string()).map_err(|e| {
        Refusal::new(
            nstatus::PROCESSING_FAILURE,
            format!("{what} is not usable: {e}"),
        )
    })
}

/// Parses the N-ACTION-RQ data set: Transaction UID and the referenced instances.
fn parse_action(bytes: &[u8], ts_uid: &str) -> Result<(String, Vec<CommitItem>), Refusal> {
    let failure = |why: String| Refusal::new(nstatus::PROCESSING_FAILURE, why);
    let undecodable = || failure(format!("transfer syntax {ts_uid} cannot be decoded"));
    let ts = ts_of(ts_uid).ok_or_else(undecodable)?;
    // Check the structure first with the node's own walker: a bogus length must fail fast
    // here, not make the decoder below allocate or read for it.
    let enc =
        crate::syntax::encoding(ts_uid.trim_end_matches(['\0', ' '])).ok_or_else(undecodable)?;
    crate::dataset::walk_bytes(bytes, enc, MAX_REQUEST as u64 * 4, &|_| false)
        .map_err(|e| failure(format!("data set does not parse: {e}")))?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, ts)
        .map_err(|e| failure(format!("data set does not parse: {e}")))?;
    let missing =
        |what: &str| Refusal::new(nstatus::MISSING_ATTRIBUTE, format!("{what} is missing"));
    let txn = text(&obj, Tag(0x0008, 0x1195)).ok_or_else(|| missing("Transaction UID"))?;
    let txn = uid(&txn, "Transaction UID")?;
    let seq = obj
        .element_opt(Tag(0x0008, 0x1199))
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .ok_or_else(|| missing("Referenced SOP Sequence"))?;
    if seq.is_empty() {
        return Err(missing("Referenced SOP Sequence item"));
    }
    if seq.len() > MAX_ITEMS {
        return Err(failure(format!(
            "{} instances in one request (at most {MAX_ITEMS})",
            seq.len()
        )));
    }
    let mut items = Vec::with_capacity(seq.len());
    for item in seq {
        let class =
            text(item, Tag(0x0008, 0x1150)).ok_or_else(|| missing("Referenced SOP Class UID"))?;
        let inst = text(item, Tag(0x0008, 0x1155))
            .ok_or_else(|| missing("Referenced SOP Instance UID"))?;
        items.push(CommitItem {
            sop_class_uid: uid(&class, "Referenced SOP Class UID")?,
            sop_instance_uid: uid(&inst, "Referenced SOP Instance UID")?,
        });
    }
    Ok((txn, items))
}

fn ref_item(it: &CommitItem, reason: Option<u16>) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        Tag(0x0008, 0x1150),
        VR::UI,
        PrimitiveValue::from(it.sop_class_uid.as_str()),
    ));
    o.put(DataElement::new(
        Tag(0x0008, 0x1155),
        VR::UI,
        PrimitiveValue::from(it.sop_instance_uid.as_str()),
    ));
    if let Some(r) = reason {
        o.put(DataElement::new(
            Tag(0x0008, 0x1197),
            VR::US,
            PrimitiveValue::from(r),
        ));
    }
    o
}

/// Encodes the N-EVENT-REPORT data set.
fn encode_report(txn: &str, report: &Report, ts_uid: &str) -> Result<Vec<u8>, ReportError> {
    let ts = ts_of(ts_uid).ok_or_else(|| ReportError::UnknownSyntax(ts_uid.to_string()))?;
    let mut ds = InMemDicomObject::new_empty();
    ds.put(DataElement::new(
        Tag(0x0008, 0x1195),
        VR::UI,
        PrimitiveValue::from(txn),
    ));
    if !report.committed.is_empty() {
        let items: Vec<_> = report.committed.iter().map(|i| ref_item(i, None)).collect();
        ds.put(DataElement::new(
            Tag(0x0008, 0x1199),
            VR::SQ,
            Value::new_sequence(items, Length::UNDEFINED),
        ));
    }
    if !report.failed.is_empty() {
        let items: Vec<_> = report
            .failed
            .iter()
            .map(|(i, r)| ref_item(i, Some(*r)))
            .collect();
        ds.put(DataElement::new(
            Tag(0x0008, 0x1198),
            VR::SQ,
            Value::new_sequence(items, Length::UNDEFINED),
        ));
    }
    let mut out = Vec::new();
    ds.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| ReportError::Encode(e.to_string()))?;
    Ok(out)
}

/// Why a report's data set could not be encoded.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    /// The context's transfer syntax is not one the encoder knows.
    #[error("transfer syntax {0} unknown")]
    UnknownSyntax(String),
    /// The encoder failed.
    #[error("{0}")]
    Encode(String),
}

fn event_report_rq(message_id: u16, event_type: u16) -> Vec<u8> {
    CommandBuilder::new()
        .uid(0x0002, STORAGE_COMMITMENT_PUSH)
        .u16(0x0100, N_EVENT_REPORT_RQ)
        .u16(0x0110, message_id)
        .u16(0x0800, 0x0000)
        .uid(0x1000, STORAGE_COMMITMENT_INSTANCE)
        .u16(0x1002, event_type)
        .encode()
}

fn action_rsp(rq: &Command, code: u16, comment: Option<&str>) -> Vec<u8> {
    let mut b = CommandBuilder::new()
        .uid(0x0002, STORAGE_COMMITMENT_PUSH)
        .u16(0x0100, N_ACTION_RSP)
        .u16(0x0120, rq.message_id())
        .u16(0x0800, NO_DATASET)
        .u16(0x0900, code)
        .uid(0x1000, STORAGE_COMMITMENT_INSTANCE);
    if code == status::SUCCESS {
        b = b.u16(0x1008, 1);
    }
    if let Some(c) = comment {
        b = b.text(0x0902, c);
    }
    b.encode()
}

impl Association<'_> {
    /// Answers an N-ACTION-RQ for storage commitment (the data set is `bytes`).
    pub(crate) fn commitment_action(
        &mut self,
        context_id: u8,
        cmd: &Command,
        bytes: &[u8],
    ) -> Result<(), Ending> {
        let class = cmd.string(0x0003).unwrap_or_default();
        let instance = cmd.string(0x1001).unwrap_or_default();
        let action = cmd.u16(0x1008);
        let ts = self
            .neg
            .contexts
            .iter()
            .find(|c| c.id == context_id)
            .map(|c| c.transfer_syntax.clone())
            .unwrap_or_default();
        let refuse =
            |code: u16, why: &str| Err::<(String, Vec<CommitItem>), _>(Refusal::new(code, why));
        let parsed = if crate::dimse::trim(&class) != STORAGE_COMMITMENT_PUSH {
            refuse(
                nstatus::NO_SUCH_SOP_CLASS,
                "not the storage commitment class",
            )
        } else if crate::dimse::trim(&instance) != STORAGE_COMMITMENT_INSTANCE {
            refuse(
                nstatus::INVALID_SOP_INSTANCE,
                "Requested SOP Instance UID must be 1.2.840.10008.1.20.1.1",
            )
        } else if action != Some(1) {
            refuse(nstatus::NO_SUCH_ACTION, "action type must be 1")
        } else {
            parse_action(bytes, &ts)
        };
        let calling = self.neg.calling_ae.clone();
        let (txn, items) = match parsed {
            Ok(p) => p,
            Err(Refusal {
                status: code,
                comment: why,
            }) => {
                tracing::warn!(status = format!("0x{code:04X}"), %why, "storage commitment refused");
                self.store.audit_later(cairn_audit::AuditEvent {
                    actor: format!("ae:{}", printable(&calling)),
                    action: "commitment-refuse".into(),
                    object: "-".into(),
                    detail: crate::service::json_obj(&[
                        ("status", &format!("0x{code:04X}")),
                        ("reason", &why),
                    ]),
                });
                return self.respond_raw(context_id, action_rsp(cmd, code, Some(&why)));
            }
        };
        let n = items.len();
        // Claim the request for this association before the worker can see it.
        let claimed: Arc<Mutex<Option<i64>>> = Arc::default();
        let (hub, me, slot) = (self.commit.hub.clone(), self.commit.id, claimed.clone());
        let recorded = sc::record_request(
            self.store,
            &txn,
            &calling,
            &self.peer.to_string(),
            items,
            self.config.dicom.commitment_timeout_secs,
            move |id| {
                hub.lock().owner.insert(id, me);
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
            },
        );
        let id = match recorded {
            Ok(id) => id,
            Err(e) => {
                let stale = *claimed.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(id) = stale {
                    self.commit.hub.forget(id);
                }
                tracing::error!(error = %e, "cannot record a storage commitment request");
                return self.respond_raw(
                    context_id,
                    action_rsp(
                        cmd,
                        nstatus::PROCESSING_FAILURE,
                        Some("the archive cannot record the request (disk full or failing)"),
                    ),
                );
            }
        };
        tracing::info!(request = id, instances = n, "storage commitment requested");
        self.commit.owned.insert(id);
        self.respond_raw(context_id, action_rsp(cmd, status::SUCCESS, None))?;
        // Answer at once when everything is already decided.
        match self.commit.hub.route(id) {
            Route::Outbox(_) => self.send_report(id, Some(context_id)),
            Route::NewAssociation | Route::Busy => Ok(()),
        }
    }

    fn respond_raw(&mut self, context_id: u8, rsp: Vec<u8>) -> Result<(), Ending> {
        pdu::send_message(
            &mut self.sock,
            self.neg.peer_max_pdu,
            context_id,
            &rsp,
            None,
        )
        .map_err(|e| Ending::Aborted(format!("cannot send response: {e}")))
    }

    /// Sends the report of request `id` here if it is decided; otherwise leaves it for later.
    fn send_report(&mut self, id: i64, context_id: Option<u8>) -> Result<(), Ending> {
        let data = self.store.data_dir().clone();
        let decided = match sc::pending_request(&data, id) {
            Ok(Some(req)) => decide(&data, &req, sc::unix_now()).map(|r| r.map(|r| (req, r))),
            Ok(None) => {
                self.commit.hub.forget(id);
                return Ok(());
            }
            Err(e) => Err(e),
        };
        let (req, report) = match decided {
            Ok(Some(x)) => x,
            Ok(None) => {
                self.commit.hub.settle(id);
                return Ok(());
            }
            Err(why) => {
                tracing::warn!(%why, "storage commitment: cannot decide now");
                self.commit.hub.settle(id);
                return Ok(());
            }
        };
        let context = context_id.or_else(|| {
            self.neg
                .contexts
                .iter()
                .find(|c| c.abstract_syntax == STORAGE_COMMITMENT_PUSH)
                .map(|c| c.id)
        });
        let Some(context) = context else {
            self.commit.hub.settle(id);
            return Ok(());
        };
        let ts = self
            .neg
            .contexts
            .iter()
            .find(|c| c.id == context)
            .map(|c| c.transfer_syntax.clone())
            .unwrap_or_default();
        let body = match encode_report(&req.transaction_uid, &report, &ts) {
            Ok(b) => b,
            Err(why) => {
                tracing::error!(%why, "storage commitment: cannot encode the report");
                self.commit.hub.settle(id);
                return Ok(());
            }
        };
        self.commit.next_msg = self.commit.next_msg.wrapping_add(1);
        let msg = self.commit.next_msg;
        let rq = event_report_rq(msg, report.event_type);
        pdu::send_message(
            &mut self.sock,
            self.neg.peer_max_pdu,
            context,
            &rq,
            Some(&body),
        )
        .map_err(|e| Ending::Aborted(format!("cannot send N-EVENT-REPORT: {e}")))?;
        tracing::info!(
            request = id,
            event_type = report.event_type,
            committed = report.committed.len(),
            failed = report.failed.len(),
            "storage commitment reported on the requesting association"
        );
        self.commit.awaiting.insert(
            msg,
            (
                id,
                report.event_type,
                report.committed.len(),
                report.failed.len(),
            ),
        );
        Ok(())
    }

    /// An N-EVENT-REPORT-RSP from the requester.
    pub(crate) fn commitment_report_rsp(&mut self, cmd: &Command) {
        let Some(msg) = cmd.u16(0x0120) else { return };
        let Some((id, event_type, ok, failed)) = self.commit.awaiting.remove(&msg) else {
            tracing::warn!(message = msg, "N-EVENT-REPORT-RSP for no report sent here");
            return;
        };
        let code = cmd.u16(0x0900).unwrap_or(0xC000);
        if code == status::SUCCESS {
            let via = format!("same association ({})", self.peer);
            if let Err(e) = sc::mark_reported(self.store, id, event_type, ok, failed, &via) {
                tracing::error!(error = %e, "cannot record a delivered storage commitment report");
            }
            self.commit.owned.remove(&id);
            self.commit.hub.forget(id);
        } else {
            tracing::warn!(
                request = id,
                status = format!("0x{code:04X}"),
                "requester refused the report; retrying on a new association"
            );
            self.commit.owned.remove(&id);
            self.commit.hub.forget(id);
        }
    }

    /// How long an idle association waits for a PDU before looking for reports to send.
    pub(crate) fn commitment_idle_wait(&self) -> Option<Duration> {
        (!self.commit.owned.is_empty()).then_some(IDLE_POLL)
    }

    /// Sends the reports the worker routed to this association.
    pub(crate) fn commitment_tick(&mut self) -> Result<(), Ending> {
        while let Ok(id) = self.commit.rx.try_recv() {
            self.send_report(id, None)?;
        }
        Ok(())
    }
}

/// Re-checks pending requests every second until `shutdown`: decided ones go to their open
/// association, or out on a new association to the requester.
pub(crate) fn run_worker(
    hub: Arc<Hub>,
    store: Store,
    config: Arc<Config>,
    stop: impl Fn() -> bool,
) {
    if let Err(e) = sc::ensure_schema(&store) {
        tracing::error!(error = %e, "storage commitment tables cannot be created");
    }
    let data = store.data_dir().clone();
    while !stop() {
        std::thread::sleep(TICK);
        let now = sc::unix_now();
        let due = match sc::due_requests(&data, now) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "storage commitment: cannot list pending requests");
                continue;
            }
        };
        for req in due {
            if stop() {
                break;
            }
            let report = match decide(&data, &req, now) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(why) => {
                    tracing::warn!(%why, "storage commitment: cannot decide");
                    continue;
                }
            };
            match hub.route(req.id) {
                Route::Busy => {}
                Route::Outbox(tx) => {
                    if tx.send(req.id).is_err() {
                        hub.forget(req.id);
                    }
                }
                Route::NewAssociation => {
                    deliver_new(&store, &config, &req, &report, now);
                    hub.forget(req.id);
                }
            }
        }
    }
}

fn deliver_new(store: &Store, config: &Config, req: &PendingRequest, report: &Report, now: i64) {
    let outcome = match config.peer(&req.calling_ae) {
        None => Err(DeliveryError::UnknownRequester(printable(&req.calling_ae))),
        Some(peer) => send_on_new_association(
            &peer.host,
            peer.port,
            config.dicom.ae_title.as_str(),
            peer.ae.as_str(),
            &req.transaction_uid,
            report,
        ),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(
                request = req.id,
                event_type = report.event_type,
                "storage commitment reported on a new association"
            );
            if let Err(e) = sc::mark_reported(
                store,
                req.id,
                report.event_type,
                report.committed.len(),
                report.failed.len(),
                "new association",
            ) {
                tracing::error!(error = %e, "cannot record a delivered storage commitment report");
            }
        }
        Err(why) => {
            let give_up = now > req.deadline_unix.saturating_add(86_400);
            tracing::warn!(request = req.id, %why, give_up, "storage commitment report not delivered");
            let why = why.to_string();
            if let Err(e) =
                sc::mark_attempt_failed(store, req.id, now + RETRY.as_secs() as i64, &why, give_up)
            {
                tracing::error!(error = %e, "cannot record a failed delivery");
            }
        }
    }
}

/// Why a report could not be delivered on a new association.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    /// The requester's AE title has no address (shown printable).
    #[error("requester '{0}' is not in dicom.peers: no address to report to")]
    UnknownRequester(String),
    /// The association could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The requester accepted no storage commitment context.
    #[error("the requester did not accept the storage commitment context")]
    ContextRefused,
    /// The requester refused the box's SCP role.
    #[error("the requester refused the box as SCP of storage commitment")]
    RoleRefused,
    /// The report's data set could not be encoded.
    #[error(transparent)]
    Encode(#[from] ReportError),
    /// The N-EVENT-REPORT-RQ could not be sent.
    #[error("cannot send N-EVENT-REPORT: {0}")]
    Send(std::io::Error),
    /// No N-EVENT-REPORT-RSP came.
    #[error("no N-EVENT-REPORT-RSP: {0}")]
    NoAnswer(PduError),
    /// Another PDU came instead (its type).
    #[error("unexpected PDU 0x{0:02x} instead of N-EVENT-REPORT-RSP")]
    Unexpected(u8),
    /// The answer did not decode.
    #[error("{0}")]
    Undecodable(ReadError),
    /// The requester answered with a status other than success.
    #[error("the requester answered the report with status 0x{0:04X}")]
    Refused(u16),
}

/// Opens an association to the requester as SCP of the class (role selection), sends the
/// N-EVENT-REPORT-RQ, waits for its answer and releases.
fn send_on_new_association(
    host: &str,
    port: u16,
    our_ae: &str,
    their_ae: &str,
    txn: &str,
    report: &Report,
) -> Result<(), DeliveryError> {
    use dicom_ul::pdu::{
        PresentationContextProposed, PresentationContextResultReason, UserVariableItem,
    };
    let (mut out, ac) = OutAssociation::open(Request {
        host,
        port,
        our_ae,
        their_ae,
        contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: STORAGE_COMMITMENT_PUSH.into(),
            transfer_syntaxes: vec![
                crate::syntax::EXPLICIT_LE.into(),
                crate::syntax::IMPLICIT_LE.into(),
            ],
        }],
        scp_role: Some(STORAGE_COMMITMENT_PUSH),
        artim: Duration::from_secs(30),
        idle: Duration::from_secs(30),
    })?;
    let Some(ctx) = ac
        .presentation_contexts
        .iter()
        .find(|r| r.id == 1 && r.reason == PresentationContextResultReason::Acceptance)
    else {
        out.abort_as_provider(0);
        return Err(DeliveryError::ContextRefused);
    };
    let role_refused = ac.user_variables.iter().any(|u| {
        matches!(u, UserVariableItem::ScuScpRoleSelectionSubItem(c, r)
            if c.trim_end_matches(['\0', ' ']) == STORAGE_COMMITMENT_PUSH && !r.scp)
    });
    if role_refused {
        out.abort_as_provider(0);
        return Err(DeliveryError::RoleRefused);
    }
    let ts = ctx
        .transfer_syntax
        .trim_end_matches(['\0', ' '])
        .to_string();
    let body = encode_report(txn, report, &ts)?;
    pdu::send_message(
        &mut out.sock,
        out.peer_max_pdu,
        1,
        &event_report_rq(1, report.event_type),
        Some(&body),
    )
    .map_err(DeliveryError::Send)?;
    // Wait for N-EVENT-REPORT-RSP.
    let code = out
        .read_commands(1 << 20, Some(Duration::from_secs(30)), |c| {
            (c.field() == N_EVENT_REPORT_RSP && c.u16(0x0120) == Some(1))
                .then(|| c.u16(0x0900).unwrap_or(0xC000))
        })
        .map_err(|e| match e {
            ReadError::Pdu(e) => DeliveryError::NoAnswer(e),
            ReadError::NotData(t) => DeliveryError::Unexpected(t),
            other => DeliveryError::Undecodable(other),
        })?;
    // Release (best effort: the report is delivered once the RSP is in).
    out.release();
    if code == status::SUCCESS {
        Ok(())
    } else {
        Err(DeliveryError::Refused(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action_dataset(ts: &str, with_seq: bool) -> Vec<u8> {
        let mut ds = InMemDicomObject::new_empty();
        ds.put(DataElement::new(
            Tag(0x0008, 0x1195),
            VR::UI,
            PrimitiveValue::from("1.2.3.4.5"),
        ));
        if with_seq {
            let items = vec![
                ref_item(
                    &CommitItem {
                        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                        sop_instance_uid: "1.2.3.99".into(),
                    },
                    None,
                ),
                ref_item(
                    &CommitItem {
                        sop_class_uid: "1.2.840.10008.5.1.4.1.1.4".into(),
                        sop_instance_uid: "1.2.3.100".into(),
                    },
                    None,
                ),
            ];
            ds.put(DataElement::new(
                Tag(0x0008, 0x1199),
                VR::SQ,
                Value::new_sequence(items, Length::UNDEFINED),
            ));
        }
        let mut out = Vec::new();
        ds.write_dataset_with_ts(&mut out, ts_of(ts).unwrap())
            .unwrap();
        out
    }

    #[test]
    fn action_parses_in_both_little_endian_syntaxes() {
        for ts in [crate::syntax::IMPLICIT_LE, crate::syntax::EXPLICIT_LE] {
            let (txn, items) = parse_action(&action_dataset(ts, true), ts).unwrap();
            assert_eq!(txn, "1.2.3.4.5");
            assert_eq!(items.len(), 2);
            assert_eq!(items[1].sop_instance_uid, "1.2.3.100");
            assert_eq!(items[1].sop_class_uid, "1.2.840.10008.5.1.4.1.1.4");
        }
        let e = parse_action(
            &action_dataset(crate::syntax::IMPLICIT_LE, false),
            crate::syntax::IMPLICIT_LE,
        )
        .unwrap_err();
        assert_eq!(e.status, nstatus::MISSING_ATTRIBUTE);
        assert!(parse_action(b"\x08\x00garbage", crate::syntax::IMPLICIT_LE).is_err());
    }

    #[test]
    fn report_encodes_both_sequences() {
        let r = Report {
            event_type: 2,
            committed: vec![CommitItem {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance_uid: "1.2.3.1".into(),
            }],
            failed: vec![(
                CommitItem {
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                    sop_instance_uid: "1.2.3.2".into(),
                },
                sc::NO_SUCH_OBJECT_INSTANCE,
            )],
        };
        let ts = crate::syntax::EXPLICIT_LE;
        let bytes = encode_report("1.2.3.4.5", &r, ts).unwrap();
        let obj = InMemDicomObject::read_dataset_with_ts(&bytes[..], ts_of(ts).unwrap()).unwrap();
        assert_eq!(
            text(&obj, Tag(0x0008, 0x1195)).as_deref(),
            Some("1.2.3.4.5")
        );
        let failed = obj.element(Tag(0x0008, 0x1198)).unwrap().items().unwrap();
        assert_eq!(
            text(&failed[0], Tag(0x0008, 0x1155)).as_deref(),
            Some("1.2.3.2")
        );
        assert_eq!(
            failed[0]
                .element(Tag(0x0008, 0x1197))
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            0x0112
        );
        let ok = obj.element(Tag(0x0008, 0x1199)).unwrap().items().unwrap();
        assert_eq!(ok.len(), 1);
    }
}

//! Storage commitment on the requesting association: the N-ACTION-RQ recorded (durably, with
//! its audit row) before N-ACTION-RSP success, and the N-EVENT-REPORT sent here while the
//! association is open. The decision and the worker are in `commitment/`.

use crate::acceptor::printable;
use crate::association::{Association, Ending};
use crate::audit_detail::json_obj;
use crate::commitment::message::{action_rsp, encode_report, event_report_rq, parse_action};
use crate::commitment::{
    decide, nstatus, Route, IDLE_POLL, STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH,
};
use crate::dimse::{self, status, Command, Refusal};
use crate::pdu;
use cairn_store::commitment::{self as sc, CommitItem};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        let ts = self.context_ts(context_id).unwrap_or_default();
        let refuse =
            |code: u16, why: &str| Err::<(String, Vec<CommitItem>), _>(Refusal::new(code, why));
        let parsed = if dimse::trim(&class) != STORAGE_COMMITMENT_PUSH {
            refuse(
                nstatus::NO_SUCH_SOP_CLASS,
                "not the storage commitment class",
            )
        } else if dimse::trim(&instance) != STORAGE_COMMITMENT_INSTANCE {
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
                    detail: json_obj(&[("status", &format!("0x{code:04X}")), ("reason", &why)]),
                });
                return self.respond(context_id, action_rsp(cmd, code, Some(&why)));
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
                hub.set_owner(id, me);
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
                return self.respond(
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
        self.respond(context_id, action_rsp(cmd, status::SUCCESS, None))?;
        // Answer at once when everything is already decided.
        match self.commit.hub.route(id) {
            Route::Outbox(_) => self.send_report(id, Some(context_id)),
            Route::NewAssociation | Route::Busy => Ok(()),
        }
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
        let ts = self.context_ts(context).unwrap_or_default();
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

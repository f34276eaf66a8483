//! C-GET and C-MOVE (PS3.4 annex C): the instances a query resolves to, each sent as a
//! C-STORE sub-operation (`send.rs`) on the peer's own association (C-GET, here) or on one the
//! box opens to the move destination (`c_move.rs`); pending responses count them, a C-CANCEL
//! is looked for between them, and a missing or damaged object fails only its own
//! sub-operation. Memory stays bounded: objects go out from their files in PDU-sized fragments.

mod c_move;
mod send;

use crate::association::{Association, Ending};
use crate::association_out::{read_commands, ReadError};
use crate::audit_detail::json_obj;
use crate::damage::{Damage, DamagedObject};
use crate::dimse::{command, status, Command, Refusal};
use crate::pdu::{self, types};
use crate::services::query::{
    qr_rsp_command, Interrupt, CANCEL, IDENTIFIER_MISMATCH, PENDING, SUBOPS_WARNING,
};
use cairn_audit::AuditEvent;
use cairn_store::find::{self, InstanceRef, Query};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use send::{Broken, Outgoing, Problem, Sent};
use std::time::Duration;

impl Association<'_> {
    fn resolve(&mut self, query: &Query) -> Result<Vec<InstanceRef>, Refusal> {
        let conn = find::query_connection(self.store.data_dir())
            .map_err(|_| Refusal::out_of_resources("index unavailable"))?;
        match find::resolve(&conn, query) {
            Ok(Ok(list)) if list.len() > query.limit => Err(Refusal::out_of_resources(format!(
                "more than {} instances: retrieve in smaller parts",
                query.limit
            ))),
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e)) => Err(Refusal::new(IDENTIFIER_MISMATCH, format!("{e:?}"))),
            Err(e) => {
                tracing::error!(error = %e, "retrieve query failed");
                Err(Refusal::out_of_resources("the query failed"))
            }
        }
    }

    /// Runs a C-GET: each instance goes out on this association.
    pub(crate) fn c_get(
        &mut self,
        context_id: u8,
        cmd: &Command,
        query: &Query,
        keys_text: &str,
    ) -> Result<(), Ending> {
        let list = match self.resolve(query) {
            Ok(l) => l,
            Err(refusal) => return self.refuse(context_id, cmd, refusal),
        };
        let message_id = cmd.message_id();
        let total = list.len();
        let mut tally = Tally::default();
        let mut cancelled = false;
        let mut next_id: u16 = 1;
        let data = self.store.data_dir().clone();
        for (k, inst) in list.iter().enumerate() {
            let scp_classes = &self.neg.peer_scp_classes;
            let picked = send::pick_context(
                &inst.transfer_syntax,
                self.neg
                    .contexts
                    .iter()
                    .filter(|c| {
                        c.abstract_syntax == inst.sop_class_uid
                            && scp_classes.contains(&c.abstract_syntax)
                    })
                    .map(|c| (c.transfer_syntax.as_str(), c.id)),
            );
            let outcome = match picked {
                None => {
                    let why = format!(
                        "no accepted storage context can carry it (stored in {})",
                        inst.transfer_syntax
                    );
                    self.sub_op_failed(inst, &Problem::Unconvertible(why), "retrieve-get");
                    SubOp::Failed
                }
                Some((pc, ts)) => {
                    next_id = next_id.wrapping_add(1);
                    let sent = Outgoing {
                        sock: &mut self.sock,
                        peer_max_pdu: self.neg.peer_max_pdu,
                        context_id: pc,
                        context_ts: &ts,
                        message_id: next_id,
                        move_origin: None,
                    }
                    .send(inst, &data);
                    match sent {
                        Err(Broken(why)) => {
                            return Err(Ending::Aborted(format!("C-GET sub-operation: {why}")))
                        }
                        Ok(Sent::Withheld(problem)) => {
                            self.sub_op_failed(inst, &problem, "retrieve-get");
                            SubOp::Failed
                        }
                        Ok(sent) => match self.await_store_rsp(next_id, message_id) {
                            Ok((s, cancel)) => {
                                cancelled |= cancel;
                                if sent == Sent::Damaged {
                                    let p = Problem::Damaged(Damage::HashMismatch);
                                    self.sub_op_failed(inst, &p, "retrieve-get");
                                    SubOp::Failed
                                } else {
                                    s
                                }
                            }
                            Err(Broken(why)) => return Err(Ending::Aborted(why)),
                        },
                    }
                }
            };
            tally.record(outcome, &inst.sop_instance_uid);
            let remaining = (total - k - 1) as u16;
            if !cancelled {
                if let Interrupt::Cancel = self.check_interrupt(message_id) {
                    cancelled = true;
                }
            }
            if cancelled {
                break;
            }
            if remaining > 0 {
                self.sub_rsp(context_id, cmd, PENDING, tally.counts(remaining), "", None)?;
            }
        }
        let remaining = (total as u16).saturating_sub(tally.handled());
        self.finish_retrieve(
            context_id,
            cmd,
            query,
            keys_text,
            "retrieve-get",
            &tally.sent,
            &tally.failed_uids,
            tally.counts(remaining),
            cancelled,
            None,
        )
    }

    /// Wait for the C-STORE-RSP of a sub-operation; notes a C-CANCEL for the retrieve.
    fn await_store_rsp(
        &mut self,
        store_id: u16,
        retrieve_id: u16,
    ) -> Result<(SubOp, bool), Broken> {
        let mut cancelled = false;
        let limit = self.config.dicom.max_pdu_bytes;
        let wait = Duration::from_secs(self.config.dicom.artim_timeout_secs.max(30));
        let outcome = read_commands(&mut self.reader, &mut self.sock, limit, Some(wait), |c| {
            if c.field() == command::C_CANCEL_RQ && c.u16(0x0120).is_none_or(|id| id == retrieve_id)
            {
                cancelled = true;
                return None;
            }
            (c.field() == (command::C_STORE_RQ | command::RESPONSE)
                && c.u16(0x0120) == Some(store_id))
            .then(|| SubOp::from_status(c.u16(0x0900).unwrap_or(0xC000)))
        })
        .map_err(|e| match e {
            ReadError::NotData(types::ABORT) => Broken("aborted by peer".into()),
            other => Broken(other.to_string()),
        })?;
        Ok((outcome, cancelled))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_retrieve(
        &mut self,
        context_id: u8,
        cmd: &Command,
        query: &Query,
        keys_text: &str,
        action: &str,
        sent: &[String],
        failed_uids: &[String],
        counts: (u16, u16, u16, u16),
        cancelled: bool,
        destination: Option<&str>,
    ) -> Result<(), Ending> {
        let (_, done, failed, warned) = counts;
        let code = if cancelled {
            CANCEL
        } else if failed > 0 || warned > 0 {
            SUBOPS_WARNING
        } else {
            status::SUCCESS
        };
        let dataset = if failed > 0 {
            encode_failed_list(failed_uids, self.context_ts(context_id).as_deref())
        } else {
            None
        };
        let sent_list = sent.join("\\");
        let failed_list = failed_uids.join("\\");
        let mut extra = vec![
            ("sent", sent_list.as_str()),
            ("failed", failed_list.as_str()),
        ];
        let status_text = format!("0x{code:04X}");
        extra.push(("status", &status_text));
        if let Some(d) = destination {
            extra.push(("destination", d));
        }
        self.audit_qr(action, query, keys_text, &extra);
        tracing::info!(done, failed, warned, cancelled, "retrieve finished");
        let comment = if failed > 0 {
            "some instances could not be sent"
        } else {
            ""
        };
        let Some(dataset) = dataset else {
            return self.sub_rsp(context_id, cmd, code, counts, comment, None);
        };
        let rsp = qr_rsp_command(cmd, code, Some(counts), comment, true);
        pdu::send_message_packed(
            &mut self.sock,
            self.neg.peer_max_pdu,
            context_id,
            &rsp,
            &dataset,
        )
        .map_err(|e| Ending::Aborted(format!("cannot send response: {e}")))
    }

    /// A sub-operation that failed because of its object: the log names the instance (UID,
    /// never patient data); a missing or damaged object is also audited and reported to the
    /// alarm, naming its study.
    fn sub_op_failed(&self, inst: &InstanceRef, problem: &Problem, during: &str) {
        let damage = match problem {
            Problem::Unconvertible(why) => {
                tracing::warn!(sop_instance_uid = %inst.sop_instance_uid, reason = %why,
                    "sub-operation failed: instance not sent");
                return;
            }
            Problem::Damaged(d) => *d,
        };
        let study_uid = study_of(self.store.data_dir(), inst).unwrap_or_default();
        tracing::error!(sop_instance_uid = %inst.sop_instance_uid, study_uid = %study_uid,
            sha256 = %inst.sha256, problem = damage.as_str(),
            "stored object missing or damaged: sub-operation failed");
        self.store.audit_later(AuditEvent {
            actor: "system".into(),
            action: "object-damaged".into(),
            object: study_uid.clone(),
            detail: json_obj(&[
                ("study_uid", &study_uid),
                ("sop_instance_uid", &inst.sop_instance_uid),
                ("sha256", &inst.sha256),
                ("problem", damage.as_str()),
                ("during", during),
                ("requested_by", &format!("ae:{}", self.neg.calling_ae)),
            ]),
        });
        if let Some(sink) = &self.damage {
            // no receiver (no alarm on this box): the audit row and the log line remain
            let _ = sink.send(DamagedObject {
                study_uid,
                sop_instance_uid: inst.sop_instance_uid.clone(),
                sha256: inst.sha256.clone(),
                damage,
            });
        }
    }
}

/// Sub-operation counts and the instances sent or not, for one C-GET or C-MOVE.
#[derive(Debug, Default)]
struct Tally {
    done: u16,
    failed: u16,
    warned: u16,
    sent: Vec<String>,
    failed_uids: Vec<String>,
}

impl Tally {
    fn record(&mut self, outcome: SubOp, uid: &str) {
        match outcome {
            SubOp::Done => self.done += 1,
            SubOp::Warning => self.warned += 1,
            SubOp::Failed => self.failed += 1,
        }
        match outcome {
            SubOp::Failed => self.failed_uids.push(uid.to_string()),
            _ => self.sent.push(uid.to_string()),
        }
    }

    fn handled(&self) -> u16 {
        self.done + self.failed + self.warned
    }

    /// (remaining, completed, failed, warning) as the response carries them.
    fn counts(&self, remaining: u16) -> (u16, u16, u16, u16) {
        (remaining, self.done, self.failed, self.warned)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubOp {
    Done,
    Warning,
    Failed,
}

impl SubOp {
    /// What a C-STORE-RSP status makes of the sub-operation.
    fn from_status(status: u16) -> Self {
        match status {
            0x0000 => SubOp::Done,
            0xB000 | 0xB006 | 0xB007 => SubOp::Warning,
            _ => SubOp::Failed,
        }
    }
}

fn encode_failed_list(uids: &[String], ts_uid: Option<&str>) -> Option<Vec<u8>> {
    let ts = TransferSyntaxRegistry.get(ts_uid?)?;
    let mut ds = InMemDicomObject::new_empty();
    ds.put(DataElement::new(
        Tag(0x0008, 0x0058),
        VR::UI,
        PrimitiveValue::Strs(uids.iter().cloned().collect()),
    ));
    let mut out = Vec::new();
    ds.write_dataset_with_ts(&mut out, ts).ok()?;
    Some(out)
}

/// The study of a stored instance, from the index (for the alarm and the audit row).
fn study_of(data: &cairn_store::DataDir, inst: &InstanceRef) -> Option<String> {
    let conn = find::query_connection(data).ok()?;
    conn.query_row(
        "SELECT st.study_uid FROM instances i JOIN series se ON i.series_ref = se.id \
         JOIN studies st ON se.study_ref = st.id \
         WHERE i.sop_instance_uid = ?1 AND i.sha256 = ?2 LIMIT 1",
        [&inst.sop_instance_uid, &inst.sha256],
        |r| r.get(0),
    )
    .ok()
}

//! Query/retrieve services on an association: C-FIND, C-GET and C-MOVE (PS3.4 annex C).
//!
//! Answers stream as pending responses while the store's query runs; a C-CANCEL from the peer
//! is looked for between answers and between sub-operations. Memory stays bounded: identifiers
//! are small, and stored objects are sent straight from their files in PDU-sized fragments.

use crate::acceptor::printable;
use crate::association_out::{read_commands, OpenError, OutAssociation, ReadError, Request};
use crate::damage::{Damage, DamagedObject};
use crate::dimse::{self, command, status, Command, CommandBuilder, Refusal, NO_DATASET};
use crate::outgoing::{self, Broken, Outgoing, Problem, Sent};
use crate::pdu::{self, types, PduError};
use crate::service::Association;
use crate::syntax::{self, QrService};
use cairn_audit::AuditEvent;
use cairn_store::find::{self, FindEnd, InstanceRef, Level, Query};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::time::Duration;

/// Pending status.
const PENDING: u16 = 0xFF00;
/// Cancelled.
const CANCEL: u16 = 0xFE00;
/// Sub-operations complete, one or more failures or warnings.
const SUBOPS_WARNING: u16 = 0xB000;
/// Move destination unknown.
const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
/// Out of resources: unable to perform sub-operations.
const UNABLE_SUBOPS: u16 = 0xA702;
/// Identifier does not match SOP class.
const IDENTIFIER_MISMATCH: u16 = 0xA900;

/// Largest identifier accepted.
pub(crate) const MAX_IDENTIFIER: usize = 1 << 20;

/// What a peer did in the middle of an operation.
enum Interrupt {
    None,
    Cancel,
    Gone(String),
}

/// Decoded identifier.
struct Identifier {
    level: Option<Level>,
    charset: String,
    /// Requested keys in order: tag, VR as received, decoded text.
    keys: Vec<(u32, VR, String)>,
}

fn tag_u32(t: Tag) -> u32 {
    ((t.0 as u32) << 16) | t.1 as u32
}

/// Decodes a C-FIND/C-GET/C-MOVE identifier; a refusal is "cannot understand".
fn decode_identifier(bytes: &[u8], ts_uid: &str) -> Result<Identifier, Refusal> {
    let undecodable =
        || Refusal::cannot_understand(format!("transfer syntax {ts_uid} cannot be decoded"));
    let unparsable = |e: &dyn std::fmt::Display| {
        Refusal::cannot_understand(format!("identifier does not parse: {e}"))
    };
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(undecodable)?;
    // The node's own walker checks every length first: a bogus length must fail here at once,
    // not make the decoder below allocate or wait for it.
    let enc =
        crate::syntax::encoding(ts_uid.trim_end_matches(['\0', ' '])).ok_or_else(undecodable)?;
    crate::dataset::walk_bytes(bytes, enc, bytes.len() as u64 * 4 + 1024, &|_| false)
        .map_err(|e| unparsable(&e))?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| unparsable(&e))?;
    let mut id = Identifier {
        level: None,
        charset: String::new(),
        keys: Vec::new(),
    };
    for e in obj.iter() {
        let tag = tag_u32(e.tag());
        let text = match e.value() {
            dicom_core::value::Value::Primitive(p) => p.to_str().into_owned(),
            _ => String::new(),
        };
        match tag {
            0x0008_0052 => id.level = Level::parse(&text),
            0x0008_0005 => id.charset = text.trim().to_string(),
            t if t >> 16 == 0x0002 || t >> 16 == 0x0000 => {}
            _ => id.keys.push((tag, e.vr(), text)),
        }
    }
    Ok(id)
}

fn dictionary_vr(tag: u32, fallback: VR) -> VR {
    let t = Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16);
    match StandardDataDictionary.by_tag(t).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => vr,
        _ => fallback,
    }
}

/// Character set for an answer: the query's when it can carry every value, else UTF-8.
fn answer_charset(query_cs: &str, values: &BTreeMap<u32, String>) -> Option<String> {
    let ascii = values.values().all(|v| v.is_ascii());
    if ascii {
        return (!query_cs.is_empty()).then(|| query_cs.to_string());
    }
    let latin1 = values
        .values()
        .all(|v| v.chars().all(|c| (c as u32) < 0x100));
    if query_cs.contains("ISO_IR 100") && latin1 {
        Some("ISO_IR 100".into())
    } else {
        Some("ISO_IR 192".into())
    }
}

impl Association<'_> {
    /// Entry point for FIND/MOVE/GET requests with their identifier.
    pub(crate) fn query_retrieve(
        &mut self,
        context_id: u8,
        cmd: &Command,
        identifier: &[u8],
    ) -> Result<(), crate::service::Ending> {
        let Some(ctx) = self
            .neg
            .contexts
            .iter()
            .find(|c| c.id == context_id)
            .cloned()
        else {
            return self.final_rsp(
                context_id,
                cmd,
                status::CANNOT_UNDERSTAND,
                "unknown context",
                None,
            );
        };
        let Some((service, study_root)) = syntax::qr_class(&ctx.abstract_syntax) else {
            return self.final_rsp(
                context_id,
                cmd,
                status::SOP_CLASS_NOT_SUPPORTED,
                "not a query/retrieve presentation context",
                None,
            );
        };
        let expected = match service {
            QrService::Find => command::C_FIND_RQ,
            QrService::Move => command::C_MOVE_RQ,
            QrService::Get => command::C_GET_RQ,
        };
        if cmd.field() != expected {
            return self.final_rsp(
                context_id,
                cmd,
                status::SOP_CLASS_NOT_SUPPORTED,
                "command does not match the presentation context",
                None,
            );
        }
        let id = match decode_identifier(identifier, &ctx.transfer_syntax) {
            Ok(i) => i,
            Err(refusal) => return self.refuse(context_id, cmd, refusal),
        };
        let Some(level) = id.level else {
            return self.final_rsp(
                context_id,
                cmd,
                IDENTIFIER_MISMATCH,
                "Query/Retrieve Level (0008,0052) missing or unknown",
                None,
            );
        };
        // A key longer than its VR allows is the client's error (and would only make the
        // index's matcher fail): refused before any query runs.
        for (tag, vr, value) in &id.keys {
            if let Err(e) = find::check_key(*tag, dictionary_vr(*tag, *vr).to_string(), value) {
                return self.final_rsp(context_id, cmd, IDENTIFIER_MISMATCH, &e.to_string(), None);
            }
        }
        let limit = self.config.dicom.max_query_results;
        let pairs: Vec<(u32, String)> = id.keys.iter().map(|(t, _, v)| (*t, v.clone())).collect();
        let query = Query {
            level,
            study_root,
            keys: find::keys_from(&pairs),
            limit,
        };
        let keys_text = id
            .keys
            .iter()
            .filter(|(_, _, v)| !v.is_empty())
            .map(|(t, _, v)| format!("({:04X},{:04X})={}", t >> 16, t & 0xFFFF, v))
            .collect::<Vec<_>>()
            .join(";");
        match service {
            QrService::Find => self.c_find(context_id, cmd, &id, &query, &keys_text),
            QrService::Get => self.c_get(context_id, cmd, &query, &keys_text),
            QrService::Move => self.c_move(context_id, cmd, &query, &keys_text),
        }
    }

    /// The final response of a request refused before it ran.
    fn refuse(
        &mut self,
        context_id: u8,
        cmd: &Command,
        refusal: Refusal,
    ) -> Result<(), crate::service::Ending> {
        self.final_rsp(context_id, cmd, refusal.status, &refusal.comment, None)
    }

    fn final_rsp(
        &mut self,
        context_id: u8,
        cmd: &Command,
        code: u16,
        comment: &str,
        dataset: Option<&[u8]>,
    ) -> Result<(), crate::service::Ending> {
        self.respond_qr(context_id, cmd, code, None, comment, dataset)
    }

    fn sub_rsp(
        &mut self,
        context_id: u8,
        cmd: &Command,
        code: u16,
        counts: (u16, u16, u16, u16),
        comment: &str,
        dataset: Option<&[u8]>,
    ) -> Result<(), crate::service::Ending> {
        self.respond_qr(context_id, cmd, code, Some(counts), comment, dataset)
    }

    /// A FIND/GET/MOVE response; `counts` (remaining, completed, failed, warning) for retrieves.
    fn respond_qr(
        &mut self,
        context_id: u8,
        cmd: &Command,
        code: u16,
        counts: Option<(u16, u16, u16, u16)>,
        comment: &str,
        dataset: Option<&[u8]>,
    ) -> Result<(), crate::service::Ending> {
        let rsp = qr_rsp_command(cmd, code, counts, comment, dataset.is_some());
        pdu::send_message(
            &mut self.sock,
            self.neg.peer_max_pdu,
            context_id,
            &rsp,
            dataset,
        )
        .map_err(|e| crate::service::Ending::Aborted(format!("cannot send response: {e}")))
    }

    /// Look for a C-CANCEL (or the peer going away) without blocking.
    fn check_interrupt(&mut self, message_id: u16) -> Interrupt {
        let readable = {
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
        };
        if !readable {
            return Interrupt::None;
        }
        self.read_while_busy(message_id)
    }

    /// Read one PDU while an operation runs: C-CANCEL, A-ABORT or a closed socket matter.
    fn read_while_busy(&mut self, message_id: u16) -> Interrupt {
        let mut buf = Vec::new();
        let limit = self.config.dicom.max_pdu_bytes;
        match self.reader.read(&mut self.sock, |_| limit, None, &mut buf) {
            Ok(types::P_DATA) => {
                let Ok(pdvs) = pdu::split_pdvs(&buf) else {
                    return Interrupt::Gone("malformed PDU during an operation".into());
                };
                for pdv in pdvs {
                    if pdv.is_command {
                        if let Ok(c) = Command::decode(pdv.data) {
                            if c.field() == command::C_CANCEL_RQ
                                && c.u16(0x0120).is_none_or(|id| id == message_id)
                            {
                                return Interrupt::Cancel;
                            }
                        }
                    }
                }
                Interrupt::None
            }
            Ok(types::ABORT) => Interrupt::Gone("aborted by peer".into()),
            Ok(other) => {
                Interrupt::Gone(format!("unexpected PDU 0x{other:02x} during an operation"))
            }
            Err(PduError::Closed) => Interrupt::Gone("connection closed".into()),
            Err(e) => Interrupt::Gone(e.to_string()),
        }
    }

    fn c_find(
        &mut self,
        context_id: u8,
        cmd: &Command,
        id: &Identifier,
        query: &Query,
        keys_text: &str,
    ) -> Result<(), crate::service::Ending> {
        let ts_uid = self
            .neg
            .contexts
            .iter()
            .find(|c| c.id == context_id)
            .map(|c| c.transfer_syntax.clone())
            .unwrap_or_default();
        let Some(ts) = TransferSyntaxRegistry.get(&ts_uid) else {
            return self.final_rsp(
                context_id,
                cmd,
                status::CANNOT_UNDERSTAND,
                "transfer syntax",
                None,
            );
        };
        let conn = match find::query_connection(self.store.data_dir()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the index for a query");
                return self.final_rsp(
                    context_id,
                    cmd,
                    status::OUT_OF_RESOURCES,
                    "index unavailable",
                    None,
                );
            }
        };
        let our_ae = self.config.dicom.ae_title.to_string();
        let mut send_error = None;
        let mut cancelled = false;
        let message_id = cmd.message_id();
        let result = find::find(&conn, query, |row| {
            let mut ds = InMemDicomObject::new_empty();
            if let Some(cs) = answer_charset(&id.charset, &row) {
                ds.put(DataElement::new(
                    Tag(0x0008, 0x0005),
                    VR::CS,
                    PrimitiveValue::from(cs),
                ));
            }
            ds.put(DataElement::new(
                Tag(0x0008, 0x0052),
                VR::CS,
                PrimitiveValue::from(query.level.as_str()),
            ));
            ds.put(DataElement::new(
                Tag(0x0008, 0x0054),
                VR::AE,
                PrimitiveValue::from(our_ae.as_str()),
            ));
            for (tag, vr, _) in &id.keys {
                let t = Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16);
                let value = match row.get(tag) {
                    Some(v) if !v.is_empty() => PrimitiveValue::from(v.as_str()),
                    _ => PrimitiveValue::Empty,
                };
                let vr = if *vr == VR::SQ {
                    VR::SQ
                } else {
                    dictionary_vr(*tag, *vr)
                };
                if vr == VR::SQ {
                    ds.put(DataElement::new(
                        t,
                        VR::SQ,
                        dicom_core::value::DataSetSequence::<InMemDicomObject>::empty(),
                    ));
                } else {
                    ds.put(DataElement::new(t, vr, value));
                }
            }
            let mut bytes = Vec::with_capacity(512);
            if let Err(e) = ds.write_dataset_with_ts(&mut bytes, ts) {
                tracing::warn!(error = %e, "cannot encode an answer");
                return ControlFlow::Continue(());
            }
            if let Err(e) = self.final_rsp(context_id, cmd, PENDING, "", Some(&bytes)) {
                send_error = Some(e);
                return ControlFlow::Break(());
            }
            match self.check_interrupt(message_id) {
                Interrupt::None => ControlFlow::Continue(()),
                Interrupt::Cancel => {
                    cancelled = true;
                    ControlFlow::Break(())
                }
                Interrupt::Gone(why) => {
                    send_error = Some(crate::service::Ending::Aborted(why));
                    ControlFlow::Break(())
                }
            }
        });
        if let Some(e) = send_error {
            return Err(e);
        }
        let (code, comment, count) = match result {
            Ok(Ok((FindEnd::Complete, n))) => (status::SUCCESS, String::new(), n),
            Ok(Ok((FindEnd::Stopped, n))) if cancelled => (CANCEL, "cancelled".to_string(), n),
            Ok(Ok((FindEnd::Stopped, n))) => (CANCEL, String::new(), n),
            Ok(Ok((FindEnd::LimitReached, n))) => (
                status::OUT_OF_RESOURCES,
                format!("more than {} matches: refine the query", query.limit),
                n,
            ),
            Ok(Err(e)) => (IDENTIFIER_MISMATCH, e.to_string(), 0),
            Err(e) => {
                tracing::error!(error = %e, "query failed");
                (status::OUT_OF_RESOURCES, "the query failed".to_string(), 0)
            }
        };
        self.audit_qr(
            "query",
            query,
            keys_text,
            &[
                ("answers", &count.to_string()),
                ("status", &format!("0x{code:04X}")),
            ],
        );
        self.final_rsp(context_id, cmd, code, &comment, None)
    }

    fn audit_qr(&self, action: &str, query: &Query, keys: &str, extra: &[(&str, &str)]) {
        let mut pairs: Vec<(&str, &str)> = vec![("level", query.level.as_str()), ("keys", keys)];
        pairs.extend_from_slice(extra);
        self.store.audit_later(AuditEvent {
            actor: format!("ae:{}", self.neg.calling_ae),
            action: action.into(),
            object: query.level.as_str().into(),
            detail: json_obj_long(&pairs),
        });
    }

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

    fn c_get(
        &mut self,
        context_id: u8,
        cmd: &Command,
        query: &Query,
        keys_text: &str,
    ) -> Result<(), crate::service::Ending> {
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
            let picked = outgoing::pick_context(
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
                            return Err(crate::service::Ending::Aborted(format!(
                                "C-GET sub-operation: {why}"
                            )))
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
                            Err(Broken(why)) => return Err(crate::service::Ending::Aborted(why)),
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
    ) -> Result<(), crate::service::Ending> {
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
        .map_err(|e| crate::service::Ending::Aborted(format!("cannot send response: {e}")))
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
            detail: crate::service::json_obj(&[
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

    fn context_ts(&self, id: u8) -> Option<String> {
        self.neg
            .contexts
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.transfer_syntax.clone())
    }

    fn c_move(
        &mut self,
        context_id: u8,
        cmd: &Command,
        query: &Query,
        keys_text: &str,
    ) -> Result<(), crate::service::Ending> {
        let dest = cmd
            .string(0x0600)
            .map(|d| d.trim_matches([' ', '\0']).to_string())
            .unwrap_or_default();
        let Some(peer) = self.config.peer(&dest).cloned() else {
            self.audit_qr(
                "retrieve-move",
                query,
                keys_text,
                &[("destination", &printable(&dest)), ("status", "0xA801")],
            );
            return self.final_rsp(
                context_id,
                cmd,
                MOVE_DESTINATION_UNKNOWN,
                "move destination is not a configured peer",
                None,
            );
        };
        let list = match self.resolve(query) {
            Ok(l) => l,
            Err(refusal) => return self.refuse(context_id, cmd, refusal),
        };
        let total = list.len();
        if total == 0 {
            return self.finish_retrieve(
                context_id,
                cmd,
                query,
                keys_text,
                "retrieve-move",
                &[],
                &[],
                (0, 0, 0, 0),
                false,
                Some(&dest),
            );
        }
        let mut sub = match SubAssociation::open(
            &peer.host,
            peer.port,
            self.config.dicom.ae_title.as_str(),
            peer.ae.as_str(),
            &list,
        ) {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(destination = %dest, %why, "cannot reach the move destination");
                let why = why.to_string();
                self.audit_qr(
                    "retrieve-move",
                    query,
                    keys_text,
                    &[
                        ("destination", &dest),
                        ("status", "0xA702"),
                        ("reason", &why),
                    ],
                );
                return self.final_rsp(
                    context_id,
                    cmd,
                    UNABLE_SUBOPS,
                    &format!("cannot reach {dest}: {why}"),
                    None,
                );
            }
        };
        let message_id = cmd.message_id();
        let mut tally = Tally::default();
        let mut cancelled = false;
        let mut broken = false;
        let calling = self.neg.calling_ae.clone();
        let data = self.store.data_dir().clone();
        for (k, inst) in list.iter().enumerate() {
            let outcome = sub.store(inst, &data, &calling, message_id);
            match outcome {
                Ok(Ok(o)) => tally.record(o, &inst.sop_instance_uid),
                Ok(Err(problem)) => {
                    self.sub_op_failed(inst, &problem, "retrieve-move");
                    tally.record(SubOp::Failed, &inst.sop_instance_uid);
                }
                Err(Broken(why)) => {
                    tracing::warn!(%why, "move destination failed mid-transfer");
                    for rest in &list[k..] {
                        tally.record(SubOp::Failed, &rest.sop_instance_uid);
                    }
                    broken = true;
                    break;
                }
            }
            let remaining = (total - k - 1) as u16;
            match self.check_interrupt(message_id) {
                Interrupt::Cancel => {
                    cancelled = true;
                    break;
                }
                Interrupt::Gone(why) => {
                    sub.release();
                    return Err(crate::service::Ending::Aborted(why));
                }
                Interrupt::None => {}
            }
            if remaining > 0 {
                self.sub_rsp(context_id, cmd, PENDING, tally.counts(remaining), "", None)?;
            }
        }
        if broken {
            // the destination aborted or vanished: do not wait for a release it will not answer
            sub.abort();
        } else {
            sub.release();
        }
        let remaining = (total as u16).saturating_sub(tally.handled());
        self.finish_retrieve(
            context_id,
            cmd,
            query,
            keys_text,
            "retrieve-move",
            &tally.sent,
            &tally.failed_uids,
            tally.counts(remaining),
            cancelled,
            Some(&dest),
        )
    }
}

/// The command set of a FIND/GET/MOVE response.
fn qr_rsp_command(
    cmd: &Command,
    code: u16,
    counts: Option<(u16, u16, u16, u16)>,
    comment: &str,
    with_dataset: bool,
) -> Vec<u8> {
    let data_set_type = if with_dataset { 0x0000 } else { NO_DATASET };
    let mut b = CommandBuilder::new()
        .u16(0x0100, cmd.field() | command::RESPONSE)
        .u16(0x0120, cmd.message_id())
        .u16(0x0800, data_set_type)
        .u16(0x0900, code);
    if let Some((remaining, completed, failed, warning)) = counts {
        b = b
            .u16(0x1021, completed)
            .u16(0x1022, failed)
            .u16(0x1023, warning);
        if code == PENDING || code == CANCEL {
            b = b.u16(0x1020, remaining);
        }
    }
    if let Some(c) = cmd.affected_sop_class() {
        b = b.uid(0x0002, dimse::trim(&c));
    }
    if !comment.is_empty() && code != status::SUCCESS && code != PENDING {
        b = b.text(0x0902, comment);
    }
    b.encode()
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

fn json_obj_long(pairs: &[(&str, &str)]) -> String {
    // instance lists can be long: no truncation, unlike the other audit details
    crate::service::json_obj_with(pairs, usize::MAX)
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

/// The association the box opens to a C-MOVE destination.
struct SubAssociation {
    out: OutAssociation,
    /// (SOP class, transfer syntax) -> accepted context ID.
    contexts: Vec<(String, String, u8)>,
    next_id: u16,
}

impl SubAssociation {
    fn open(
        host: &str,
        port: u16,
        our_ae: &str,
        their_ae: &str,
        list: &[InstanceRef],
    ) -> Result<Self, OpenError> {
        use dicom_ul::pdu::{PresentationContextProposed, PresentationContextResultReason};
        // One context per (SOP class, stored syntax), plus one per Little Endian syntax the box
        // can convert to (decompressing if need be), so the destination can take objects as
        // stored, or else uncompressed.
        let mut pairs: Vec<(String, String)> = Vec::new();
        for i in list {
            let mut wanted = vec![(i.sop_class_uid.clone(), i.transfer_syntax.clone())];
            for alt in [syntax::EXPLICIT_LE, syntax::IMPLICIT_LE] {
                if alt != i.transfer_syntax && outgoing::can_convert(&i.transfer_syntax, alt) {
                    wanted.push((i.sop_class_uid.clone(), alt.to_string()));
                }
            }
            for p in wanted {
                if !pairs.contains(&p) && pairs.len() < 128 {
                    pairs.push(p);
                }
            }
        }
        let proposed: Vec<PresentationContextProposed> = pairs
            .iter()
            .enumerate()
            .map(|(k, (class, ts))| PresentationContextProposed {
                id: (2 * k + 1) as u8,
                abstract_syntax: class.clone(),
                transfer_syntaxes: vec![ts.clone()],
            })
            .collect();
        let (out, ac) = OutAssociation::open(Request {
            host,
            port,
            our_ae,
            their_ae,
            contexts: proposed,
            scp_role: None,
            artim: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        })?;
        let mut contexts = Vec::new();
        for r in &ac.presentation_contexts {
            if r.reason == PresentationContextResultReason::Acceptance {
                let k = (r.id as usize).saturating_sub(1) / 2;
                if let Some((class, _)) = pairs.get(k) {
                    let accepted = r.transfer_syntax.trim_end_matches(['\0', ' ']).to_string();
                    contexts.push((class.clone(), accepted, r.id));
                }
            }
        }
        Ok(SubAssociation {
            out,
            contexts,
            next_id: 0,
        })
    }

    /// Send one instance and wait for its C-STORE-RSP. `Ok(Err(_))`: the instance could not be
    /// delivered (the association goes on); `Err(_)`: the destination failed.
    fn store(
        &mut self,
        inst: &InstanceRef,
        data: &cairn_store::DataDir,
        origin_ae: &str,
        origin_id: u16,
    ) -> Result<Result<SubOp, Problem>, Broken> {
        let picked = outgoing::pick_context(
            &inst.transfer_syntax,
            self.contexts
                .iter()
                .filter(|(c, _, _)| *c == inst.sop_class_uid)
                .map(|(_, t, id)| (t.as_str(), *id)),
        );
        let Some((pc, ts)) = picked else {
            return Ok(Err(Problem::Unconvertible(format!(
                "the destination accepted no context that can carry it (stored in {})",
                inst.transfer_syntax
            ))));
        };
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let sent = Outgoing {
            sock: &mut self.out.sock,
            peer_max_pdu: self.out.peer_max_pdu,
            context_id: pc,
            context_ts: &ts,
            message_id: id,
            move_origin: Some((origin_ae, origin_id)),
        }
        .send(inst, data)?;
        let damaged = match sent {
            Sent::Withheld(problem) => return Ok(Err(problem)),
            Sent::Damaged => true,
            Sent::Intact => false,
        };
        let status = self
            .out
            .read_commands(1 << 20, None, |c| {
                (c.u16(0x0120) == Some(id))
                    .then(|| SubOp::from_status(c.u16(0x0900).unwrap_or(0xC000)))
            })
            .map_err(|e| match e {
                ReadError::NotData(t) => Broken(format!(
                    "unexpected PDU 0x{t:02x} from the move destination"
                )),
                other => Broken(other.to_string()),
            })?;
        Ok(if damaged {
            Err(Problem::Damaged(Damage::HashMismatch))
        } else {
            Ok(status)
        })
    }

    fn abort(self) {
        self.out.abort();
    }

    fn release(self) {
        self.out.release();
    }
}

#[cfg(test)]
mod tests {
    use super::decode_identifier;

    const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

    #[test]
    fn identifier_with_a_bogus_length_is_refused() {
        // (0010,0010) PN, implicit VR, length 0xFFFFFFF0 with only 5 bytes behind it.
        let mut bytes = vec![0x10, 0x00, 0x10, 0x00, 0xF0, 0xFF, 0xFF, 0xFF];
        bytes.extend_from_slice(b"DOE^J");
        let Err(err) = decode_identifier(&bytes, IMPLICIT_LE) else {
            panic!("a bogus length was accepted");
        };
        assert!(err.comment.contains("identifier does not parse"), "{err}");
    }

    #[test]
    fn identifier_keys_are_decoded() {
        // (0008,0052) CS "STUDY " then (0010,0010) PN "DOE^J "
        let mut bytes = vec![0x08, 0x00, 0x52, 0x00, 6, 0, 0, 0];
        bytes.extend_from_slice(b"STUDY ");
        bytes.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, 6, 0, 0, 0]);
        bytes.extend_from_slice(b"DOE^J ");
        let Ok(id) = decode_identifier(&bytes, IMPLICIT_LE) else {
            panic!("a valid identifier was refused");
        };
        assert_eq!(id.level.map(|l| l.as_str()), Some("STUDY"));
        assert_eq!(id.keys.len(), 1);
        assert_eq!(id.keys[0].0, 0x0010_0010);
        assert!(id.keys[0].2.starts_with("DOE^J"));
    }
}

//! What C-FIND, C-GET and C-MOVE share (PS3.4 annex C): the request checked and its
//! identifier decoded into a query, the response command sets, the audit row, and the look for
//! a C-CANCEL (or the peer going away) while an operation runs.

use crate::association::{Association, Ending};
use crate::audit_detail::json_obj_long;
use crate::dimse::{self, command, status, Command, CommandBuilder, Refusal, NO_DATASET};
use crate::pdu::{self, types, PduError};
use crate::syntax::{self, QrService};
use cairn_audit::AuditEvent;
use cairn_store::find::{self, Level, Query};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;

/// Pending status.
pub(crate) const PENDING: u16 = 0xFF00;
/// Cancelled.
pub(crate) const CANCEL: u16 = 0xFE00;
/// Sub-operations complete, one or more failures or warnings.
pub(crate) const SUBOPS_WARNING: u16 = 0xB000;
/// Move destination unknown.
pub(crate) const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
/// Out of resources: unable to perform sub-operations.
pub(crate) const UNABLE_SUBOPS: u16 = 0xA702;
/// Identifier does not match SOP class.
pub(crate) const IDENTIFIER_MISMATCH: u16 = 0xA900;

/// Largest identifier accepted.
pub(crate) const MAX_IDENTIFIER: usize = 1 << 20;

/// What a peer did in the middle of an operation.
pub(crate) enum Interrupt {
    /// Nothing happened.
    None,
    /// The peer sent C-CANCEL-RQ.
    Cancel,
    /// The peer aborted or went away (why).
    Gone(String),
}

/// Decoded identifier.
pub(crate) struct Identifier {
    /// Query/Retrieve Level, when known.
    pub(crate) level: Option<Level>,
    /// Specific Character Set of the query.
    pub(crate) charset: String,
    /// Requested keys in order: tag, VR as received, decoded text.
    pub(crate) keys: Vec<(u32, VR, String)>,
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

/// The dictionary VR of `tag`, else the VR it came with.
pub(crate) fn dictionary_vr(tag: u32, fallback: VR) -> VR {
    let t = Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16);
    match StandardDataDictionary.by_tag(t).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => vr,
        _ => fallback,
    }
}

/// A checked FIND/GET/MOVE request.
pub(crate) struct QrRequest {
    /// Which service runs it.
    pub(crate) service: QrService,
    /// The decoded identifier.
    pub(crate) identifier: Identifier,
    /// The query for the index.
    pub(crate) query: Query,
    /// The non-empty keys as text, for the audit row (never the log).
    pub(crate) keys_text: String,
}

impl Association<'_> {
    /// Checks a FIND/GET/MOVE request and decodes its identifier into the query to run.
    pub(crate) fn qr_request(
        &self,
        context_id: u8,
        cmd: &Command,
        identifier: &[u8],
    ) -> Result<QrRequest, Refusal> {
        let Some(ctx) = self.context(context_id).cloned() else {
            return Err(Refusal::new(status::CANNOT_UNDERSTAND, "unknown context"));
        };
        let Some((service, study_root)) = syntax::qr_class(&ctx.abstract_syntax) else {
            return Err(Refusal::new(
                status::SOP_CLASS_NOT_SUPPORTED,
                "not a query/retrieve presentation context",
            ));
        };
        let expected = match service {
            QrService::Find => command::C_FIND_RQ,
            QrService::Move => command::C_MOVE_RQ,
            QrService::Get => command::C_GET_RQ,
        };
        if cmd.field() != expected {
            return Err(Refusal::new(
                status::SOP_CLASS_NOT_SUPPORTED,
                "command does not match the presentation context",
            ));
        }
        let id = decode_identifier(identifier, &ctx.transfer_syntax)?;
        let Some(level) = id.level else {
            return Err(Refusal::new(
                IDENTIFIER_MISMATCH,
                "Query/Retrieve Level (0008,0052) missing or unknown",
            ));
        };
        // A key longer than its VR allows is the client's error (and would only make the
        // index's matcher fail): refused before any query runs.
        for (tag, vr, value) in &id.keys {
            if let Err(e) = find::check_key(*tag, dictionary_vr(*tag, *vr).to_string(), value) {
                return Err(Refusal::new(IDENTIFIER_MISMATCH, e.to_string()));
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
        Ok(QrRequest {
            service,
            identifier: id,
            query,
            keys_text,
        })
    }

    /// The final response of a request refused before it ran.
    pub(crate) fn refuse(
        &mut self,
        context_id: u8,
        cmd: &Command,
        refusal: Refusal,
    ) -> Result<(), Ending> {
        self.final_rsp(context_id, cmd, refusal.status, &refusal.comment, None)
    }

    pub(crate) fn final_rsp(
        &mut self,
        context_id: u8,
        cmd: &Command,
        code: u16,
        comment: &str,
        dataset: Option<&[u8]>,
    ) -> Result<(), Ending> {
        self.respond_qr(context_id, cmd, code, None, comment, dataset)
    }

    pub(crate) fn sub_rsp(
        &mut self,
        context_id: u8,
        cmd: &Command,
        code: u16,
        counts: (u16, u16, u16, u16),
        comment: &str,
        dataset: Option<&[u8]>,
    ) -> Result<(), Ending> {
        self.respond_qr(context_id, cmd, code, Some(counts), comment, dataset)
    }

    /// A FIND/GET/MOVE response; `counts` (remaining, completed, failed, warning) for retrieves.
    pub(crate) fn respond_qr(
        &mut self,
        context_id: u8,
        cmd: &Command,
        code: u16,
        counts: Option<(u16, u16, u16, u16)>,
        comment: &str,
        dataset: Option<&[u8]>,
    ) -> Result<(), Ending> {
        let rsp = qr_rsp_command(cmd, code, counts, comment, dataset.is_some());
        pdu::send_message(
            &mut self.sock,
            self.neg.peer_max_pdu,
            context_id,
            &rsp,
            dataset,
        )
        .map_err(|e| Ending::Aborted(format!("cannot send response: {e}")))
    }

    /// Look for a C-CANCEL (or the peer going away) without blocking.
    pub(crate) fn check_interrupt(&mut self, message_id: u16) -> Interrupt {
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

    /// Audits a query or retrieve with its level, keys and `extra` details.
    pub(crate) fn audit_qr(&self, action: &str, query: &Query, keys: &str, extra: &[(&str, &str)]) {
        let mut pairs: Vec<(&str, &str)> = vec![("level", query.level.as_str()), ("keys", keys)];
        pairs.extend_from_slice(extra);
        self.store.audit_later(AuditEvent {
            actor: format!("ae:{}", self.neg.calling_ae),
            action: action.into(),
            object: query.level.as_str().into(),
            detail: json_obj_long(&pairs),
        });
    }
}

/// The command set of a FIND/GET/MOVE response.
pub(crate) fn qr_rsp_command(
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

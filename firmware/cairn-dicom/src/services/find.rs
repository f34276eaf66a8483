//! C-FIND (PS3.4 annex C): answers stream as pending responses while the index's query runs,
//! in the query's character set when it can carry them; a C-CANCEL is looked for between
//! answers.

use crate::association::{Association, Ending};
use crate::dimse::{status, Command};
use crate::services::query::{
    dictionary_vr, Identifier, Interrupt, CANCEL, IDENTIFIER_MISMATCH, PENDING,
};
use cairn_store::find::{self, FindEnd, Query};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

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
    /// Runs a C-FIND and sends its answers and final response.
    pub(crate) fn c_find(
        &mut self,
        context_id: u8,
        cmd: &Command,
        id: &Identifier,
        query: &Query,
        keys_text: &str,
    ) -> Result<(), Ending> {
        let ts_uid = self.context_ts(context_id).unwrap_or_default();
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
                    send_error = Some(Ending::Aborted(why));
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
}

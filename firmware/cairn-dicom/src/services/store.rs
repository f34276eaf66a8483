//! C-STORE (PS3.4 annex B): the checks before a data set is received into the spool, then
//! the read-back that validates it, its index record (`index_record.rs`) and the commit to the
//! store, which answers only once the object is durable and indexed.

use crate::acceptor::AcceptedContext;
use crate::association::Association;
use crate::dataset::{self, DatasetError};
use crate::dimse::{status, Command, Refusal};
use crate::index_record::{instance_record, is_index_tag};
use crate::syntax::{self, Encoding};
use cairn_core::check_uid;
use cairn_store::{ErrorKind, SpoolWriter, StoreJob, StoreOutcome};

/// A C-STORE data set on its way into the spool.
pub(crate) struct Receiving {
    /// The spool file being written.
    pub(crate) spool: SpoolWriter,
    /// Length of the Part-10 header written before the data set.
    pub(crate) header_len: u64,
    /// The presentation context it arrives on.
    pub(crate) context: AcceptedContext,
    /// Affected SOP Class UID of the command.
    pub(crate) sop_class: String,
    /// Affected SOP Instance UID of the command.
    pub(crate) sop_instance: String,
}

impl Association<'_> {
    /// Checks a C-STORE-RQ and opens its spool file; a refusal is answered once the data set
    /// has been read and dropped.
    pub(crate) fn begin_store(
        &mut self,
        context_id: u8,
        cmd: &Command,
    ) -> Result<Receiving, Refusal> {
        let Some(context) = self.context(context_id).cloned() else {
            return Err(Refusal::cannot_understand("unknown presentation context"));
        };
        let class_raw = cmd.affected_sop_class().unwrap_or_default();
        let inst_raw = cmd.affected_sop_instance().unwrap_or_default();
        let sop_class = match check_uid(&class_raw) {
            Ok((u, _)) => u.to_string(),
            Err(e) => {
                return Err(Refusal::cannot_understand(format!(
                    "Affected SOP Class UID is not usable: {e}"
                )))
            }
        };
        let sop_instance = match check_uid(&inst_raw) {
            Ok((u, warning)) => {
                if warning.is_some() {
                    tracing::warn!("SOP Instance UID has a zero-led component; accepted");
                }
                u.to_string()
            }
            Err(e) => {
                return Err(Refusal::cannot_understand(format!(
                    "Affected SOP Instance UID is not usable: {e}"
                )))
            }
        };
        if !syntax::is_storage_class(&context.abstract_syntax)
            || sop_class != context.abstract_syntax
        {
            return Err(Refusal::new(
                status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context's",
            ));
        }
        if !self.neg.rights.store {
            return Err(Refusal::new(
                status::NOT_AUTHORIZED,
                "this AE may not store here",
            ));
        }
        let mut spool = match self.store.spool() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a spool file");
                return Err(Refusal::disk_unwritable());
            }
        };
        let header = part10_header(&sop_class, &sop_instance, &context.transfer_syntax);
        if let Err(e) = spool.write(&header) {
            tracing::error!(error = %e, "cannot write to the spool");
            return Err(Refusal::disk_unwritable());
        }
        Ok(Receiving {
            spool,
            header_len: header.len() as u64,
            context,
            sop_class,
            sop_instance,
        })
    }

    /// Validates the received data set, indexes it and commits it to the store.
    pub(crate) fn complete_store(&mut self, receiving: Receiving) -> Result<StoreOutcome, Refusal> {
        let Receiving {
            spool,
            header_len,
            context,
            sop_class,
            sop_instance,
        } = receiving;
        let enc = syntax::encoding(&context.transfer_syntax).unwrap_or(Encoding::ExplicitLe);
        // Everything received reaches the spool file here; it is then read back to validate.
        let finished = spool.finish().map_err(|e| {
            tracing::error!(error = %e, "cannot write the spool file");
            Refusal::disk_unwritable()
        })?;
        let file = std::fs::File::open(finished.path()).map_err(|e| {
            tracing::error!(error = %e, "cannot reopen the spool file");
            Refusal::disk_unreadable()
        })?;
        let walked = dataset::walk_file(
            file,
            header_len,
            enc,
            self.config.dicom.max_object_bytes,
            &is_index_tag,
        )
        .map_err(|e| match e {
            DatasetError::Io(ref io) if io.kind() != std::io::ErrorKind::InvalidData => {
                Refusal::disk_unreadable()
            }
            other => Refusal::cannot_understand(format!("data set does not parse: {other}")),
        })?;
        for w in walked.warnings.iter().take(4) {
            tracing::info!(warning = %w, "tolerated a minor violation in a received data set");
        }
        let record = instance_record(
            &walked.values,
            &sop_class,
            &sop_instance,
            &context.transfer_syntax,
        )?;
        self.store
            .commit(StoreJob {
                spool: finished,
                record,
                source_ae: self.neg.calling_ae.clone(),
            })
            .map_err(|e| {
                if let cairn_store::StoreError::Archived(change) = &e {
                    return archived_refusal(change);
                }
                tracing::error!(error = %e, "cannot commit a received object");
                let why = match e.kind() {
                    ErrorKind::ShuttingDown => "the archive is shutting down; send again later",
                    _ => "the archive cannot write to its disk (full or failing)",
                };
                Refusal::out_of_resources(why)
            })
    }
}

/// A study in the archive tier, or under a legal hold, is fixed: the refusal of a change to it. Refused: not
/// authorized (0x0124, a general failure status of PS3.7 annex C) is a permanent failure that says the operation is not
/// permitted here, so a sender does not retry as it would after 0xA7xx (out of resources);
/// 0xA9xx and 0xCxxx would say the data set is wrong, which it is not. The Error Comment says
/// why within its 64 characters; the refusal's audit row names the instance.
fn archived_refusal(change: &cairn_store::ArchivedChange) -> Refusal {
    Refusal::new(
        status::NOT_AUTHORIZED,
        match (change.under_hold, change.changed_instance) {
            (true, _) => "study is under a legal hold: changed instance refused",
            (false, true) => "study is in the archive tier (fixed): changed instance refused",
            (false, false) => "study is in the archive tier (fixed): new instance refused",
        },
    )
}

/// The Part-10 preamble, prefix and file meta group (PS3.10 section 7.1), deterministic for a
/// given SOP class, instance and transfer syntax, so that a resend hashes the same.
pub(crate) fn part10_header(sop_class: &str, sop_instance: &str, ts: &str) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, elem: u16, vr: &[u8; 2], value: &[u8], pad: u8) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OB" {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(&v);
    }
    let mut body = Vec::with_capacity(256);
    el(&mut body, 0x0001, b"OB", &[0, 1], 0);
    el(&mut body, 0x0002, b"UI", sop_class.as_bytes(), 0);
    el(&mut body, 0x0003, b"UI", sop_instance.as_bytes(), 0);
    el(&mut body, 0x0010, b"UI", ts.as_bytes(), 0);
    el(
        &mut body,
        0x0012,
        b"UI",
        crate::IMPLEMENTATION_CLASS_UID.as_bytes(),
        0,
    );
    el(
        &mut body,
        0x0013,
        b"SH",
        crate::IMPLEMENTATION_VERSION_NAME.as_bytes(),
        b' ',
    );
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_even_and_deterministic() {
        let a = part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1");
        let b = part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1");
        assert_eq!(a, b);
        assert_eq!(&a[128..132], b"DICM");
        let group_len = u32::from_le_bytes([a[140], a[141], a[142], a[143]]) as usize;
        assert_eq!(group_len, a.len() - 144);
        assert_eq!(a.len() % 2, 0);
    }

    #[test]
    fn archived_refusals_are_permanent_and_fit_the_error_comment() {
        for changed_instance in [true, false] {
            let r = archived_refusal(&cairn_store::ArchivedChange {
                study_uid: "1.2.3".into(),
                changed_instance,
                under_hold: false,
            });
            assert_eq!(r.status, status::NOT_AUTHORIZED);
            assert!(r.comment.len() <= 64, "{}", r.comment);
            assert!(r
                .comment
                .starts_with("study is in the archive tier (fixed)"));
        }
        let r = archived_refusal(&cairn_store::ArchivedChange {
            study_uid: "1.2.3".into(),
            changed_instance: true,
            under_hold: true,
        });
        assert_eq!(r.status, status::NOT_AUTHORIZED);
        assert!(r.comment.len() <= 64, "{}", r.comment);
        assert_eq!(
            r.comment,
            "study is under a legal hold: changed instance refused"
        );
    }
}

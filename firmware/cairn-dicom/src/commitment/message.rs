//! Storage commitment messages: the N-ACTION-RQ data set parsed, the N-EVENT-REPORT data set
//! encoded, and the command sets of both exchanges.

use super::{nstatus, Report, MAX_REQUEST, N_ACTION_RSP, N_EVENT_REPORT_RQ};
use crate::dimse::{status, Command, CommandBuilder, Refusal, NO_DATASET};
use crate::syntax::{STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH};
use cairn_core::check_uid;
use cairn_store::commitment::CommitItem;
use dicom_core::value::Value;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Most instances in one request.
const MAX_ITEMS: usize = 100_000;
/// The transfer syntax of a context, padding trimmed.
pub(crate) fn ts_of(uid: &str) -> Option<&'static dicom_encoding::TransferSyntax> {
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
pub(crate) fn parse_action(
    bytes: &[u8],
    ts_uid: &str,
) -> Result<(String, Vec<CommitItem>), Refusal> {
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
pub(crate) fn encode_report(
    txn: &str,
    report: &Report,
    ts_uid: &str,
) -> Result<Vec<u8>, ReportError> {
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
pub(crate) enum ReportError {
    /// The context's transfer syntax is not one the encoder knows.
    #[error("transfer syntax {0} unknown")]
    UnknownSyntax(String),
    /// The encoder failed.
    #[error("{0}")]
    Encode(String),
}

/// The N-EVENT-REPORT-RQ command set (its data set follows).
pub(crate) fn event_report_rq(message_id: u16, event_type: u16) -> Vec<u8> {
    CommandBuilder::new()
        .uid(0x0002, STORAGE_COMMITMENT_PUSH)
        .u16(0x0100, N_EVENT_REPORT_RQ)
        .u16(0x0110, message_id)
        .u16(0x0800, 0x0000)
        .uid(0x1000, STORAGE_COMMITMENT_INSTANCE)
        .u16(0x1002, event_type)
        .encode()
}

/// The N-ACTION-RSP command set for `rq`.
pub(crate) fn action_rsp(rq: &Command, code: u16, comment: Option<&str>) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commitment::nstatus;
    use cairn_store::commitment as sc;

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

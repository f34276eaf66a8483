//! What the store's index takes from a received data set: the top-level attributes it needs
//! ([`INDEX_TAGS`]) and how their values become an [`InstanceRecord`] ([`instance_record`]).
//! A tag added to one must be added to the other; nothing else in the node names them.

use crate::dataset::decode_text;
use crate::dimse::Refusal;
use cairn_core::check_uid;
use cairn_store::{InstanceRecord, PatientInfo, SeriesInfo, StudyInfo};
use std::collections::BTreeMap;

/// Specific Character Set: how the text values below are decoded.
const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;
const SOP_CLASS_UID: u32 = 0x0008_0016;
const SOP_INSTANCE_UID: u32 = 0x0008_0018;
const STUDY_DATE: u32 = 0x0008_0020;
const STUDY_TIME: u32 = 0x0008_0030;
const ACCESSION_NUMBER: u32 = 0x0008_0050;
const MODALITY: u32 = 0x0008_0060;
const REFERRING_PHYSICIAN: u32 = 0x0008_0090;
const STUDY_DESCRIPTION: u32 = 0x0008_1030;
const SERIES_DESCRIPTION: u32 = 0x0008_103E;
const PATIENT_NAME: u32 = 0x0010_0010;
const PATIENT_ID: u32 = 0x0010_0020;
const ISSUER_OF_PATIENT_ID: u32 = 0x0010_0021;
const PATIENT_BIRTH_DATE: u32 = 0x0010_0030;
const PATIENT_SEX: u32 = 0x0010_0040;
const BODY_PART: u32 = 0x0018_0015;
const STUDY_INSTANCE_UID: u32 = 0x0020_000D;
const SERIES_INSTANCE_UID: u32 = 0x0020_000E;
const STUDY_ID: u32 = 0x0020_0010;
const SERIES_NUMBER: u32 = 0x0020_0011;
const INSTANCE_NUMBER: u32 = 0x0020_0013;

/// The top-level attributes the index needs (the data set walker keeps only these).
pub(crate) const INDEX_TAGS: [u32; 21] = [
    SPECIFIC_CHARACTER_SET,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_DATE,
    STUDY_TIME,
    ACCESSION_NUMBER,
    MODALITY,
    REFERRING_PHYSICIAN,
    STUDY_DESCRIPTION,
    SERIES_DESCRIPTION,
    PATIENT_NAME,
    PATIENT_ID,
    ISSUER_OF_PATIENT_ID,
    PATIENT_BIRTH_DATE,
    PATIENT_SEX,
    BODY_PART,
    STUDY_INSTANCE_UID,
    SERIES_INSTANCE_UID,
    STUDY_ID,
    SERIES_NUMBER,
    INSTANCE_NUMBER,
];

/// True for a tag in [`INDEX_TAGS`].
pub(crate) fn is_index_tag(tag: u32) -> bool {
    INDEX_TAGS.contains(&tag)
}

/// The index record of a received instance from the raw `values` of [`INDEX_TAGS`], checked
/// against the C-STORE-RQ's SOP class and instance; `transfer_syntax` is the one it came in.
pub(crate) fn instance_record(
    values: &BTreeMap<u32, Vec<u8>>,
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
) -> Result<InstanceRecord, Refusal> {
    let v = |tag: u32| -> String {
        let charset = values
            .get(&SPECIFIC_CHARACTER_SET)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        values
            .get(&tag)
            .map(|raw| decode_text(raw, &charset))
            .unwrap_or_default()
    };
    let ds_class = v(SOP_CLASS_UID);
    let ds_instance = v(SOP_INSTANCE_UID);
    if ds_class.is_empty() || ds_instance.is_empty() {
        return Err(Refusal::cannot_understand(
            "data set lacks its SOP Class UID or SOP Instance UID",
        ));
    }
    if ds_class != sop_class || ds_instance != sop_instance {
        return Err(Refusal::mismatch(
            "SOP Class/Instance UID in the data set differ from the command",
        ));
    }
    let uid = |tag: u32, name: &str| -> Result<String, Refusal> {
        let raw = v(tag);
        check_uid(&raw)
            .map(|(u, _)| u.to_string())
            .map_err(|e| Refusal::cannot_understand(format!("{name} is missing or unusable: {e}")))
    };
    let study_uid = uid(STUDY_INSTANCE_UID, "Study Instance UID")?;
    let series_uid = uid(SERIES_INSTANCE_UID, "Series Instance UID")?;
    Ok(InstanceRecord {
        patient: PatientInfo {
            id: v(PATIENT_ID),
            issuer: v(ISSUER_OF_PATIENT_ID),
            name: v(PATIENT_NAME),
            birth_date: v(PATIENT_BIRTH_DATE),
            sex: v(PATIENT_SEX),
        },
        study: StudyInfo {
            uid: study_uid,
            date: v(STUDY_DATE),
            time: v(STUDY_TIME),
            description: v(STUDY_DESCRIPTION),
            accession: v(ACCESSION_NUMBER),
            referring_physician: v(REFERRING_PHYSICIAN),
            study_id: v(STUDY_ID),
        },
        series: SeriesInfo {
            uid: series_uid,
            modality: v(MODALITY),
            number: v(SERIES_NUMBER),
            description: v(SERIES_DESCRIPTION),
            body_part: v(BODY_PART),
        },
        sop_instance_uid: sop_instance.to_string(),
        sop_class_uid: sop_class.to_string(),
        instance_number: v(INSTANCE_NUMBER),
        transfer_syntax: transfer_syntax.to_string(),
    })
}
